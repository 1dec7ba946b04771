"""A VM path's guest booted with a command agent instead of the probe, for tests that drive a
guest themselves (vmtests' `machine` fixture).

The guest is the one the matrix boots for that path -- same kernel, initramfs recipe, QEMU argv,
display service and runtime root -- except that init, once the runtime root is mounted, reads
commands from its second serial port. Each command runs as a shell script chrooted into the
runtime root, with the scenario's environment; its exit code and output come back over the same
port. The channel is a unix socket on the host (a QEMU socket chardev), so it needs no network
and no guest agent package.
"""
import base64
import itertools
import socket
import time
from pathlib import Path
from typing import List, Optional

from ..lifecycle import LaunchContext
from ...system.retry import poll
from ..target import CommandResult, Target, TargetError
from ..vm import console, display
from ..vm.qemu_process import QemuProcess
from .base import Family
from .vm_launch import VmLaunch

BOOT_TIMEOUT_S = 120.0  # TCG on a 2-core machine boots in about 3 s; this bounds a broken guest
__all__ = ["Agent", "CommandResult", "Guest", "GuestError"]


class GuestError(TargetError):
    """The guest could not be started or a command could not be run; the message says why."""


class Agent:
    """The host end of the command channel."""

    def __init__(self, path: str, timeout_s: float = 10.0):
        errors: List[str] = []

        def connect() -> Optional[socket.socket]:
            channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                channel.connect(path)
                return channel
            except OSError as exc:
                channel.close()
                errors[:] = [str(exc)]
                return None

        connected = poll(connect, timeout_s)
        if connected is None:
            raise GuestError(f"cannot connect to the guest's command channel {path}: "
                             f"{errors[-1] if errors else ''}")
        self._socket = connected
        self._buffer = b""
        self._ids = itertools.count(1)

    def run(self, command: str, timeout_s: float) -> CommandResult:
        number = next(self._ids)
        try:
            self._socket.sendall((f"{number} "
                                  f"{base64.b64encode(command.encode()).decode()}\n").encode())
        except OSError as exc:
            raise GuestError(f"the guest closed its command channel before {command!r} "
                             f"({exc})") from None
        begin, deadline = f"BEGIN {number}", time.monotonic() + timeout_s
        encoded: List[str] = []
        started = False
        while True:
            line = self._read_line(deadline, command)
            if line == begin:
                started = True
            elif started and line.startswith(f"END {number} "):
                output = base64.b64decode("".join(encoded)).decode(errors="replace")
                return CommandResult(command, int(line.split()[2]), output)
            elif started:
                encoded.append(line)

    def _read_line(self, deadline: float, command: str) -> str:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GuestError(f"command did not finish in time: {command!r}")
            self._socket.settimeout(remaining)
            try:
                chunk = self._socket.recv(65536)
            except socket.timeout:
                continue
            except OSError as exc:
                raise GuestError(f"the guest closed its command channel during {command!r} "
                                 f"({exc})") from None
            if not chunk:
                raise GuestError(f"the guest closed its command channel during {command!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace").strip()

    def close(self) -> None:
        self._socket.close()


class Guest(Target):
    """A running guest of one VM path: its family's launch, started with the command agent."""

    error = GuestError

    def __init__(self, ctx: LaunchContext, family: Family):
        super().__init__(ctx)
        self.family = family
        launch = family.launch(self.ctx)
        assert isinstance(launch, VmLaunch), f"{family} does not launch a QEMU guest"
        self.launch = launch
        self._agent: Optional[Agent] = None

    @property
    def machine(self) -> QemuProcess:
        if self.launch.machine is None:
            raise GuestError(f"the {self.path_id} guest is not running")
        return self.launch.machine

    def start(self, boot_timeout_s: float = BOOT_TIMEOUT_S) -> "Guest":
        spec = self.ctx.scenario.spec
        reason = self.family.available(spec,
                                       self.ctx.toolset) or self.family.unavailable_in(self.ctx)
        if reason:
            raise GuestError(f"{self.path_id} cannot run here: {reason}")
        self.ctx.workspace.create()
        try:
            self.launch.start()
            if self.launch.result.problem:
                raise GuestError(self.launch.result.problem)
            self._agent = Agent(str(self.launch.agent_socket))
        except Exception as exc:
            self.close()
            raise GuestError(str(exc)) from None
        if not self.machine.wait_for_console(console.Marker.AGENT_READY.line, boot_timeout_s):
            text = self.console()
            failed = console.failure(text, self.machine.event("GUEST_PANICKED") is not None)
            problem = failed.message if failed else (f"no {console.Marker.AGENT_READY.value} on "
                                                     "the "
                                                     "console")
            tail = "\n".join(text.splitlines()[-15:])
            self.close()
            raise GuestError(f"{self.path_id} guest did not come up: {problem}\n{tail}")
        return self

    # Commands, in the style of the NixOS test driver: run() returns the result, succeed() and
    # fail() assert on the exit code and return the output.
    def run(self, command: str, timeout_s: float = 60.0) -> CommandResult:
        if self._agent is None or self.launch.machine is None or not self.launch.machine.running():
            raise GuestError(f"the {self.path_id} guest is not running")
        return self._agent.run(command, timeout_s)

    def screenshot(self, name: Optional[str] = None) -> Path:
        """The guest's display as captured from outside, saved as a PNG in the result folder."""
        if not self.ctx.scenario.spec.guest_gpu:
            raise GuestError(f"{self.path_id} has no display device to capture")
        return Path(display.capture(self.machine, self.launch.display, self.ctx.workspace,
                                    self.screenshot_path(name)))

    def wait_for_event(self, name: str, timeout_s: float = 30.0) -> dict:
        event = self.machine.wait_for_event(name, timeout_s)
        if event is None:
            raise GuestError(f"no {name} event within {timeout_s:g} s "
                             f"(seen: {[e['event'] for e in self.machine.events]})")
        return event

    def wait_for_console(self, text: str, timeout_s: float = 30.0) -> None:
        if not self.machine.wait_for_console(text, timeout_s):
            raise (GuestError(f"{text!r} did not appear on the serial console within {timeout_s:g} "
                              "s"))

    def qmp(self, command: str, **arguments):
        return self.machine.qmp(command, **arguments)

    def console(self) -> str:
        return self.launch.machine.console() if self.launch.machine else ""

    @property
    def facts(self) -> dict:
        return dict(self.launch.result.facts)

    def close(self) -> None:
        """Stop QEMU and the services; safe to call twice."""
        if self._agent is not None:
            self._agent.close()
            self._agent = None
        self.launch.stop()
