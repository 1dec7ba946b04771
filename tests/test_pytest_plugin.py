"""The pytest plugin (harness/pytest_plugin.py): the example project's own suite run for real by
a pytest of its own (the plugin found through its entry point, as an installed package gives it),
its counts against what each path can do here; a project whose commands fail, skip, xfail, draw a
picture or are declared wrong; bad matrices as one usage error; and the plugin's pure logic.

Real runs use the paths that need no VM (native, software, vtest-virgl, sandbox-dri on the host
runtime): a few seconds each."""
import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Tuple

import pytest

from harness.scenario import paths as path_registry
from harness import pytest_plugin as plugin
from harness.runtimes import chosen_toolset
from harness.core.errors import InputError
from harness.launch.families import registry
from harness.matrix import expand, read_declaration
from harness.scenario.outcomes import Outcome, Subtest, SubtestOutcome

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "pytest-project"
PICTURE = ROOT / "harness" / "data" / "workloads" / "gl-picture.py"
PICTURE_GOLDEN = ROOT / "harness" / "data" / "workloads" / "gl-picture.golden.png"
REQUIRED = plugin.required_paths(None)


@pytest.fixture(scope="module")
def unavailable():
    """Why each path cannot run here (None: it can), as the harness itself decides before a
    launch."""
    toolset = chosen_toolset.load()
    return lambda path: registry.of_path(path).available(path_registry.get(path), toolset)


def run_pytest(project: Path, tmp_path: Path,
               *args: str) -> Tuple[subprocess.CompletedProcess, Dict[str, tuple]]:
    """pytest on `project` in a process of its own, the plugin loaded by its entry point; each
    test's outcome from the JUnit file: name -> (passed | failed | skipped | xfailed, message)."""
    junit = tmp_path / f"junit-{len(list(tmp_path.glob('junit-*')))}.xml"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS",
                                                            "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
                                                            "GPU_HARNESS_REQUIRE")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                           f"--basetemp={tmp_path / 'basetemp'}", f"--junitxml={junit}", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=400)
    outcomes: Dict[str, tuple] = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            marks = {child.tag: child for child in case if child.tag in ("failure", "error",
                                                                         "skipped")}
            if "failure" in marks or "error" in marks:
                found = marks.get("failure", marks.get("error"))
                outcomes[case.get("name", "")] = ("failed", found.get("message",
                                                                      "") + (found.text or ""))
            elif "skipped" in marks:
                kind = "xfailed" if marks["skipped"].get("type") == "pytest.xfail" else "skipped"
                outcomes[case.get("name", "")] = (kind, marks["skipped"].get("message", ""))
            else:
                outcomes[case.get("name", "")] = ("passed", "")
    return done, outcomes


def expected_outcome(path: str, why_not) -> str:
    reason = why_not(path)
    return "passed" if reason is None else ("failed" if path in REQUIRED else "skipped")


# --- the example project, for real ----------------------------------------------------------------

def test_the_example_projects_suite_passes_where_its_paths_run(tmp_path, unavailable):
    out = tmp_path / "out"
    # One retry: virgl_test_server's process for a client has been seen to die mid-frames once
    # in a CI run (the client aborts: service-died). A Fail then a Pass is a Flake, which the
    # plugin's test passes on and results.json says; this test is about the plugin, not virgl.
    done, outcomes = run_pytest(EXAMPLE, tmp_path, f"--gpu-harness-out={out}",
                                "--gpu-harness-retries=1")
    fixture_paths, matrix_paths = ("native", "vtest-virgl"), ("native", "software", "vtest-virgl",
                                                              "sandbox-dri")
    wanted = {**{f"test_glcheck_draws[{p}]": expected_outcome(p, unavailable)
                 for p in fixture_paths},
              **{f"test_glcheck_matrix[{p}/host/glcheck]": expected_outcome(p, unavailable)
                 for p in matrix_paths}}
    assert {name: outcome for name, (outcome,
                                     _) in outcomes.items()} == wanted, done.stdout + done.stderr
    assert done.returncode == (1 if "failed" in wanted.values() else 0), done.stdout + done.stderr
    for name, (outcome, message) in outcomes.items():  # a skip says the harness's own reason
        path = name.split("[")[1].split("/")[0].rstrip("]")
        if outcome == "skipped":
            assert unavailable(path) in message
    # this machine runs some path: the counts above are not all skips
    assert "passed" in wanted.values()
    # Each run's folder is a run as `gpu-harness run` writes it: the matrix's holds its four
    # scenarios.
    matrix_runs = [json.loads(f.read_text()) for f in out.glob("matrix-*/results.json")]
    assert len(matrix_runs) == 1, list(out.iterdir())
    verdicts = {s["id"]: s["outcome"].replace("Flake", "Pass") for s in matrix_runs[0]["scenarios"]}
    assert verdicts == {f"{p}/host/glcheck": "Skip" if unavailable(p) else "Pass"
                        for p in matrix_paths}
    assert len(list(out.glob("tests_test_glcheck.py_*/1/results.json"))) == len(fixture_paths)
    assert f"under {out}" in done.stdout


