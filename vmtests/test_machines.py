"""Virtual GPU machines for real: a QEMU guest whose virtio-gpu is the GPU for the paths inside it.
One boot runs all of a machine's scenarios; each comes back as a local one does (its folder, image,
checks, driver facts) with a rerun.sh that boots the machine again; a guest that panics fails only
the scenarios it had not finished."""
import json
import os
import subprocess
import sys

import pytest

from harness import matrix as matrix_mod
from harness.run import runner
from harness.judging import verdict
from harness.launch.lifecycle import Hooks
from harness.scenario.outcomes import FailureKind

from .conftest import describe, outcome_or_skip, run_leaving_nothing

DEVICE_PATHS = ["sandbox-dri", "podman-dri", "flatpak-dri"]


def on_machine(paths, runtimes, machine="virgl-guest"):
    return matrix_mod.expand({"matrix": {"paths": list(paths), "runtimes": list(runtimes),
                                         "probes": ["gl"],
                                         "machines": [machine]}}, "<test>").scenarios


@pytest.mark.full("machine-grid")
def test_the_device_paths_render_in_a_virgl_guest(toolset, tmp_path):
    """Each family's -dri path on two runtimes: the runtime's own Mesa on the guest's render node,
    renderer virgl (not llvmpipe), the image equal to the golden, the kernel driver virtio_gpu,
    bwrap with a user namespace of its own; and podman applying the harness's CDI spec, whose
    devices carry the guest's real card and render nodes; one boot for all of them."""
    scenarios = on_machine(DEVICE_PATHS, ["trixie", "bookworm"]) + on_machine(["podman-cdi"],
                                                                              ["trixie"])
    assert len(scenarios) == 7 and all(s.id.endswith("@virgl-guest") for s in scenarios)
    options = runner.RunOptions(out_dir=tmp_path / "out")
    results = run_leaving_nothing(scenarios, toolset, options)
    for result in results:
        assert outcome_or_skip(result) == verdict.PASS, describe(result)
        assert (result.report is not None
                and result.report.renderer.startswith("virgl (")), describe(result)
        assert result.driver_match.kernel_driver == "virtio_gpu", result.driver_match
        folder = result.result_dir
        assert (folder / "rerun.sh").exists() and (folder / "rerun-in-guest.sh").exists()
        rerun = json.loads((folder / "scenario.json").read_text())
        assert [s.id for s in matrix_mod.expand(rerun, "rerun").scenarios] == [result.scenario.id]
        assert any(c.name == "image" and c.ok for c in result.verdict.checks), describe(result)
    sandbox = next(r for r in results if r.scenario.path_id == "sandbox-dri")
    namespaces = sandbox.report.isolation["namespaces"]
    assert (namespaces["user"] and "user" in sandbox.scenario.spec.own_namespaces
            or namespaces["user"])
    cdi = next(r for r in results if r.scenario.path_id == "podman-cdi")
    spec = json.loads((cdi.result_dir / "cdi" / "gpu-harness.json").read_text())
    assert [d["name"] for d in spec["devices"]] == ["all", "renderD128"]
    assert [(n["path"], n["major"],
             n["minor"]) for n in spec["devices"][0]["containerEdits"]["deviceNodes"]] == [
        ("/dev/dri/card0", 226, 0), ("/dev/dri/renderD128", 226, 128)]
    assert (cdi.driver_match.used == "host-driver"
            and cdi.report.isolation["dri_nodes"]), describe(cdi)
    boots = [step for step in options.prepared if step.step == "machine virgl-guest"]
    assert (len(boots) == 1
            and boots[0].detail.startswith("7 of 7 scenarios in one boot")), options.prepared


