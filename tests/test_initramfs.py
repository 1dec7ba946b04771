"""The initramfs cache: same inputs build once, a changed init builds anew, old images go."""
import os
import subprocess
import time

from harness.launch.vm import initramfs


def spec(tmp_path, init="#!/bin/sh\necho hi\n"):
    busybox, probe = tmp_path / "busybox", tmp_path / "gles.py"
    if not busybox.exists():
        busybox.write_bytes(b"\x7fELF not really busybox")
        probe.write_text("print('probe')\n")
    return initramfs.InitramfsSpec(str(busybox), str(tmp_path), (), init, (("gles.py", str(probe)),
                                                                           ))


def test_second_build_with_the_same_inputs_is_a_cache_hit(tmp_path):
    cache = tmp_path / "cache"
    first, built = initramfs.build(spec(tmp_path), cache)
    again, built_again = initramfs.build(spec(tmp_path), cache)
    assert (built, built_again, again) == (True, False, first)
    listing = subprocess.run(["cpio", "-it", "--quiet"], stdin=open(first, "rb"),
                             capture_output=True,
                             text=True, check=True).stdout.split()
    assert {"init", "bin/busybox", "probe/gles.py", "modules", "dev", "proc"} <= set(listing)
    other, built_other = initramfs.build(spec(tmp_path, init="#!/bin/sh\necho other\n"), cache)
    assert built_other and other != first


def test_prune_keeps_the_most_recently_used_of_those_a_run_made(tmp_path):
    from harness.runtimes import cache

    folder = tmp_path / "initramfs"
    folder.mkdir()
    for number in range(5):
        image = folder / f"{number}.cpio"
        image.write_bytes(b"x")
        cache.record_made(image, tmp_path)
        os.utime(image, (time.time() - 100 + number, time.time() - 100 + number))
    (folder / "mine.cpio").write_bytes(b"a file no run made")
    os.utime(folder / "mine.cpio", (time.time() - 1000, time.time() - 1000))
    os.utime(folder / "0.cpio")  # just used
    initramfs.prune(folder, keep=2)
    assert sorted(p.name for p in folder.glob("*.cpio")) == ["0.cpio", "4.cpio", "mine.cpio"]
