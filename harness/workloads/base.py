"""What a workload kind is: how its [probes.NAME] table is checked, the steps that run inside the
path, and how each step's exit and output become a subtest."""
import abc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

from ..core.errors import cut, shown
from ..scenario.imagecompare import compare
from ..scenario.model import Tolerance
from ..scenario.outcomes import Subtest, SubtestOutcome

OUTPUT_TAIL = 16384  # bytes of a step's output the probe reports (the whole output is its log file)
STEP_TIMEOUT_S = 60.0
WORKLOAD_SLACK_S = 60.0  # the gl scene before the steps, and the start of the path
OUT = "{out}"  # in a step's argv and env: the probe's output folder as the path sees it
INPUTS = "inputs"  # the folder in the probe's output where a workload's own files are put
PICTURE_TOLERANCE = Tolerance()  # as the gl probe's image: software renderers differ in rounding


@dataclass(frozen=True)
class Step:
    """One program the workload probe runs inside the path: a subtest."""

    name: str
    argv: Tuple[str, ...]
    timeout_s: float = STEP_TIMEOUT_S
    env: Tuple[Tuple[str, str], ...] = ()
    # folder globs inside the runtime where argv[0] is looked up: where one is there, the program's
    # package is installed, and a name it lacks is misspelt (a failure), not a package to install (a
    # skip)
    search: Tuple[str, ...] = ()
    # other programs it starts, which the runtime must have too (a display's)
    also: Tuple[str, ...] = ()
    # an app on a display: shown this long, then its screen captured and the app ended
    show_s: Optional[float] = None

    @property
    def programs(self) -> Tuple[str, ...]:
        return (self.argv[0], *self.also)

    def to_dict(self) -> dict:
        return {"name": self.name, "argv": list(self.argv), "timeout_s": self.timeout_s,
                "env": dict(self.env),
                "search": list(self.search),
                **({"show_s": self.show_s} if self.show_s is not None else {})}


@dataclass(frozen=True)
class StepRun:
    """What the workload probe reported of one step."""

    name: str
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    timed_out: bool = False
    seconds: float = 0.0
    output: str = ""  # the tail of its stdout and stderr
    not_found: str = ""  # the program it could not find in the runtime
    out_dir: Optional[Path] = None  # the probe's output folder on the host (pictures a step made)
    path_renderer: str = ""  # the renderer the path gave the workload probe's gl scene
    searched: Tuple[str, ...] = ()  # not found: the step's search folders the runtime has
    near: Tuple[str, ...] = ()  # not found: the names in them closest to the program's
    # an app on a display: still running when its screen was captured (then ended by the probe)
    shown: bool = False
    # the GL and Vulkan drivers its processes had mapped when captured (what the toolkit drew with)
    drivers: Tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict, out_dir: Optional[Path] = None,
                  path_renderer: str = "") -> "StepRun":
        return cls(str(data.get("name", "?")), data.get("exit_code"), data.get("signal"),
                   bool(data.get("timed_out")),
                   float(data.get("seconds") or 0.0), str(data.get("output", "")),
                   str(data.get("not_found", "")),
                   out_dir, path_renderer, strings(data.get("searched")), strings(data.get("near")),
                   data.get("shown") is True, strings(data.get("drivers")))

    @property
    def ended(self) -> bool:
        """It ran to its end: found, neither killed nor timed out."""
        return not (self.not_found or self.timed_out or self.signal)


def strings(value: Any) -> Tuple[str, ...]:
    """A list of strings from the probe's report, as a tuple (anything else: none)."""
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def misnamed(kind: str, program: str, folders: Sequence[str], near: Sequence[str]) -> str:
    """A program the runtime's installed `kind` (its search folders are there) does not have, and
    the names there closest to it: a misspelt name."""
    where = ", ".join(cut(folder, 120) for folder in folders[:2])
    closest = f"nearest: {', '.join(cut(name) for name in near)}" if near else ("no name there is "
                                                                                "close")
    return f"{kind} has no {shown(program)} in {where} ({closest})"


