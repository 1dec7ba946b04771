"""A hostile vtest client: replays a recorded session (what a real client sent), mutated, to a
vtest server, and says per input whether the server answered, dropped the connection (its
process for this client ended: a crash or a refusal) or went silent (a hang).

The protocol (virglrenderer's vtest_protocol.h): each command is a header of two little-endian
uint32 (the length of its data in dwords, in bytes for the first, VCMD_CREATE_RENDERER, whose
data is the client's name: vtest_create_context reads that many bytes; the command id) and its data.
A mutation changes one
thing of one command, chosen by a seeded generator (the same seed, the same inputs): the length,
the command id, one dword of the data set to a boundary value (resource handles, offsets,
strides and sizes are all dwords), or a command dropped, repeated or cut short. After the
mutated session the client completes a command the input left short with zeros (where that is
under 1 MiB; beyond, the server waits for data no client would send, said as "waiting"), asks
for the protocol version (VCMD_PING_PROTOCOL_VERSION) and waits for the answer: a server that
still serves the client answers.

Usage:
  python3 vtestfuzz.py fuzz SOCKET SESSION --seed N --count N --seconds S --out DIR
  python3 vtestfuzz.py replay SOCKET INPUT      (an input a fuzz run saved)
SOCKET "-": the one the path gives its apps ($VTEST_SOCKET_NAME, else Mesa's /tmp/.virgl_test), or
in a guest with no vtest socket, its virtio-gpu render node: a SOCKET under /dev/ is a device, and
the session goes through the guest kernel's driver to the host's virglrenderer (virtgpufuzz.py).
Standard library only: it runs inside a runtime's python, as the probes do."""
import argparse
import json
import os
import random
import socket
import struct
import sys
import time
from typing import Dict, List, Optional, Tuple

import virtgpufuzz  # beside this file, inside as outside
import vtestcases

HEADER = struct.Struct("<II")
PING_PROTOCOL_VERSION = 10
COMMANDS = range(1, 25)  # VCMD_GET_CAPS .. VCMD_SUBMIT_CMD2
BOUNDARY = (0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE,
            0x10000)
KINDS = ("length", "command", "dword", "drop", "repeat", "cut")
ANSWERED, DROPPED, HUNG, WAITING = "answered", "dropped", "hung", "waiting"
SECOND_CHANCE = 1 << 16  # zeros sent to a server that did not answer, before calling it a hang
PAD_LIMIT = 1 << 20  # a command the input left short is completed with zeros up to this many bytes

Command = Tuple[int, bytes]  # (command id, its data)
MESA_SOCKET = "/tmp/.virgl_test"  # where Mesa's vtest winsys connects without $VTEST_SOCKET_NAME
# a client's first command: its length counts bytes (the client's name), every other's dwords
CREATE_RENDERER = 8


def data_size(command: int, length: int) -> int:
    """The bytes of data a header's length field stands for."""
    return length if command == CREATE_RENDERER else 4 * length


def length_field(command: int, data: bytes) -> int:
    return len(data) if command == CREATE_RENDERER else len(data) // 4


def parse(stream: bytes) -> List[Command]:
    """The commands of a recorded session; a tail shorter than its header says is left out."""
    commands, at = [], 0
    while at + HEADER.size <= len(stream):
        length, command = HEADER.unpack_from(stream, at)
        end = at + HEADER.size + data_size(command, length)
        if end > len(stream):
            break
        commands.append((command, stream[at + HEADER.size:end]))
        at = end
    return commands


def encode(commands: List[Command], lengths: Optional[Dict[int, int]] = None) -> bytes:
    """The bytes of `commands`; `lengths` replaces the length a header says (index -> dwords)."""
    lengths = lengths or {}
    return b"".join(HEADER.pack(lengths.get(i, length_field(command, data)), command) + data
                    for i, (command, data) in enumerate(commands))


