"""The command kind: the user's own program through the path, judged by its exit code and,
where given, patterns in its output (a pass line, a fail line, an fps figure)."""
import re
from typing import Any, Dict, List

from ..outcomes import Subtest, SubtestOutcome
from .base import STEP_TIMEOUT_S, Key, Step, StepRun, WorkloadKind, integer, pattern, positive_number, string_list, \
    string_table


class Command(WorkloadKind):
    name = "command"
    keys = {
        "argv": Key(string_list, "the program and its arguments, as a list", required=True),
        "expect_exit": Key(integer, "the exit code that passes", default=0),
        "pass_pattern": Key(pattern, "a regular expression its output must match to pass"),
        "fail_pattern": Key(pattern, "a regular expression that fails it where its output matches"),
        "fps_pattern": Key(pattern, "a regular expression whose first group is its frames per second"),
        "env": Key(string_table, "environment it gets besides the path's"),
        "timeout_s": Key(positive_number, "seconds it may take", default=STEP_TIMEOUT_S),
    }

    def steps(self, settings: Dict[str, Any]) -> List[Step]:
        argv = settings["argv"]
        name = argv[0].rsplit("/", 1)[-1]
        return [Step(name, tuple(argv), settings["timeout_s"], tuple(sorted(settings.get("env", {}).items())))]

    def judge_output(self, settings: Dict[str, Any], run: StepRun) -> Subtest:
        figures: Dict[str, float] = {}
        if "fps_pattern" in settings:
            found = re.search(settings["fps_pattern"], run.output, re.MULTILINE)
            if found and found.groups():
                try:
                    figures["fps"] = float(found.group(1))
                except ValueError:
                    pass
        wanted = settings["expect_exit"]
        if run.exit_code != wanted:
            return Subtest(run.name, SubtestOutcome.FAIL, f"exit {run.exit_code}, not {wanted}", run.seconds, figures)
        if "fail_pattern" in settings:
            found = re.search(settings["fail_pattern"], run.output, re.MULTILINE)
            if found:
                return Subtest(run.name, SubtestOutcome.FAIL, f"output matches the fail pattern: {found.group(0)[:120]!r}",
                               run.seconds, figures)
        if "pass_pattern" in settings and not re.search(settings["pass_pattern"], run.output, re.MULTILINE):
            return Subtest(run.name, SubtestOutcome.FAIL, "output does not match the pass pattern", run.seconds, figures)
        return Subtest(run.name, SubtestOutcome.PASS, f"exit {run.exit_code}", run.seconds, figures)


KIND = Command()
