"""The hostile vtest client's pure parts on a session recorded from a real run (the gl probe's,
through vtest-virgl to virgl_test_server 0.10.4, by harness/vtestrelay.py): the protocol's
framing, a mutator that is the same for the same seed, and what the server's framing still owes."""
import importlib.util
import random
import struct
from pathlib import Path

from harness.probes import PROBE_DIR

SESSION = (Path(__file__).parent / "files" / "vtest" / "gl-session.bin").read_bytes()
spec = importlib.util.spec_from_file_location("vtestfuzz", PROBE_DIR / "vtestfuzz.py")
vtestfuzz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vtestfuzz)


def test_the_recorded_session_is_whole_commands_of_the_protocol():
    commands = vtestfuzz.parse(SESSION)
    assert vtestfuzz.encode(commands) == SESSION  # nothing left over, nothing changed
    ids = [command for command, _ in commands]
    assert ids[0] == 8  # VCMD_CREATE_RENDERER: a client's first words
    assert {6, 12} <= set(ids) and set(ids) <= set(vtestfuzz.COMMANDS)  # submits, resources (protocol 2+)
    assert vtestfuzz.owed(SESSION) == 0


def test_the_same_seed_makes_the_same_inputs_and_another_seed_others():
    commands = vtestfuzz.parse(SESSION)
    first = [vtestfuzz.mutate(commands, rng) for rng in [random.Random(7)] for _ in range(50)]
    again = [vtestfuzz.mutate(commands, rng) for rng in [random.Random(7)] for _ in range(50)]
    other = [vtestfuzz.mutate(commands, rng) for rng in [random.Random(8)] for _ in range(50)]
    assert first == again and first != other
    words = {"length": "length", "command": ": id ", "dword": "dword", "drop": "dropped", "repeat": "twice", "cut": "cut after"}
    kinds = {kind for _, change in first for kind, word in words.items() if word in change}
    assert kinds == set(vtestfuzz.KINDS), kinds  # every kind of change in 50 inputs
    assert all(payload != SESSION for payload, _ in first)


def test_what_the_servers_framing_still_expects():
    header = struct.Struct("<II")
    assert vtestfuzz.owed(header.pack(3, 6) + bytes(4)) == 8  # two of three dwords sent
    assert vtestfuzz.owed(header.pack(0, 10)[:5]) == 3  # a header cut short
    assert vtestfuzz.owed(header.pack(0x3FFFFFFF, 6)) == 4 * 0x3FFFFFFF
    payload, change = vtestfuzz.mutate([(6, bytes(8))], random.Random(3))
    assert isinstance(payload, bytes) and change
