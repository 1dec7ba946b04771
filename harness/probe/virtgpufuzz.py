"""A hostile guest program: a recorded vtest session replayed to the host's virglrenderer through
the guest kernel's virtio-gpu driver (its DRM_IOCTL_VIRTGPU_* calls), mutated, and whether the
device still serves another client after each input.

What a vtest client sends over its socket, a guest program sends through ioctls: the session's
resources become RESOURCE_CREATE, its command streams EXECBUFFER (the resource handles a virgl
command names mapped to the ones the guest kernel gave), its transfers TRANSFER_FROM/TO_HOST,
its busy-waits WAIT. A mutation changes one dword of one command (a virgl command's header,
a resource's size or format, a transfer's box, level or offset, any word of a command stream)
or drops or repeats a command. After each input a fresh client (its own context) writes a
pattern into a texture, reads it back and compares: answered when the input's own work finished
and the fresh client got its pattern back, refused when the guest kernel or the host said no
to an ioctl (the client is still served after), disturbed when the fresh client's pixels came
back wrong, hung when either did not finish within the deadline. A victim client keeps a
texture of its own through the whole run; whether it still holds its pattern at the end is the
cross-client answer. The vtest wire format (parse, encode) is vtestfuzz's: this module is given
the parsed session and the encoder, so the two stay one way round.
Standard library only: it runs inside a guest's python, as the probes do."""
import ctypes
import errno
import fcntl
import glob
import mmap
import os
import random
import struct
import time
from typing import Callable, Dict, List, Tuple

Command = Tuple[int, bytes]
ANSWERED, DROPPED, HUNG, DISTURBED = "answered", "dropped", "hung", "disturbed"

# vtest commands the session carries (virglrenderer's vtest_protocol.h)
(GET_CAPS, RESOURCE_CREATE, RESOURCE_UNREF, TRANSFER_GET, TRANSFER_PUT, SUBMIT_CMD,
 BUSY_WAIT) = range(1, 8)
GET_CAPS2, RESOURCE_CREATE2, TRANSFER_GET2, TRANSFER_PUT2 = 9, 12, 13, 14
MUTABLE = (RESOURCE_CREATE, RESOURCE_CREATE2, TRANSFER_GET2, TRANSFER_PUT2, SUBMIT_CMD, BUSY_WAIT)
BOUNDARY = (0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE,
            0x10000)


def ioc(direction: int, number: int, size: int) -> int:
    """Linux's _IOC for DRM ('d'); the virtgpu ioctls start at DRM_COMMAND_BASE (0x40)."""
    return (direction << 30) | (size << 16) | (ord("d") << 8) | number


WRITE, READ_WRITE = 1, 3
GEM_CLOSE = ioc(WRITE, 0x09, 8)
MAP = ioc(READ_WRITE, 0x41, 16)
EXECBUFFER = ioc(WRITE, 0x42, 32)
RESOURCE_CREATE_IOCTL = ioc(READ_WRITE, 0x44, 56)
TRANSFER_FROM_HOST = ioc(READ_WRITE, 0x46, 36)
TRANSFER_TO_HOST = ioc(READ_WRITE, 0x47, 36)
WAIT = ioc(READ_WRITE, 0x48, 8)
GET_CAPS_IOCTL = ioc(READ_WRITE, 0x49, 24)
WAIT_NOWAIT = 1

# Where a virgl command names a resource (virglrenderer's virgl_protocol.h; dword 0 is the header):
# by command id, the dwords (first, step) up to the command's end; CREATE_OBJECT by object type.
RESOURCE_WORDS = {6: (3, 3), 9: (1, 0), 11: (1, 0), 16: (4, 9), 17: (1, 5), 27: (5, 0), 34: (5, 3),
                  35: (7, 5),
                  40: (4, 3), 43: (1, 0), 45: (1, 11), 49: (1, 0)}
OBJECT_RESOURCE_WORDS = {6: 2, 8: 2, 9: 4, 10: 2}  # sampler view, surface, query, streamout target
CREATE_OBJECT = 1

# The guest memory behind one resource: the guest kernel allocates it whole at creation, so a
# mutated size beyond this would only exhaust the guest itself (its OOM killer ends the fuzzer);
# the layout the host is asked for stays as mutated.
GUEST_MEMORY_LIMIT = 16 << 20

