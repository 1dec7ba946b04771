"""The guest's initramfs: busybox, the resolved kernel modules, the probe and a rendered init.
Cached by content hash, so a second run with the same inputs builds nothing."""
import hashlib
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from ...runtimes import cache, prepjournal
from ...system import reaper
from ...system import process

CACHE_DIR = cache.ROOT / "initramfs"
CACHE_KEEP = 16  # images kept, most recently used first: a few kernels x paths x probe versions


@dataclass(frozen=True)
class InitramfsSpec:
    busybox: str
    modules_dir: str
    modules: tuple  # relpaths under modules_dir, in insmod order
    init_script: str
    files: tuple  # (name inside /probe, host path)

    def digest(self) -> str:
        h = hashlib.sha256()
        h.update(b"gpu-harness-initramfs-v1\0")
        for path in [self.busybox] + [os.path.join(self.modules_dir, m) for m in self.modules] + \
                [p for _, p in self.files]:
            stat = os.stat(path)
            h.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        h.update("\0".join(self.modules).encode())
        h.update("\0".join(name for name, _ in self.files).encode())
        h.update(self.init_script.encode())
        return h.hexdigest()[:24]


def build(spec: InitramfsSpec, cache_dir: Path = CACHE_DIR) -> Tuple[Path, bool]:
    """Return (path of the cpio archive, whether it was built now)."""
    target = cache_dir / f"{spec.digest()}.cpio"
    if target.exists():
        cache.mark_used(target)  # for prune() and `gpu-harness cache`
        return target, False
    cache_dir.mkdir(parents=True, exist_ok=True)
    with prepjournal.timed("initramfs", target.name), reaper.temp_dir("gh-initramfs-") as staging:
        root = Path(staging)
        for name in ("bin", "dev", "proc", "sys", "mnt", "modules", "probe", "tmp"):
            (root / name).mkdir()
        shutil.copy2(spec.busybox, root / "bin" / "busybox")
        for module in spec.modules:
            dest = root / "modules" / module
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(spec.modules_dir, module), dest)
        for name, path in spec.files:
            # a package's module: qemu/qmp/x.py
            (root / "probe" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, root / "probe" / name)
        init = root / "init"
        init.write_text(spec.init_script)
        init.chmod(0o755)
        listing = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        # One name per builder: threads of one process build the same image too (gl and vulkan
        # probes of one path on two runtimes).
        partial = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.partial")
        with reaper.temp_file(partial), open(partial, "wb") as out:
            process.run_program(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                                check=True,
                           input="\n".join(listing).encode(), stdout=out)
            os.replace(partial, target)  # atomic: parallel builders of the same digest agree
        cache.record_made(target, cache_dir.parent)
    prune(cache_dir)
    return target, True


def prune(cache_dir: Path, keep: int = CACHE_KEEP) -> None:
    """Drop all but the `keep` most recently used images (of those a run recorded making)."""
    ledger = cache.recorded(cache_dir.parent)
    made = [path for path in cache_dir.glob("*.cpio") if cache.made_by_a_run(path, cache_dir.parent,
                                                                             ledger)]
    images = sorted(made, key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in images[keep:]:
        try:
            stale.unlink()
        except OSError:  # a parallel run pruned it first
            pass
