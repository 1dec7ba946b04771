"""Mesa CI's expectation files (deqp-runner's and piglit-runner's): read into a baseline, and a
run's subtests written back in them.

    *-fails.txt    test,Status a line (Fail, Crash, Timeout, ...): the tests known to fail
    *-flakes.txt   a regular expression a line: the tests known to flake
    *-skips.txt    a regular expression a line: the tests not to count
    results.csv    test,Status,duration a line, no header, sorted by test
    failures.csv   the lines of results.csv that are not what the baseline expects

Blank lines and lines starting with '#' are comments, as deqp-runner reads them. A bad line is
an InputError naming its file and line."""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..core.errors import InputError, cut, listed_lines, shown
from ..scenario.outcomes import Subtest, SubtestOutcome
from . import baseline as baseline_mod
from .baseline import Baseline, Kind, Known

# deqp-runner's RunnerStatus names, as its files spell them
STATUS = {SubtestOutcome.PASS: "Pass", SubtestOutcome.FAIL: "Fail", SubtestOutcome.SKIP: "Skip",
          SubtestOutcome.WARN: "Warn", SubtestOutcome.CRASH: "Crash",
          SubtestOutcome.TIMEOUT: "Timeout"}
# what a fails file may say a test does (deqp-runner takes any status there; these are failures)
FAILING = ("Fail", "Crash", "Timeout", "Warn", "Missing", "ExpectedFail")


@dataclass(frozen=True)
class Expected:
    """One test a fails file names, with its status and where it said so."""

    test: str
    status: str
    line: int


def lines(path: Path, what: str) -> List[Tuple[int, str]]:
    """The file's lines that are not comments, numbered from 1."""
    if not path.is_file():
        raise InputError(f"{path}: cannot read {what}: no such file")
    return listed_lines(path, what)


def read_fails(path: Path) -> List[Expected]:
    problems, found = [], []
    for number, line in lines(path, "a fails file"):
        test, comma, status = line.rpartition(",")
        if not comma or not test.strip():
            problems.append(f"{path}:{number}: {shown(cut(line, 80))} has no comma (test,Status)")
        elif status.strip() not in FAILING:
            problems.append(f"{path}:{number}: unknown status {shown(status.strip())} (one of "
                            f"{', '.join(FAILING)})")
        else:
            found.append(Expected(test.strip(), status.strip(), number))
    if problems:
        raise InputError(problems)
    return found


def read_patterns(path: Path, what: str) -> List[Tuple[str, int]]:
    problems, found = [], []
    for number, line in lines(path, what):
        try:
            re.compile(line)
        except re.error as exc:
            problems.append(f"{path}:{number}: {shown(cut(line, 80))} is not a regular "
                            f"expression: {exc}")
            continue
        found.append((line, number))
    if problems:
        raise InputError(problems)
    return found


def to_baseline(fails: Path, flakes: Optional[Path] = None, skips: Optional[Path] = None,
                match: str = "*") -> Baseline:
    """The baseline the files say, for the scenarios `match` (a glob over ids) names: each failing
    test a known failure of that subtest, each flake and skip pattern a known flake or skip."""
    entries = []
    for expected in read_fails(fails):
        exact = baseline_mod.GLOB.search(expected.test) is None
        entries.append(Known(match, Kind.FAILURE, f"{fails.name}:{expected.line}: "
                             f"{expected.status}",
                             subtest=expected.test if exact else None,
                             subtest_regex=None if exact else f"^{re.escape(expected.test)}$"))
    for path, kind in ((flakes, Kind.FLAKE), (skips, Kind.SKIP)):
        if path is not None:
            entries += [Known(match, kind, f"{path.name}:{number}", subtest_regex=pattern)
                        for pattern, number in read_patterns(path, f"a {kind} file")]
    return Baseline(str(fails), tuple(entries))


def beside(fails: Path) -> Tuple[Optional[Path], Optional[Path]]:
    """The flakes and skips files Mesa CI keeps beside a fails file (NAME-fails.txt's
    NAME-flakes.txt and NAME-skips.txt), where they are."""
    if not fails.name.endswith("-fails.txt"):
        return None, None
    stem = fails.name[:-len("-fails.txt")]
    found = [fails.with_name(f"{stem}-{what}.txt") for what in ("flakes", "skips")]
    return found[0] if found[0].is_file() else None, found[1] if found[1].is_file() else None


def load(path: Path) -> Baseline:
    """`run --baseline NAME-fails.txt`: the fails file and the flakes and skips beside it."""
    flakes, skips = beside(path)
    return to_baseline(path, flakes, skips)


def load_any(path: Path) -> Baseline:
    """A baseline file (TOML), or Mesa CI's fails file (.txt) with its flakes and skips."""
    return load(Path(path)) if Path(path).suffix == ".txt" else baseline_mod.load(Path(path))


def status(subtest: Subtest, entry: Optional[Known]) -> str:
    """A subtest's deqp-runner status under the baseline entry that knows it."""
    said = STATUS.get(subtest.outcome, "Fail")
    if entry is None:
        return said
    if entry.kind is Kind.FLAKE and subtest.outcome.failed:
        return "Flake"
    if entry.kind is Kind.SKIP:
        return "Skip"
    if entry.kind is Kind.FAILURE and not subtest.outcome.failed:
        return f"UnexpectedImprovement({said})"
    return "ExpectedFail" if subtest.outcome.failed else said


UNEXPECTED = ("Fail", "Crash", "Timeout", "Warn", "Missing")


def csv_rows(subtests: Sequence[Subtest], known: Sequence[Known],
             prefix: str = "") -> List[Tuple[str, str, str]]:
    """(test, status, seconds) for each subtest, sorted by test, as results.csv has them."""
    index = baseline_mod.SubtestIndex(known)
    rows = []
    for subtest in subtests:
        entry = index.find(subtest.name)
        seconds = f"{(subtest.seconds or 0.0):.3f}"
        rows.append((prefix + subtest.name, status(subtest, entry), seconds))
    return sorted(rows)


def failures(rows: Sequence[Tuple[str, str, str]]) -> List[Tuple[str, str, str]]:
    """The rows a run with this baseline fails on: new failures and unexpected improvements."""
    return [row for row in rows if row[1] in UNEXPECTED or row[1].startswith("UnexpectedImprov")]


def csv_text(rows: Sequence[Tuple[str, ...]]) -> str:
    return "".join(",".join(row) + "\n" for row in rows)


def fails_text(rows: Sequence[Tuple[str, str, str]]) -> str:
    """A fails file from a run: its failing tests with their status."""
    return "".join(f"{test},{said}\n" for test, said, _ in rows if said in FAILING)