def mutate(commands: List[Command], rng: random.Random) -> Tuple[bytes, str]:
    """One mutated session and what was changed."""
    index = rng.randrange(len(commands))
    command, data = commands[index]
    kind = rng.choice(KINDS)
    if kind == "length":
        own = length_field(command, data)
        said = rng.choice((0, 1, own + 1, own * 2 + 1, 0xFFFF, 0x3FFFFFFF))
        return encode(commands,
                      {index: said}), f"command {index} (id {command}): length {said}, not {own}"
    if kind == "command":
        other = rng.choice([c for c in COMMANDS if c != command] + [0, 25, 0xFFFFFFFF])
        changed = commands[:index] + [(other, data)] + commands[index + 1:]
        return encode(changed), f"command {index}: id {other}, not {command}"
    if kind == "dword" and data:
        word, value = rng.randrange(len(data) // 4), rng.choice(BOUNDARY)
        new = data[:4 * word] + struct.pack("<I", value) + data[4 * word + 4:]
        changed = commands[:index] + [(command, new)] + commands[index + 1:]
        return encode(changed), f"command {index} (id {command}): dword {word} = {value:#x}"
    if kind == "drop":
        return encode(commands[:index] + commands[index + 1:]), (f"command {index} (id {command}) "
                                                                 "dropped")
    if kind == "repeat":
        return encode(commands[:index + 1] + commands[index:]), (f"command {index} (id {command}) "
                                                                 "sent twice")
    whole = encode(commands[:index + 1])
    cut = rng.randrange(len(whole) - len(data) - HEADER.size, len(whole))
    return whole[:cut], f"cut after {cut} bytes, in command {index} (id {command})"


def owed(payload: bytes) -> int:
    """How many more bytes the server's framing expects after `payload` (its headers as it reads
    them)."""
    at = 0
    while at + HEADER.size <= len(payload):
        length, command = HEADER.unpack_from(payload, at)
        at += HEADER.size + data_size(command, length)
    return (at - len(payload) if at > len(payload)
            else (HEADER.size - (len(payload) - at)) % HEADER.size)


def drain(conn: socket.socket) -> bool:
    """Read what the server has sent so far (closing any fds it passed); False once it hung up."""
    timeout = conn.gettimeout()
    conn.setblocking(False)
    try:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 16)
            except BlockingIOError:
                return True
            except OSError:
                return False
            for fd in fds:
                os.close(fd)
            if not data:
                return False
    finally:
        conn.settimeout(timeout)


def replay(path: str, payload: bytes, deadline_s: float) -> Tuple[str, str]:
    """Send `payload`, then ask for the protocol version: answered, dropped or hung, and how."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(deadline_s)
    try:
        conn.connect(path)
        for at in range(0, len(payload), 4096):
            conn.sendall(payload[at:at + 4096])
            if not drain(conn):
                return DROPPED, f"the server hung up after {at} bytes"
        missing = owed(payload)
        if missing > PAD_LIMIT:  # the server waits for data no client would send: not a hang
            return (WAITING, f"the server waits for {missing} more bytes") if drain(conn) else \
                (DROPPED, "the server hung up")
        conn.sendall(bytes(missing) + HEADER.pack(0, PING_PROTOCOL_VERSION))
        outcome, how = answer(conn, deadline_s)
        if outcome == HUNG:
            # A command whose arguments the server reads at a fixed size, whatever the header says
            # (the id changed), waits for them: more bytes end the wait, a hang stays one.
            conn.sendall(bytes(SECOND_CHANCE) + HEADER.pack(0, PING_PROTOCOL_VERSION))
            again, _ = answer(conn, deadline_s)
            if again != HUNG:
                return WAITING, ("the server waited for more data than the command's header said "
                                 f"({again} after it)")
        return outcome, how
    except OSError as exc:
        return DROPPED, exc.strerror or str(exc)
    finally:
        conn.close()


def flood(path: str, payload: bytes, deadline_s: float, requests: int = 100_000) -> Tuple[str, str]:
    """A client that never reads: the session, then capability requests (each answered with the
    whole capability set) without reading, until the server stops reading them too (its answers
    fill the socket) or `requests` are sent; then it reads at last and asks for the version."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(deadline_s)
    try:
        conn.connect(path)
        conn.sendall(payload)
        conn.settimeout(min(1.0, deadline_s))
        sent = 0
        try:
            while sent < requests:
                conn.sendall(HEADER.pack(0, vtestcases.GET_CAPS2))
                sent += 1
        except socket.timeout:
            pass
        blocked = (f"the server stopped reading after {sent} unread requests" if sent < requests
                   else f"{sent} requests sent unread without the server blocking")
        conn.settimeout(deadline_s)
        started = time.monotonic()
        while time.monotonic() - started < deadline_s and drain(conn):
            try:  # the answers owed, read now; then the ping's
                conn.sendall(HEADER.pack(0, PING_PROTOCOL_VERSION))
                outcome, how = answer(conn, deadline_s)
                return outcome, f"{blocked}; {how}" if how else blocked
            except socket.timeout:
                continue
        return DROPPED, f"{blocked}; the server hung up"
    except OSError as exc:
        return DROPPED, exc.strerror or str(exc)
    finally:
        conn.close()


