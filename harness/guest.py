"""An interactive guest: a VM path's machine, booted with a command agent instead of the probe,
for tests that drive a guest themselves (vmtests' `machine` fixture).

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
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from . import services as service_mod, toolset as toolset_mod
from .launchers import vm
from .launchers.base import Workload, Workspace
from .matrix import Scenario
from .toolset import Toolset
from .vm.machine import Machine, MachineError

BOOT_TIMEOUT_S = 120.0  # TCG on a 2-core machine boots in about 3 s; this bounds a broken guest


class GuestError(Exception):
    """The guest could not be started or a command could not be run; the message says why."""


@dataclass
class CommandResult:
    command: str
    exit_code: int
    output: str  # stdout and stderr together, as the command wrote them

    def __bool__(self) -> bool:
        return self.exit_code == 0


class Agent:
    """The host end of the command channel."""

    def __init__(self, path: str, timeout_s: float = 10.0):
        deadline = time.monotonic() + timeout_s
        while True:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._socket.connect(path)
                break
            except OSError as exc:
                self._socket.close()
                if time.monotonic() > deadline:
                    raise GuestError(f"cannot connect to the guest's command channel {path}: {exc}") from None
                time.sleep(0.02)
        self._buffer = b""
        self._ids = itertools.count(1)

    def run(self, command: str, timeout_s: float) -> CommandResult:
        number = next(self._ids)
        try:
            self._socket.sendall(f"{number} {base64.b64encode(command.encode()).decode()}\n".encode())
        except OSError as exc:
            raise GuestError(f"the guest closed its command channel before {command!r} ({exc})") from None
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
            if not chunk:
                raise GuestError(f"the guest closed its command channel during {command!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace").strip()

    def close(self) -> None:
        self._socket.close()


class Guest:
    """A running guest of one VM path. Use as a context manager, or call close()."""

    def __init__(self, scenario: Scenario, toolset: Toolset, workspace: Workspace):
        if scenario.spec.family != "vm":
            raise GuestError(f"{scenario.path} is not a VM path")
        skip = toolset_mod.unavailable_reason(toolset, scenario.spec)
        if skip:
            raise GuestError(f"{scenario.path} cannot run here: {skip}")
        self.scenario, self.workspace = scenario, workspace
        workspace.create()
        self.plan = vm.prepare(scenario, toolset, workspace, Workload(probe=scenario.probe), agent=True)
        self.services: List[service_mod.RunningService] = []
        self.machine: Optional[Machine] = None
        self._agent: Optional[Agent] = None
        self._screenshots = itertools.count(1)

    def start(self, boot_timeout_s: float = BOOT_TIMEOUT_S) -> "Guest":
        out = self.workspace.result_dir
        try:
            self.services = service_mod.start_all(self.plan.services)
            self.machine = Machine(self.plan.argv, self.plan.env, str(self.plan.qmp_socket), str(out / "qemu.log"),
                                   str(self.plan.serial_log))
            self.machine.start()
            self._agent = Agent(str(self.plan.agent_socket))
        except (service_mod.ServiceError, MachineError) as exc:
            self.close()
            raise GuestError(str(exc)) from None
        if not self.machine.wait_for_console("gpu-harness: AGENT-READY", boot_timeout_s):
            problem = vm.console_problem(self.console(), self.machine) or "no AGENT-READY on the console"
            tail = "\n".join(self.console().splitlines()[-15:])
            self.close()
            raise GuestError(f"{self.scenario.path} guest did not come up: {problem}\n{tail}")
        return self

    def __enter__(self) -> "Guest":
        return self.start() if self.machine is None else self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # Commands, in the style of the NixOS test driver: run() returns the result, succeed() and
    # fail() assert on the exit code and return the output.
    def run(self, command: str, timeout_s: float = 60.0) -> CommandResult:
        if self._agent is None or self.machine is None or not self.machine.running():
            raise GuestError(f"the {self.scenario.path} guest is not running")
        return self._agent.run(command, timeout_s)

    def succeed(self, command: str, timeout_s: float = 60.0) -> str:
        result = self.run(command, timeout_s)
        if result.exit_code != 0:
            raise GuestError(f"command failed with exit code {result.exit_code}: {command!r}\n{result.output}")
        return result.output

    def fail(self, command: str, timeout_s: float = 60.0) -> str:
        result = self.run(command, timeout_s)
        if result.exit_code == 0:
            raise GuestError(f"command succeeded but was expected to fail: {command!r}\n{result.output}")
        return result.output

    def screenshot(self, name: Optional[str] = None) -> Path:
        """The guest's display as captured from outside, saved as a PNG in the result folder."""
        if not self.scenario.spec.guest_gpu:
            raise GuestError(f"{self.scenario.path} has no display device to capture")
        target = self.workspace.result_dir / f"{name or f'screenshot-{next(self._screenshots)}'}.png"
        return Path(vm.capture_display(self.machine, self.plan.display, self.workspace, target))

    def wait_for_event(self, name: str, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            event = self.machine.event(name)
            if event is not None:
                return event
            time.sleep(0.02)
        raise GuestError(f"no {name} event within {timeout_s:g} s (seen: {[e['event'] for e in self.machine.events]})")

    def wait_for_console(self, text: str, timeout_s: float = 30.0) -> None:
        if not self.machine.wait_for_console(text, timeout_s):
            raise GuestError(f"{text!r} did not appear on the serial console within {timeout_s:g} s")

    def qmp(self, command: str, **arguments):
        return self.machine.qmp(command, **arguments)

    def console(self) -> str:
        return self.machine.console() if self.machine else ""

    @property
    def facts(self) -> dict:
        return dict(self.plan.facts)

    def close(self) -> None:
        """Stop QEMU and the services; safe to call twice."""
        if self._agent is not None:
            self._agent.close()
            self._agent = None
        if self.machine is not None:
            self.machine.stop()
        service_mod.stop_all(self.services)
