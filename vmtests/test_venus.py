"""Venus (seed 000 #4) for real: Vulkan serialized by Mesa's Venus driver in the runtime and run
by virglrenderer on the host, over vtest (no VM) and through virtio-gpu in QEMU. The newer host
side comes from toolsets built from runtimes (trixie-host: virglrenderer 1.1 and QEMU 10.0;
sid-host: virglrenderer 1.3). A vtest client that can never finish must end with the step named,
within its deadline, and leave nothing running."""
import os
import shutil

import pytest

from harness import matrix as matrix_mod
from harness.run import runner
from harness.runtimes import pinned_toolset
from harness.judging import verdict
from harness.scenario.outcomes import FailureKind

from .conftest import describe, outcome_or_skip, run_leaving_nothing, skip_unless_required

pytestmark = pytest.mark.full("venus")

VENUS = matrix_mod.load(matrix_mod.DEFAULT_MATRIX.parent / "venus.toml")
COMPAT = matrix_mod.load(matrix_mod.DEFAULT_MATRIX.parent / "compat.toml")


def toolset_from(runtime: str):
    if not shutil.which("mmdebstrap"):
        skip_unless_required("runtimes", "runtime builds",
                             "needs mmdebstrap (apt-get install mmdebstrap arch-test)")
    return pinned_toolset.load(f"runtime:{runtime}")


def run(scenario_ids, toolset, tmp_path, matrix=VENUS, retries=0):
    chosen = [s for s in matrix.scenarios if s.id in scenario_ids]
    assert len(chosen) == len(scenario_ids)
    return run_leaving_nothing(chosen, toolset, runner.RunOptions(out_dir=tmp_path / "out",
                                                                  retries=retries))


def our_processes(marker: str):
    """Processes whose command line names this test's folder: what a run must not leave behind."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmdline and int(pid) != os.getpid():
            found.append(cmdline.replace("\0", " "))
    return found


@pytest.mark.exclusive
@pytest.mark.parametrize("runtime", ["trixie", "sid"])
def test_vm_venus_renders_vulkan_and_gl_in_the_guest(runtime, tmp_path):
    toolset = toolset_from("trixie-host")
    # Under load the guest's Venus ring stalls under TCG ("MESA-VIRTIO: stuck in ring seqno wait",
    # then driver-hang): three attempts in a row in a full parallel run here, none alone. So this
    # test has the machine to itself (exclusive), and a retry that passes is a Flake, not a Pass.
    results = run([f"vm-venus/{runtime}/vulkan", f"vm-venus/{runtime}/gl"], toolset, tmp_path,
                  retries=1)
    for result in results:
        outcome = outcome_or_skip(result)
        # A Flake (failed, then passed on the retry) is reported as one; under a full parallel
        # suite a stalled ring has also ended in the probe's timeout rather than a named step.
        assert outcome in (verdict.PASS, verdict.FLAKE), describe(result)
    vulkan = next(r for r in results if r.scenario.probe == "vulkan").report.raw
    assert (vulkan["device"]["driver_id"] == "MESA_VENUS"
            and vulkan["renderer"].startswith("Virtio-GPU Venus ("))
    assert vulkan["isolation"]["dri_nodes"], "the guest's own virtio-gpu render node"


@pytest.mark.parametrize("client", ["trixie", "sid"])
@pytest.mark.parametrize("server", ["trixie-host", "sid-host"])
def test_vtest_venus_names_the_step_that_never_returns_and_leaves_nothing(server, client, tmp_path):
    """The outcome grid's vtest column: each server (virglrenderer 1.1, 1.3) with each client
    (Mesa 25.0, 26.x)."""
    toolset = toolset_from(server)
    (result,) = run([f"vtest-venus/{client}/vulkan"], toolset, tmp_path)
    assert outcome_or_skip(result) == verdict.EXPECTED_FAIL, describe(result)
    assert (result.verdict.failure_kind == FailureKind.DRIVER_HANG
            and result.verdict.subject.startswith("vk"))
    assert "virgl_renderer_resource_export_blob" in result.verdict.reason, "the server's own words"
    # The device was found before the hang: the report says which, and that it is Venus.
    assert result.report.raw["renderer"].startswith("Virtio-GPU Venus (")
    assert result.wall_s < result.scenario.timeout_s, "the probe's deadline, not the harness's kill"
    assert (result.report.raw["failed_step"] == result.verdict.subject
            and result.report.raw["hung"] is True)
    assert our_processes(str(tmp_path)) == []


def test_the_hosts_own_virglrenderer_offers_no_venus(tmp_path, toolset):
    (result,) = run(["vtest-venus/trixie/vulkan"], toolset, tmp_path, COMPAT)
    outcome = outcome_or_skip(result)
    assert outcome in (verdict.EXPECTED_FAIL, verdict.PASS), describe(result)
    if outcome == verdict.EXPECTED_FAIL:
        assert result.verdict.failure_kind == FailureKind.VULKAN_ERROR, describe(result)


def test_lavapipe_where_venus_was_promised_is_a_silent_fallback(run_scenarios):
    """vtest-venus whose loader is pointed at lavapipe renders, on the CPU and in the sandbox:
    the renderer check must call that what it is."""
    (scenario,) = matrix_mod.expand({
        "matrix": {"paths": ["vtest-venus"], "runtimes": ["trixie"], "probes": ["vulkan"]},
        "runtimes": {"trixie": {"kind": "debootstrap"}},
        "override": [{"match": "*",
                      "env": {"VK_DRIVER_FILES": "/usr/share/vulkan/icd.d/lvp_icd.json"}}],
    }, "<test>").scenarios
    (result,) = run_scenarios([scenario])
    assert outcome_or_skip(result) == verdict.FAIL, describe(result)
    assert result.verdict.failure_kind == FailureKind.SILENT_SOFTWARE_FALLBACK, describe(result)
    assert result.report.raw["device"]["driver_id"] == "MESA_LLVMPIPE"
