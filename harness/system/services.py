"""Sidecars a workload needs (virgl_test_server, Xvfb): started per scenario, ready before the
workload starts, stopped when it ends, however it ends."""
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from . import reaper, supervisor
from ..core import log
from .process import Child, exit_of, tail
from .retry import poll
from .syncfd import SyncPipe
from ..core.errors import ComponentError, joined_lines


LOG = log.get(__name__)
SUPERVISED_EXIT_S = 3.0
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL


class ServiceError(ComponentError):
    """A service did not come up; the message says why and carries its log tail."""


@dataclass
class ServiceSpec:
    name: str
    argv: List[str]
    env: Dict[str, str]
    log_path: str
    ready_socket: Optional[str] = None  # ready once a client can connect to this unix socket
    ready_check: Optional[Callable[[], bool]] = None  # or once this returns True
    ready_timeout_s: float = 10.0
    # Files the service makes outside the workspace and removes itself when it stops cleanly
    # (Xvfb's /tmp/.X<n>-lock and socket): removed here or by the reaper if it cannot.
    leaves: Tuple[str, ...] = ()
    # supervised (harness/system/supervisor.py): ready and stopped through this pipe
    sync: Optional[SyncPipe] = None
    # Open files its argv names by number (bwrap's --seccomp FD), with the file each reads (rerun.sh
    # opens it so): handed to its process and closed here once it started.
    handed: Tuple[Tuple[int, str], ...] = ()
    # Stopped by a SIGTERM to its process alone, which ends its children itself (weston, whose
    # desktop shell dying of the group's signal first makes it exit 1)
    stop_leader_first: bool = False
    # For its rerun.sh where readiness is a check the script cannot make: the folders it makes
    # first (0700: a Wayland runtime folder) and the socket it waits for
    rerun_dirs: Tuple[str, ...] = ()
    rerun_socket: Optional[str] = None


def unix_socket_accepts(path: str) -> bool:
    return os.path.exists(path) and supervisor.accepts(path)


@dataclass
class RunningService:
    spec: ServiceSpec
    child: Child
    ready_s: float = 0.0
    peak_rss_kb: int = 0
    exit_description: str = ""
    stopped: bool = field(default=False, repr=False)

    def failure(self) -> Optional[str]:
        """A one-line reason if the service died on its own, else None. A supervised service
        that ended cleanly did what it is for: its app's end of the sync pipe closed."""
        returncode = self.child.poll()
        if self.stopped or returncode is None or (self.spec.sync is not None and returncode == 0):
            return None
        return f"service {self.spec.name} died during the run ({exit_of(returncode).describe()})"

    def sample_rss(self) -> None:
        self.peak_rss_kb = max(self.peak_rss_kb, self.child.peak_rss_kb())

    def stop(self) -> None:
        if self.stopped:
            return
        self.sample_rss()
        if self.spec.sync is not None:
            # The workload has ended, so its end of the pipe is closed: the supervisor stops the
            # server by itself, and the harness stops it only if it does not.
            poll(lambda: self.child.poll() is not None, SUPERVISED_EXIT_S, interval_s=0.01)
        self.exit_description = self.child.stop(
            leader_first=self.spec.stop_leader_first).describe()
        self.stopped = True
        LOG.debug("service %s stopped: %s", self.spec.name, self.exit_description)
        for path in self.spec.leaves:
            if self.made(path):
                reaper.remove(path)
            reaper.get().untrack_path(path)

    def made(self, path: str) -> bool:
        """Whether a leave is this service's: it came up (so it made them), or the file names its
        pid (X's lock). A server that never came up may have lost the path to another one."""
        if self.ready_s:
            return True
        try:
            with open(path) as handle:
                return int(handle.read().strip()) == self.child.pid
        except (OSError, ValueError):
            return False


def is_ready(spec: ServiceSpec) -> bool:
    if spec.sync is not None:
        return spec.sync.ready()
    if spec.ready_socket:
        return unix_socket_accepts(spec.ready_socket)
    if spec.ready_check:
        return spec.ready_check()
    return True


def start(spec: ServiceSpec) -> RunningService:
    started = time.monotonic()
    if spec.ready_socket and len(os.fsencode(spec.ready_socket)) > SOCKET_PATH_MAX:
        raise ServiceError(f"service {spec.name}: its socket path is "
                           f"{len(os.fsencode(spec.ready_socket))} bytes, "
                           f"longer than a unix socket takes ({SOCKET_PATH_MAX}): "
                           f"{spec.ready_socket}")
    for path in spec.leaves:
        reaper.get().track_path(path)
    try:
        child = Child(spec.argv, spec.env, spec.log_path,
                      pass_fds=((spec.sync.write_fd,) if spec.sync is not None
                                else ()) + tuple(fd for fd, _ in spec.handed))
    except OSError as exc:
        raise ServiceError(f"service {spec.name} could not start {spec.argv[0]}: "
                           f"{exc.strerror or exc}") from None
    finally:
        if spec.sync is not None:
            spec.sync.close(spec.sync.write_fd)  # the supervisor holds the only write end now
        for fd, _ in spec.handed:
            os.close(fd)
        spec.handed = ()
    service = RunningService(spec, child)
    ready = poll(lambda: is_ready(spec), spec.ready_timeout_s, interval_s=0.005,
                 give_up=lambda: child.poll() is not None)
    if not ready:
        exited = child.poll() is not None
        service.stop()
        why = f"exited before it was ready ({service.exit_description})" if exited \
            else f"not ready after {spec.ready_timeout_s:.0f} s"
        LOG.debug("service %s %s", spec.name, why)
        raise ServiceError(f"service {spec.name} {why}: "
                           f"{joined_lines(tail(spec.log_path, 3), 'no output')}")
    service.ready_s = time.monotonic() - started
    LOG.debug("service %s ready after %.2f s", spec.name, service.ready_s)
    return service


def start_all(specs: List[ServiceSpec]) -> List[RunningService]:
    running: List[RunningService] = []
    try:
        for spec in specs:
            running.append(start(spec))
    except ServiceError:
        stop_all(running)
        raise
    return running


def stop_all(services: List[RunningService]) -> None:
    for service in reversed(services):
        service.stop()


def first_failure(services: List[RunningService]) -> Optional[str]:
    for service in services:
        reason = service.failure()
        if reason:
            return reason
    return None
