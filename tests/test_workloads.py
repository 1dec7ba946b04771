"""Workload kinds: their declarations' one-line errors, piglit's parser on output captured from
the real tests, the generic judging of a step that crashed, hung or was not there, the subtest
check, and a declared probe carried through a scenario's round trips."""
import json
import tomllib
from pathlib import Path

import pytest

from harness.judging import baseline as baseline_mod
from harness import cli, matrix as matrix_mod
from harness.runtimes import recipes, builds
from harness.core.errors import InputError
from harness.matrix.writing import declaration_of
from harness.report import diff as diff_mod, records
from harness.scenario.model import Scenario
from harness.scenario.outcomes import FailureKind, Outcome, Subtest, SubtestOutcome
from harness.judging.verdict import Check, Verdict, subtest_check
from harness.workloads import piglit, registry
from harness.workloads.base import StepRun

FILES = Path(__file__).parent / "files" / "piglit"  # captured from Debian 12's piglit on llvmpipe


def declared(**table):
    probe, problems = registry.parse("mine", table)
    assert problems == []
    return probe


def problems_of(declaration):
    with pytest.raises(InputError) as err:
        matrix_mod.expand(declaration, "m.toml")
    return err.value.problems


def matrix_with(probes, names=("mine",)):
    return {"matrix": {"paths": ["software"], "probes": list(names)}, "probes": probes}


def run_of(name, **fields):
    return StepRun(name, **fields)


@pytest.mark.parametrize("test,outcome,detail", [
    ("fbo-alpha", SubtestOutcome.PASS, "pass"),
    ("fbo-clear-formats", SubtestOutcome.PASS, "38/38 subtests pass"),
    ("amd_compressed_atc_texture-miptree", SubtestOutcome.SKIP,
     "skip; Test requires GL_AMD_compressed_ATC_texture"),
    ("ext_transform_feedback-structs", SubtestOutcome.FAIL,
     "fail; interface - use interface blocks"),
])
def test_piglit_results_as_the_real_tests_print_them(test, outcome, detail):
    output = (FILES / f"{test}.txt").read_text()
    subtest = piglit.KIND.judge({}, run_of(test, exit_code=0, output=output, seconds=0.5))
    assert (subtest.name, subtest.outcome, subtest.detail, subtest.seconds) == (test, outcome,
                                                                                detail, 0.5)


def test_piglit_subtests_inside_a_test_are_counted_and_the_failing_ones_named():
    output = (FILES / "fbo-clear-formats.txt").read_text().replace('{"GL_RGBA16" : "pass"}',
                                                                   '{"GL_RGBA16" : "fail"}')
    word, inner = piglit.results(output)
    assert word == "pass" and len(inner) == 38 and inner["GL_RGBA16"] == "fail"
    assert piglit.KIND.judge({}, run_of("t",
                                        output=output)).detail == ("37/38 subtests pass: failing "
                                                                   "GL_RGBA16")


def test_a_test_with_no_result_line_fails_saying_so():
    subtest = piglit.KIND.judge({}, run_of("t", exit_code=1, output="Segmentation fault?\n"))
    assert subtest.outcome is SubtestOutcome.FAIL and subtest.detail == ("no PIGLIT result line "
                                                                         "(exit 1)")


@pytest.mark.parametrize("fields,outcome,detail", [
    ({"timed_out": True, "seconds": 30.2}, SubtestOutcome.TIMEOUT, "killed after 30.2 s"),
    ({"signal": 11}, SubtestOutcome.CRASH, "died by signal 11"),
    ({"not_found": "fbo-alpha"}, SubtestOutcome.SKIP, "fbo-alpha is not in the runtime"),
])
def test_any_kind_judges_a_hang_a_crash_and_a_missing_program_alike(fields, outcome, detail):
    for kind in registry.KINDS.values():
        subtest = kind.judge({"expect_exit": 0}, run_of("t", **fields))
        assert (subtest.outcome, subtest.detail) == (outcome, detail), kind.name


