"""Output folders: made and checked writable before anything runs, so that an --out that is a
file, lies under a file or on a file system that takes no files is a one-line error up front;
claimed by one run at a time, with a manifest of what the runs there made, so that a rerun
removes only that."""
import fcntl
import fnmatch
import json
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from ..core.errors import PATH_LIMIT, InputError, cut, shown


def prepare(path: Path, option: str) -> Path:
    """Create the folder `path` (parents too) and check that files can be written in it."""
    path = Path(path)
    where = f"{option} {cut(path, PATH_LIMIT)}"
    blocker = file_in_the_way(path)
    if blocker:
        raise InputError(f"{where}: {blocker}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: cannot create it: {reason(exc)}") from None
    try:
        write_test(path)
    except OSError as exc:
        raise InputError(f"{where}: cannot write files in it: {reason(exc)}") from None
    return path


def file_in_the_way(path: Path) -> Optional[str]:
    """Why `path` cannot be a folder because it, or the nearest existing parent, is not one."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return None
        if candidate.exists():
            return "is a file, not a folder" if candidate == path else \
                f"{cut(candidate, PATH_LIMIT)} is a file, not a folder"
    return None


def write_test(folder: Path) -> None:
    handle, name = tempfile.mkstemp(prefix=".gpu-harness-write-test-", dir=folder)
    try:
        os.write(handle, b"\0")
    finally:
        os.close(handle)
        os.unlink(name)


def reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


LOCK_FILE = ".gpu-harness.lock"
_held: list = []  # open lock files: the lock lasts as long as this process


def lock(path: Path, option: str) -> None:
    """Claim the output folder for this run: a second run on the same folder would delete the
    first one's scenario folders and overwrite its results, so it gets a one-line error."""
    lock_path = Path(path) / LOCK_FILE
    try:
        handle = open(lock_path, "a+")
    except OSError as exc:
        raise InputError(f"{option} {cut(path, PATH_LIMIT)}: cannot create {LOCK_FILE}: "
                         f"{reason(exc)}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise InputError(f"{option} {cut(path, PATH_LIMIT)}: another gpu-harness run (pid "
                         f"{holder}) "
                         "is writing there; wait for it or choose another folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held.append(handle)


def release(path: Path, finish: bool = True) -> None:
    """The run is over: its manifest lists what it made (all that is there but what it found),
    and its claim on the folder goes, lock file and all."""
    manifest = read_manifest(path) if finish else None
    if manifest is not None and manifest.get("made") is None:
        found = manifest["found"]
        write_manifest(path, found, [name for name in entries(path) if name not in found])
    for handle in [h for h in _held if Path(h.name).parent == Path(path)]:
        _held.remove(handle)
        try:
            (Path(path) / LOCK_FILE).unlink()
        except OSError:
            pass
        handle.close()


MANIFEST = ".gpu-harness-made"  # in a claimed folder: what the runs there made, and what they found


def entries(path: Path) -> List[str]:
    """The folder's top-level names, but the claim's own files."""
    try:
        return sorted(name for name in os.listdir(path) if name not in (LOCK_FILE, MANIFEST))
    except OSError:
        return []


def identity(path: Path) -> Optional[str]:
    """What tells an entry from another of the same name: its device, inode and type."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return f"{found.st_dev}:{found.st_ino}:{stat.S_IFMT(found.st_mode):o}"


def read_manifest(path: Path) -> Optional[dict]:
    """The folder's manifest: {"found": [names a run found there and left], "made": {name: its
    identity} of what the last run made, or null while a run works there or after one was
    killed}; None without one."""
    try:
        data = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("found"), list):
        return None
    return data


def write_manifest(path: Path, found: Sequence[str], made: Optional[Sequence[str]]) -> None:
    identities = None if made is None else {name: identity(Path(path) / name)
                                            for name in sorted(made)}
    write_atomically(Path(path) / MANIFEST, json.dumps({"tool": "gpu-harness",
                                                        "found": sorted(found),
                                                        "made": identities}, indent=1) + "\n")


def matches(name: str, products: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in products)


def earlier_runs(path: Path, option: str, products: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(what earlier runs made there, to be removed; what is somebody else's, to be left alone).
    A folder that holds anything without a manifest, or a name this run writes that no run
    made, is refused: nothing is removed or written over by its name's look alone."""
    where = f"{option} {cut(path, PATH_LIMIT)}"
    present = entries(path)
    manifest = read_manifest(path)
    if manifest is None:
        if present:
            more = f" and {len(present) - 1} more" if len(present) > 1 else ""
            raise InputError(f"{where}: holds {shown(present[0])}{more}, which no gpu-harness run "
                             "made (it has "
                             f"no {MANIFEST}): choose an empty or a new folder")
        return [], []
    made = manifest.get("made")
    if isinstance(made, dict):  # the same entry, not another one that took its name since
        ours = [name for name in present if name in made
                and made[name] == identity(Path(path) / name)]
    else:  # a run that was killed there: what it began to write under its products' names
        found = set(manifest["found"])
        ours = [name for name in present if name not in found and matches(name, products)]
    theirs = [name for name in present if name not in ours]
    clash = next((name for name in theirs if matches(name, products)), None)
    if clash:
        raise InputError(f"{option} {cut(Path(path) / clash, PATH_LIMIT)}: no gpu-harness run made "
                         "it (its "
                         f"{MANIFEST} does not list it), and this run writes that name: move it or "
                         "choose another folder")
    return ours, theirs


def clear(path: Path, names: Sequence[str]) -> None:
    """Remove what earlier runs made in the folder (earlier_runs: by their manifest, never by
    name)."""
    for name in names:
        target = Path(path) / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            try:
                target.unlink()
            except FileNotFoundError:
                pass


def write_atomically(target: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text)
        os.replace(partial, target)
    except BaseException:
        try:
            partial.unlink()
        except FileNotFoundError:
            pass
        raise


@contextmanager
def claimed(path: Path, option: str, products: Sequence[str] = ()) -> Iterator[Path]:
    """prepare() and lock() the folder for a run; remove what earlier runs made there (by the
    folder's manifest) and record what is somebody else's, so that release() can list what this
    run made. If the run is refused for its input before it starts (an InputError inside), a
    folder made here is removed again and nothing in an old one is touched: bad input leaves
    nothing."""
    path = Path(path)
    made = [p for p in (path, *path.parents) if not p.exists()]
    prepare(path, option)
    lock(path, option)
    try:
        ours, theirs = earlier_runs(path, option, products)
        yield path
    except InputError:
        release(path, finish=False)
        for folder in made:  # deepest first; only what is still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    clear(path, ours)
    write_manifest(path, theirs, None)
