"""Workloads for real: piglit's tests, a trace replay, glmark2 and a user's commands (one with a
picture, one from a Flatpak bundle the test builds) through a sandbox, a vtest path, a Flatpak, a
container (the runtime derived with the workloads' packages in it) and a VM, each judged subtest by
subtest, and the path's own renderer underneath."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import matrix as matrix_mod
from harness.run import runner
from harness.judging import verdict
from harness.scenario.outcomes import SubtestOutcome
from harness.scenario.probes import PROBE_DIR
from harness.workloads import registry

from .conftest import describe, outcome_or_skip, run_leaving_nothing

CONFORMANCE = matrix_mod.DEFAULT_MATRIX.parent / "conformance.toml"
BASELINE = matrix_mod.DEFAULT_MATRIX.parent / "conformance.baseline.toml"
FAMILIES = {"host", "sandbox", "container", "flatpak", "vm"}
DERIVED = "trixie+apitrace+glmark2-es2-drm+glmark2-es2-x11+piglit+xauth+xvfb"
GL_GOLDEN = matrix_mod.DEFAULT_MATRIX.parent.parent / "goldens" / "gl.png"
PICTURE = matrix_mod.DEFAULT_MATRIX.parent / "workloads" / "gl-picture.py"
PICTURE_GOLDEN = matrix_mod.DEFAULT_MATRIX.parent / "workloads" / "gl-picture.golden.png"


@pytest.mark.full("workload-grid")
def test_the_conformance_matrix_through_every_family(toolset, tmp_path):
    """piglit's quick subset, the gl probe's trace, glmark2 and the user's commands (glinfo; a
    program that draws a picture) through a sandbox, vtest, a container (trixie derived with the
    workloads' packages), a Flatpak and a VM: each subtest judged, the baseline's known subtest
    failures the only failures, the commands seeing the renderer the path gives."""
    from harness.judging import baseline as baseline_mod

    scenarios = matrix_mod.load(CONFORMANCE).scenarios
    assert {s.spec.family for s in scenarios} == FAMILIES
    assert {s.runtime.build_name for s in scenarios if s.runtime.name == "trixie"} == {DERIVED}
    known = baseline_mod.load(BASELINE)
    results = run_leaving_nothing(scenarios, toolset, runner.RunOptions(out_dir=tmp_path / "out",
                                                                        jobs=2,
                                                                        baseline=known))
    for result in results:
        if outcome_or_skip(result) == verdict.SKIP:
            continue
        assert result.verdict.outcome in (verdict.PASS, verdict.EXPECTED_FAIL), describe(result)
        subtests, probe = result.verdict.subtests, result.scenario.probe
        failing = {s.name for s in subtests if s.outcome.failed}
        assert (failing <= {"fbo-blending-format-quirks"}
                or (probe == "trace" and result.scenario.runtime.name == "trixie"
                    and failing == {"call-90", "call-133"})), describe(result)
        steps = result.report.raw["steps"]
        assert all((result.result_dir / "probe" / step["log"]).exists() for step in steps)
        CHECKS[probe](result, subtests, steps)


def piglit_checked(result, subtests, steps):
    assert [s.name for s in subtests] == [step.name
                                          for step in registry.steps(result.scenario.declared)]
    assert {s.outcome for s in subtests} <= {SubtestOutcome.PASS, SubtestOutcome.FAIL}
    assert next(s for s in subtests
                if s.name == "fbo-clear-formats").detail == "38/38 subtests pass"


def trace_checked(result, subtests, steps):
    # its eglretrace replays no EGL trace (the baseline says why)
    if result.scenario.runtime.name == "trixie":
        assert ("unavailable function eglGetProcAddress"
                in steps[0]["output"]), steps[0]["output"][-300:]
        return
    assert [(s.name, s.outcome) for s in subtests] == [("call-90", SubtestOutcome.PASS),
                                                       ("call-133", SubtestOutcome.PASS)], subtests
    assert (result.result_dir / "probe" / "snapshots" / "0000000090.png").is_file()


def benchmark_checked(result, subtests, steps):
    assert [s.name for s in subtests] == ["build", "texture"]
    validated = result.scenario.declared.settings["validate"]
    for scene in subtests:  # validated by glmark2 itself (where it may), timed in three rounds
        assert (scene.outcome is SubtestOutcome.PASS
                and scene.detail.endswith("; validated") == validated), scene
        assert (scene.figures["rounds"] == 3
                and scene.figures["fps_min"] <= scene.figures["fps"] <= scene.figures["fps_max"])
    # glmark2 got the path's renderer
    assert f"GL_RENDERER:    {result.report.renderer}\n" in steps[-1]["output"]


def glinfo_checked(result, subtests, steps):
    assert (f"GL_RENDERER = {result.report.renderer}\n"
            in steps[0]["output"]), steps[0]["output"][:300]


def picture_checked(result, subtests, steps):
    assert [(s.name, s.outcome) for s in subtests] == [("picture", SubtestOutcome.PASS),
                                                       ("picture-picture",
                                                        SubtestOutcome.PASS)], subtests
    assert f"renderer: {result.report.renderer}\n" in steps[0]["output"]


CHECKS = {"piglit-quick": piglit_checked, "trace": trace_checked, "glmark2": benchmark_checked,
          "glmark2-drm": benchmark_checked,
          "glinfo": glinfo_checked, "picture": picture_checked}


def glreadpixels_calls(trace: Path) -> list:
    dumped = subprocess.run(["apitrace", "dump", str(trace)], capture_output=True, text=True,
                            timeout=60, check=True)
    return [int(m.group(1)) for m in re.finditer(r"^(\d+) glReadPixels\(", dumped.stdout,
                                                 re.MULTILINE)]


def test_a_trace_the_test_makes_of_the_gl_probe_replays_through_each_kind_of_path(toolset,
                                                                                  tmp_path):
    """apitrace captures the gl probe here; its read-back, replayed through a sandbox, vtest, a
    Flatpak and a VM, equals the gl golden (the probe's image) at the call the dump names."""
    if not shutil.which("apitrace"):
        raise AssertionError("apitrace is not installed: scripts/setup installs it")
    trace = tmp_path / "gl.trace"
    subprocess.run(["apitrace", "trace", "--api", "egl", "-o", str(trace), "python3",
                    str(PROBE_DIR / "gles.py"),
                    "--out", str(tmp_path), "--rounds", "1", "--frames", "1"], capture_output=True,
                   timeout=120,
                   check=True)
    [call] = glreadpixels_calls(trace)
    (tmp_path / "gl-goldens").mkdir()
    shutil.copyfile(GL_GOLDEN, tmp_path / "gl-goldens" / f"{call}.png")
    declaration = {"matrix": {"paths": ["sandbox-hostdeps", "vtest-virgl", "flatpak-vtest",
                                        "vm-virgl"],
                              "probes": ["mine"]},
                   "probes": {"mine": {"kind": "trace", "file": str(trace), "calls": [call],
                                       "goldens": str(tmp_path / "gl-goldens")}},
                   "override": [{"match": "vm-*", "timeout_s": 300}]}
    scenarios = matrix_mod.expand(declaration, "<test>").scenarios
    results = run_leaving_nothing(scenarios, toolset, runner.RunOptions(out_dir=tmp_path / "out",
                                                                        jobs=2))
    for result in results:
        if outcome_or_skip(result) == verdict.SKIP:
            continue
        assert result.verdict.outcome is verdict.PASS, describe(result)
        assert [(s.name, s.outcome) for s in result.verdict.subtests] == [(f"call-{call}",
                                                                           SubtestOutcome.PASS)]


def flatpak_bundle(folder: Path) -> Path:
    """The example picture program as a Flatpak app, built on a runtime id of the user's own
    (org.example.Platform//23.08) and exported as a single-file bundle, as an app's maintainer
    would ship it."""
    env = {"PATH": os.environ["PATH"], "HOME": str(folder / "home"),
           "FLATPAK_USER_DIR": str(folder / "installation"),
           "XDG_RUNTIME_DIR": str(folder / "xdg")}
    for part in ("home", "xdg", "sdk/files"):
        (folder / part).mkdir(parents=True)
    (folder / "sdk" / "metadata").write_text("[Runtime]\nname=org.example.Platform\n"
                                             "runtime=org.example.Platform/x86_64/23.08\n")

    def flatpak(*args):
        subprocess.run(["flatpak", *args], env=env, capture_output=True, text=True, timeout=120,
                       check=True,
                       stdin=subprocess.DEVNULL)

    flatpak("build-export", "--runtime", "--files=files", str(folder / "repo"), str(folder / "sdk"),
            "23.08")
    flatpak("--user", "remote-add", "--no-gpg-verify", "sdk", str(folder / "repo"))
    flatpak("--user", "install", "-y", "--noninteractive", "sdk", "org.example.Platform//23.08")
    app = folder / "app"
    flatpak("build-init", str(app), "org.example.Picture", "org.example.Platform",
            "org.example.Platform", "23.08")
    (app / "files" / "bin").mkdir(parents=True)
    shutil.copyfile(PICTURE, app / "files" / "bin" / "gl-picture")
    (app / "files" / "bin" / "gl-picture").chmod(0o755)
    flatpak("build-finish", str(app), "--command=gl-picture")
    flatpak("build-export", str(folder / "repo"), str(app), "stable")
    flatpak("build-bundle", str(folder / "repo"), str(folder / "picture.flatpak"),
            "org.example.Picture", "stable")
    return folder / "picture.flatpak"


def test_a_flatpak_bundle_the_test_builds_runs_as_a_command_with_its_picture(toolset, tmp_path):
    """The user's app as it ships: a bundle installed into the scenario's private installation,
    run over the scenario's runtime through flatpak-vtest, drawing its picture through virgl; a
    path that cannot run a bundle says so."""
    bundle = flatpak_bundle(tmp_path / "build")
    declaration = {"matrix": {"paths": ["flatpak-vtest", "vtest-virgl"], "runtimes": ["host",
                                                                                      "trixie"],
                              "probes": ["app"]},
                   "runtimes": {"trixie": {"kind": "debootstrap"}},
                   "probes": {"app": {"kind": "command", "argv": ["/app/bin/gl-picture"],
                                      "bundle": str(bundle),
                                      "picture": "picture.png", "golden": str(PICTURE_GOLDEN)}}}
    scenarios = matrix_mod.expand(declaration, "<test>").scenarios
    results = {r.scenario.id: r
               for r in run_leaving_nothing(scenarios, toolset,
                                            runner.RunOptions(out_dir=tmp_path / "out", jobs=2))}
    refused = results["vtest-virgl/host/app"].verdict
    assert refused.outcome is verdict.SKIP and "ships in a Flatpak bundle" in refused.reason
    for scenario_id in ("flatpak-vtest/host/app", "flatpak-vtest/trixie/app"):
        result = results[scenario_id]
        if outcome_or_skip(result) == verdict.SKIP:
            continue
        assert result.verdict.outcome is verdict.PASS, describe(result)
        assert [s.outcome for s in result.verdict.subtests] == [SubtestOutcome.PASS,
                                                                SubtestOutcome.PASS]
        assert result.launch.facts["bundle"] == "org.example.Picture"
        output = result.report.raw["steps"][0]["output"]
        assert (output.startswith("renderer: virgl")
                and f"renderer: {result.report.renderer}" in output)


def test_a_failing_test_fails_the_scenario_naming_it_and_a_baseline_knows_it(toolset, tmp_path):
    declaration = {"matrix": {"paths": ["vtest-virgl"], "probes": ["mixed"]},
                   "probes": {"mixed": {"kind": "piglit",
                                        "tests": ["fbo-alpha", "ext_transform_feedback-structs"]}}}
    (scenario,) = matrix_mod.expand(declaration, "<test>").scenarios
    (result,) = run_leaving_nothing([scenario], toolset,
                                    runner.RunOptions(out_dir=tmp_path / "out"))
    if outcome_or_skip(result) == verdict.SKIP:
        return
    assert (result.verdict.outcome is verdict.FAIL
            and result.verdict.failure_kind.value == "subtest-failed")
    assert result.verdict.reason.startswith("1/2 subtests pass, 1 fail: "
                                            "ext_transform_feedback-structs (fail: ")
    from harness.judging import baseline as baseline_mod

    known = baseline_mod.parse({"known": [{"match": scenario.id, "kind": "failure",
                                           "subtest": "ext_transform_*",
                                           "reason": "it wants arguments"}]}, "b.toml")
    (again,) = run_leaving_nothing([scenario], toolset,
                                   runner.RunOptions(out_dir=tmp_path / "again", baseline=known))
    assert again.verdict.outcome is verdict.EXPECTED_FAIL, describe(again)
