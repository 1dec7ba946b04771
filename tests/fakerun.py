"""`python -m tests.fakerun SCRIPT ARGS...`: the real `gpu-harness ARGS...` with every scenario's
attempts scripted instead of launched, for tests of what a run makes of its verdicts (retries,
baselines, reports, exit codes) without a sandbox or a probe.

SCRIPT is a JSON file: {scenario id: [[outcome, failure class or null], ...]}, one pair per
attempt (the last repeats); a scenario not named passes."""
import json
import sys
from pathlib import Path

from harness import cli
from harness.run import runner
from harness.launch.lifecycle import LaunchResult
from harness.judging.scenario_result import ScenarioResult
from harness.scenario.outcomes import FailureKind, Outcome
from harness.judging.verdict import Verdict


def scripted(script: dict):
    attempts: dict = {}

    def attempt(scenario, toolset, options, temp, result_dir, host, hooks):
        number = attempts[scenario.id] = attempts.get(scenario.id, 0) + 1
        steps = script.get(scenario.id, [["Pass", None]])
        outcome, kind = steps[min(number, len(steps)) - 1]
        result_dir.mkdir(parents=True, exist_ok=True)
        verdict = Verdict(Outcome(outcome), f"{outcome} on attempt {number}", [],
                          FailureKind(kind) if kind else None)
        return ScenarioResult(scenario, verdict, LaunchResult(), None, result_dir, 0.01)

    return attempt


if __name__ == "__main__":
    runner.attempt = scripted(json.loads(Path(sys.argv[1]).read_text()))
    sys.exit(cli.main(sys.argv[2:]))
