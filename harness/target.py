"""A running instance of a path that a test sends commands to (the `machine` fixture): the
shape of QEMU's QEMUMachine and the NixOS test driver's BaseMachine, for every family.
`run()/succeed()/fail()` everywhere; `screenshot()` where the family has a display."""
import dataclasses
import itertools
from pathlib import Path
from typing import Optional, Type

from .lifecycle import Launch, LaunchContext, Workload
from .process import Child


class TargetError(Exception):
    """The target could not be started or a command could not be run; the message says why."""


@dataclasses.dataclass
class CommandResult:
    command: str
    exit_code: int
    output: str  # stdout and stderr together, as the command wrote them

    def __bool__(self) -> bool:
        return self.exit_code == 0


class Target:
    """Start it (or use it as a context manager), send commands, close it."""

    error: Type[TargetError] = TargetError  # what this family's targets raise

    def __init__(self, ctx: LaunchContext):
        self.ctx = dataclasses.replace(ctx, interactive=True)
        self.path_id = ctx.scenario.path_id
        self._screenshots = itertools.count(1)

    def start(self) -> "Target":
        raise NotImplementedError

    def run(self, command: str, timeout_s: float = 60.0) -> CommandResult:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def screenshot(self, name: Optional[str] = None) -> Path:
        raise self.error(f"{self.path_id} has no display to capture")

    def screenshot_path(self, name: Optional[str]) -> Path:
        return self.ctx.workspace.result_dir / f"{name or f'screenshot-{next(self._screenshots)}'}.png"

    def succeed(self, command: str, timeout_s: float = 60.0) -> str:
        result = self.run(command, timeout_s)
        if result.exit_code != 0:
            raise self.error(f"command failed with exit code {result.exit_code}: {command!r}\n{result.output}")
        return result.output

    def fail(self, command: str, timeout_s: float = 60.0) -> str:
        result = self.run(command, timeout_s)
        if result.exit_code == 0:
            raise self.error(f"command succeeded but was expected to fail: {command!r}\n{result.output}")
        return result.output

    def __enter__(self) -> "Target":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


class ProcessTarget(Target):
    """A host or sandbox path: its services stay up; each command runs as a fresh workload
    (`/bin/sh -c COMMAND`) launched exactly as the path launches a probe."""

    launch: Optional[Launch] = None

    def start(self) -> "ProcessTarget":
        spec = self.ctx.scenario.spec
        reason = spec.family.available(spec, self.ctx.toolset)
        if reason:
            raise TargetError(f"{self.path_id} cannot run here: {reason}")
        self.ctx.workspace.create()
        self.launch = spec.family.launch(self.ctx)
        try:
            self.launch.start()
        except Exception as exc:
            self.close()
            raise TargetError(f"{self.path_id} did not start: {exc}") from None
        if self.launch.result.problem:
            problem = self.launch.result.problem
            self.close()
            raise TargetError(f"{self.path_id} did not start: {problem}")
        self._commands = itertools.count(1)
        return self

    def run(self, command: str, timeout_s: float = 60.0) -> CommandResult:
        if self.launch is None:
            raise TargetError(f"the {self.path_id} target is not running")
        ctx = dataclasses.replace(self.ctx, workload=Workload(command=["/bin/sh", "-c", command]))
        plan = self.ctx.scenario.spec.family.plan(ctx)
        log = self.ctx.workspace.result_dir / f"command-{next(self._commands)}.log"
        child = Child(plan.argv, plan.process_env(), str(log))
        end = child.wait(timeout_s, watch=self.launch.service_failure)
        output = log.read_text(errors="replace")
        if end.timed_out:
            raise TargetError(f"command did not finish in {timeout_s:g} s: {command!r}")
        if end.stopped_because:
            raise TargetError(f"{end.stopped_because} during {command!r}")
        return CommandResult(command, end.code if end.code is not None else 128 + (end.signal or 0), output)

    def close(self) -> None:
        if self.launch is not None:
            self.launch.stop()
            self.launch = None
