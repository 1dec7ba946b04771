"""What an ELF file asks the dynamic loader for: its DT_NEEDED names and DT_SONAME, read from its
dynamic section (standard library only: a whole runtime's files are read in about a second,
where one ldd each would take minutes)."""
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, Optional, Tuple

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME = 0, 1, 5, 14
MAX_DYNAMIC = 1 << 16  # bytes of dynamic section read: real ones are a few hundred


@dataclass(frozen=True)
class Dynamic:
    elf_class: int  # 32 or 64
    needed: Tuple[str, ...]
    soname: Optional[str]


@dataclass(frozen=True)
class Layout:
    """How one ELF class and byte order spells its headers."""

    header: str  # e_phoff, e_phentsize, e_phnum (from offset 0x18 on)
    header_skip: Tuple[int, int, int]  # offsets of those three fields
    phdr: str  # p_type, p_offset, p_vaddr, p_filesz in the class's order
    dyn: str


def layout(elf_class: int, order: str) -> Layout:
    if elf_class == 64:
        return Layout(order + "Q", (0x20, 0x36, 0x38), order + "IIQQQQ", order + "qQ")
    return Layout(order + "I", (0x1C, 0x2A, 0x2C), order + "IIII", order + "iI")


def read_at(handle: BinaryIO, offset: int, size: int) -> bytes:
    handle.seek(offset)
    return handle.read(size)


def program_headers(handle: BinaryIO, head: bytes, elf_class: int,
                    order: str) -> Iterator[Tuple[int, int, int, int]]:
    """(type, file offset, virtual address, file size) of each program header."""
    fields = layout(elf_class, order)
    phoff = struct.unpack_from(fields.header, head, fields.header_skip[0])[0]
    entsize = struct.unpack_from(order + "H", head, fields.header_skip[1])[0]
    count = struct.unpack_from(order + "H", head, fields.header_skip[2])[0]
    table = read_at(handle, phoff, entsize * count)
    for index in range(count):
        entry = table[index * entsize:(index + 1) * entsize]
        if elf_class == 64:
            p_type, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from(fields.phdr + "Q",
                                                                               entry)[:6]
        else:
            p_type, offset, vaddr, _paddr, filesz = struct.unpack_from(fields.phdr + "I", entry)[:5]
        yield p_type, offset, vaddr, filesz


def file_offset(loads: List[Tuple[int, int, int, int]], address: int) -> Optional[int]:
    for _, offset, vaddr, filesz in loads:
        if vaddr <= address < vaddr + filesz:
            return address - vaddr + offset
    return None


def read_string(handle: BinaryIO, offset: int) -> str:
    data = read_at(handle, offset, 4096)
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def dynamic(path: str) -> Optional[Dynamic]:
    """The file's dynamic section, or None for anything that is not a dynamically linked ELF
    file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1,
                                                                           2) or head[5] not in (1,
                                                                                                 2):
                return None
            elf_class, order = (32, 64)[head[4] - 1], ("<", ">")[head[5] - 1]
            headers = list(program_headers(handle, head, elf_class, order))
            loads = [h for h in headers if h[0] == PT_LOAD]
            dyn = next((h for h in headers if h[0] == PT_DYNAMIC), None)
            if dyn is None:
                return None
            entry_format = layout(elf_class, order).dyn
            size = struct.calcsize(entry_format)
            raw = read_at(handle, dyn[1], min(dyn[3], MAX_DYNAMIC))
            entries = [struct.unpack_from(entry_format, raw, at)
                       for at in range(0, len(raw) - size + 1, size)]
            entries = entries[:next((i for i, (tag, _) in enumerate(entries) if tag == DT_NULL),
                                    len(entries))]
            strtab = next((file_offset(loads, value) for tag, value in entries if tag == DT_STRTAB),
                          None)
            if strtab is None:
                return None
            needed = tuple(read_string(handle, strtab + value) for tag, value in entries
                           if tag == DT_NEEDED)
            soname = next((read_string(handle, strtab + value) for tag, value in entries
                           if tag == DT_SONAME), None)
            return Dynamic(elf_class, needed, soname)
    except (OSError, struct.error):
        return None


def elf_files(top: str) -> Iterator[str]:
    """Every regular file under `top` that is a dynamically linked ELF file (links not followed)."""
    for folder, _dirs, names in os.walk(top):
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path) and os.path.isfile(path):
                yield path
