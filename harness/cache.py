"""What the harness keeps between runs, under ~/.cache/gpu-harness: built runtimes, their images,
Flatpak repos exported from them, initramfs images and unpacked kernels. Each is keyed by
content, so an edit to a recipe, a lock or the GL split makes a new entry and the old one is
never used again. `gpu-harness cache` lists the entries with their size and when a run last
used them; `gpu-harness cache prune --older-than DAYS` removes what no run has used since.

A use is marked when a run finds an entry (mark_used): a folder gets a `.used` stamp, a file its
own mtime. An entry a run is using was marked when it was found, so pruning by age never pulls
one out from under a run; a Flatpak repo is also skipped while a run holds its lock.

An entry is also *stale* where this checkout can tell that no run of it can use it again: a
runtime or image of a recipe and lock that are no longer the shipped ones, a Flatpak repo made
from a runtime root that is gone or by another layout of the GL split (`prune --stale`)."""
import enum
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpu-harness"
STAMP = ".used"
SOURCE_FILE = "source.json"  # beside a Flatpak repo: the runtime root and layout it was made from
DAY_S = 86400.0


class Kind(str, enum.Enum):
    RUNTIME = "runtime"  # a built root filesystem (runtimes/<recipe+lock digest>)
    IMAGE = "image"  # a runtime as a container image archive
    REPO = "flatpak-repo"  # a runtime, its Mesa-less platform or its GL extension, exported
    INITRAMFS = "initramfs"
    KERNEL = "kernel"  # an unpacked vmlinux
    PARTIAL = "partial"  # what a killed build left

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Entry:
    kind: Kind
    path: Path
    name: str  # what it holds, as far as the entry says
    size: int  # bytes on disk, each hard-linked file once within the entry
    last_used: float  # epoch seconds
    current: Optional[bool] = None  # False: no run of this checkout can use it (stale); None: cannot tell

    def age_days(self, now: float) -> float:
        return max(0.0, (now - self.last_used) / DAY_S)

    def to_dict(self, now: float) -> dict:
        return {"kind": self.kind.value, "path": str(self.path), "name": self.name, "size_bytes": self.size,
                "last_used": self.last_used, "age_days": round(self.age_days(now), 2), "current": self.current}


def mark_used(entry: Path) -> None:
    """Record that a run found `entry` now (a folder: its stamp; a file: its mtime)."""
    try:
        if entry.is_dir():
            (entry / STAMP).touch()
        elif entry.exists():
            os.utime(entry)
    except OSError:  # a read-only cache still serves
        pass


def last_used(entry: Path) -> float:
    for candidate in (entry / STAMP, entry) if entry.is_dir() else (entry,):
        try:
            return candidate.stat().st_mtime
        except OSError:
            continue
    return 0.0


def size_of(entry: Path) -> int:
    if not entry.is_dir():
        try:
            return entry.lstat().st_blocks * 512
        except OSError:
            return 0
    seen, total = set(), 0
    for folder, _, files in os.walk(entry):
        for name in files:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def runtime_name(entry: Path) -> str:
    facts = read_json(entry / "facts.json")
    if not facts:
        return "(incomplete build)"
    return f"{facts.get('runtime', '?')} (Mesa {facts.get('mesa', '?')}, {facts.get('packages', '?')} packages)"


def flatpak_name(entry: Path) -> str:
    facts = read_json(entry / "repo" / "done")
    return str(facts.get("id") or "(incomplete export)")


def is_partial(path: Path) -> bool:
    return ".partial" in path.name


# kind -> (folder under ROOT, which of its children are entries, what an entry holds)
KINDS: Dict[Kind, Tuple[str, Callable[[Path], bool], Callable[[Path], str]]] = {
    Kind.RUNTIME: ("runtimes", lambda p: p.is_dir(), runtime_name),
    Kind.IMAGE: ("images", lambda p: p.name.endswith(".tar.gz"), lambda p: p.name.split("-", 1)[0]),
    Kind.REPO: ("flatpak", lambda p: p.is_dir(), flatpak_name),
    Kind.INITRAMFS: ("initramfs", lambda p: p.suffix == ".cpio", lambda p: p.stem),
    Kind.KERNEL: ("kernel", lambda p: p.name.startswith("vmlinux-"), lambda p: p.name),
}


