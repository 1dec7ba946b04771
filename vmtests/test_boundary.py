"""The failure boundary: an exception in any phase of one scenario becomes that scenario's Fail
(failure_kind harness-error, the phase, the message), its services and machine are stopped, and
the other scenarios run on and are reported."""
import datetime
import json

import pytest

from harness import matrix as matrix_mod, report
from harness.judging import verdict
from harness.report import document as report_document
from harness.launch.lifecycle import Hooks, Phase
from harness.scenario.outcomes import FailureKind

from .conftest import describe, outcome_or_skip
from .test_faults import processes_mentioning


class Injected(RuntimeError):
    pass


def scenarios(*paths, **settings):
    return matrix_mod.expand({"matrix": {"paths": list(paths)}, "defaults": {"timeout_s": 120,
                                                                             **settings}},
                             "<test>").scenarios


def fault_in(phase, only=None, services=None):
    def before_phase(current, scenario_id):
        if current is phase and (only is None or scenario_id == only):
            raise Injected(f"injected into {phase}\nsecond line")

    return Hooks(services_ready=lambda running: services.extend(running)
                 if services is not None else None,
                 before_phase=before_phase)


@pytest.mark.parametrize("phase", list(Phase), ids=str)
@pytest.mark.parametrize("path", ["vtest-virgl", "vm-headless"])
def test_an_exception_in_any_phase_is_that_scenarios_fail(phase, path, run_scenarios):
    services = []
    (result,) = run_scenarios(scenarios(path), hooks=fault_in(phase, services=services))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL, describe(result)
    assert result.verdict.failure_kind is FailureKind.HARNESS_ERROR
    assert result.verdict.reason == (f"harness error during {phase}: Injected: injected into "
                                     f"{phase} | second line")
    assert all(service.child.poll() is not None
               for service in services), "a service outlived its scenario"
    assert processes_mentioning(str(result.result_dir)) == []
    if phase not in (Phase.PREPARE,):
        assert result.launch.argv, "the command is kept for the report"


def test_one_broken_scenario_does_not_stop_the_others(run_scenarios, toolset, tmp_path):
    results = run_scenarios(scenarios("software", "vtest-virgl"),
                            hooks=fault_in(Phase.WATCH, only="vtest-virgl/host/gl"), jobs=2)
    out = tmp_path / "report"
    out.mkdir()
    document = report_document.document(results, out, toolset,
                                        datetime.datetime.now(datetime.timezone.utc), "<test>")
    report.write_all(out, document)
    written = json.loads((out / "results.json").read_text())
    outcomes = {s["id"]: (s["outcome"], s["failure_kind"]) for s in written["scenarios"]}
    assert outcomes["software/host/gl"] == ("Pass", None), describe(results[0])
    outcome_or_skip(results[1])
    assert outcomes["vtest-virgl/host/gl"] == ("Fail", "harness-error")
    entry = next(s for s in written["scenarios"] if s["id"] == "vtest-virgl/host/gl")
    assert entry["harness_error"] == ("harness error during watch: Injected: injected into watch | "
                                      "second line")
    assert entry["command"][1:3] == ["--unshare-all", "--die-with-parent"]
    assert (out / "junit.xml").exists() and (out / "report.html").exists()
