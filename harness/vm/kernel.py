"""The guest kernel: the toolset's vmlinuz, unpacked once to an ELF vmlinux when it can be.

QEMU boots an ELF vmlinux with a PVH note directly, skipping firmware real-mode setup and the
kernel's self-decompression, which under TCG costs seconds (measured: 13.7 s -> 9.9 s for a
whole vm-headless run with Debian's XZ kernel)."""
import hashlib
import lzma
import os
from pathlib import Path

from .. import reaper
from .initramfs import CACHE_DIR

XZ_MAGIC = b"\xfd7zXZ\x00"


def unpacked(vmlinuz: str, cache_dir: Path = CACHE_DIR.parent / "kernel") -> str:
    """Path of an ELF vmlinux for `vmlinuz` (cached), or `vmlinuz` itself if it cannot be unpacked."""
    stat = os.stat(vmlinuz)
    key = hashlib.sha256(f"{os.path.realpath(vmlinuz)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    target = cache_dir / f"vmlinux-{key}"
    if target.exists():
        return str(target)
    data = Path(vmlinuz).read_bytes()
    start = data.find(XZ_MAGIC)
    if start < 0:
        return vmlinuz
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    except lzma.LZMAError:
        return vmlinuz
    if not elf.startswith(b"\x7fELF") or b"Xen\x00" not in elf:  # PVH entry is an ELF note named "Xen"
        return vmlinuz
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    with reaper.temp_file(partial):
        partial.write_bytes(elf)
        os.replace(partial, target)
    return str(target)
