"""A guardian process that cleans up after the harness however the harness ends.

The harness starts one reaper per run (in its own session, so a signal to the harness's
process group does not reach it) and keeps the write end of a pipe to its stdin. It tells the
reaper which process groups, cgroups and temp paths (folders, lock files) it owns, and the mark
it puts into the environment of every process it starts (GPU_HARNESS_MARK: one value per run,
and below it one per process, `RUN/N`). When that pipe closes -- normal exit, exception, or
SIGKILL, where no cleanup code of the harness can run -- the kernel closes the pipe, the reaper
reads EOF, kills what is still registered or carries the run's mark and removes the folders:
the kernel's own cleanup of a dead process's files is the signal.

A process is ours only by its pid, its process group, a cgroup we made or our mark in its
environment: never by what its command line says (a user's program may name any folder).

Runs as a script (stdlib only) so it works from any checkout or install.
"""
import contextlib
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Sequence


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


MNT_DETACH = 2
CGROUP_ROOT = "/sys/fs/cgroup"


def inside(path, folder):
    return path == folder or path.startswith(folder.rstrip("/") + "/")


MARK_VAR = "GPU_HARNESS_MARK"  # in the environment of every process the harness starts


def carries(pid: int, marks: Sequence[str]) -> bool:
    """Whether the process's environment (as it was at its exec, or its parent's at its fork)
    holds one of `marks`, or a mark below one (MARK/...); the variable may hold several, joined
    by ':' (mark_value)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return False
    prefix = f"{MARK_VAR}=".encode()
    held = [value for entry in entries if entry.startswith(prefix)
            for value in entry[len(prefix):].split(b":")]
    wanted = [mark.encode() for mark in marks]
    return any(value == want or value.startswith(want + b"/") for value in held for want in wanted)


def mark_value(mark: str) -> str:
    """The value of MARK_VAR for a process we start: its own mark after the ones this process
    carries (a harness run by another harness's scenario stays that scenario's too)."""
    return ":".join(filter(None, (os.environ.get(MARK_VAR, ""), mark)))


def marked(marks: Sequence[str]) -> List[int]:
    """Processes that carry one of `marks` (see carries), this one left out."""
    if not marks:
        return []
    return [int(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
            if int(pid) != os.getpid() and carries(int(pid), marks)]


def kill_marked(marks: Sequence[str], timeout_s: float = 10.0) -> None:
    """SIGKILL every process that carries one of `marks`, again while new ones appear (a child
    forked as its parent died), until none runs or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = [pid for pid in marked(marks) if alive(pid)]
        if not running:
            return
        for pid in running:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)


def mounts_in(folder):
    points = []
    try:
        with open("/proc/self/mountinfo") as info:
            for line in info:
                fields = line.split()
                point = fields[4].replace("\\040", " ")
                if inside(point, folder):
                    points.append(point)
    except (OSError, IndexError):
        pass
    return sorted(points, key=len, reverse=True)


def alive(pid):
    """Running, not a zombie waiting for its parent (which may be gone: init reaps it soon)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def deep_clean(folder, rounds=4):
    """Remove a folder a container runtime used: lazily unmount what is mounted under it
    (deepest first), then remove it; again while something brings it back, a few rounds at
    most. What ran from it is killed first by its caller (by cgroup and mark)."""
    for _ in range(rounds):
        clean_once(folder)
        if not os.path.exists(folder):
            return
        time.sleep(0.5)


def clean_once(folder):
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for point in mounts_in(folder):
        libc.umount2(point.encode(), MNT_DETACH)
    remove(folder)


def cgroup_members(tops):
    members: set = set()
    for top in tops:
        for folder, _, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(folder, "cgroup.procs")) as procs:
                        members.update(int(pid) for pid in procs.read().split())
                except (OSError, ValueError):
                    continue
    return members


def remove_cgroup(name):
    """A cgroup folder in every controller, children first. Whatever still runs in it is ours (a
    container's `runc init` that never got to exec names no folder of ours): killed first."""
    import time

    try:
        controllers = os.listdir(CGROUP_ROOT)
    except OSError:
        return
    tops = [os.path.join(CGROUP_ROOT, controller, name) for controller in controllers]
    deadline = time.monotonic() + 10
    while True:
        members = cgroup_members(tops)
        if not members or time.monotonic() > deadline:
            break
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)
    for controller in controllers:
        top = os.path.join(CGROUP_ROOT, controller, name)
        for folder, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
            try:
                os.rmdir(folder)
            except OSError:
                pass


def give_back(records):
    """Devices bound to vfio-pci by a harness that died: back to their drivers, once the
    processes that held them (QEMU) are gone."""
    import vfio  # harness/system/vfio.py, beside this script: standard library only

    for line in records:
        try:
            vfio.restore(vfio.BindRecord.from_line(line))
        except (vfio.VfioError, ValueError) as exc:
            print(f"reaper: vfio restore {line}: {exc}", file=sys.stderr)


