"""The piglit kind, in two forms. `tests`: named piglit test binaries, each run as piglit runs it
(-auto -fbo), its `PIGLIT: {"result": ...}` line the subtest's outcome and its `{"subtest": ...}`
lines the detail. `profile`: piglit's own runner on one of the runtime's profiles (quick_gl,
quick_shader, ...), narrowed by a test list, include/exclude patterns and a fraction, each test
of its results file a subtest named as piglit names it (harness/probe/piglitrun.py inside)."""
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..core.errors import InputError, listed_lines
from ..scenario.outcomes import Subtest, SubtestOutcome
from ..scenario.probes import PROBE_DIR
from . import piglitprofiles, piglitresults
from .base import (OUT, STEP_TIMEOUT_S, Key, Problems, Step, StepRun, WorkloadKind, host_file,
                   integer, optional_strings, positive_number, string_list, text)

RESULT_LINE = re.compile(r"^PIGLIT: (\{.*\})\s*$", re.MULTILINE)
BIN_DIRS = ("/usr/lib/*/piglit/bin", "/usr/lib/piglit/bin", "/usr/local/lib/piglit/bin")
WORDS = piglitresults.WORDS


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


RUNNER = PROBE_DIR / "piglitrun.py"
PROFILE_FORM = ("test_list", "include", "exclude", "fraction", "jobs", "run_timeout_s")
PROFILE_RUN_S = 3600.0


def patterns(problems: Problems, key: str, value: Any) -> Any:
    if optional_strings(problems, key, value) is None:
        return None
    for item in value:
        try:
            re.compile(item)
        except re.error as exc:
            problems.add(key, f"{item!r} is not a regular expression: {exc}")
            return None
    return value


def fraction(problems: Problems, key: str, value: Any) -> Any:
    found = re.fullmatch(r"(\d+)/(\d+)", value) if isinstance(value, str) else None
    if not found or not 1 <= int(found.group(1)) <= int(found.group(2)):
        problems.add(key, "must be \"K/N\" with 1 <= K <= N (every N-th test from the K-th)")
        return None
    return value


def test_list(problems: Problems, key: str, value: Any) -> Any:
    """A file of piglit test names, one a line ('#' comments): it must name at least one."""
    path = host_file(problems, key, value)
    if path is None:
        return None
    try:
        names = listed_lines(Path(path), "a piglit test list")
    except InputError as exc:
        problems.add(key, str(exc))
        return None
    if not names:
        problems.add(key, f"{path} names no test")
        return None
    return path


class Piglit(WorkloadKind):
    name = "piglit"
    packages = ("piglit",)
    keys = {
        "tests": Key(string_list, "piglit test binaries by name, e.g. fbo-alpha"),
        "profile": Key(text, "a piglit profile the runtime's piglit ships (quick_gl, "
                       "quick_shader, sanity, ...), run by piglit's own runner"),
        "test_list": Key(test_list, "with profile: a file of piglit test names, one a line "
                         "(spec@a@b or spec/a/b), relative to the matrix"),
        "include": Key(patterns, "with profile: regular expressions; a test runs if one matches "
                       "its name"),
        "exclude": Key(patterns, "with profile: regular expressions; a test that one matches "
                       "does not run"),
        "fraction": Key(fraction, "with profile: \"K/N\", every N-th test from the K-th (as "
                        "deqp-runner's --fraction)"),
        "jobs": Key(integer, "with profile: piglit run's -j (default: piglit's own)"),
        "run_timeout_s": Key(positive_number, "with profile: seconds the whole run may take "
                             f"(default {PROFILE_RUN_S:g})"),
        "args": Key(optional_strings, "what each test is given", default=["-auto", "-fbo"]),
        "platform": Key(text, "PIGLIT_PLATFORM (waffle's platform)", default="surfaceless_egl"),
        "timeout_s": Key(positive_number, "seconds each test may take", default=STEP_TIMEOUT_S),
    }

    def settings(self, table: Dict[str, Any], problems: Problems) -> Dict[str, Any]:
        found = super().settings(table, problems)
        if ("tests" in table) == ("profile" in table):
            problems.add("tests", "give tests (binaries by name) or profile (piglit's runner), "
                         "one of the two")
        for key in PROFILE_FORM:
            if key in table and "profile" not in table:
                problems.add(key, "goes with profile")
        return found

    def inputs(self, settings: Dict[str, Any]) -> Dict[str, str]:
        if "profile" not in settings:
            return {}
        listed = settings.get("test_list")
        return {RUNNER.name: str(RUNNER), **({Path(listed).name: listed} if listed else {})}

    def skipping(self, settings: Dict[str, Any], patterns: List[str]) -> Dict[str, Any]:
        if "profile" not in settings or not patterns:
            return settings
        excluded = settings.get("exclude", [])
        return {**settings, "exclude": [*excluded, *(p for p in patterns if p not in excluded)]}

    def runtime_problems(self, settings: Dict[str, Any], root: Path) -> List[Tuple[str, str]]:
        return piglitprofiles.problems(root, settings) if "profile" in settings else []

    def steps(self, settings: Dict[str, Any], probe: str) -> List[Step]:
        env = (("PIGLIT_PLATFORM", settings["platform"]),)
        if "profile" in settings:
            return [Step(probe, runner_argv(settings),
                         settings.get("run_timeout_s", PROFILE_RUN_S), env,
                         also=("piglit",))]
        return [Step(test, (test, *settings["args"]), settings["timeout_s"], env, BIN_DIRS)
                for test in settings["tests"]]

    def judge_all(self, settings: Dict[str, Any], runs: Dict[str, StepRun],
                  probe: str) -> List[Subtest]:
        if "profile" not in settings:
            return super().judge_all(settings, runs, probe)
        run = runs.get(probe)
        if run is None:
            return [Subtest(probe, SubtestOutcome.FAIL, "piglit's runner did not report")]
        return piglitresults.judged(run, probe)

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


def runner_argv(settings: Dict[str, Any]) -> Tuple[str, ...]:
    inputs = f"{OUT}/inputs"
    argv = ["python3", f"{inputs}/{RUNNER.name}", OUT, settings["profile"]]
    if settings.get("test_list"):
        argv += ["--test-list", f"{inputs}/{Path(settings['test_list']).name}"]
    for key in ("include", "exclude"):
        for item in settings.get(key, []):
            argv += [f"--{key}", item]
    if settings.get("fraction"):
        argv += ["--fraction", settings["fraction"]]
    if settings.get("jobs"):
        argv += ["--jobs", str(settings["jobs"])]
    return (*argv, "--timeout", str(int(settings["timeout_s"])))


def last_words(output: str) -> str:
    """The test's last line that is not a result line: why it failed or skipped, in its words."""
    lines = [line.strip() for line in output.splitlines() if line.strip()
             and not RESULT_LINE.match(line.strip())]
    return lines[-1][:160] if lines else ""


KIND = Piglit()
