"""A guardian process that cleans up after the harness however the harness ends.

The harness starts one reaper per run (in its own session, so a signal to the harness's
process group does not reach it) and keeps the write end of a pipe to its stdin. It tells the
reaper which process groups and temp paths (folders, lock files) it owns. When that pipe closes -- normal exit,
exception, or SIGKILL, where no cleanup code of the harness can run -- the kernel closes the
pipe, the reaper reads EOF, kills what is still registered and removes the folders. This is the
sync-fd lifecycle: the kernel's own cleanup is the signal.

Runs as a script (stdlib only) so it works from any checkout or install.
"""
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time


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


def processes_in(folder):
    """Processes that name `folder` on their command line or have their root or working folder
    in it: what a container runtime (conmon, the container's own processes) leaves running."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if folder.encode() in handle.read():
                    found.append(int(pid))
                    continue
            for link in ("root", "cwd"):
                if inside(os.readlink(f"/proc/{pid}/{link}"), folder):
                    found.append(int(pid))
                    break
        except OSError:
            continue
    return found


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
    """Remove a folder a container runtime used: kill what still runs from it, lazily unmount
    what is mounted under it (deepest first), then remove it; again while something (a cleanup
    process conmon started as its container died) brings it back, a few rounds at most."""
    for _ in range(rounds):
        clean_once(folder)
        time.sleep(0.5)
        if not os.path.exists(folder) and not processes_in(folder):
            return


def clean_once(folder):
    import ctypes

    killed = processes_in(folder)
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 10  # gone, not only signalled: their mounts and cgroups are busy until then
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}/cmdline") and alive(pid)
                                              for pid in killed):
        time.sleep(0.05)
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
    import vfio  # harness/vfio.py, beside this script: standard library only

    for line in records:
        try:
            vfio.restore(vfio.BindRecord.from_line(line))
        except (vfio.VfioError, ValueError) as exc:
            print(f"reaper: vfio restore {line}: {exc}", file=sys.stderr)


def reap(pgids, paths, trees=(), cgroups=(), devices=()):
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if devices:
        time.sleep(0.2)  # the killed QEMU's vfio file descriptors are closed by its exit
        give_back(devices)
    for tree in trees:
        deep_clean(tree)
    for path in paths:
        remove(path)
    for name in cgroups:
        remove_cgroup(name)


def serve(stream):
    pgids: set = set()
    paths: set = set()
    trees: set = set()
    cgroups: set = set()
    devices: set = set()
    tracked = {"path": paths, "tree": trees, "cgroup": cgroups, "vfio": devices}
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
    reap(pgids, paths, trees, cgroups, devices)


class Reaper:
    """The harness's handle on its guardian. Thread-safe; one per process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, text=True, bufsize=1,
        )

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
