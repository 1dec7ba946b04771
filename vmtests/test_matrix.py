"""The shipped default matrix, each scenario a test that launches it for real."""
import re
from pathlib import Path

import pytest

from harness.host import diagnosis
from harness import matrix as matrix_mod
from harness.judging import verdict
from harness.scenario.model import LOCAL

from .conftest import describe, outcome_or_skip

DEFAULT = matrix_mod.load()


def default_param(scenario, first_on_machine: bool):
    """A default scenario as a test: it launches its family (on a machine, the guest does), and a
    machine's scenarios beyond its first are in the whole tier."""
    if scenario.machine != LOCAL:
        return pytest.param(scenario, marks=() if first_on_machine
                            else pytest.mark.full("machine-grid"), id=scenario.id)
    return pytest.param(scenario, marks=pytest.mark.launches(scenario.spec.family), id=scenario.id)


MACHINES = [s for s in DEFAULT.scenarios if s.machine != LOCAL]
PARAMS = [default_param(s, bool(MACHINES) and s is MACHINES[0]) for s in DEFAULT.scenarios]


@pytest.mark.parametrize("scenario", PARAMS)
def test_default_matrix_scenario(scenario, run_scenarios):
    (result,) = run_scenarios([scenario])
    outcome = outcome_or_skip(result)
    assert outcome in (verdict.PASS, verdict.EXPECTED_FAIL), describe(result)
    if outcome == verdict.PASS:
        data = result.report.raw
        assert data["ok"] and data["pixels_md5"], describe(result)
        assert result.launch.image_path and result.diff_path


def test_vtest_virgl_renders_through_virgl_with_no_dri(run_scenarios):
    (scenario,) = DEFAULT.select(["vtest-virgl"], "*/host/*")
    (result,) = run_scenarios([scenario])
    if outcome_or_skip(result) != verdict.PASS:
        pytest.fail(describe(result))
    data = result.report.raw
    assert data["renderer"].startswith("virgl (")
    assert data["isolation"]["dri_nodes"] == []
    assert data["isolation"]["host_paths_visible"] == 0
    assert result.launch.rss_kb["virgl_test_server"] > 0
    # What the server logs in a passing run is no evidence of a failure: each such line is known
    # (diagnosis.PASSING_SERVICE_LINES), and the evidence found in this log is none.
    lines = Path(result.launch.logs["virgl_test_server"]).read_text().splitlines()
    failing_words = [line.strip() for line in lines if re.search(r"fail|error", line, re.I)]
    assert failing_words and set(failing_words) <= diagnosis.PASSING_SERVICE_LINES, failing_words
    assert diagnosis.service_evidence(lines) == ""


def test_silent_llvmpipe_fallback_is_a_fail(run_scenarios):
    """vtest-virgl whose client is pointed at llvmpipe must not pass: the renderer check catches
    it."""
    scenarios = matrix_mod.expand({
        "matrix": {"paths": ["vtest-virgl"]},
        "override": [{"match": "*", "env": {"GALLIUM_DRIVER": "llvmpipe"}}],
    }, "<test>").scenarios
    (result,) = run_scenarios(scenarios)
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL
    assert "silent fallback to software" in result.verdict.reason