def children(folder: Path) -> List[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


@dataclass(frozen=True)
class Current:
    """What this checkout would use: runtime digests (recipe + lock), the image format, the GL
    split's layout. Empty: nothing is known to be current, nothing is called stale."""

    runtime_digests: frozenset = frozenset()
    image_format: Optional[str] = None
    layout: Optional[str] = None

    def judge(self, kind: Kind, path: Path) -> Optional[bool]:
        if kind is Kind.RUNTIME and self.runtime_digests:
            return path.name in self.runtime_digests
        if kind is Kind.IMAGE and self.runtime_digests and self.image_format:
            name = path.name[:-len(".tar.gz")]
            return any(name.endswith(f"-{d}-{self.image_format}") for d in self.runtime_digests)
        if kind is Kind.REPO:
            source = read_json(path / SOURCE_FILE)
            if not source.get("root"):
                return None
            if not os.path.isdir(str(source["root"])):
                return False
            return source.get("layout") in (None, self.layout) if self.layout else None
        return None


def shipped() -> Current:
    """What the shipped recipes, locks and GL split make now."""
    from . import glext, runtimes

    digests = set()
    for name in runtimes.recipe_names():
        try:
            recipe = runtimes.load_recipe(name)
            digests.add(runtimes.digest(recipe, runtimes.load_lock(recipe)))
        except Exception:  # an unreadable recipe makes nothing current; never a reason to remove
            return Current()
    return Current(frozenset(digests), runtimes.IMAGE_FORMAT, glext.layout_digest())


def entries(root: Path = ROOT, current: Current = Current()) -> Iterator[Entry]:
    for kind, (folder, is_entry, describe) in KINDS.items():
        for path in children(root / folder):
            if is_partial(path):  # left by a build that was killed
                yield Entry(Kind.PARTIAL, path, f"unfinished {kind}", size_of(path), last_used(path))
            elif is_entry(path):
                yield Entry(kind, path, describe(path), size_of(path), last_used(path), current.judge(kind, path))


def busy(entry: Entry) -> bool:
    """A Flatpak repo a run is exporting or installing from holds its lock."""
    lock_file = entry.path / "lock"
    if entry.kind is not Kind.REPO or not lock_file.exists():
        return False
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def remove(entry: Entry) -> None:
    if entry.path.is_dir() and not entry.path.is_symlink():
        shutil.rmtree(entry.path)
    else:
        entry.path.unlink()


@dataclass(frozen=True)
class Pruned:
    removed: List[Entry]
    kept: List[Entry]
    busy: List[str]  # old entries a run holds now
    failed: List[str]  # old entries that could not be removed, and why


def prune(older_than_days: Optional[float] = None, stale: bool = False, dry_run: bool = False, root: Path = ROOT,
          now: Optional[float] = None, current: Current = Current(),
          remover: Callable[[Entry], None] = remove) -> Pruned:
    """Remove the entries no run has used for `older_than_days` days, and with `stale` those
    `current` says no run can use again."""
    now = time.time() if now is None else now
    removed: List[Entry] = []
    kept: List[Entry] = []
    held: List[str] = []
    failed: List[str] = []
    for entry in entries(root, current):
        old = older_than_days is not None and entry.age_days(now) >= older_than_days
        if not (old or (stale and entry.current is False)):
            kept.append(entry)
            continue
        if busy(entry):
            held.append(f"{entry.path}: in use by a run (its lock is held)")
            kept.append(entry)
            continue
        try:
            if not dry_run:
                remover(entry)
        except OSError as exc:
            failed.append(f"{entry.path}: cannot remove: {exc.strerror or exc}")
            kept.append(entry)
            continue
        removed.append(entry)
    return Pruned(removed, kept, held, failed)
