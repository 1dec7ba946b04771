"""The trace, benchmark and command-with-a-picture kinds: their declarations' one-line errors,
glmark2's lines parsed from output captured from the real program, the per-scene median and
spread over rounds, snapshots judged against goldens as the real replay wrote them, and the
probe's timed rounds as a real run of the gl probe reports them."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.scenario.outcomes import SubtestOutcome
from harness.scenario.probes import PROBE_DIR
from harness.workloads import benchmark, registry, trace
from harness.workloads.base import Problems, StepRun
from harness.workloads.command import KIND as COMMAND

FILES = Path(__file__).parent / "files"
GLMARK2 = FILES / "glmark2"  # captured: glmark2-es2 2023.01 on Xvfb, llvmpipe
DATA = Path(__file__).parent.parent / "harness" / "data"
TRACE = DATA / "traces" / "gl-probe.trace"
TRACE_GOLDENS = DATA / "traces" / "gl-probe-goldens"
PICTURE_GOLDEN = DATA / "workloads" / "gl-picture.golden.png"


def parsed(table):
    return registry.parse("mine", table, DATA)


def judged(kind, settings, runs):
    return kind.judge_all(settings, {run.name: run for run in runs}, "mine")


@pytest.mark.parametrize("table,key,message", [
    ({"kind": "trace", "calls": [90]}, "file", "is required"),
    ({"kind": "trace", "file": "traces/none.trace", "calls": [90]}, "file", "is not a file"),
    ({"kind": "trace", "file": "traces/gl-probe.trace", "calls": []}, "calls",
     "non-empty list of call numbers"),
    ({"kind": "trace", "file": "traces/gl-probe.trace", "calls": [90], "retrace": "qapitrace"},
     "retrace",
     "one of eglretrace, glretrace"),
    ({"kind": "benchmark", "size": "big"}, "size", "WIDTHxHEIGHT"),
    ({"kind": "benchmark", "rounds": 0}, "rounds", "from 1 to 20"),
    ({"kind": "benchmark", "validate": "yes"}, "validate", "true or false"),
    ({"kind": "command", "argv": ["x"], "picture": "p.png"}, "golden",
     "picture and golden go together"),
    ({"kind": "command", "argv": ["x"], "picture": "/tmp/p.png", "golden": "g.png"}, "picture",
     "relative"),
    ({"kind": "command", "argv": ["x"], "picture": "../p.png", "golden": "g.png"}, "picture",
     "relative"),
    ({"kind": "command", "argv": ["x"], "files": ["workloads/gl-picture.py",
                                                  "workloads/gl-picture.py"]}, "files",
     "same name"),
    ({"kind": "command", "argv": ["x"], "bundle": "app.flatpak"}, "bundle", "is not a file"),
])
def test_bad_declarations_say_which_key_and_why(table, key, message):
    _, problems = parsed(table)
    assert any(where == f"probes.mine.{key}" and message in said for where,
               said in problems), problems


def test_files_are_read_relative_to_the_matrix_and_put_in_inputs():
    probe, problems = parsed({"kind": "trace", "file": "traces/gl-probe.trace", "calls": [133, 90,
                                                                                          90]})
    assert (problems == [] and probe.settings["file"] == str(TRACE.resolve())
            and probe.settings["calls"] == [90, 133])
    plan = registry.plan(probe)
    assert plan["inputs"] == {"gl-probe.trace": str(TRACE.resolve())}
    [step] = plan["steps"]
    assert step["argv"][-1] == "{out}/inputs/gl-probe.trace" and "90,133" in step["argv"]
    assert step["env"] == {"WAFFLE_PLATFORM": "surfaceless_egl"}


def test_glmark2_lines_as_the_real_program_prints_them():
    assert benchmark.scene_fps((GLMARK2 / "round-1.txt").read_text()) == {"build": 473.0,
                                                                          "texture": 2228.0}
    assert benchmark.validations((GLMARK2 / "validate.txt").read_text()) == {
        "build": "Success", "texture": "Success", "shading": "Success", "effect2d": "Unknown"}


def benchmark_runs(settings, validate_text=None, rounds=("round-1", "round-2", "round-3")):
    runs = [StepRun(name, exit_code=0, seconds=1.0,
                    output=(GLMARK2 / f"{name}.txt").read_text()) for name in rounds]
    if validate_text is not None:
        runs.append(StepRun(benchmark.VALIDATE, exit_code=0, seconds=1.0, output=validate_text))
    return runs


def test_a_scene_s_fps_is_the_median_of_its_rounds_with_their_spread():
    settings = benchmark.KIND.settings({"scenes": ["build", "texture"], "rounds": 3},
                                       Problems("probes.mine"))
    subtests = judged(benchmark.KIND, settings,
                      benchmark_runs(settings, (GLMARK2 / "validate.txt").read_text()))
    build = next(s for s in subtests if s.name == "build")
    assert build.outcome is SubtestOutcome.PASS
    assert build.figures == {"fps": 407.0, "fps_min": 375.0, "fps_max": 473.0, "rounds": 3.0}
    assert "407 fps (median of 3, 375-473); validated" == build.detail


def test_a_scene_glmark2_cannot_validate_warns_and_one_it_failed_fails():
    settings = benchmark.KIND.settings({"scenes": ["build", "texture"]}, Problems("probes.mine"))
    validate = (GLMARK2 / "validate.txt").read_text()
    unknown = validate.replace("[texture] <default>: Validation: Success",
                               "[texture] <default>: Validation: Unknown")
    outcomes = {s.name: s.outcome
                for s in judged(benchmark.KIND, settings, benchmark_runs(settings, unknown))}
    assert outcomes == {"build": SubtestOutcome.PASS, "texture": SubtestOutcome.WARN}
    failed = validate.replace("[build] <default>: Validation: Success",
                              "[build] <default>: Validation: Failure")
    build = judged(benchmark.KIND, settings, benchmark_runs(settings, failed))[0]
    assert build.outcome is SubtestOutcome.FAIL and "Failure" in build.detail


def test_a_scene_glmark2_never_ran_and_a_failed_round_fail_every_scene_that_needs_them():
    settings = benchmark.KIND.settings({"scenes": ["build", "nosuchscene"], "validate": False},
                                       Problems("probes.mine"))
    subtests = judged(benchmark.KIND, settings, benchmark_runs(settings))
    assert [s.outcome for s in subtests] == [SubtestOutcome.PASS, SubtestOutcome.FAIL]
    assert "an fps in 0 of 3 rounds" in subtests[1].detail
    runs = benchmark_runs(settings)
    runs[1] = StepRun("round-2", exit_code=1, output="Error: main: Could not initialize canvas\n")
    assert {s.detail for s in judged(benchmark.KIND, settings, runs)} == {
        "round-2 exited 1: Error: main: Could not initialize canvas"}


def test_the_benchmark_needs_its_display_s_programs_too():
    probe, _ = parsed({"kind": "benchmark"})
    programs = {program for step in registry.steps(probe) for program in step.programs}
    assert programs == {"xvfb-run", "glmark2-es2", "Xvfb", "xauth"}


def snapshot_dir(tmp_path, pictures):
    (tmp_path / trace.SNAPSHOTS).mkdir()
    for call, picture in pictures.items():
        shutil.copyfile(picture, tmp_path / trace.SNAPSHOTS / trace.snapshot_name(call))
    return tmp_path


def test_snapshots_are_judged_against_their_goldens(tmp_path):
    settings = parsed({"kind": "trace", "file": "traces/gl-probe.trace",
                       "calls": [90, 133]})[0].settings
    replayed = StepRun(trace.REPLAY, exit_code=0, seconds=0.4,
                       output=(FILES / "apitrace" / "replay.txt").read_text(),
                       out_dir=snapshot_dir(tmp_path, {90: TRACE_GOLDENS / "90.png",
                                                       133: PICTURE_GOLDEN}))
    first, second = judged(trace.KIND, settings, [replayed])
    assert (first.name, first.outcome) == ("call-90", SubtestOutcome.PASS)
    assert ((second.name, second.outcome) == ("call-133", SubtestOutcome.FAIL)
            and "image is 64x64" in second.detail)


def test_a_missing_golden_says_where_to_put_the_reviewed_snapshot(tmp_path):
    settings = parsed({"kind": "trace", "file": "traces/gl-probe.trace", "calls": [90],
                       "goldens": "nowhere"})[0].settings
    run = StepRun(trace.REPLAY, exit_code=0, out_dir=snapshot_dir(tmp_path,
                                                                  {90: TRACE_GOLDENS / "90.png"}))
    [subtest] = judged(trace.KIND, settings, [run])
    assert (subtest.outcome is SubtestOutcome.FAIL and "no golden" in subtest.detail
            and "review" in subtest.detail)


def test_a_replay_that_failed_fails_every_call_with_its_reason(tmp_path):
    settings = parsed({"kind": "trace", "file": "traces/gl-probe.trace",
                       "calls": [90, 133]})[0].settings
    run = StepRun(trace.REPLAY, exit_code=1, output="error: failed to open /nonexistent.trace\n",
                  out_dir=tmp_path)
    assert {(s.outcome, s.detail) for s in judged(trace.KIND, settings, [run])} == {
        (SubtestOutcome.FAIL, "the replay exited 1")}
    never = judged(trace.KIND, settings, [])
    assert [s.outcome for s in never] == [SubtestOutcome.FAIL] * 2 and "not run" in never[0].detail


def test_a_command_s_picture_is_its_own_subtest(tmp_path):
    settings = parsed({"kind": "command", "argv": ["python3", "{out}/inputs/gl-picture.py"],
                       "files": ["workloads/gl-picture.py"], "picture": "picture.png",
                       "golden": "workloads/gl-picture.golden.png"})[0].settings
    (tmp_path / "steps" / "work").mkdir(parents=True)
    shutil.copyfile(PICTURE_GOLDEN, tmp_path / "steps" / "work" / "picture.png")
    ran = StepRun("mine", exit_code=0, out_dir=tmp_path)
    assert [(s.name, s.outcome) for s in judged(COMMAND, settings, [ran])] == [
        ("mine", SubtestOutcome.PASS), ("mine-picture", SubtestOutcome.PASS)]
    failed = StepRun("mine", exit_code=1, out_dir=tmp_path)
    assert judged(COMMAND, settings, [failed])[1].detail == "not compared: the command did not pass"


def test_only_a_bundle_s_command_says_where_it_ships(tmp_path):
    bundle = tmp_path / "app.flatpak"
    bundle.write_bytes(b"made by flatpak build-bundle")
    probe, problems = registry.parse("mine", {"kind": "command", "argv": ["/app/bin/x"],
                                              "bundle": "app.flatpak"},
                                     tmp_path)
    assert problems == [] and registry.shipped_in(probe) == ("bundle", str(bundle))
    assert registry.shipped_in(parsed({"kind": "command", "argv": ["x"]})[0]) is None


def test_the_gl_probe_reports_the_median_of_its_timed_rounds_with_their_spread(tmp_path):
    done = subprocess.run([sys.executable, str(PROBE_DIR / "gles.py"), "--out", str(tmp_path),
                           "--rounds", "3",
                           "--round-seconds", "0.05"], capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if not report.get("ok"):
        pytest.fail(f"the gl probe did not render here: {done.stderr[-400:]}")
    timings = report["timings"]
    assert timings["fps_rounds"] == 3 and timings["fps_min"] <= timings["fps"] <= timings["fps_max"]
    assert timings["frames"] >= 3


def test_glmark2_on_another_renderer_than_the_path_s_is_a_silent_software_fallback():
    """Captured in a vm-virgl guest: glmark2 on Xvfb got the guest's llvmpipe (Xvfb offers no
    DRI3), while the path gave the gl scene virgl; through vtest-virgl on the host it got virgl."""
    settings = benchmark.KIND.settings({"scenes": ["build", "texture"], "rounds": 1,
                                        "validate": False},
                                       Problems("probes.mine"))
    virgl = "virgl (LLVMPIPE (LLVM 15.0.6, 256 bits))"
    guest = StepRun("round-1", exit_code=0, output=(GLMARK2 / "guest-xvfb-round.txt").read_text(),
                    path_renderer=virgl)
    [build, _] = judged(benchmark.KIND, settings, [guest])
    assert build.outcome is SubtestOutcome.FAIL
    assert build.detail == ("round-1: silent software fallback: glmark2 rendered on llvmpipe (LLVM "
                            "15.0.6, 128 bits), "
                            f"the path gives {virgl}")
    host = StepRun("round-1", exit_code=0, output=(GLMARK2 / "vtest-round.txt").read_text(),
                   path_renderer=virgl)
    assert [s.outcome for s in judged(benchmark.KIND, settings,
                                      [host])] == [SubtestOutcome.PASS] * 2


def test_the_drm_display_runs_glmark2_s_drm_flavour_from_its_own_package():
    probe, problems = parsed({"kind": "benchmark", "display": "drm"})
    assert problems == [] and probe.packages == ("glmark2-es2-drm",)
    assert {program for step in registry.steps(probe)
            for program in step.programs} == {"glmark2-es2-drm"}
    assert parsed({"kind": "benchmark", "display": "wayland"})[1] == [("probes.mine.display",
                                                                       "must be one of xvfb, drm")]