# The fresh client's check: a 16x16 BGRA texture (virgl format 1, PIPE_TEXTURE_2D, bound as a
# sampler view).
CHECK_SIDE, CHECK_FORMAT, TEXTURE_2D, SAMPLER_VIEW = 16, 1, 2, 8


class DrmVersion(ctypes.Structure):
    """The kernel's struct drm_version (native sizes and alignment: the same on every 64-bit
    guest)."""
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patchlevel", ctypes.c_int),
                ("name_len", ctypes.c_size_t), ("name", ctypes.c_char_p), ("date_len",
                                                                           ctypes.c_size_t),
                ("date", ctypes.c_char_p), ("desc_len", ctypes.c_size_t), ("desc", ctypes.c_char_p)]


def driver_name(node: str) -> str:
    """The DRM driver behind `node`, as DRM_IOCTL_VERSION says ('' where it cannot be asked)."""
    name = ctypes.create_string_buffer(64)
    version = DrmVersion(name_len=len(name) - 1, name=ctypes.cast(name, ctypes.c_char_p))
    try:
        fd = os.open(node, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        fcntl.ioctl(fd, ioc(READ_WRITE, 0x00, ctypes.sizeof(DrmVersion)), version)
    except OSError:
        return ""
    finally:
        os.close(fd)
    return name.value.decode("ascii", "replace")


def render_node() -> str:
    """The first render node whose driver is virtio_gpu ('' when there is none)."""
    return next((node for node in sorted(glob.glob("/dev/dri/renderD*"))
                 if driver_name(node) == "virtio_gpu"), "")


def words(data: bytes) -> List[int]:
    return list(struct.unpack(f"<{len(data) // 4}I", data[:len(data) // 4 * 4]))


def remap(stream: bytes, handles: Dict[int, int]) -> bytes:
    """`stream` with each resource handle a virgl command names replaced as `handles` says (the
    session's handles by the ones the guest kernel gave); a handle it does not know is left as
    sent."""
    out = words(stream)
    at = 0
    while at < len(out):
        header = out[at]
        command, kind, length = header & 0xFF, (header >> 8) & 0xFF, header >> 16
        end = min(at + 1 + length, len(out))
        if command == CREATE_OBJECT and kind in OBJECT_RESOURCE_WORDS:
            places = [OBJECT_RESOURCE_WORDS[kind]]
        elif command in RESOURCE_WORDS:
            first, step = RESOURCE_WORDS[command]
            places = list(range(first, length + 1, step)) if step else [first]
        else:
            places = []
        for place in places:
            if at + place < end and out[at + place] in handles:
                out[at + place] = handles[out[at + place]]
        at = end
    return struct.pack(f"<{len(out)}I", *out)


class Gpu:
    """One client of the device: an open render node (the host gives it a context of its own)."""

    def __init__(self, node: str):
        self.fd = os.open(node, os.O_RDWR | os.O_CLOEXEC)
        self.kept: List[object] = []  # buffers whose addresses an ioctl holds until it returns

    def close(self) -> None:
        os.close(self.fd)  # the kernel frees its objects; the host destroys its context

    def call(self, request: int, fmt: str, *values: int) -> Tuple[int, ...]:
        buffer = bytearray(struct.pack(fmt, *values))
        fcntl.ioctl(self.fd, request, buffer, True)
        return struct.unpack(fmt, buffer)

    def pointer(self, data: bytes) -> int:
        buffer = ctypes.create_string_buffer(data, max(len(data), 1))
        self.kept.append(buffer)
        return ctypes.addressof(buffer)

    def create(self, layout: List[int], size: int) -> Tuple[int, int]:
        """A resource of `layout` (target, format, bind, width, height, depth, array size, last
        level, samples: a vtest create's dwords) backed by `size` bytes of guest memory: (the
        guest's buffer handle, the host's resource id)."""
        out = self.call(RESOURCE_CREATE_IOCTL, "<14I", *layout[:9], 0, 0, 0, size, 0)
        return out[10], out[11]

    def submit(self, stream: bytes, buffers: List[int]) -> None:
        listed = struct.pack(f"<{len(buffers)}I", *buffers)
        self.call(EXECBUFFER, "<IIQQII", 0, len(stream), self.pointer(stream), self.pointer(listed),
                  len(buffers), 0)
        self.kept.clear()

    def transfer(self, to_host: bool, buffer: int, box: List[int], level: int, offset: int) -> None:
        self.call(TRANSFER_TO_HOST if to_host else TRANSFER_FROM_HOST, "<9I", buffer, *box, level,
                  offset)

    def idle(self, buffer: int, deadline_s: float) -> bool:
        """Wait until the host is done with `buffer`; False when it is not within the deadline."""
        started = time.monotonic()
        while True:
            try:
                self.call(WAIT, "<II", buffer, WAIT_NOWAIT)
                return True
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
            if time.monotonic() - started > deadline_s:
                return False
            time.sleep(0.002)

    def caps(self) -> None:
        self.call(GET_CAPS_IOCTL, "<IIQII", 1, 1, self.pointer(bytes(1024)), 1024, 0)
        self.kept.clear()

    def mapped(self, buffer: int, size: int) -> mmap.mmap:
        offset = self.call(MAP, "<QII", 0, buffer, 0)[0]
        return mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                         offset=offset)


def pattern(seed: int) -> bytes:
    return bytes((seed * 7 + i * 13) & 0xFF for i in range(CHECK_SIDE * CHECK_SIDE * 4))


class Texture:
    """A client's texture holding a known pattern: written to the host, read back, compared."""

    def __init__(self, gpu: Gpu, seed: int):
        self.gpu, self.expected = gpu, pattern(seed)
        self.buffer, self.resource = gpu.create([TEXTURE_2D, CHECK_FORMAT, SAMPLER_VIEW, CHECK_SIDE,
                                                 CHECK_SIDE, 1, 1,
                                                 0, 0], len(self.expected))
        self.box = [0, 0, 0, CHECK_SIDE, CHECK_SIDE, 1]

    def write(self, deadline_s: float) -> bool:
        with self.gpu.mapped(self.buffer, len(self.expected)) as view:
            view[:] = self.expected
        self.gpu.transfer(True, self.buffer, self.box, 0, 0)
        return self.gpu.idle(self.buffer, deadline_s)

    def holds(self, deadline_s: float) -> Tuple[str, str]:
        """Read back from the host: ANSWERED when it still holds the pattern."""
        with self.gpu.mapped(self.buffer, len(self.expected)) as view:
            view[:] = bytes(len(self.expected))
        self.gpu.transfer(False, self.buffer, self.box, 0, 0)
        if not self.gpu.idle(self.buffer, deadline_s):
            return HUNG, f"a read-back did not finish within {deadline_s:g} s"
        with self.gpu.mapped(self.buffer, len(self.expected)) as view:
            got = bytes(view[:])
        wrong = sum(1 for at in range(len(got)) if got[at] != self.expected[at])
        return (ANSWERED, "") if not wrong else (DISTURBED,
                                                 f"{wrong} of {len(got)} bytes read back wrong")


def fresh_client(node: str, seed: int, deadline_s: float) -> Tuple[str, str]:
    """A new client's texture written and read back."""
    gpu = Gpu(node)
    try:
        texture = Texture(gpu, seed)
        if not texture.write(deadline_s):
            return HUNG, f"a fresh client's upload did not finish within {deadline_s:g} s"
        return texture.holds(deadline_s)
    except OSError as exc:
        return HUNG, f"a fresh client was refused: {exc.strerror or exc}"
    finally:
        gpu.close()


def play(node: str, commands: List[Command], deadline_s: float) -> Tuple[str, str]:
    """The session's commands as one guest client's ioctls: ANSWERED when each was taken and the
    host finished the client's work, DROPPED (refused) at the first ioctl refused, HUNG when the
    host's work did not finish."""
    gpu = Gpu(node)
    handles: Dict[int, Tuple[int, int]] = {}  # the session's handle -> (buffer, resource)
    try:
        for index, (command, data) in enumerate(commands):
            step = one(gpu, command, words(data), data, handles, deadline_s)
            if step:
                return HUNG, f"command {index} (id {command}): {step}"
        for buffer, _ in handles.values():
            if not gpu.idle(buffer, deadline_s):
                return HUNG, f"the client's work did not finish within {deadline_s:g} s"
        return ANSWERED, ""
    except OSError as exc:
        return DROPPED, f"refused: {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    finally:
        gpu.close()


def one(gpu: Gpu, command: int, dwords: List[int], data: bytes, handles: Dict[int, Tuple[int, int]],
        deadline_s: float) -> str:
    """One vtest command as the ioctl that does its work; what hung, or ''."""
    fields = dwords + [0] * 11
    if command in (RESOURCE_CREATE, RESOURCE_CREATE2):
        size = fields[10] if command == RESOURCE_CREATE2 else fields[4] * max(fields[5], 1) * 4
        handles[fields[0]] = gpu.create(fields[1:10], min(size, GUEST_MEMORY_LIMIT))
    elif command == SUBMIT_CMD:
        gpu.submit(remap(data, {handle: resource for handle, (_, resource) in handles.items()}),
                   [buffer for buffer, _ in handles.values()])
    elif command in (TRANSFER_GET2, TRANSFER_PUT2):
        # a handle the session never made goes as sent
        buffer = handles.get(fields[0], (fields[0], 0))[0]
        gpu.transfer(command == TRANSFER_PUT2, buffer, fields[2:8], fields[1], fields[9])
    elif command == BUSY_WAIT and fields[0] in handles and fields[1] & 1:
        if not gpu.idle(handles[fields[0]][0], deadline_s):
            return f"not idle within {deadline_s:g} s"
    elif command == RESOURCE_UNREF and fields[0] in handles:
        gpu.call(GEM_CLOSE, "<II", handles.pop(fields[0])[0], 0)
    elif command in (GET_CAPS, GET_CAPS2):
        gpu.caps()
    return ""


def mutate(commands: List[Command], rng: random.Random) -> Tuple[List[Command], str]:
    """One mutated session and what was changed: a dword of a command that reaches the host."""
    places = [i for i, (command, data) in enumerate(commands) if command in MUTABLE and data]
    index = rng.choice(places)
    command, data = commands[index]
    kind = rng.choice(("dword", "dword", "header", "drop", "repeat"))
    if kind == "drop":
        return commands[:index] + commands[index + 1:], f"command {index} (id {command}) dropped"
    if kind == "repeat":
        return commands[:index + 1] + commands[index:], f"command {index} (id {command}) sent twice"
    dwords = words(data)
    if kind == "header" and command == SUBMIT_CMD:  # a virgl command's id, object type or length
        starts, at = [], 0
        while at < len(dwords):
            starts.append(at)
            at += 1 + (dwords[at] >> 16)
        word, field = rng.choice(starts), rng.choice(((0, 0xFF), (8, 0xFF), (16, 0xFFFF)))
        shift, mask = field
        now = (dwords[word] >> shift) & mask
        value = (dwords[word] & ~(mask << shift)) | (rng.choice([v & mask for v in BOUNDARY
                                                                 if v & mask != now]) << shift)
    else:
        word = rng.randrange(len(dwords))
        value = rng.choice([v for v in BOUNDARY if v != dwords[word]])
    dwords[word] = value
    changed = commands[:index] + [(command, struct.pack(f"<{len(dwords)}I",
                                                        *dwords))] + commands[index + 1:]
    return changed, f"command {index} (id {command}): dword {word} = {value:#x}"


def virgl(command: int, *dwords: int) -> bytes:
    """One virgl command: its header (id, no object type, length) and its dwords."""
    return struct.pack(f"<{len(dwords) + 1}I", command | (len(dwords) << 16), *dwords)


COPY_REGION, TRANSFER3D, TO_HOST = 17, 43, 1


def targeted(commands: List[Command], victim: int) -> List[Tuple[str, List[Command]]]:
    """Cases aimed at what the protocol names: a resource the host cannot hold, transfers out of
    the resource's range, and commands on another client's resource (`victim`, never attached
    to this client)."""
    creates = [i for i, (command, _) in enumerate(commands) if command == RESOURCE_CREATE2]
    cases: List[Tuple[str, List[Command]]] = []
    if creates:
        first = creates[0]
        handle = words(commands[first][1])[0]
        huge = struct.pack("<11I", handle, TEXTURE_2D, CHECK_FORMAT, SAMPLER_VIEW, 0x4000, 0x4000,
                           1, 1, 0, 0, 4096)
        cases.append(("oversized resource (16384x16384, 4 KiB of guest memory)",
                      commands[:first] + [(RESOURCE_CREATE2, huge)] + commands[first + 1:]))
        outside = struct.pack("<10I", handle, 0, 0xFFFFFF00, 0xFFFFFF00, 0, 0x1000, 0x1000, 1, 0,
                              0x7FFFFFF0)
        cases.append(("read-back outside the resource", commands[:first + 1] + [(TRANSFER_GET2,
                                                                                 outside)]))
        level = struct.pack("<10I", handle, 31, 0, 0, 0, 1, 1, 1, 0, 0)
        cases.append(("read-back of mip level 31", commands[:first + 1] + [(TRANSFER_GET2, level)]))
        if victim not in {words(commands[i][1])[0] for i in creates}:
            into = virgl(COPY_REGION, victim, 0, 0, 0, 0, handle, 0, 0, 0, 0, CHECK_SIDE,
                         CHECK_SIDE, 1)
            over = virgl(TRANSFER3D, victim, 0, 0, 0, 0, 0, 0, 0, CHECK_SIDE, CHECK_SIDE, 1, 0,
                         TO_HOST)
            cases.append(("another client's texture as a copy's target",
                          commands[:first + 1] + [(SUBMIT_CMD, into)]))
            cases.append(("another client's texture as an upload's target",
                          commands[:first + 1] + [(SUBMIT_CMD, over)]))
    return cases


def checked(node: str, commands: List[Command], deadline_s: float, number: int) -> Tuple[str, str]:
    """An input played, then a fresh client's round trip: the input's outcome, unless the fresh
    client found the device hung or its pixels wrong."""
    outcome, how = play(node, commands, deadline_s)
    if outcome == HUNG:
        return outcome, how
    after, after_how = fresh_client(node, number, deadline_s)
    return (outcome, how) if after == ANSWERED else (after,
                                                     f"{how + '; ' if how else ''}then {after_how}")


def fuzz(node: str, commands: List[Command], encode: Callable[[List[Command]], bytes], seed: int,
         count: int,
         seconds: float, out: str, deadline_s: float) -> dict:
    """Up to `count` inputs in `seconds` (the targeted cases first) against the device at `node`,
    beside a victim client's texture; every input not answered saved under out/inputs/. A hang
    ends the run: the device no longer serves anyone."""
    rng = random.Random(seed)
    os.makedirs(os.path.join(out, "inputs"), exist_ok=True)
    tally = {ANSWERED: 0, DROPPED: 0, HUNG: 0, DISTURBED: 0}
    saved: List[dict] = []
    cases: List[dict] = []
    victim_gpu = Gpu(node)
    try:
        victim = Texture(victim_gpu, 1)
        victim_ready = victim.write(deadline_s)
        baseline = checked(node, commands, deadline_s, 0)
        started, tried = time.monotonic(), 0

        def tally_one(mutated: List[Command], change: str) -> str:
            outcome, how = checked(node, mutated, deadline_s, tried + 1)
            tally[outcome] += 1
            if outcome != ANSWERED:
                name = os.path.join("inputs", f"{tried:05d}-{outcome}.bin")
                with open(os.path.join(out, name), "wb") as handle:
                    handle.write(encode(mutated))
                saved.append({"input": tried, "outcome": outcome, "how": how, "change": change,
                              "file": name})
            return outcome

        for name, case in targeted(commands, victim.resource):
            outcome = tally_one(case, name)
            cases.append({"case": name, "outcome": outcome, "how": saved[-1]["how"]
                          if outcome != ANSWERED else ""})
            tried += 1
        while tried < count and time.monotonic() - started < seconds and not tally[HUNG]:
            mutated, change = mutate(commands, rng)
            tally_one(mutated, change)
            tried += 1
        kept = (victim.holds(deadline_s) if victim_ready and not tally[HUNG]
                else (HUNG, "not read: the device hung"))
    finally:
        victim_gpu.close()
    return {"seed": seed, "target": node, "session_commands": len(commands),
            "session_bytes": len(encode(commands)),
            "unmutated": baseline[0], "unmutated_how": baseline[1], "tried": tried,
            "seconds": round(time.monotonic() - started, 2), **tally, "waiting": 0,
            "victim": kept[0], "victim_how": kept[1], "targeted": cases, "inputs": saved}


def replay(node: str, commands: List[Command], deadline_s: float) -> Tuple[str, str]:
    """One saved input again, with the fresh client after it."""
    return checked(node, commands, deadline_s, 1)