def test_the_example_matrix_is_a_matrix_the_harness_takes_as_it_is():
    scenarios = expand(read_declaration(EXAMPLE / "matrix.toml"),
                       str(EXAMPLE / "matrix.toml")).scenarios
    assert [s.id for s in scenarios] == [f"{p}/host/glcheck" for p in ("native", "software",
                                                                       "vtest-virgl",
                                                                       "sandbox-dri")]
    assert scenarios[0].declared.settings["files"] == [str(EXAMPLE / "glcheck.py")]


# --- outcomes a project sees: fail, skip, xfail, a picture, a declaration the harness rejects
# ----------

OUTCOMES_TEST = f'''
import pytest

FAIL = ["sh", "-c", "echo broken; exit 3"]


def test_a_fail_is_reported(gpu_harness):
    result = gpu_harness.run(FAIL, path="native")
    assert (result.outcome == "Fail" and not result.passed
            and result.failure_kind == "subtest-failed")
    assert result.output == "broken\\n" and result.log.read_text() == "broken\\n"
    assert ([(s.name, s.outcome, s.detail) for s in result.subtests]
            == [("sh", "fail", "exit 3, not 0")])
    assert (result.run_dir / "results.json").is_file() and result.result_dir.is_dir()
    assert result.renderer and result.probe_log.is_file()


def test_a_fail_checked(gpu_harness):
    gpu_harness.run(FAIL, path="native").check()


def test_a_missing_program_is_a_skip(gpu_harness):
    result = gpu_harness.run(["no-such-program-gh"], path="native")
    assert result.outcome == "Skip" and not result.passed
    result.skip_if_skipped()


def test_a_picture(gpu_harness):
    result = gpu_harness.run(["python3", "{{out}}/inputs/gl-picture.py"], path="native",
                             files=["{PICTURE}"], picture="picture.png",
                             golden="{PICTURE_GOLDEN}").check()
    assert (result.picture.name == "picture.png"
            and result.picture.read_bytes().startswith(b"\\x89PNG"))
    assert ([(s.name, s.outcome) for s in result.subtests]
            == [("python3", "pass"), ("python3-picture", "pass")])


def test_a_key_the_harness_rejects(gpu_harness):
    gpu_harness.run(["true"], path="native", pass_patern="x")


@pytest.mark.gpu_harness_matrix("broken.toml")
def test_matrix(gpu_harness_scenario):
    raise AssertionError("never reached: the verdict is checked before the body")
'''

BROKEN_MATRIX = '''
[matrix]
paths = ["native"]
probes = ["broken", "also-broken"]

[probes.broken]
kind = "command"
argv = ["sh", "-c", "exit 1"]

[probes.also-broken]
kind = "command"
argv = ["sh", "-c", "exit 1"]

[[override]]
match = "native/host/broken"
expect = "fail"
reason = "broken on purpose"
'''


@pytest.fixture
def outcomes_project(tmp_path, unavailable):
    if unavailable("native"):
        pytest.skip(f"native cannot run here: {unavailable('native')}")
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "tests" / "test_outcomes.py").write_text(OUTCOMES_TEST)
    (project / "tests" / "broken.toml").write_text(BROKEN_MATRIX)
    return project


