"""piglit's results file read back: each test of a profile run a subtest, named as piglit names it,
with its result, its time and its last words; piglit's own subtests counted in the detail."""
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping

from ..core.errors import ComponentError
from ..scenario.outcomes import Subtest, SubtestOutcome
from .base import StepRun

WORDS = {"pass": SubtestOutcome.PASS, "fail": SubtestOutcome.FAIL, "skip": SubtestOutcome.SKIP,
         "warn": SubtestOutcome.WARN, "crash": SubtestOutcome.CRASH,
         "timeout": SubtestOutcome.TIMEOUT,
         # piglit's kernel-log and unfinished results
         "dmesg-warn": SubtestOutcome.WARN, "dmesg-fail": SubtestOutcome.FAIL,
         "incomplete": SubtestOutcome.CRASH, "notrun": SubtestOutcome.SKIP}
RESULTS = Path("piglit", "results", "results.json")  # in the probe's output folder
SELECTION = Path("piglit", "selection.json")
LAST_WORDS = 160


class PiglitResultsError(ComponentError):
    """piglit's results file is not one piglit writes (no tests table)."""


def last_words(test: Mapping[str, Any]) -> str:
    """The test's last line on stderr, else on stdout: why it failed or skipped, in its words."""
    for stream in ("err", "out"):
        lines = [line.strip() for line in str(test.get(stream) or "").splitlines()
                 if line.strip() and not line.startswith("PIGLIT:")]
        if lines:
            return lines[-1][:LAST_WORDS]
    return ""


def seconds(test: Mapping[str, Any]) -> float:
    time = test.get("time")
    if isinstance(time, Mapping):
        try:
            return round(max(float(time["end"]) - float(time["start"]), 0.0), 3)
        except (KeyError, TypeError, ValueError):
            return 0.0
    return 0.0


def subtest(name: str, test: Mapping[str, Any]) -> Subtest:
    word = str(test.get("result", ""))
    outcome = WORDS.get(word)
    if outcome is None:
        return Subtest(name, SubtestOutcome.FAIL, f"unknown result {word!r}", seconds(test))
    found = test.get("subtests")
    # piglit's JSON marks the table's own type in it ("__type__": "Subtests")
    inner = ({str(key): value for key, value in found.items() if key != "__type__"}
             if isinstance(found, Mapping) else {})
    failing = sorted(key for key, value in inner.items()
                     if WORDS.get(str(value), SubtestOutcome.FAIL).failed)
    parts = [f"{len(inner) - len(failing)}/{len(inner)} subtests pass" if inner else word]
    if failing:
        parts[0] += ": failing " + ", ".join(failing[:4]) + (", ..." if len(failing) > 4 else "")
    if outcome.failed or outcome is SubtestOutcome.SKIP:
        said = last_words(test)
        parts += [said] if said else []
    return Subtest(name, outcome, "; ".join(parts), seconds(test))


def read(path: Path) -> Dict[str, Mapping[str, Any]]:
    """The tests of a piglit JSON results file (results_version 10), by name."""
    data = json.loads(path.read_text(errors="replace"))
    tests = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(tests, dict):
        raise PiglitResultsError(f"{path} has no tests table")
    return {str(name): test for name, test in tests.items() if isinstance(test, Mapping)}


def judged(run: StepRun, probe: str) -> List[Subtest]:
    """Every test of the run as a subtest, sorted by name; one failing subtest named after the
    probe where piglit's runner wrote no results (its own words say why)."""
    if run.out_dir is None:
        return [Subtest(probe, SubtestOutcome.FAIL, "piglit's results are not on the host")]
    path = run.out_dir / RESULTS
    if not path.is_file():
        said = [line for line in run.output.splitlines() if line.strip()]
        why = said[-1][:300] if said else f"exit {run.exit_code}"
        state = "timed out" if run.timed_out else f"exit {run.exit_code}"
        return [Subtest(probe, SubtestOutcome.FAIL, f"piglit run wrote no results ({state}): "
                        f"{why}", run.seconds)]
    try:
        tests = read(path)
    except (OSError, ValueError, PiglitResultsError) as exc:
        return [Subtest(probe, SubtestOutcome.FAIL, f"piglit's results cannot be read: {exc}",
                        run.seconds)]
    return [subtest(name, tests[name]) for name in sorted(tests)] + not_in_profile(run.out_dir)


def not_in_profile(out_dir: Path) -> List[Subtest]:
    """A failing subtest for each name the test list gave that the profile does not have (a
    misspelt name must not pass unnoticed)."""
    try:
        chosen = json.loads((out_dir / SELECTION).read_text())
    except (OSError, ValueError):
        return []
    missing = chosen.get("not_in_profile") if isinstance(chosen, dict) else None
    profile = chosen.get("profile", "?") if isinstance(chosen, dict) else "?"
    return [Subtest(str(name), SubtestOutcome.FAIL, f"not a test of profile {profile} (the test "
                    "list names it)") for name in (missing if isinstance(missing, list) else [])]
