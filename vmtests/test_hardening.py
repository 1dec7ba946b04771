"""Faults around a run: a second run on the same output folder, a corrupt golden, a manifest
naming a tool that is not there, the harness killed during a Nix evaluation or a goldens
update. Each ends in a clear answer and leaves nothing behind."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from harness import matrix as matrix_mod
from harness.scenario import probes
from harness.run import runner
from harness.host import toolset as toolset_mod
from harness.judging import verdict

from .conftest import describe
from .test_faults import processes_mentioning


def cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(condition, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_two_runs_on_one_out_folder(tmp_path):
    matrix_file = tmp_path / "m.toml"
    matrix_file.write_text('[matrix]\npaths = ["software"]\n[defaults]\nprobe_args = ["--hold", '
                           '"3"]\n')
    out = tmp_path / "out"
    first = cli("run", "--matrix", str(matrix_file), "--out", str(out))
    assert wait_for(lambda: (out / "scenarios").exists())
    second = cli("run", "--matrix", str(matrix_file), "--out", str(out))
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert err.strip().splitlines() == [f"gpu-harness: error: --out {out}: another gpu-harness run "
                                        f"(pid {first.pid}) "
                                        "is writing there; wait for it or choose another folder"]
    first.communicate(timeout=60)
    assert first.returncode == 0
    document = json.loads((out / "results.json").read_text())
    assert [s["outcome"] for s in document["scenarios"]] == ["Pass"]


def test_a_corrupt_golden_fails_that_scenario_naming_the_golden(tmp_path, toolset):
    goldens = tmp_path / "goldens"
    goldens.mkdir()
    good = (probes.GOLDENS_DIR / "gl.png").read_bytes()
    (goldens / "gl.png").write_bytes(good[: len(good) // 2])
    scenarios = matrix_mod.expand({"matrix": {"paths": ["software", "native"]}}, "<t>").scenarios
    results = runner.run(scenarios, toolset, runner.RunOptions(out_dir=tmp_path / "out",
                                                               goldens_dir=goldens))
    for result in results:
        assert result.verdict.outcome == verdict.FAIL, describe(result)
        assert (f"golden {goldens / 'gl.png'}: gl.png cannot be read as an image"
                in result.verdict.reason)
        assert result.verdict.failure_kind.value == "image-mismatch"


def test_a_manifest_naming_a_missing_tool_skips_naming_it(tmp_path, toolset):
    data = toolset.to_dict()
    data["tools"]["virgl_test_server"]["path"] = str(tmp_path / "nowhere" / "virgl_test_server")
    manifest = tmp_path / "toolset.json"
    manifest.write_text(json.dumps(data))
    loaded = toolset_mod.load_manifest(manifest)
    (scenario,) = matrix_mod.expand({"matrix": {"paths": ["vtest-virgl"]}}, "<t>").scenarios
    (result,) = runner.run([scenario], loaded, runner.RunOptions(out_dir=tmp_path / "out"))
    assert result.verdict.outcome == verdict.SKIP
    assert ("virgl_test_server" in result.verdict.reason
            and str(tmp_path / "nowhere") in result.verdict.reason)


def test_harness_killed_during_nix_evaluation_leaves_no_evaluator(tmp_path):
    if not shutil.which("nix-instantiate"):
        pytest.skip("needs nix-instantiate (nix-bin)")
    slow = tmp_path / "slow.nix"
    slow.write_text("builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 1000000000)\n")
    harness = cli("list", "--matrix", str(slow))
    def evaluators():
        found = []
        for pid in processes_mentioning(str(slow)):
            try:
                if open(f"/proc/{pid}/comm").read().strip() == "nix-instantiate":
                    found.append(pid)
            except OSError:
                continue
        return found

    assert wait_for(evaluators), "nix-instantiate never started"
    time.sleep(0.2)
    harness.send_signal(signal.SIGKILL)
    harness.communicate()
    assert wait_for(lambda: evaluators() == [],
                    10), f"nix-instantiate outlived the harness: {evaluators()}"


def test_harness_killed_during_goldens_update_leaves_no_temp_folder(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    harness = cli("goldens", "update", "--goldens", str(tmp_path / "goldens"),
                  env=dict(os.environ, TMPDIR=str(scratch)))
    assert wait_for(lambda: any(p.name.startswith("gh-goldens-") for p in scratch.iterdir()))
    harness.send_signal(signal.SIGKILL)
    harness.communicate()
    assert wait_for(lambda: not any(scratch.iterdir()),
                    10), f"left behind: {list(scratch.iterdir())}"
    assert processes_mentioning(str(scratch)) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A file system that is full: TMPDIR for a run that cannot write its scratch files."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64", "tmpfs",
                           str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)])


def leave_inodes(folder, free):
    """Use up the file system's inodes, then give back `free` of them."""
    made = []
    for number in range(10_000):
        try:
            (folder / f"f{number}").touch()
        except OSError:
            break
        made.append(folder / f"f{number}")
    for path in made[-free:]:
        path.unlink()


