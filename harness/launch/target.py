"""The interface of a running path a test sends commands to (the `machine` fixture): the shape of
QEMU's QEMUMachine and the NixOS test driver's BaseMachine, for every family. `run()/succeed()/
fail()` everywhere; `screenshot()` where the family has a display. Each family makes its own."""
import abc
import dataclasses
import itertools
from pathlib import Path
from typing import Optional, Type

from .lifecycle import LaunchContext
from ..core.errors import ComponentError


class TargetError(ComponentError):
    """The target could not be started or a command could not be run; the message says why."""


@dataclasses.dataclass
class CommandResult:
    command: str
    exit_code: int
    output: str  # stdout and stderr together, as the command wrote them

    def __bool__(self) -> bool:
        return self.exit_code == 0


class Target(abc.ABC):
    """Start it (or use it as a context manager), send commands, close it."""

    error: Type[TargetError] = TargetError  # what this family's targets raise

    def __init__(self, ctx: LaunchContext):
        self.ctx = dataclasses.replace(ctx, interactive=True)
        self.path_id = ctx.scenario.path_id
        self._screenshots = itertools.count(1)

    @abc.abstractmethod
    def start(self) -> "Target":
        """Bring the path up (services, machine); raises this target's error if it cannot."""

    @abc.abstractmethod
    def run(self, command: str, timeout_s: float = 60.0) -> CommandResult:
        """Run one shell command through the path; its exit code and output."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop everything start() started; safe to call twice."""

    def screenshot(self, name: Optional[str] = None) -> Path:
        raise self.error(f"{self.path_id} has no display to capture")

    def screenshot_path(self, name: Optional[str]) -> Path:
        return (self.ctx.workspace.result_dir
                / f"{name or f'screenshot-{next(self._screenshots)}'}.png")

    def succeed(self, command: str, timeout_s: float = 60.0) -> str:
        result = self.run(command, timeout_s)
        if result.exit_code != 0:
            raise self.error(f"command failed with exit code {result.exit_code}: "
                             f"{command!r}\n{result.output}")
        return result.output

    def fail(self, command: str, timeout_s: float = 60.0) -> str:
        result = self.run(command, timeout_s)
        if result.exit_code == 0:
            raise self.error("command succeeded but was expected to fail: "
                             f"{command!r}\n{result.output}")
        return result.output

    def __enter__(self) -> "Target":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()