def test_the_probe_s_real_report_is_judged_test_by_test():
    reported = json.loads((FILES / "vtest-virgl-steps.json").read_text())
    probe = declared(kind="piglit", tests=[step["name"] for step in reported])
    subtests = registry.judge(probe, reported)
    assert [s.outcome for s in subtests] == [SubtestOutcome.PASS] * 4 + [SubtestOutcome.SKIP,
                                                                         SubtestOutcome.FAIL]
    check = subtest_check(subtests)
    assert not check.ok and check.kind is FailureKind.SUBTEST_FAILED
    assert check.detail.startswith("4/6 subtests pass, 1 fail, 1 skip: "
                                   "ext_transform_feedback-structs (fail: ")
    # A step the probe never reached (it died first) is a failure, not a silent gap.
    more = declared(kind="piglit", tests=[*[step["name"] for step in reported], "fbo-3d"])
    assert registry.judge(more, reported)[-1] == Subtest("fbo-3d", SubtestOutcome.FAIL,
                                                         "not run: the workload stopped before it")


def test_the_subtest_check_passes_on_passes_warnings_and_skips():
    subtests = [Subtest("a", SubtestOutcome.PASS), Subtest("b", SubtestOutcome.WARN),
                Subtest("c", SubtestOutcome.SKIP)]
    check = subtest_check(subtests)
    assert check.ok and check.detail == "2/3 subtests pass, 1 skip"


def test_the_command_kind_judges_exit_patterns_and_fps():
    probe = declared(kind="command", argv=["/usr/bin/app", "--bench"], pass_pattern="^done$",
                     fail_pattern="ERROR",
                     fps_pattern=r"fps: ([\d.]+)")
    kind, settings = registry.of(probe), probe.settings
    # the probe's name, not its program's (app)
    assert [s.name for s in registry.steps(probe)] == ["mine"]
    good = kind.judge(settings, run_of("mine", exit_code=0, output="fps: 59.5\ndone\n"))
    assert good.outcome is SubtestOutcome.PASS and good.figures == {"fps": 59.5}
    assert kind.judge(settings, run_of("app", exit_code=3,
                                       output="done\n")).detail == "exit 3, not 0"
    assert "fail pattern" in kind.judge(settings, run_of("app", exit_code=0,
                                                         output="ERROR x\ndone\n")).detail
    assert kind.judge(settings, run_of("app", exit_code=0,
                                       output="")).detail == ("output does not match the pass "
                                                              "pattern")


@pytest.mark.parametrize("probes,expected", [
    ({"mine": {"kind": "deqp"}},
     "m.toml: probes.mine.kind: must be one of piglit, trace, benchmark, command, not 'deqp'"),
    ({"mine": {"kind": "piglit"}},
     "m.toml: probes.mine.tests: give tests (binaries by name) or profile (piglit's runner), "
     "one of the two"),
    ({"mine": {"kind": "piglit", "tests": []}},
     "m.toml: probes.mine.tests: must be a non-empty list of non-empty strings"),
    ({"mine": {"kind": "piglit", "tests": ["a"], "argv": ["x"]}},
     "m.toml: probes.mine.argv: unknown key for kind piglit (allowed: kind, packages, tests, "
     "profile, test_list, include, exclude, fraction, jobs, run_timeout_s, args, platform, "
     "timeout_s)"),
    ({"mine": {"kind": "command", "argv": ["x"], "pass_pattern": "("}},
     "m.toml: probes.mine.pass_pattern: is not a regular expression: missing ), unterminated "
     "subpattern at position 0"),
    ({"mine": {"kind": "command", "argv": ["x"], "timeout_s": -1}},
     "m.toml: probes.mine.timeout_s: must be a positive number (seconds)"),
    ({"mine": "piglit"},
     "m.toml: probes.mine: must be a table with kind = one of piglit, trace, benchmark, command"),
    ({"gl": {"kind": "command", "argv": ["x"]}},
     "m.toml: probes.gl: 'gl' is a shipped probe's name; declare yours by another"),
])
def test_bad_declarations_are_one_line_each(probes, expected):
    names = list(probes)
    assert problems_of(matrix_with(probes, names)) == [expected]


def test_the_workload_probe_is_not_a_probe_by_its_own_name():
    (problem,) = problems_of({"matrix": {"paths": ["software"], "probes": ["workload"]}})
    assert problem.startswith("m.toml: matrix.probes[0]: unknown probe 'workload' (known: gl, "
                              "vulkan, kms, vfio; ")