def leave(path: str, payload: bytes, deadline_s: float) -> Tuple[str, str]:
    """A client that hangs up before its answer; then whether the server still serves a new
    client (its first command again, and a ping): answered, or dropped when the server is gone."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(deadline_s)
    try:
        conn.connect(path)
        conn.sendall(payload)
    except OSError as exc:
        return DROPPED, exc.strerror or str(exc)
    finally:
        conn.close()
    time.sleep(0.2)  # the server's answer meets a closed socket
    outcome, how = replay(path, encode(parse(payload)[:1]), deadline_s)
    return outcome, ("a new client is served after it" if outcome == ANSWERED
                     else f"a new client: {how}")


def answer(conn: socket.socket, deadline_s: float) -> Tuple[str, str]:
    """Wait for the answer to the ping: answered, dropped (the server hung up) or hung."""
    received, started = b"", time.monotonic()
    try:
        while True:
            remaining = deadline_s - (time.monotonic() - started)
            if remaining <= 0:
                return HUNG, f"no answer within {deadline_s:g} s"
            conn.settimeout(remaining)
            data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 16)
            for fd in fds:
                os.close(fd)
            if not data:
                return DROPPED, "the server hung up before answering"
            received += data
            if received.endswith(HEADER.pack(0, PING_PROTOCOL_VERSION)):
                return ANSWERED, ""
    except socket.timeout:
        return HUNG, f"no answer within {deadline_s:g} s"
    except OSError as exc:
        return DROPPED, exc.strerror or str(exc)


def fuzz(path: str, session: bytes, seed: int, count: int, seconds: float, out: str,
         deadline_s: float) -> dict:
    """Up to `count` inputs in `seconds`; every dropped or hung one saved under out/inputs/."""
    commands = parse(session)
    rng = random.Random(seed)
    tally = {ANSWERED: 0, DROPPED: 0, HUNG: 0, WAITING: 0}
    saved: List[dict] = []
    os.makedirs(os.path.join(out, "inputs"), exist_ok=True)
    baseline = replay(path, encode(commands), deadline_s)
    started, tried, targeted = time.monotonic(), 0, []

    def tally_one(payload: bytes, change: str, outcome: str, how: str, mode: str = "") -> None:
        tally[outcome] += 1
        if outcome in (DROPPED, HUNG):  # a never-reads input is named so: it replays as one
            name = os.path.join("inputs", f"{tried:05d}-{outcome}{'-' + mode if mode else ''}.bin")
            with open(os.path.join(out, name), "wb") as handle:
                handle.write(payload)
            saved.append({"input": tried, "outcome": outcome, "how": how, "change": change,
                          "file": name})

    for case in vtestcases.targeted(commands):  # first, and whatever the bounds: they are few
        payload = encode(case.commands)
        send = {vtestcases.NEVER_READS: flood, vtestcases.LEAVES_EARLY: leave}.get(case.mode,
                                                                                   replay)
        outcome, how = send(path, payload, deadline_s)
        tally_one(payload, case.name, outcome, how, case.mode)
        targeted.append({"case": case.name, "outcome": outcome, "how": how})
        tried += 1
    while tried < count and time.monotonic() - started < seconds:
        payload, change = mutate(commands, rng)
        tally_one(payload, change, *replay(path, payload, deadline_s))
        tried += 1
    return {"seed": seed, "session_commands": len(commands), "session_bytes": len(session),
            "unmutated": baseline[0], "tried": tried, "seconds": round(time.monotonic() - started,
                                                                       2),
            **tally, "targeted": targeted, "inputs": saved}


def through_the_device(args: argparse.Namespace) -> int:
    """A guest's hostile program: the session through the virtio-gpu render node (virtgpufuzz)."""
    if args.command == "replay":
        with open(args.input, "rb") as handle:
            outcome, how = virtgpufuzz.replay(args.socket, parse(handle.read()), args.deadline)
        print(f"{outcome}{': ' + how if how else ''}")
        return 0 if outcome == ANSWERED else 1
    with open(args.session, "rb") as handle:
        report = virtgpufuzz.fuzz(args.socket, parse(handle.read()), encode, args.seed, args.count,
                                  args.seconds,
                                  args.out, args.deadline)
    return written(report, args.out)


def written(report: dict, out: str) -> int:
    """fuzz.json in `out`, and the summary as the last line of the output."""
    with open(os.path.join(out, "fuzz.json"), "w") as handle:
        json.dump(report, handle, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "inputs"}))
    return 0


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="vtestfuzz.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("fuzz")
    run.add_argument("socket")
    run.add_argument("session")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--count", type=int, default=1000)
    run.add_argument("--seconds", type=float, default=60.0)
    run.add_argument("--deadline", type=float, default=5.0)
    run.add_argument("--out", required=True)
    again = sub.add_parser("replay")
    again.add_argument("socket")
    again.add_argument("input")
    again.add_argument("--deadline", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.socket == "-":
        args.socket = os.environ.get("VTEST_SOCKET_NAME") or (
            MESA_SOCKET if os.path.exists(MESA_SOCKET) else virtgpufuzz.render_node()
                                                              or MESA_SOCKET)
    if args.socket.startswith("/dev/"):
        return through_the_device(args)
    if not os.path.exists(args.socket):  # a run against nothing would count every input refused
        print(f"vtestfuzz: no vtest socket at {args.socket} and no virtio-gpu render node: nothing "
              "to fuzz",
              file=sys.stderr)
        return 2
    if args.command == "replay":
        send = flood if args.input.endswith(f"-{vtestcases.NEVER_READS}.bin") else \
            leave if args.input.endswith(f"-{vtestcases.LEAVES_EARLY}.bin") else replay
        with open(args.input, "rb") as handle:
            outcome, how = send(args.socket, handle.read(), args.deadline)
        print(f"{outcome}{': ' + how if how else ''}")
        return 0 if outcome == ANSWERED else 1
    with open(args.session, "rb") as handle:
        report = fuzz(args.socket, handle.read(), args.seed, args.count, args.seconds, args.out,
                      args.deadline)
    return written(report, args.out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