def test_a_temp_folder_without_room_fails_the_scenario_with_the_reason(tmp_path, tiny_tmpfs):
    """Two inodes left: one for the run's scratch folder, one for the scenario's, none for the
    scenario's first file (Python's tempfile check borrows one and gives it back)."""
    leave_inodes(tiny_tmpfs, 2)
    harness = cli("run", "--paths", "software", "--filter", "*/gl", "--out", str(tmp_path / "out"),
                  env=dict(os.environ, TMPDIR=str(tiny_tmpfs)))
    _, err = harness.communicate(timeout=120)
    assert harness.returncode == 1, err
    (scenario,) = json.loads((tmp_path / "out" / "results.json").read_text())["scenarios"]
    assert scenario["outcome"] == "Fail" and scenario["failure_kind"] == "harness-error", scenario
    assert scenario["reason"].startswith("harness error during launch: OSError: [Errno 28] No "
                                         "space left on device")
    assert "Traceback" not in err


def test_the_main_job_with_a_relative_out_folder_and_markup_in_a_reason(tmp_path):
    """The CLI as the main job calls it: `--out` relative to the working folder (podman once read
    such a bind source as a volume name), one scenario of each family that hands the output
    folder to another program, and a reason with rich's markup characters printed as text."""
    matrix_file = tmp_path / "m.toml"
    matrix_file.write_text(
        '[matrix]\npaths = ["software", "sandbox-hostlibs", "vtest-virgl", "podman-vtest", '
        '"flatpak-vtest", '
        '"vm-headless"]\nruntimes = ["host", "trixie"]\nprobes = ["gl"]\n'
        'exclude = [{ path = "sandbox-hostlibs", runtime = "trixie" }, { path = "vm-headless", '
        'runtime = "trixie" }, '
        '{ path = "software", runtime = "trixie" }]\n'
        '[runtimes.trixie]\nkind = "debootstrap"\n'
        '[[override]]\nmatch = "software/*"\nexpect = "fail"\nreason = "[/] not closed [bold"\n'
        '[[override]]\nmatch = "vm-*"\ntimeout_s = 120\n')
    harness = cli("run", "--matrix", str(matrix_file), "--out", "out", cwd=tmp_path)
    _, err = harness.communicate(timeout=600)
    assert "Traceback" not in err, err
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    outcomes = {s["id"]: (s["outcome"], s["reason"]) for s in document["scenarios"]}
    software = outcomes.pop("software/host/gl")
    # A matrix's expected failure that passes is an UnexpectedPass that fails the run (exit 1), its
    # reason quoting the matrix's.
    assert software[0] == "UnexpectedPass" and "[/] not closed [bold" in software[1], software
    assert "[/] not closed [bold" in err, err
    for scenario, (outcome, reason) in outcomes.items():
        assert outcome in ("Pass", "Skip"), (scenario, reason)
        if outcome == "Skip":
            assert os.environ.get("GPU_HARNESS_REQUIRE") is None or scenario.split("/")[0] not in \
                os.environ["GPU_HARNESS_REQUIRE"].split(","), (scenario, reason)
    assert harness.returncode == 1, err
    # What the run did once before any scenario is said once, on the CLI and in results.json, and
    # every second of each scenario's wall is in one of its phases.
    steps = {step["step"]: step for step in document["preparation"]}
    assert {"runtime trixie", "host driver", "guest kernel",
            "guest acceleration"} <= set(steps), steps
    assert steps["guest acceleration"]["detail"].startswith(("kvm: ", "tcg: "))
    assert document["preparation_s"] == pytest.approx(sum(s["seconds"] for s in steps.values()),
                                                      abs=0.01)
    for step in steps:
        assert f"prepared {step} in " in err, err
    for scenario in document["scenarios"]:
        phases = sum(scenario["phases_s"].values())
        assert abs(scenario["wall_s"] - phases) <= max(0.05 * scenario["wall_s"], 0.02), scenario
