"""Fixture trees of a host driver (a Mesa and an NVIDIA layout) as their loaders find them."""
from pathlib import Path

from .files import write

ELF64 = b"\x7fELF\x02\x01\x01" + bytes(57)
ELF32 = b"\x7fELF\x01\x01\x01" + bytes(57)
LIB = "usr/lib/x86_64-linux-gnu"


def library(root: Path, name: str, real: str, content: bytes = ELF64) -> None:
    write(root, f"{LIB}/{real}", content)
    (root / LIB / name).symlink_to(real)
