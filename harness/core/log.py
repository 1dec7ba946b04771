"""The harness's log: one tree of loggers under `gpu_harness` (a module takes `log.get(__name__)`),
the record of what the harness itself did and decided. Progress a person waits on is INFO (the
terminal shows it, as the command line configures); each decision, each program started with its
argv, each wait and its outcome is DEBUG. A run writes all of it into `harness.log` beside its
results (to_file), and each scenario's own records into its folder (scenario_part): a record
knows the scenario its thread works on (in_scenario)."""
import contextlib
import contextvars
import logging
from pathlib import Path
from typing import Iterator, Optional, Sequence

ROOT = "gpu_harness"
FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s%(scenario_tag)s: %(message)s"
DATE = "%Y-%m-%d %H:%M:%S"
THIRD_PARTIES = ("qemu.qmp",)  # libraries whose records a run's log takes too
_scenario: contextvars.ContextVar[str] = contextvars.ContextVar("gpu_harness_scenario", default="")


def get(module: str) -> logging.Logger:
    """The logger of a module of the package (`harness.run.runner` -> `gpu_harness.run.runner`)."""
    name = module.split(".", 1)[1] if module.startswith("harness.") else module
    return logging.getLogger(f"{ROOT}.{name}")


class ScenarioTag(logging.Filter):
    """Every record says the scenario its thread worked on (`[id]`), or nothing outside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        scenario = _scenario.get()
        record.scenario = scenario
        record.scenario_tag = f" [{scenario}]" if scenario else ""
        return True


class OfScenario(logging.Filter):
    def __init__(self, scenario: str):
        super().__init__()
        self.scenario = scenario

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "scenario", "") == self.scenario


def logger() -> logging.Logger:
    """The root of the tree: records of every level reach its handlers (each handler chooses)."""
    root = logging.getLogger(ROOT)
    root.setLevel(logging.DEBUG)
    return root


@contextlib.contextmanager
def in_scenario(scenario_id: str) -> Iterator[None]:
    """Records made in this block (in this thread) belong to the scenario."""
    token = _scenario.set(scenario_id)
    try:
        yield
    finally:
        _scenario.reset(token)


def file_handler(path: Path, only: Optional[logging.Filter] = None) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(FORMAT, DATE))
    # on the handler: a child logger's record skips the root's filters
    handler.addFilter(ScenarioTag())
    if only is not None:
        handler.addFilter(only)
    return handler


@contextlib.contextmanager
def to_file(path: Path, also: Sequence[str] = ()) -> Iterator[Path]:
    """Everything logged in the block, at every level, into `path` (the run's harness.log), and
    the records of the third-party loggers named in `also` (qemu.qmp: the QMP exchange)."""
    handler = file_handler(path)
    loggers = [logger(), *(logging.getLogger(name) for name in also)]
    for one in loggers:
        one.addHandler(handler)
    try:
        yield path
    finally:
        for one in loggers:
            one.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def scenario_part(scenario_id: str, path: Path) -> Iterator[None]:
    """The block's records of one scenario into its own file (its folder's harness.log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = file_handler(path, OfScenario(scenario_id))
    root = logger()
    root.addHandler(handler)
    try:
        with in_scenario(scenario_id):
            yield
    finally:
        root.removeHandler(handler)
        handler.close()


def to_stderr(level: int = logging.INFO) -> logging.Handler:
    """Records at `level` and above as plain lines on stderr (where no terminal styles them: a
    guest, whose stderr is its console log on the host)."""
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger().addHandler(handler)
    return handler


def quiet_third_parties(names: Sequence[str] = THIRD_PARTIES, level: int = logging.INFO) -> None:
    """Libraries' loggers reach only the handlers the harness gives them (to_file's `also`), at
    `level`: Python's last-resort handler must not print their warnings between a run's lines."""
    for name in names:
        third = logging.getLogger(name)
        third.setLevel(level)
        third.propagate = False