def test_each_verdict_becomes_the_tests_outcome(outcomes_project, tmp_path):
    done, outcomes = run_pytest(outcomes_project, tmp_path)
    shown = done.stdout + done.stderr
    assert {name: outcome for name, (outcome, _) in outcomes.items()} == {
        "test_a_fail_is_reported": "passed",
        "test_a_fail_checked": "failed",
        "test_a_missing_program_is_a_skip": "skipped",
        "test_a_picture": "passed",
        "test_a_key_the_harness_rejects": "failed",
        "test_matrix[native/host/broken]": "xfailed",
        "test_matrix[native/host/also-broken]": "failed",
    }, shown
    assert done.returncode == 1
    assert ("native/host/sh: Fail [subtest-failed]: 0/1 subtests pass, 1 fail: sh (fail: exit 3, "
            "not 0)") \
        in outcomes["test_a_fail_checked"][1]
    assert ("the runtime has no no-such-program-gh"
            in outcomes["test_a_missing_program_is_a_skip"][1])
    assert "gpu_harness.run: " in outcomes["test_a_key_the_harness_rejects"][1]
    assert ("probes.true.pass_patern: unknown key for kind command"
            in outcomes["test_a_key_the_harness_rejects"][1])
    assert "broken on purpose" in outcomes["test_matrix[native/host/broken]"][1]
    assert "exit 1, not 0" in outcomes["test_matrix[native/host/also-broken]"][1]
    assert "Traceback" not in shown and "During handling" not in shown


def test_a_required_paths_skip_fails(outcomes_project, tmp_path):
    done, outcomes = run_pytest(outcomes_project, tmp_path, "--gpu-harness-require=native", "-k",
                                "missing_program")
    assert outcomes["test_a_missing_program_is_a_skip"][0] == "failed"
    assert ("native/host/no-such-program-gh is required here but skipped"
            in outcomes["test_a_missing_program_is_a_skip"][1])


# --- usage errors: once, one line each, no traceback
# ---------------------------------------------------

