"""The guest kernel: the toolset's vmlinuz, unpacked once to an ELF vmlinux when it can be.

QEMU boots an ELF vmlinux with a PVH note directly, skipping firmware real-mode setup and the
kernel's self-decompression, which under TCG costs seconds (measured: 13.7 s -> 9.9 s for a
whole vm-headless run with Debian's XZ kernel)."""
import hashlib
import lzma
import os
import shutil
from pathlib import Path
from typing import Optional

from ...runtimes import cache, prepjournal
from ...system import reaper
from .initramfs import CACHE_DIR
from ...system import process

XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def unpacked(vmlinuz: str, cache_dir: Path = CACHE_DIR.parent / "kernel") -> str:
    """Path of an ELF vmlinux for `vmlinuz` (cached), or `vmlinuz` itself if it cannot be
    unpacked."""
    stat = os.stat(vmlinuz)
    key = hashlib.sha256((f"{os.path.realpath(vmlinuz)}\0{stat.st_size}\0"
                          f"{stat.st_mtime_ns}").encode()).hexdigest()[:24]
    target = cache_dir / f"vmlinux-{key}"
    if target.exists():
        cache.mark_used(target)
        return str(target)
    with prepjournal.timed("kernel unpacked", os.path.basename(vmlinuz)):
        elf = decompressed(Path(vmlinuz).read_bytes())
    # PVH entry: an ELF note "Xen"
    if elf is None or not elf.startswith(b"\x7fELF") or b"Xen\x00" not in elf:
        return vmlinuz
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    with reaper.temp_file(partial):
        partial.write_bytes(elf)
        os.replace(partial, target)
    cache.record_made(target, cache_dir.parent)
    return str(target)


def decompressed(image: bytes) -> Optional[bytes]:
    """The kernel inside a bzImage: XZ (Debian's) or ZSTD (nixpkgs' default for 64-bit kernels
    since 5.9), or None. Python has no zstd module before 3.14, so the zstd program does that."""
    start = image.find(XZ_MAGIC)
    if start >= 0:
        try:
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(image[start:])
        except lzma.LZMAError:
            return None
    start = image.find(ZSTD_MAGIC)
    if start < 0 or not shutil.which("zstd"):
        return None
    # The compressed kernel is followed by the bzImage's trailer: zstd decodes the frame, then
    # reports the trailer as an unknown format; the frame's output is complete all the same.
    done = process.run_program(["zstd", "-dcq"], input=image[start:], capture_output=True,
                               timeout=120)
    return done.stdout or None
