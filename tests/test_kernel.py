"""The guest kernel is unpacked to an ELF with a PVH note for a direct boot, from an XZ (Debian)
or a ZSTD (nixpkgs) bzImage; anything else is booted as it is."""
import lzma
import shutil
import subprocess

import pytest

from harness.launch.vm import kernel

ELF = b"\x7fELF" + b"\0" * 60 + b"Xen\x00" + bytes(range(256)) * 40


def bzimage(tmp_path, payload: bytes):
    image = tmp_path / "vmlinuz"
    image.write_bytes(b"MZ setup code " * 20 + payload + b"\x00\x10\x00\x00 trailer")
    return image


def test_an_xz_kernel_is_unpacked_once(tmp_path):
    image = bzimage(tmp_path, lzma.compress(ELF, format=lzma.FORMAT_XZ))
    unpacked = kernel.unpacked(str(image), tmp_path / "cache")
    assert unpacked != str(image) and open(unpacked, "rb").read() == ELF
    assert kernel.unpacked(str(image), tmp_path / "cache") == unpacked


@pytest.mark.skipif(not shutil.which("zstd"), reason="needs zstd (apt-get install zstd)")
def test_a_zstd_kernel_as_nixpkgs_builds_it_is_unpacked(tmp_path):
    compressed = subprocess.run(["zstd", "-q", "-c"], input=ELF, capture_output=True,
                                check=True).stdout
    unpacked = kernel.unpacked(str(bzimage(tmp_path, compressed)), tmp_path / "cache")
    assert open(unpacked, "rb").read() == ELF


def test_a_kernel_without_a_pvh_note_is_booted_as_it_is(tmp_path):
    image = bzimage(tmp_path, lzma.compress(b"\x7fELF no note here", format=lzma.FORMAT_XZ))
    assert kernel.unpacked(str(image), tmp_path / "cache") == str(image)
    plain = bzimage(tmp_path, b"gzip or lz4: not unpacked")
    assert kernel.unpacked(str(plain), tmp_path / "cache") == str(plain)
