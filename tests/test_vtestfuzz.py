"""The hostile vtest client's pure parts on a session recorded from a real run (the gl probe's,
through vtest-virgl to virgl_test_server 0.10.4, by harness/studies/vtestrelay.py): the protocol's
framing, a mutator that is the same for the same seed, and what the server's framing still owes."""
import importlib.util
import random
import struct
import sys

from harness.scenario.probes import PROBE_DIR

# shipped: security.toml fuzzes from it
SESSION = (PROBE_DIR.parent / "data" / "vtest" / "gl-session.bin").read_bytes()


def probe_module(name: str):
    """A module of the probe folder, loaded as the fuzzer finds it: by its name, beside it."""
    spec = importlib.util.spec_from_file_location(name, PROBE_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


vtestcases = probe_module("vtestcases")
virtgpufuzz = probe_module("virtgpufuzz")
vtestfuzz = probe_module("vtestfuzz")


def test_the_recorded_session_is_whole_commands_of_the_protocol():
    commands = vtestfuzz.parse(SESSION)
    assert vtestfuzz.encode(commands) == SESSION  # nothing left over, nothing changed
    ids = [command for command, _ in commands]
    # VCMD_CREATE_RENDERER: its name, length in bytes
    assert ids[0] == 8 and commands[0][1] == b"python3\0"
    assert ids[1] == 10  # then it asks for the protocol version (VCMD_PING_PROTOCOL_VERSION)
    # submits, resources (protocol 2+)
    assert {6, 12} <= set(ids) and set(ids) <= set(vtestfuzz.COMMANDS)
    assert vtestfuzz.owed(SESSION) == 0


def test_the_same_seed_makes_the_same_inputs_and_another_seed_others():
    commands = vtestfuzz.parse(SESSION)
    first = [vtestfuzz.mutate(commands, rng) for rng in [random.Random(7)] for _ in range(50)]
    again = [vtestfuzz.mutate(commands, rng) for rng in [random.Random(7)] for _ in range(50)]
    other = [vtestfuzz.mutate(commands, rng) for rng in [random.Random(8)] for _ in range(50)]
    assert first == again and first != other
    words = {"length": "length", "command": ": id ", "dword": "dword", "drop": "dropped",
             "repeat": "twice", "cut": "cut after"}
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


def test_the_targeted_cases_aim_at_the_fields_the_protocol_names():
    commands = vtestfuzz.parse(SESSION)
    cases = vtestcases.targeted(commands)
    assert cases == vtestcases.targeted(commands)  # no randomness: the same cases every run
    # The recorded client (Mesa 22.3, protocol 2+) creates with RESOURCE_CREATE2 and reads back
    # with TRANSFER_GET2: every case but the first protocol's transfers applies.
    assert [case.name.split(":")[0] for case in cases] == ["oversized resource"] * 5 + [
        "out-of-range transfer box past the resource",
        "out-of-range transfer box 0xffff wide and high",
        "out-of-range transfer offset 0xfffffff0", "out-of-range transfer data size 0x7fffffff"] + [
        "another client's resources"] * 3 + ["a client that never reads",
                                             "a client that leaves before its answer"]
    first_create = next(i for i, (c, _) in enumerate(commands) if c in (2, 12))
    huge = next(case for case in cases
                if case.name == "oversized resource: width and height 0xffffffff")
    words = struct.unpack(f"<{len(huge.commands[first_create][1]) // 4}I",
                          huge.commands[first_create][1])
    assert words[4] == words[5] == 0xFFFFFFFF  # VCMD_RES_CREATE2_WIDTH, _HEIGHT
    assert (huge.commands[:first_create] == commands[:first_create]
            and len(huge.commands) == len(commands))
    foreign = next(case for case in cases
                   if case.name.startswith("another client's resources: release"))
    tail = foreign.commands[len(commands):]
    assert [struct.unpack("<I", data)[0] for command, data in tail] == list(range(1, 33))
    assert {command for command, _ in tail} == {3}  # VCMD_RESOURCE_UNREF
    (reader,) = [case for case in cases if case.mode == vtestcases.NEVER_READS]
    assert reader.commands == commands
    (leaver,) = [case for case in cases if case.mode == vtestcases.LEAVES_EARLY]
    assert leaver.commands == [commands[0], (9, b"")]  # its renderer, then VCMD_GET_CAPS2


def test_a_session_without_resources_or_transfers_gets_only_the_cases_it_can_carry():
    only_caps = [(8, bytes(8)), (1, b"")]
    names = [case.name.split(":")[0] for case in vtestcases.targeted(only_caps)]
    assert names == ["another client's resources"] * 3 + ["a client that never reads",
                                                          "a client that leaves before its answer"]


def virgl_commands(stream: bytes) -> list:
    """(start dword, command id, object type, length) of each virgl command in a stream."""
    found, words, at = [], struct.unpack(f"<{len(stream) // 4}I", stream), 0
    while at < len(words):
        found.append((at, words[at] & 0xFF, (words[at] >> 8) & 0xFF, words[at] >> 16))
        at += 1 + (words[at] >> 16)
    return found


def test_a_guest_s_stream_names_the_resources_the_guest_kernel_gave():
    """The recorded client's command streams, with its resource handles (1..6) mapped: exactly
    the dwords virgl_protocol.h says name a resource change (uploads, surfaces, the sampler
    view, vertex buffers), and no other."""
    handles = {handle: 1000 + handle for handle in range(1, 7)}
    changed = []
    for command, data in vtestfuzz.parse(SESSION):
        if command != 6:
            continue
        before = struct.unpack(f"<{len(data) // 4}I", data)
        after = struct.unpack(f"<{len(data) // 4}I", virtgpufuzz.remap(data, handles))
        starts = virgl_commands(data)
        for word in (w for w in range(len(before)) if before[w] != after[w]):
            start, virgl_id, kind, _ = max(entry for entry in starts if entry[0] <= word)
            assert after[word] == handles[before[word]]
            changed.append((virgl_id, kind, word - start))
    # sampler view, surface, VB, TRANSFER3D
    assert sorted(set(changed)) == [(1, 6, 2), (1, 8, 2), (6, 0, 3), (43, 0, 1)]
    # two surfaces, one view, two vertex buffers set twice, three uploads
    assert len(changed) == 2 + 1 + 4 + 3


def test_the_guest_mutator_is_the_same_for_a_seed_and_changes_what_reaches_the_host():
    commands = vtestfuzz.parse(SESSION)
    first = [virtgpufuzz.mutate(commands, rng) for rng in [random.Random(5)] for _ in range(60)]
    again = [virtgpufuzz.mutate(commands, rng) for rng in [random.Random(5)] for _ in range(60)]
    other = [virtgpufuzz.mutate(commands, rng) for rng in [random.Random(6)] for _ in range(60)]
    assert first == again and first != other
    for mutated, change in first:
        assert mutated != commands, change
        index = int(change.split()[1])
        # a create, transfer, submit or wait: what an ioctl carries
        assert commands[index][0] in virtgpufuzz.MUTABLE
    assert {"dropped", "twice", "dword"} <= {word for _, change in first for word in change.split()}


def test_the_guest_s_targeted_cases_aim_at_another_client_s_texture():
    commands = vtestfuzz.parse(SESSION)
    cases = dict(virtgpufuzz.targeted(commands, victim=4242))
    assert len(cases) == 5
    for name in ("another client's texture as a copy's target",
                 "another client's texture as an upload's target"):
        command, stream = cases[name][-1]
        # the victim, the virgl command's first dword
        assert command == 6 and struct.unpack_from("<I", stream, 4)[0] == 4242
    copy = struct.unpack("<14I", virtgpufuzz.remap(
        cases["another client's texture as a copy's target"][-1][1], {1: 1001}))
    # into the victim's, from this client's own render target
    assert (copy[1], copy[6]) == (4242, 1001)
    # a victim id the session uses itself: no such case
    assert len(virtgpufuzz.targeted(commands, victim=1)) == 3
