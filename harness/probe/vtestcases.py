"""The hostile vtest client's targeted cases: the recorded session with one command aimed at a
known weak spot (virglrenderer's vtest_protocol.h names every field), tried before the seeded
mutations. Oversized resources (width, height, depth, layers and data size at their limits),
transfers out of range (boxes, offsets and strides past the resource), commands on resources
this client never made (another client's handles, in a server that shared them), a client
that never reads its answers, and one that hangs up before them. Standard library only, as
vtestfuzz.py beside it."""
import struct
from typing import List, NamedTuple, Optional, Sequence, Tuple

Command = Tuple[int, bytes]

RESOURCE_CREATE, RESOURCE_UNREF, TRANSFER_GET, TRANSFER_PUT, RESOURCE_BUSY_WAIT = 2, 3, 4, 5, 7
GET_CAPS2, RESOURCE_CREATE2, TRANSFER_GET2, TRANSFER_PUT2 = 9, 12, 13, 14
# Field indexes (dwords) of the commands changed, from vtest_protocol.h.
CREATE_FIELDS = {"width": 4, "height": 5, "depth": 6, "array_size": 7, "last_level": 8,
                 "nr_samples": 9}
CREATE2_DATA_SIZE = 10
TRANSFER_FIELDS = {"stride": 2, "layer_stride": 3, "x": 4, "y": 5, "z": 6, "width": 7, "height": 8,
                   "depth": 9,
                   "data_size": 10}
TRANSFER2_FIELDS = {"x": 2, "y": 3, "z": 4, "width": 5, "height": 6, "depth": 7, "data_size": 8,
                    "offset": 9}
# resource handles this client never made: another client's, where shared
FOREIGN_HANDLES = range(1, 33)
NEVER_READS = "never-reads"
LEAVES_EARLY = "leaves-early"


class Case(NamedTuple):
    name: str
    commands: List[Command]
    # NEVER_READS: it does not read its answers; LEAVES_EARLY: it hangs up before them
    mode: str = ""


def with_fields(data: bytes, fields: Sequence[Tuple[int, int]]) -> bytes:
    words = list(struct.unpack(f"<{len(data) // 4}I", data))
    for index, value in fields:
        if index < len(words):
            words[index] = value & 0xFFFFFFFF
    return struct.pack(f"<{len(words)}I", *words)


def first(commands: List[Command], ids: Sequence[int]) -> Optional[int]:
    return next((i for i, (command, _) in enumerate(commands) if command in ids), None)


def changed(commands: List[Command], index: int,
            fields: Sequence[Tuple[int, int]]) -> List[Command]:
    command, data = commands[index]
    return commands[:index] + [(command, with_fields(data, fields))] + commands[index + 1:]


def oversized(commands: List[Command]) -> List[Case]:
    index = first(commands, (RESOURCE_CREATE, RESOURCE_CREATE2))
    if index is None:
        return []
    f = CREATE_FIELDS
    cases = [("oversized resource: 16384 x 16384", [(f["width"], 16384), (f["height"], 16384)]),
             ("oversized resource: width and height 0xffffffff", [(f["width"], -1), (f["height"],
                                                                                     -1)]),
             ("oversized resource: depth and layers 0xffff", [(f["depth"], 0xFFFF),
                                                              (f["array_size"], 0xFFFF)]),
             ("oversized resource: 0xffffffff mip levels and samples", [(f["last_level"], -1),
                                                                        (f["nr_samples"], -1)])]
    if commands[index][0] == RESOURCE_CREATE2:
        cases.append(("oversized resource: data size 0xffffffff", [(CREATE2_DATA_SIZE, -1)]))
    return [Case(name, changed(commands, index, fields)) for name, fields in cases]


def out_of_range(commands: List[Command]) -> List[Case]:
    cases: List[Case] = []
    index = first(commands, (TRANSFER_GET2, TRANSFER_PUT2))
    if index is not None:
        f = TRANSFER2_FIELDS
        for name, fields in (("transfer box past the resource", [(f["x"], 0xFFFF0000),
                                                                 (f["y"], 0xFFFF0000)]),
                             ("transfer box 0xffff wide and high", [(f["width"], 0xFFFF),
                                                                    (f["height"], 0xFFFF)]),
                             ("transfer offset 0xfffffff0", [(f["offset"], 0xFFFFFFF0)]),
                             ("transfer data size 0x7fffffff", [(f["data_size"], 0x7FFFFFFF)])):
            cases.append(Case(f"out-of-range {name}", changed(commands, index, fields)))
    index = first(commands, (TRANSFER_GET, TRANSFER_PUT))
    if index is not None:
        f = TRANSFER_FIELDS
        for name, fields in (("transfer stride 0xffffffff", [(f["stride"], -1), (f["layer_stride"],
                                                                                 -1)]),
                             ("transfer box past the resource", [(f["x"], 0xFFFF0000), (f["width"],
                                                                                        0xFFFF)])):
            cases.append(Case(f"out-of-range {name}", changed(commands, index, fields)))
    return cases


def foreign_resources(commands: List[Command]) -> List[Case]:
    """After the whole session, handles it never made: waited on, read back, then released."""
    waits = [(RESOURCE_BUSY_WAIT, struct.pack("<II", handle, 1)) for handle in FOREIGN_HANDLES]
    reads = [(TRANSFER_GET2, struct.pack("<10I", handle, 0, 0, 0, 0, 16, 16, 1, 1024, 0))
             for handle in FOREIGN_HANDLES]
    unrefs = [(RESOURCE_UNREF, struct.pack("<I", handle)) for handle in FOREIGN_HANDLES]
    return [Case("another client's resources: busy-wait on handles 1-32", commands + waits),
            Case("another client's resources: read back handles 1-32", commands + reads),
            Case("another client's resources: release handles 1-32", commands + unrefs)]


def never_reads(commands: List[Command]) -> List[Case]:
    return [Case("a client that never reads: capability requests until the server blocks", commands,
                 NEVER_READS)]


def leaves_early(commands: List[Command]) -> List[Case]:
    """The client's first command (its renderer) and a capability request, then gone before the
    answer: a server that writes to it then must not take other clients down with it."""
    return [Case("a client that leaves before its answer: a capability request, then gone",
                 commands[:1] +
                 [(GET_CAPS2, b"")], LEAVES_EARLY)] if commands else []


def targeted(commands: List[Command]) -> List[Case]:
    """Every targeted case this session has the commands for, in a fixed order."""
    return [*oversized(commands), *out_of_range(commands), *foreign_resources(commands),
            *never_reads(commands),
            *leaves_early(commands)]