def test_a_bad_declaration_on_the_command_line_is_exit_2(tmp_path, capsys):
    (tmp_path / "m.toml").write_text('[matrix]\npaths = ["software"]\nprobes = '
                                     '["mine"]\n[probes.mine]\nkind = "piglit"\n')
    assert cli.main(["list", "--matrix", str(tmp_path / "m.toml")]) == 2
    assert capsys.readouterr().err.strip().startswith("gpu-harness: error: ")


def test_a_declared_probe_pairs_where_gl_runs_and_survives_every_round_trip():
    loaded = matrix_mod.expand({"matrix": {"paths": ["software", "vtest-virgl", "vm-vfio-nested"],
                                           "probes": ["mine"]},
                                "probes": {"mine": {"kind": "piglit", "tests": ["fbo-alpha",
                                                                                "fbo-3d"],
                                                    "timeout_s": 20}}}, "m")
    assert [s.id for s in loaded.scenarios] == ["software/host/mine", "vtest-virgl/host/mine"]
    scenario = loaded.scenarios[0]
    assert scenario.probe_program == "workload" and scenario.golden == "gl"
    assert scenario.timeout_s == 60 + 2 * 20 and scenario.declared.packages == ("piglit",)
    assert Scenario.from_dict(json.loads(json.dumps(scenario.to_dict()))) == scenario
    assert matrix_mod.expand(declaration_of(scenario), "rerun").scenarios == [scenario]
    plan = registry.plan(scenario.declared)
    assert plan["steps"][0] == {"name": "fbo-alpha", "argv": ["fbo-alpha", "-auto", "-fbo"],
                                "timeout_s": 20.0,
                                "env": {"PIGLIT_PLATFORM": "surfaceless_egl"},
                                "search": list(piglit.BIN_DIRS)}


def test_a_runtime_without_the_program_says_what_to_install(tmp_path):
    probe = declared(kind="piglit", tests=["fbo-alpha"])
    assert registry.missing_in(probe,
                               tmp_path) == "the runtime has no fbo-alpha (Debian packages: piglit)"
    folder = tmp_path / "usr/lib/x86_64-linux-gnu/piglit/bin"
    folder.mkdir(parents=True)
    (folder / "fbo-alpha").write_text("")
    assert registry.missing_in(probe, tmp_path) is None


# --- baselines per subtest ------------------------------------------------------------------------

def subtest_verdict(*outcomes):
    subtests = [Subtest(f"t{i}", outcome, "x") for i, outcome in enumerate(outcomes)]
    check = subtest_check(subtests)
    outcome = Outcome.PASS if check.ok else Outcome.FAIL
    return Verdict(outcome, check.detail, [Check("renderer", True, "ok"), check],
                   None if check.ok else FailureKind.SUBTEST_FAILED, subtests=subtests)


def known_subtests(*entries):
    return baseline_mod.parse({"known": [{"match": "software/host/mine", "reason": "why", **e}
                                         for e in entries]},
                              "b.toml").subtests_known("software/host/mine")


def test_a_scenario_whose_only_failures_are_known_subtests_is_an_expected_fail():
    verdict = subtest_verdict(SubtestOutcome.PASS, SubtestOutcome.FAIL, SubtestOutcome.CRASH)
    judged = baseline_mod.apply_subtests(verdict, known_subtests({"kind": "failure",
                                                                  "subtest": "t[12]"}))
    assert (judged.outcome is Outcome.EXPECTED_FAIL
            and judged.reason.startswith("known failing subtests only (why): "))
    flaky = baseline_mod.apply_subtests(verdict, known_subtests({"kind": "flake", "subtest": "t*"}))
    assert flaky.outcome is Outcome.FLAKE


def test_a_failing_subtest_no_entry_knows_is_a_new_failure_named():
    verdict = subtest_verdict(SubtestOutcome.FAIL, SubtestOutcome.FAIL)
    judged = baseline_mod.apply_subtests(verdict, known_subtests({"kind": "failure",
                                                                  "subtest": "t0"}))
    assert judged.outcome is Outcome.FAIL and judged.reason.startswith("new failing subtests t1: ")


def test_a_known_failing_subtest_that_passes_is_an_unexpected_pass():
    judged = baseline_mod.apply_subtests(subtest_verdict(SubtestOutcome.PASS, SubtestOutcome.PASS),
                                         known_subtests({"kind": "failure", "subtest": "t1"}))
    assert judged.outcome is Outcome.UNEXPECTED_PASS and judged.reason.endswith(": t1")


