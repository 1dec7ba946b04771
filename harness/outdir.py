"""Output folders: made and checked writable before anything runs, so that an --out that is a
file, lies under a file or on a file system that takes no files is a one-line error up front."""
import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from .errors import PATH_LIMIT, InputError, cut


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
        raise InputError(f"{option} {cut(path, PATH_LIMIT)}: cannot create {LOCK_FILE}: {reason(exc)}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise InputError(f"{option} {cut(path, PATH_LIMIT)}: another gpu-harness run (pid {holder}) "
                         "is writing there; wait for it or choose another folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held.append(handle)


def release(path: Path) -> None:
    """The run is over: its claim on the folder goes, lock file and all."""
    for handle in [h for h in _held if Path(h.name).parent == Path(path)]:
        _held.remove(handle)
        try:
            (Path(path) / LOCK_FILE).unlink()
        except OSError:
            pass
        handle.close()


def clear(path: Path, products: Sequence[str]) -> None:
    """What an earlier run left in the folder under these names or globs (its scenario folders, reports):
    a new run's folder holds only what its own results.json lists."""
    for pattern in products:
        for target in Path(path).glob(pattern):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink()


def write_atomically(target: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, target)


@contextmanager
def claimed(path: Path, option: str, products: Sequence[str] = ()) -> Iterator[Path]:
    """prepare() and lock() the folder for a run, and clear what an earlier run left under the
    names of this run's `products`; if the run is refused for its input before it starts (an
    InputError inside), a folder made here is removed again: bad input leaves nothing."""
    path = Path(path)
    made = [p for p in (path, *path.parents) if not p.exists()]
    prepare(path, option)
    lock(path, option)
    try:
        yield path
    except InputError:
        release(path)
        try:
            for folder in made:  # deepest first; only what is still empty
                folder.rmdir()
        except OSError:
            pass
        raise
    clear(path, products)
