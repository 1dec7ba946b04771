"""What the harness keeps between runs, under ~/.cache/gpu-harness: built runtimes, their images,
Flatpak repos exported from them, initramfs images and unpacked kernels. Each is keyed by
content, so an edit to a recipe, a lock or the GL split makes a new entry and the old one is
never used again. Every entry a run makes is recorded in the cache's ledger with its identity, and
only a recorded entry is ever removed: a file named like one is somebody else's.
`gpu-harness cache` lists the entries with their size and when a run last
used them (mark_used: a folder gets a `.used` stamp, a file its own mtime) and removes what no
run has used for some days, or what this checkout can tell no run of it can use (stale: a
runtime or image of a recipe and lock that are no longer the shipped ones, a Flatpak repo made
from a runtime root that is gone or by another layout of the GL split).

Every harness process holds the cache's lock shared while it runs (hold_shared); pruning takes
it exclusively and refuses while a run holds it, so nothing is removed from under a run, and
what a killed build left (a `.partial` folder or file) is known to be dead. An entry is renamed
out of the way before it is removed: a removal that fails halfway leaves no entry that looks
complete."""
import enum
import fcntl
import hashlib
import json
import os
import shutil
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Dict, Iterator, List, Optional
from ..core.errors import ComponentError


def cache_root() -> Path:
    configured = os.environ.get("XDG_CACHE_HOME", "")
    # as the XDG spec says
    base = Path(configured) if os.path.isabs(configured) else Path.home() / ".cache"
    return base / "gpu-harness"


ROOT = cache_root()
STAMP = ".used"
LOCK = ".lock"
SOURCE_FILE = "source.json"  # beside a Flatpak repo: the runtime root and layout it was made from
TRASH = ".partial-trash-"
DAY_S = 86400.0
_held: Dict[Path, IO[str]] = {}  # root -> the lock this process holds on it, once


class CacheBusy(ComponentError):
    """A run holds the cache: pruning now could remove what it uses."""


class Kind(str, enum.Enum):
    RUNTIME = "runtime"  # a built root filesystem (runtimes/<recipe+lock digest>)
    IMAGE = "image"  # a runtime as a container image archive
    REPO = "flatpak-repo"  # a runtime, its Mesa-less platform or its GL extension, exported
    INITRAMFS = "initramfs"
    KERNEL = "kernel"  # an unpacked vmlinux
    PARTIAL = "partial"  # what a killed build (or a failed removal) left

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Entry:
    kind: Kind
    path: Path
    name: str  # what it holds, as far as the entry says
    size: int  # bytes on disk, each hard-linked file once within the entry
    last_used: float  # epoch seconds
    # False: no run of this checkout can use it (stale); None: cannot tell
    current: Optional[bool] = None
    # a run recorded making it (the ledger); False: somebody else's, never removed
    made: bool = True

    def age_days(self, now: float) -> float:
        return max(0.0, (now - self.last_used) / DAY_S)

    def to_dict(self, now: float) -> dict:
        return {"kind": self.kind.value, "path": str(self.path), "name": self.name,
                "size_bytes": self.size,
                "last_used": self.last_used, "age_days": round(self.age_days(now), 2),
                "current": self.current,
                "made_by_gpu_harness": self.made}


LEDGER = ".made"  # at the cache's root: a line per entry a run made, with its identity
LOCKS = ROOT / ".locks"  # one lock file per entry being made (building)