def test_a_subtest_entry_does_not_know_the_whole_scenario():
    baseline = baseline_mod.parse({"known": [{"match": "software/host/mine", "kind": "failure",
                                              "reason": "r",
                                              "subtest": "t0"}]}, "b.toml")
    assert (baseline.known("software/host/mine") is None
            and len(baseline.subtests_known("software/host/mine")) == 1)


def test_baseline_update_writes_one_entry_per_failing_subtest_and_reads_it_back():
    scenario = {"id": "software/host/mine", "outcome": "Fail", "failure_kind": "subtest-failed",
                "reason": "r",
                "subtests": [Subtest("fbo-alpha", SubtestOutcome.PASS).to_dict(),
                             Subtest("fbo-3d", SubtestOutcome.FAIL, "fail; bad").to_dict()]}
    done = baseline_mod.update(records.entries([scenario]), None, "b.toml")
    assert [(e.match, e.subtest, e.said) for e in done.added] == [("software/host/mine", "fbo-3d",
                                                                   "fail: fail; bad")]
    text = baseline_mod.dumps(done.baseline)
    assert 'subtest = "fbo-3d"' in text
    again = baseline_mod.parse(tomllib.loads(text), "b.toml")
    assert again.entries == done.baseline.entries
    # nothing new to know
    assert baseline_mod.update(records.entries([scenario]), again, "b.toml").added == []


# --- diff per subtest
# -------------------------------------------------------------------------------

def test_diff_names_the_subtest_that_regressed_and_fails_on_it(tmp_path, capsys):
    def run(folder, outcomes):
        subtests = [Subtest(name, SubtestOutcome(o), "d").to_dict() for name, o in outcomes.items()]
        entry = {"id": "software/host/mine", "path": "software", "runtime": "host", "probe": "mine",
                 "outcome": "Pass" if all(o != "fail" for o in outcomes.values()) else "Fail",
                 "reason": "r",
                 "subtests": subtests}
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps({
            "schema": "gpu-harness/results/v1", "wall_s": 1.0, "summary": {},
            "toolset": {"tools": {}}, "scenarios": [entry]}))
        return tmp_path / folder

    old = run("old", {"a": "pass", "b": "fail", "c": "pass"})
    new = run("new", {"a": "fail", "b": "pass", "c": "pass", "d": "skip"})
    found = diff_mod.compare(diff_mod.load(old), diff_mod.load(new))
    assert [(c.subtest, c.kind.value, c.old, c.new) for c in found.subtests] == [
        ("a", "regression", "pass", "fail"), ("b", "fixed", "fail", "pass"), ("d", "added", None,
                                                                              "skip")]
    assert cli.main(["diff", str(old), str(new)]) == 1
    assert "regression software/host/mine a: pass -> fail (d)" in capsys.readouterr().out


# --- the workload's packages in a derived runtime
# ----------------------------------------------------

def test_a_built_runtime_gets_the_workload_s_packages_in_a_derived_one_and_the_host_never_does():
    loaded = matrix_mod.expand({"matrix": {"paths": ["software", "sandbox-dri"],
                                           "runtimes": ["host", "trixie"],
                                           "probes": ["gl", "mine"]},
                                "probes": {"mine": {"kind": "piglit", "tests": ["fbo-alpha"]}}},
                               "m")
    runtimes_of = {s.id: s.runtime for s in loaded.scenarios}
    assert runtimes_of["sandbox-dri/trixie/mine"].extra_packages == ("piglit",)
    assert runtimes_of["sandbox-dri/trixie/mine"].build_name == "trixie+piglit"
    assert runtimes_of["sandbox-dri/trixie/gl"].build_name == "trixie"
    assert runtimes_of["software/host/mine"].extra_packages == ()  # never installed into the host
    base = recipes.load_recipe("trixie")
    derived = builds.derived(base, ("piglit", "python3"))
    assert derived.name == "trixie+piglit+python3" and derived.packages == (*base.packages,
                                                                            "piglit")
    lock = recipes.load_lock(base)
    assert recipes.digest(derived, lock) != recipes.digest(base, lock)  # its own place in the cache
    assert builds.derived(base, ()) is base