def reap(pgids, paths, trees=(), cgroups=(), devices=(), marks=()):
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    kill_marked(marks)
    for name in cgroups:  # a container's processes (conmon, runc init) are found by their cgroup
        remove_cgroup(name)
    if devices:
        time.sleep(0.2)  # the killed QEMU's vfio file descriptors are closed by its exit
        give_back(devices)
    for tree in trees:
        deep_clean(tree)
    for path in paths:
        remove(path)
    for name in cgroups:  # again, now that nothing in the trees holds them
        remove_cgroup(name)


def serve(stream):
    pgids: set = set()
    paths: set = set()
    trees: set = set()
    cgroups: set = set()
    devices: set = set()
    marks: set = set()
    tracked = {"path": paths, "tree": trees, "cgroup": cgroups, "vfio": devices, "mark": marks}
    for line in stream:
        verb, _, arg = line.strip().partition(" ")
        if verb == "pgid":
            pgids.add(int(arg))
        elif verb == "unpgid":
            pgids.discard(int(arg))
        elif verb in tracked:
            tracked[verb].add(arg)
        elif verb.startswith("un") and verb[2:] in tracked:
            tracked[verb[2:]].discard(arg)
    reap(pgids, paths, trees, cgroups, devices, marks)


class Reaper:
    """The harness's handle on its guardian. Thread-safe; one per process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, text=True, bufsize=1,
        )
        # This run's mark: every process it starts carries it, or one below it (new_mark).
        self.mark = f"{os.getpid()}-{secrets.token_hex(6)}"
        # the harness's log where there is one (harness.core.log); this file stands alone too
        import logging

        logging.getLogger("gpu_harness.system.reaper").debug(
            "started the reaper, pid %d: %s %s; the run's mark is %s", self._proc.pid,
                                                             sys.executable,
            os.path.abspath(__file__), self.mark)
        self._numbers = itertools.count(1)
        self._send(f"mark {self.mark}")

    def new_mark(self) -> str:
        """A mark of its own for one process the harness starts (its descendants inherit it)."""
        with self._lock:
            return f"{self.mark}/{next(self._numbers)}"

    def _send(self, line: str) -> None:
        with self._lock:
            if self._proc.stdin and not self._proc.stdin.closed:
                self._proc.stdin.write(line + "\n")
                self._proc.stdin.flush()

    def track_group(self, pgid: int) -> None:
        self._send(f"pgid {pgid}")

    def untrack_group(self, pgid: int) -> None:
        self._send(f"unpgid {pgid}")

    def track_path(self, path: str) -> None:
        """Remove this file or folder if the harness dies before it untracks it."""
        self._send(f"path {path}")

    def untrack_path(self, path: str) -> None:
        self._send(f"unpath {path}")

    def track_tree(self, path: str) -> None:
        """Deep-clean this folder (deep_clean) if the harness dies before it untracks it."""
        self._send(f"tree {path}")

    def untrack_tree(self, path: str) -> None:
        self._send(f"untree {path}")

    def track_cgroup(self, name: str) -> None:
        """Remove this cgroup folder from every controller if the harness dies first."""
        self._send(f"cgroup {name}")

    def untrack_cgroup(self, name: str) -> None:
        self._send(f"uncgroup {name}")

    def track_vfio(self, record: str) -> None:
        """Give this device back (a vfio.BindRecord line: BDF DRIVER) if the harness dies first."""
        self._send(f"vfio {record}")

    def untrack_vfio(self, record: str) -> None:
        self._send(f"unvfio {record}")

    def close(self) -> None:
        """Reap whatever is still registered, and wait for the reaper to finish."""
        with self._lock:
            if self._proc.stdin and not self._proc.stdin.closed:
                self._proc.stdin.close()
        self._proc.wait(timeout=30)


_reaper = None
_reaper_lock = threading.Lock()


def get() -> Reaper:
    global _reaper
    with _reaper_lock:
        if _reaper is None:
            _reaper = Reaper()
        return _reaper


def new_mark() -> str:
    """A mark for a process about to start (see Reaper.new_mark)."""
    return get().new_mark()


def make_temp_dir(prefix: str, parent=None) -> str:
    """mkdtemp, with the folder known to the reaper before it exists: no moment in which a
    killed harness would leave it behind."""
    guardian, parent = get(), parent or tempfile.gettempdir()
    while True:
        path = os.path.join(parent, prefix + secrets.token_hex(5))
        guardian.track_path(path)
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            guardian.untrack_path(path)
        except OSError:
            guardian.untrack_path(path)
            raise


@contextlib.contextmanager
def temp_dir(prefix: str, parent=None):
    """A temp folder that is removed when the block ends, or by the reaper if we die in it."""
    path = make_temp_dir(prefix, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        get().untrack_path(path)


@contextlib.contextmanager
def temp_file(path):
    """A file being written (a .partial before its rename): removed by the reaper if we die."""
    get().track_path(str(path))
    try:
        yield path
    finally:
        get().untrack_path(str(path))


def shutdown() -> None:
    global _reaper
    with _reaper_lock:
        if _reaper is not None:
            _reaper.close()
            _reaper = None


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin)
