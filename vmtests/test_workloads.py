"""Workloads for real: piglit's tests and a user's command through a sandbox, a vtest path, a
Flatpak, a container (the runtime derived with piglit in it) and a VM, each judged test by test,
and the path's own renderer underneath."""
from harness import matrix as matrix_mod, runner, verdict
from harness.outcomes import SubtestOutcome
from harness.workloads import registry

from .conftest import describe, outcome_or_skip, run_leaving_nothing

CONFORMANCE = matrix_mod.DEFAULT_MATRIX.parent / "conformance.toml"
BASELINE = matrix_mod.DEFAULT_MATRIX.parent / "conformance.baseline.toml"
FAMILIES = {"host", "sandbox", "container", "flatpak", "vm"}


def test_the_conformance_matrix_through_every_family(toolset, tmp_path):
    """piglit's quick subset and a user's command (glinfo) through a sandbox, vtest, a container
    (trixie derived with piglit), a Flatpak and a VM: each test judged, the baseline's known
    subtest failures the only failures, the command seeing the renderer the path gives."""
    from harness import baseline as baseline_mod

    scenarios = matrix_mod.load(CONFORMANCE).scenarios
    assert {s.spec.family for s in scenarios} == FAMILIES
    assert {s.runtime.build_name for s in scenarios if s.runtime.name == "trixie"} == {"trixie+piglit"}
    known = baseline_mod.load(BASELINE)
    results = run_leaving_nothing(scenarios, toolset, runner.RunOptions(out_dir=tmp_path / "out", jobs=2,
                                                                        baseline=known))
    for result in results:
        if outcome_or_skip(result) == verdict.SKIP:
            continue
        assert result.verdict.outcome in (verdict.PASS, verdict.EXPECTED_FAIL), describe(result)
        subtests = result.verdict.subtests
        declared = result.scenario.declared
        assert [s.name for s in subtests] == [step.name for step in registry.steps(declared)]
        failing = [s.name for s in subtests if s.outcome.failed]
        assert all(known.subtests_known(result.scenario.id) and s == "fbo-blending-format-quirks" for s in failing)
        steps = result.report.raw["steps"]
        if result.scenario.probe == "glinfo":  # the user's program got the renderer the path's gl scene got
            assert f"GL_RENDERER = {result.report.renderer}\n" in steps[0]["output"], steps[0]["output"][:300]
        else:
            assert {s.outcome for s in subtests} <= {SubtestOutcome.PASS, SubtestOutcome.FAIL}
            assert next(s for s in subtests if s.name == "fbo-clear-formats").detail == "38/38 subtests pass"
        assert all((result.result_dir / "probe" / step["log"]).exists() for step in steps)


def test_a_failing_test_fails_the_scenario_naming_it_and_a_baseline_knows_it(toolset, tmp_path):
    declaration = {"matrix": {"paths": ["vtest-virgl"], "probes": ["mixed"]},
                   "probes": {"mixed": {"kind": "piglit", "tests": ["fbo-alpha", "ext_transform_feedback-structs"]}}}
    (scenario,) = matrix_mod.expand(declaration, "<test>").scenarios
    (result,) = run_leaving_nothing([scenario], toolset, runner.RunOptions(out_dir=tmp_path / "out"))
    if outcome_or_skip(result) == verdict.SKIP:
        return
    assert result.verdict.outcome is verdict.FAIL and result.verdict.failure_kind.value == "subtest-failed"
    assert result.verdict.reason.startswith("1/2 subtests pass, 1 fail: ext_transform_feedback-structs (fail: ")
    from harness import baseline as baseline_mod

    known = baseline_mod.parse({"known": [{"match": scenario.id, "kind": "failure", "subtest": "ext_transform_*",
                                           "reason": "it wants arguments"}]}, "b.toml")
    (again,) = run_leaving_nothing([scenario], toolset, runner.RunOptions(out_dir=tmp_path / "again", baseline=known))
    assert again.verdict.outcome is verdict.EXPECTED_FAIL, describe(again)