def test_bad_matrices_are_one_usage_error(tmp_path):
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "tests" / "typo.toml").write_text('[matrix]\npathz = ["native"]\n')
    (project / "tests" / "test_bad.py").write_text(textwrap.dedent('''
        import pytest

        @pytest.mark.gpu_harness_matrix("typo.toml")
        def test_typo(gpu_harness_scenario):
            pass

        @pytest.mark.gpu_harness_matrix("absent.toml")
        def test_absent(gpu_harness_scenario):
            pass

        @pytest.mark.gpu_harness_matrix("typo.toml", pathz=["native"])
        def test_keyword(gpu_harness_scenario):
            pass

        def test_unmarked(gpu_harness_scenario):
            pass
    '''))
    done, outcomes = run_pytest(project, tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR: ")]
    tests = project / "tests"
    assert errors == [
        f"ERROR: {tests / 'typo.toml'}: matrix.pathz: unknown key (allowed: displays, "
        "exclude, machines, paths, probes, runtimes)",
        f"ERROR: {tests / 'absent.toml'}: cannot read matrix file: no such file",
        "ERROR: @pytest.mark.gpu_harness_matrix: unknown keyword 'pathz' (allowed: paths, filter, "
        "baseline)",
        "ERROR: tests/test_bad.py::test_unmarked: uses gpu_harness_scenario but has no "
        "@pytest.mark.gpu_harness_matrix(\"matrix.toml\")",
    ], done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR and outcomes == {}
    assert "Traceback" not in done.stdout + done.stderr


def test_a_bad_option_is_a_usage_error(tmp_path):
    (tmp_path / "afile").write_text("")
    done, _ = run_pytest(tmp_path, tmp_path, f"--gpu-harness-out={tmp_path / 'afile'}")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: --gpu-harness-out {tmp_path / 'afile'}: is a file, not a folder" in done.stderr


# --- pure logic
# -------------------------------------------------------------------------------------

def test_a_commands_probe_is_named_by_its_program():
    assert plugin.probe_name(["/usr/bin/My_App", "--x"]) == "my_app"
    assert plugin.probe_name(("python3", "-c", "")) == "python3"
    # a shipped probe's name is not a declared one's
    assert plugin.probe_name(["gl"]) == "gl-command"
    assert plugin.probe_name(["+++"]) == plugin.probe_name("not a list") == "command"


def test_a_command_is_a_one_scenario_matrix_the_parser_checks(tmp_path):
    declaration = plugin.command_declaration(("sh", tmp_path / "x"), "native", "host", "sh",
                                             {"files": [tmp_path / "x"]},
                                             {"timeout_s": 30}, {"mine": {"kind": "rootfs",
                                                                          "root": "/"}})
    assert declaration == {"matrix": {"paths": ["native"], "runtimes": ["host"], "probes": ["sh"]},
                           "probes": {"sh": {"kind": "command", "argv": ["sh", str(tmp_path / "x")],
                                             "files": [str(tmp_path / "x")]}},
                           "defaults": {"timeout_s": 30}, "runtimes": {"mine": {"kind": "rootfs",
                                                                                "root": "/"}}}
    (tmp_path / "x").write_text("")
    (scenario,) = expand(declaration, "t").scenarios
    assert scenario.id == "native/host/sh" and scenario.timeout_s == 30
    with pytest.raises(InputError, match=r"^t: probes.sh.expect_exit: must be an integer$"):
        expand(plugin.command_declaration(["sh"], "native", "host", "sh", {"expect_exit": "0"}),
               "t")
    # a host process runs on the host only
    with pytest.raises(InputError, match="expands to no scenarios"):
        expand(plugin.command_declaration(["sh"], "native", "mine", "sh", {}, None,
                                          {"mine": {"kind": "rootfs", "root": "/"}}), "t")


def test_the_markers_arguments(tmp_path):
    request = plugin.matrix_request(["m.toml"], {"paths": ["native"], "filter": "*/host/*"},
                                    tmp_path)
    assert (request.file, request.paths, request.pattern, request.baseline) == \
        (tmp_path / "m.toml", ("native",), "*/host/*", None)
    assert request.slug.startswith("m-") and request.slug != plugin.matrix_request(["m.toml"], {},
                                                                                   tmp_path).slug
    for args, kwargs, message in (([], {}, "takes one matrix file"), (["a", "b"], {},
                                                                      "takes one matrix file"),
                                  (["m.toml"], {"path": []}, "unknown keyword 'path'"),
                                  (["m.toml"], {"paths": "native"}, "paths= must be a list")):
        with pytest.raises(InputError, match=message):
            plugin.matrix_request(args, kwargs, tmp_path)


def test_a_selection_that_leaves_nothing_says_so(tmp_path):
    matrix = tmp_path / "m.toml"
    matrix.write_text('[matrix]\npaths = ["native", "software"]\n')
    chosen, known = plugin.load_matrix(plugin.matrix_request([matrix], {"paths": ["software"]},
                                                             tmp_path))
    assert [s.id for s in chosen] == ["software/host/gl"] and known is None
    with pytest.raises(InputError, match="unknown path 'nativ'"):
        plugin.load_matrix(plugin.matrix_request([matrix], {"paths": ["nativ"]}, tmp_path))
    with pytest.raises(InputError, match="no scenario matches"):
        plugin.load_matrix(plugin.matrix_request([matrix], {"filter": "vm-*"}, tmp_path))


def test_required_paths(monkeypatch):
    monkeypatch.setenv("GPU_HARNESS_REQUIRE", "native, vm-virgl@virgl-guest,")
    assert plugin.required_paths(None) == {"native", "vm-virgl@virgl-guest"}
    assert plugin.required_paths("") == frozenset()


def result_of(outcome: Outcome, required: bool = False) -> plugin.HarnessResult:
    return plugin.HarnessResult("native/host/x", "native", "host", outcome, "why",
                                required=required,
                                subtests=(Subtest("x", SubtestOutcome.PASS),), outputs={"x": "out"})


def test_a_verdict_as_a_tests_outcome():
    for outcome in (Outcome.PASS, Outcome.FLAKE):
        assert result_of(outcome).check().passed
    with pytest.raises(pytest.skip.Exception, match="native/host/x: why"):
        result_of(Outcome.SKIP).check()
    with pytest.raises(pytest.fail.Exception, match="required here but skipped: why"):
        result_of(Outcome.SKIP, required=True).skip_if_skipped()
    with pytest.raises(pytest.xfail.Exception, match="why"):
        result_of(Outcome.EXPECTED_FAIL).check()
    for outcome in (Outcome.FAIL, Outcome.UNEXPECTED_PASS):
        with pytest.raises(pytest.fail.Exception, match=f"native/host/x: {outcome}: why"):
            result_of(outcome).check()
        # only a Skip is the test's then
        assert result_of(outcome).skip_if_skipped().outcome is outcome
    assert not result_of(Outcome.SKIP).passed  # never a pass on a skip
    assert result_of(Outcome.PASS).output == "out" and result_of(Outcome.PASS).log is None
