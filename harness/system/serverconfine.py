"""A host-side server confined by bwrap, and what a process reaches from where it runs.

Confined: no network or other namespace shared (--unshare-all), the host's /usr and /etc read
only (the program, its libraries, the driver's files), a private /tmp, /proc of its own, a
minimal /dev with only the render node added, read-write only the folder of its socket, and a
seccomp filter where the toolset's python can compile one (harness/system/seccompfilter.py).
What a crash there reaches is measured, not assumed: a probe run the same way (confined or not)
says what it can see and write (the host's folders, told from private ones by device and inode),
the network it has, the processes it sees and the syscalls it is refused."""
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .seccompfilter import SeccompUnavailable, compile_filter
from . import process

READ_ONLY = ("/usr", "/etc")
MERGED_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What the reach probe looks at: the user's home, the places a server could write, the network.
REACH_SCRIPT = r"""
import ctypes, errno, json, os, socket, sys
def attempt(call):
    try:
        call()
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
def inet_socket():
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
def new_user_namespace():  # harmless where it is allowed: this process alone moves, and ends
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
home, socket_dir = sys.argv[1], sys.argv[2]
places = ["/", "/usr", "/etc", "/var/tmp", "/tmp", home, socket_dir]
def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []
interfaces = [l.split(":")[0].strip() for l in lines("/proc/net/dev")[2:]]
print(json.dumps({
    "home_readable": os.access(home, os.R_OK) and os.path.isdir(home),
    "writable": [[p, os.stat(p).st_dev, os.stat(p).st_ino] for p in places
                 if os.path.isdir(p) and os.access(p, os.W_OK)],
    "network": [i for i in interfaces if i != "lo"],
    "processes": sum(1 for p in os.listdir("/proc") if p.isdigit()),
    "devices": sorted(os.listdir("/dev")) if os.path.isdir("/dev") else [],
    "syscalls": {"socket(AF_INET)": attempt(inet_socket),
                 "unshare(CLONE_NEWUSER)": attempt(new_user_namespace)},
}))
"""


def why_not(program: str) -> Optional[str]:
    """Why `program` cannot run confined here (None: it can): the confinement gives it the host's
    /usr and /etc only, so a program elsewhere (a runtime toolset's wrapper) is not there."""
    real = os.path.realpath(program)
    if any(real.startswith(folder + "/") for folder in READ_ONLY):
        return None
    return (f"{program} is outside the host's {' and '.join(READ_ONLY)} (a runtime toolset's "
            "wrapper runs it "
            "under bwrap already): the confined mode runs a server from the host's own /usr only")


@dataclass(frozen=True)
class Confined:
    """A program's argv under the confinement, and what it needs handed over."""

    argv: List[str]
    # the seccomp filter's file, open, and its path: hand it over, then close it
    handed: Tuple[Tuple[int, str], ...]
    seccomp: str  # the filter the program runs under, or why there is none

    @property
    def fds(self) -> Tuple[int, ...]:
        return tuple(fd for fd, _ in self.handed)


def confine(bwrap: str, python: str, argv: Sequence[str], socket_dir: str,
            render_node: Optional[str],
            scratch: Path, name: str) -> Confined:
    """`argv` confined, its seccomp filter compiled by `python` into `scratch` (as `name`.bpf)."""
    try:
        made = compile_filter(python, scratch / f"{name}.bpf")
    except SeccompUnavailable as exc:
        return Confined(confined(bwrap, argv, socket_dir, render_node), (), str(exc))
    # Popen's pass_fds clears CLOEXEC in the child
    fd = os.open(made.bpf, os.O_RDONLY | os.O_CLOEXEC)
    return Confined(confined(bwrap, argv, socket_dir, render_node, fd), ((fd, str(made.bpf)),),
                    made.describe())


def confined(bwrap: str, argv: Sequence[str], socket_dir: str, render_node: Optional[str],
             seccomp_fd: Optional[int] = None) -> List[str]:
    """`argv` run under bwrap with only what a vtest server needs (see the module's docstring)."""
    # No --new-session: the server stays in the harness's process group for it (its memory is
    # sampled by group); it has no terminal for TIOCSTI (stdin is /dev/null).
    prefix = [bwrap, "--unshare-all", "--die-with-parent"]
    for folder in READ_ONLY:
        prefix += ["--ro-bind", folder, folder]
    for link in MERGED_USR_LINKS:
        if os.path.islink(f"/{link}"):
            prefix += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
    prefix += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", socket_dir,
               socket_dir]
    if render_node:
        prefix += ["--dev-bind", render_node, render_node]
    if seccomp_fd is not None:
        prefix += ["--seccomp", str(seccomp_fd)]
    return [*prefix, "--", *argv]


def reach(python: str, socket_dir: str, wrap: Optional[Callable[[List[str]], Confined]] = None,
          env: Optional[Dict[str, str]] = None) -> dict:
    """What a process started as `wrap` starts it (else plainly) sees and may write, and the
    syscalls it is refused (the server's view, measured)."""
    home = os.path.expanduser("~")
    argv = [python, "-c", REACH_SCRIPT, home, socket_dir]
    started = wrap(argv) if wrap else Confined(argv, (), "")
    try:
        done = process.run_program(started.argv, capture_output=True, text=True, timeout=60,
                                   env=env,
                              stdin=subprocess.DEVNULL, pass_fds=started.fds)
    finally:
        for fd in started.fds:
            os.close(fd)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    found = json.loads(done.stdout)
    # A writable place is the host's where it is the host's folder (the same device and inode:
    # a bind mount), else a private one (a tmpfs of the sandbox's).
    found["writable_host"] = [place for place, dev, ino in found["writable"] if same_folder(place,
                                                                                            dev,
                                                                                            ino)]
    found["writable_private"] = [place for place, dev, ino in found["writable"]
                                 if not same_folder(place, dev, ino)]
    del found["writable"]
    found["home"] = home
    if wrap:
        found["seccomp"] = started.seccomp
    return found


def same_folder(place: str, dev: int, ino: int) -> bool:
    try:
        seen = os.stat(place)
    except OSError:
        return False
    return (seen.st_dev, seen.st_ino) == (dev, ino)