class Problems:
    """A kind's complaints about its table: (`probes.NAME.key`, what is wrong); `base` is the folder
    a relative file name is read from (the matrix file's)."""

    def __init__(self, where: str, base: Path = Path(".")) -> None:
        self.where = where
        self.base = base
        self.found: List[Tuple[str, str]] = []

    def add(self, key: str, message: str) -> None:
        self.found.append((f"{self.where}.{key}", message))


Checker = Callable[[Problems, str, Any], Any]


def string_list(problems: Problems, key: str, value: Any) -> Any:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        problems.add(key, "must be a non-empty list of non-empty strings")
        return None
    return value


def optional_strings(problems: Problems, key: str, value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.add(key, "must be a list of non-empty strings")
        return None
    return value


def positive_number(problems: Problems, key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        problems.add(key, "must be a positive number (seconds)")
        return None
    return float(value)


def integer(problems: Problems, key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(key, "must be an integer")
        return None
    return value


def text(problems: Problems, key: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        problems.add(key, "must be a non-empty string")
        return None
    return value


def pattern(problems: Problems, key: str, value: Any) -> Any:
    if text(problems, key, value) is None:
        return None
    try:
        re.compile(value, re.MULTILINE)
    except re.error as exc:
        problems.add(key, f"is not a regular expression: {exc}")
        return None
    return value


def string_table(problems: Problems, key: str, value: Any) -> Any:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k,
                                              v in value.items()):
        problems.add(key, "must be a table of strings")
        return None
    return value


def host_file(problems: Problems, key: str, value: Any) -> Any:
    """A file on the host the workload reads (a trace): it must be there; relative to the matrix."""
    if text(problems, key, value) is None:
        return None
    path = (problems.base / value).resolve()
    if not path.is_file():
        problems.add(key, f"{path} is not a file")
        return None
    return str(path)


def host_files(problems: Problems, key: str, value: Any) -> Any:
    """Host files the workload reads, each put in {out}/inputs under its own name."""
    if optional_strings(problems, key, value) is None:
        return None
    found = [host_file(problems, key, item) for item in value]
    names = [Path(item).name for item in found if item]
    if len(set(names)) < len(names):
        problems.add(key, "two files have the same name (each is put in {out}/inputs by its name)")
        return None
    return found if all(found) else None


def golden_file(problems: Problems, key: str, value: Any) -> Any:
    """Where a golden picture is (or will be, once reviewed): relative to the matrix."""
    if text(problems, key, value) is None:
        return None
    return str((problems.base / value).resolve())


def flag(problems: Problems, key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        problems.add(key, "must be true or false")
        return None
    return value


def picture_subtest(name: str, picture: Path, golden: Path,
                    seconds: Optional[float] = None) -> Subtest:
    """A picture a step made against its golden (a missing golden is a fail that says how to make
    it)."""
    if not picture.is_file():
        return Subtest(name, SubtestOutcome.FAIL, f"no picture {picture.name} was made", seconds)
    if not golden.is_file():
        return Subtest(name, SubtestOutcome.FAIL,
                       f"no golden {golden}: review {picture} and copy it there", seconds)
    diff = picture.with_name(picture.stem + "-diff.png")
    comparison = compare(picture, golden, PICTURE_TOLERANCE, diff)
    outcome = SubtestOutcome.PASS if comparison.matched else SubtestOutcome.FAIL
    return Subtest(name, outcome, comparison.reason, seconds)


@dataclass(frozen=True)
class Key:
    check: Checker
    meaning: str
    required: bool = False
    default: Any = None


@dataclass
class Declared:
    """A kind's settings as checked, and the packages its programs come from."""

    settings: Dict[str, Any] = field(default_factory=dict)
    packages: Tuple[str, ...] = ()


class WorkloadKind(abc.ABC):
    """One kind of workload. A kind checks its table's keys, says what runs (steps) and judges
    each step's exit and output into a subtest; the probe inside stays the same for all kinds."""

    name: ClassVar[str]
    keys: ClassVar[Dict[str, Key]]
    packages: ClassVar[Tuple[str, ...]] = ()  # Debian packages its programs come from, by default

    def settings(self, table: Dict[str, Any], problems: Problems) -> Dict[str, Any]:
        found: Dict[str, Any] = {}
        for key, spec in self.keys.items():
            if key in table:
                value = spec.check(problems, key, table[key])
                if value is not None:
                    found[key] = value
            elif spec.required:
                problems.add(key, f"is required ({spec.meaning})")
            elif spec.default is not None:
                found[key] = spec.default
        return found

    @abc.abstractmethod
    def steps(self, settings: Dict[str, Any], probe: str) -> List[Step]:
        """What runs inside the path, in order: one step per subtest (`probe`: the declared probe's
        name)."""

    @abc.abstractmethod
    def judge_output(self, settings: Dict[str, Any], run: StepRun) -> Subtest:
        """The subtest a step that ran to its end (no signal, no timeout) made of its output."""

    def judge(self, settings: Dict[str, Any], run: StepRun) -> Subtest:
        # installed, but not under this name: a typo must not pass
        if run.not_found and run.searched:
            return Subtest(run.name, SubtestOutcome.FAIL, misnamed(self.name, run.not_found,
                                                                   run.searched, run.near),
                           run.seconds)
        if run.not_found:
            return Subtest(run.name, SubtestOutcome.SKIP, f"{run.not_found} is not in the runtime",
                           run.seconds)
        if run.timed_out:
            return Subtest(run.name, SubtestOutcome.TIMEOUT, f"killed after {run.seconds:.1f} s",
                           run.seconds)
        if run.signal:
            return Subtest(run.name, SubtestOutcome.CRASH, f"died by signal {run.signal}",
                           run.seconds)
        return self.judge_output(settings, run)

    def default_packages(self, settings: Dict[str, Any]) -> Tuple[str, ...]:
        """The Debian packages its programs come from, where the table names none."""
        return self.packages

    def shipped_in(self, settings: Dict[str, Any]) -> Optional[Tuple[str, str]]:
        """Where its programs come from when not from the runtime: ("bundle", a .flatpak);
        None: the runtime has them."""
        return None

    def inputs(self, settings: Dict[str, Any]) -> Dict[str, str]:
        """Host files the steps read, by the name they get in {out}/inputs (none by default)."""
        return {}

    def skipping(self, settings: Dict[str, Any], patterns: List[str]) -> Dict[str, Any]:
        """The settings that leave out the tests `patterns` (regular expressions) name, where the
        kind can leave tests out before they run; unchanged by default (they run, uncounted)."""
        return settings

    def runtime_problems(self, settings: Dict[str, Any], root: Path) -> List[Tuple[str, str]]:
        """(key, why) for settings the runtime at `root` cannot take (bad input, said before any
        scenario runs); none by default."""
        return []

    def judge_all(self, settings: Dict[str, Any], runs: Dict[str, StepRun],
                  probe: str) -> List[Subtest]:
        """Every subtest from the steps the probe reported: one per step unless a kind says
        otherwise."""
        return [self.judge(settings, runs[step.name]) if step.name in runs
                else self.judge_missing(step)
                for step in self.steps(settings, probe)]

    def judge_missing(self, step: Step) -> Subtest:
        """A step the probe never reported: it stopped before it (a crash, the scenario's
        timeout)."""
        return Subtest(step.name, SubtestOutcome.FAIL, "not run: the workload stopped before it")

    def timeout_s(self, settings: Dict[str, Any], probe: str) -> float:
        """The scenario's timeout where the matrix sets none: every step's, and the start."""
        return WORKLOAD_SLACK_S + sum(step.timeout_s for step in self.steps(settings, probe))
