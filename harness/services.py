"""Sidecars a workload needs (virgl_test_server, Xvfb): started per scenario, ready before the
workload starts, stopped when it ends, however it ends."""
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from . import reaper
from .process import Child, exit_of, tail


class ServiceError(Exception):
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


def unix_socket_accepts(path: str) -> bool:
    if not os.path.exists(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


@dataclass
class RunningService:
    spec: ServiceSpec
    child: Child
    ready_s: float = 0.0
    peak_rss_kb: int = 0
    exit_description: str = ""
    stopped: bool = field(default=False, repr=False)

    def failure(self) -> Optional[str]:
        """A one-line reason if the service died on its own, else None."""
        if self.stopped or self.child.poll() is None:
            return None
        return f"service {self.spec.name} died during the run ({exit_of(self.child.poll()).describe()})"

    def sample_rss(self) -> None:
        self.peak_rss_kb = max(self.peak_rss_kb, self.child.peak_rss_kb())

    def stop(self) -> None:
        if self.stopped:
            return
        self.sample_rss()
        self.exit_description = self.child.stop().describe()
        self.stopped = True
        for path in self.spec.leaves:
            reaper.remove(path)
            reaper.get().untrack_path(path)


def is_ready(spec: ServiceSpec) -> bool:
    if spec.ready_socket:
        return unix_socket_accepts(spec.ready_socket)
    if spec.ready_check:
        return spec.ready_check()
    return True


def start(spec: ServiceSpec) -> RunningService:
    started = time.monotonic()
    for path in spec.leaves:
        reaper.get().track_path(path)
    child = Child(spec.argv, spec.env, spec.log_path)
    service = RunningService(spec, child)
    while not is_ready(spec):
        if child.poll() is not None:
            service.stop()
            raise ServiceError(f"service {spec.name} exited before it was ready ({service.exit_description}): "
                               f"{one_line(tail(spec.log_path, 3))}")
        if time.monotonic() - started > spec.ready_timeout_s:
            service.stop()
            raise ServiceError(f"service {spec.name} not ready after {spec.ready_timeout_s:.0f} s: "
                               f"{one_line(tail(spec.log_path, 3))}")
        time.sleep(0.005)
    service.ready_s = time.monotonic() - started
    return service


def one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip()) or "no output"


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