def identity(path: Path) -> Optional[str]:
    """What tells an entry from another of the same name: its device, inode and type."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return f"{found.st_dev}:{found.st_ino}:{stat.S_IFMT(found.st_mode):o}"


def record_made(path: Path, root: Optional[Path] = None) -> None:
    """Write into the ledger that a run made `path` (a cache entry, or a partial one being
    built): only what is recorded there is ever removed. A path outside the cache is not its."""
    folder = ROOT if root is None else root
    made = identity(path)
    try:
        name = Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return
    if made is None:
        return
    try:  # one short line in append mode: parallel runs' lines do not interleave
        with open(folder / LEDGER, "a") as ledger:
            ledger.write(f"{name}\t{made}\n")
    except OSError:  # a read-only cache: nothing is made in it either
        pass


def recorded(root: Path) -> Dict[str, str]:
    """name under the root -> the identity a run recorded for it (the last line for a name wins)."""
    try:
        lines = (root / LEDGER).read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("\t", 1) for line in lines if line.count("\t") == 1)


def made_by_a_run(path: Path, root: Path, ledger: Dict[str, str]) -> bool:
    """Whether this entry is one a run recorded making (the same entry: its identity too)."""
    try:
        name = str(path.relative_to(root))
    except ValueError:
        return False
    return name in ledger and ledger[name] == identity(path)


@contextmanager
def building(target: Path) -> Iterator[float]:
    """Held while this process makes the entry `target`: another process making the same one
    waits here, then finds it made. Yields the seconds it waited. The lock files live apart, in
    the cache's own LOCKS folder, named by the entry's path: never among the entries."""
    target.parent.mkdir(parents=True, exist_ok=True)
    LOCKS.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(target.absolute()).encode()).hexdigest()[:24]
    started = time.monotonic()
    with open(LOCKS / f"{name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield time.monotonic() - started


def hold_shared(root: Optional[Path] = None) -> None:
    """Hold the cache's lock shared until this process ends: a prune waits for no one and
    removes nothing while we run. A cache that cannot be locked (read-only) is used as it is."""
    folder = ROOT if root is None else root
    if folder in _held:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK, "a+")
    except OSError:
        return
    fcntl.flock(handle, fcntl.LOCK_SH)
    _held[folder] = handle


@contextmanager
def exclusive(root: Path) -> Iterator[None]:
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / LOCK, "a+")
    except OSError as exc:
        raise CacheBusy(f"cannot lock {root / LOCK}: {exc.strerror or exc}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CacheBusy(f"a gpu-harness run is using {root}; prune when it has ended") from None
        yield


def mark_used(entry: Path) -> None:
    """Record that a run uses `entry` now (a folder: its stamp; a file: its mtime)."""
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
    return (f"{facts.get('runtime', '?')} (Mesa {facts.get('mesa', '?')}, "
            f"{facts.get('packages', '?')} packages)")


def flatpak_name(entry: Path) -> str:
    facts = read_json(entry / "repo" / "done")
    return str(facts.get("id") or "(incomplete export)")


def is_partial(path: Path) -> bool:
    return ".partial" in path.name


def image_name(path: Path) -> str:
    """trixie-host-<digest>-v1.tar.gz -> trixie-host"""
    return path.name[:-len(".tar.gz")].rsplit("-", 2)[0]


@dataclass(frozen=True)
class KindSpec:
    kind: Kind
    folder: str  # under the cache root
    is_entry: Callable[[Path], bool]
    holds: Callable[[Path], str]  # what an entry holds, in words


KINDS = (
    KindSpec(Kind.RUNTIME, "runtimes", lambda p: p.is_dir(), runtime_name),
    KindSpec(Kind.IMAGE, "images", lambda p: p.name.endswith(".tar.gz"), image_name),
    KindSpec(Kind.REPO, "flatpak", lambda p: p.is_dir(), flatpak_name),
    KindSpec(Kind.INITRAMFS, "initramfs", lambda p: p.suffix == ".cpio", lambda p: p.stem),
    KindSpec(Kind.KERNEL, "kernel", lambda p: p.name.startswith("vmlinux-"), lambda p: p.name),
)


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


def entries(root: Path = ROOT, current: Current = Current()) -> Iterator[Entry]:
    ledger = recorded(root)
    for spec in KINDS:
        for path in children(root / spec.folder):
            made = made_by_a_run(path, root, ledger)
            if is_partial(path):  # a killed build's, or a removal's that failed
                yield Entry(Kind.PARTIAL, path, f"unfinished {spec.kind}", size_of(path),
                            last_used(path), False,
                            made)
            elif spec.is_entry(path):
                yield Entry(spec.kind, path, spec.holds(path), size_of(path), last_used(path),
                            current.judge(spec.kind, path), made)


def remove(entry: Entry) -> None:
    """Rename it out of the way (atomic: a run never finds half an entry), then delete it."""
    trash = entry.path.with_name(f"{entry.path.name}{TRASH}{os.getpid()}")
    path = entry.path if entry.kind is Kind.PARTIAL else entry.path.rename(trash)
    record_made(path, entry.path.parent.parent)  # the trash, should this removal fail halfway
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


@dataclass(frozen=True)
class Pruned:
    removed: List[Entry]
    kept: List[Entry]
    failed: List[str]  # entries that could not be removed, and why


def chosen(entry: Entry, older_than_days: Optional[float], stale: bool, now: float) -> bool:
    if not entry.made:  # named like an entry, but no run recorded making it: not ours to remove
        return False
    old = older_than_days is not None and entry.age_days(now) >= older_than_days
    return old or (stale and entry.current is False)


def prune(older_than_days: Optional[float] = None, stale: bool = False, dry_run: bool = False,
          root: Path = ROOT,
          now: Optional[float] = None, current: Current = Current(),
          remover: Callable[[Entry], None] = remove) -> Pruned:
    """Remove the entries no run has used for `older_than_days` days, and with `stale` those
    `current` says no run can use again (and what killed builds left). Refuses (CacheBusy) while
    a run holds the cache. Every entry is judged before any is removed: a dry run says the same."""
    now = time.time() if now is None else now
    with exclusive(root):
        judged = list(entries(root, current))
        removed: List[Entry] = []
        kept: List[Entry] = []
        failed: List[str] = []
        for entry in judged:
            if not chosen(entry, older_than_days, stale, now):
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
    return Pruned(removed, kept, failed)