@pytest.mark.full("machine-grid")
def test_a_guest_that_panics_fails_the_scenarios_it_had_not_finished(toolset, tmp_path):
    scenarios = on_machine(["native", "sandbox-dri"], ["host", "trixie"])
    assert [s.id for s in scenarios] == ["native/host/gl@virgl-guest",
                                         "sandbox-dri/host/gl@virgl-guest",
                                         "sandbox-dri/trixie/gl@virgl-guest"]
    local = matrix_mod.expand({"matrix": {"paths": ["software"], "probes": ["gl"]}},
                              "<test>").scenarios
    results = {r.scenario.id: r for r in run_leaving_nothing(
        local + scenarios, toolset, runner.RunOptions(out_dir=tmp_path / "out", jobs=2),
        hooks=Hooks(machine_panic_after=1))}
    if outcome_or_skip(results["native/host/gl@virgl-guest"]) == verdict.SKIP:
        return
    # the run went on beside the machine
    assert results["software/host/gl"].verdict.outcome is verdict.PASS
    assert results["native/host/gl@virgl-guest"].verdict.outcome is verdict.PASS, \
        describe(results["native/host/gl@virgl-guest"])
    for lost in scenarios[1:]:
        result = results[lost.id]
        assert (result.verdict.outcome is verdict.FAIL
                and result.verdict.failure_kind is FailureKind.GUEST_PANIC), describe(result)
        assert result.verdict.reason.startswith("machine virgl-guest: guest kernel panic")
        assert result.launch.logs["machine console"].endswith("console.log")


@pytest.mark.full("machine-grid")
def test_run_machine_from_the_command_line_and_rerun_one_scenario(tmp_path):
    """`gpu-harness run --machine`: ids with @machine in results.json and the grid; a scenario's
    rerun.sh boots the machine again for that scenario alone."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--machine", "virgl-guest",
                           "--paths", "sandbox-dri",
                           "--filter", "*/trixie/gl@*", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=900)
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    [entry] = document["scenarios"]
    if entry["outcome"] == "Skip":
        return outcome_or_skip_entry(entry)
    assert done.returncode == 0, done.stderr
    assert (entry["id"] == "sandbox-dri/trixie/gl@virgl-guest"
            and entry["outcome"] == "Pass"), entry["reason"]
    assert document["grid"][0]["runtimes"] == ["trixie@virgl-guest"], document["grid"]
    rerun = subprocess.run(["sh", str(tmp_path / "out" / entry["result_dir"] / "rerun.sh")],
                           capture_output=True,
                           text=True, timeout=900, env=dict(os.environ))
    assert rerun.returncode == 0, rerun.stderr
    assert "1 scenario: Pass 1" in rerun.stdout


def outcome_or_skip_entry(entry):
    from .conftest import skip_unless_required

    skip_unless_required(entry["path"], entry["id"], entry["reason"])


@pytest.mark.full("machine-grid")
def test_a_compositor_on_the_guest_card_shows_the_image_the_host_captures(toolset, tmp_path):
    """The kms probe in a virgl guest (compat.toml's rows): weston from the runtime on card0 shows
    the scene and the host's screendump of the guest's display equals the golden; with the render
    node alone (podman-dri) the compositor has nothing to modeset, an answer the matrix expects."""
    compat = matrix_mod.load(matrix_mod.DEFAULT_MATRIX.parent / "compat.toml")
    scenarios = [s for s in compat.scenarios if s.runtime.name == "trixie-kms"]
    assert [s.id for s in scenarios] == ["podman-dri/trixie-kms/kms@virgl-guest",
                                         "podman-dri-kms/trixie-kms/kms@virgl-guest"]
    results = {r.scenario.path_id: r
               for r in run_leaving_nothing(scenarios, toolset,
                                            runner.RunOptions(out_dir=tmp_path / "out"))}
    shown = results["podman-dri-kms"]
    if outcome_or_skip(shown) == verdict.SKIP:
        return
    assert shown.verdict.outcome is verdict.PASS, describe(shown)
    assert shown.report is not None and shown.report.renderer.startswith("virgl ("), describe(shown)
    checks = {c.name: c for c in shown.verdict.checks}
    assert checks["image"].ok and checks["scanout"].ok, describe(shown)
    assert ((shown.result_dir / "scanout.png").exists()
            and (shown.result_dir / "scanout-crop.png").exists())
    blind = results["podman-dri"]
    assert blind.verdict.outcome is verdict.EXPECTED_FAIL, describe(blind)
    assert (blind.verdict.failure_kind is FailureKind.NO_DISPLAY
            and blind.verdict.subject == "no card node")
