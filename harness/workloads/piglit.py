"""The piglit kind: named piglit tests, each one binary run as piglit runs it (-auto -fbo), its
`PIGLIT: {"result": ...}` line the subtest's outcome and its `{"subtest": ...}` lines the detail."""
import json
import re
from typing import Any, Dict, List, Optional, Tuple

from ..scenario.outcomes import Subtest, SubtestOutcome
from .base import (STEP_TIMEOUT_S, Key, Step, StepRun, WorkloadKind, optional_strings,
                   positive_number, string_list, text)

RESULT_LINE = re.compile(r"^PIGLIT: (\{.*\})\s*$", re.MULTILINE)
BIN_DIRS = ("/usr/lib/*/piglit/bin", "/usr/lib/piglit/bin", "/usr/local/lib/piglit/bin")
WORDS = {"pass": SubtestOutcome.PASS, "fail": SubtestOutcome.FAIL, "skip": SubtestOutcome.SKIP,
         "warn": SubtestOutcome.WARN, "crash": SubtestOutcome.CRASH,
         "timeout": SubtestOutcome.TIMEOUT}


def results(output: str) -> Tuple[Optional[str], Dict[str, str]]:
    """The test's own result word (None if it printed none) and each of its subtests' words."""
    result: Optional[str] = None
    subtests: Dict[str, str] = {}
    for match in RESULT_LINE.finditer(output):
        try:
            data = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("result"), str):
            result = data["result"]
        if isinstance(data, dict) and isinstance(data.get("subtest"), dict):
            subtests.update({str(k): str(v) for k, v in data["subtest"].items()})
    return result, subtests


class Piglit(WorkloadKind):
    name = "piglit"
    packages = ("piglit",)
    keys = {
        "tests": Key(string_list, "piglit test binaries by name, e.g. fbo-alpha", required=True),
        "args": Key(optional_strings, "what each test is given", default=["-auto", "-fbo"]),
        "platform": Key(text, "PIGLIT_PLATFORM (waffle's platform)", default="surfaceless_egl"),
        "timeout_s": Key(positive_number, "seconds each test may take", default=STEP_TIMEOUT_S),
    }

    def steps(self, settings: Dict[str, Any], probe: str) -> List[Step]:
        env = (("PIGLIT_PLATFORM", settings["platform"]),)
        return [Step(test, (test, *settings["args"]), settings["timeout_s"], env, BIN_DIRS)
                for test in settings["tests"]]

    def judge_output(self, settings: Dict[str, Any], run: StepRun) -> Subtest:
        word, subtests = results(run.output)
        failing = sorted(name for name, result in subtests.items()
                         if WORDS.get(result, SubtestOutcome.FAIL).failed)
        inner = f"{len(subtests) - len(failing)}/{len(subtests)} subtests pass" if subtests else ""
        if failing:
            inner += ": failing " + ", ".join(failing[:8]) + (", ..." if len(failing) > 8 else "")
        if word is None:
            return Subtest(run.name, SubtestOutcome.FAIL,
                           f"no PIGLIT result line (exit {run.exit_code})"
                           + (f"; {inner}" if inner else ""), run.seconds)
        outcome = WORDS.get(word)
        if outcome is None:
            return Subtest(run.name, SubtestOutcome.FAIL, f"unknown result {word!r}", run.seconds)
        said = last_words(run.output) if outcome.failed or outcome is SubtestOutcome.SKIP else ""
        return Subtest(run.name, outcome, "; ".join(part for part in (inner or word, said) if part),
                       run.seconds)


def last_words(output: str) -> str:
    """The test's last line that is not a result line: why it failed or skipped, in its words."""
    lines = [line.strip() for line in output.splitlines() if line.strip()
             and not RESULT_LINE.match(line.strip())]
    return lines[-1][:160] if lines else ""


KIND = Piglit()
