"""VFIO for real: the nested tier (an L1 guest with an emulated IOMMU, the harness's own vfio
module binding its devices, an L2 QEMU given one of them), and vm-vfio's preflight on this host."""
import json

import pytest
from PIL import Image

from harness import matrix as matrix_mod
from harness.judging import verdict
from harness.scenario.probes import GOLDENS_DIR
from harness.launch.families import vfio as vfio_family

from .conftest import describe, outcome_or_skip


def scenarios(path, probe, **settings):
    return matrix_mod.expand({"matrix": {"paths": [path], "probes": [probe]},
                              "defaults": {"timeout_s": 300, **settings}}, "<test>").scenarios


def report_of(result):
    return json.loads((result.result_dir / "probe" / "probe.stdout").read_text().splitlines()[-1])


def test_nested_fast_tier_binds_moves_pixels_by_dma_passes_to_l2_and_restores(run_scenarios):
    (result,) = run_scenarios(scenarios("vm-vfio-nested", "vfio"))
    if outcome_or_skip(result) != verdict.PASS:
        pytest.fail(describe(result))
    report = report_of(result)
    assert [s["name"] for s in report["steps"]] == ["reaper-restores", "bind-edu", "dma-round-trip",
                                                    "bind-gpu",
                                                    "l2-query-pci", "restore-gpu", "restore-edu"]
    assert all(step["ok"] for step in report["steps"])
    # The CLI's bind, then the reaper's restore on a real kernel: what happens when the harness
    # dies.
    assert report["steps"][0]["detail"] == "vfio bind, then the reaper gave it back to no driver"
    assert report["steps"][1]["detail"] == "bound to vfio-pci (was none)"
    assert report["steps"][3]["detail"] == "bound to vfio-pci (was virtio-pci)"
    assert report["dma"]["exact"] and report["dma"]["identification"] == "0x010000ed"
    # more than one 4 KiB DMA
    assert report["dma"]["bytes"] == 64 * 64 * 3 and report["dma"]["chunks"] > 1
    passed = report["l2"]["passed"]
    assert (passed["id"]["vendor"], passed["id"]["device"]) == (0x1AF4, 0x1050)
    assert result.report.renderer.startswith("1af4:1050 vfio-pci host=0000:")
    edu_check = report["devices"]["1234:11e8"]
    assert edu_check["usable"] and edu_check["iommu_group"] is not None  # the IOMMU gave it a group
    image = next(c for c in result.verdict.checks if c.name == "image")
    assert image.ok, image.detail  # the image that came back through the IOMMU is the golden
    assert (result.result_dir / "rerun.sh").exists()


def test_nested_tier_without_the_iommu_fails_with_checks_reason(run_scenarios):
    (result,) = run_scenarios(scenarios("vm-vfio-nested", "vfio", kernel_args=["intel_iommu=off"]))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL, describe(result)
    # the CLI's own words, then check's
    assert "gpu-harness vfio bind 0000:" in result.verdict.reason
    assert "preflight: no IOMMU groups" in result.verdict.reason
    steps = report_of(result)["steps"]
    assert steps == [{"name": "reaper-restores", "ok": False, "detail": steps[0]["detail"]}]


def test_nested_tier_without_interrupt_remapping_fails_setting_up_the_container(run_scenarios):
    """VFIO type1 refuses a group without interrupt remapping: EPERM from VFIO_SET_IOMMU, said
    with the step, and both devices are still given back."""
    (result,) = run_scenarios(scenarios("vm-vfio-nested", "vfio", kernel_args=["intremap=off"]))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL, describe(result)
    assert ("vfio set-iommu: Operation not permitted (no interrupt remapping"
            in result.verdict.reason)
    steps = {s["name"]: s for s in report_of(result)["steps"]}
    assert not steps["dma-round-trip"]["ok"] and steps["restore-edu"]["ok"]


def test_vm_vfio_skips_with_the_reason_when_no_device_is_named(run_scenarios, monkeypatch):
    monkeypatch.delenv(vfio_family.DEVICE_ENV, raising=False)
    (result,) = run_scenarios(scenarios("vm-vfio", "gl"))
    assert result.verdict.outcome == verdict.SKIP
    assert f"set {vfio_family.DEVICE_ENV}=BDF" in result.verdict.reason


def test_vm_vfio_skips_with_checks_reason_for_a_device_that_cannot_go(run_scenarios, monkeypatch):
    monkeypatch.setenv(vfio_family.DEVICE_ENV, "0000:7f:1f.7")
    (result,) = run_scenarios(scenarios("vm-vfio", "gl"))
    assert result.verdict.outcome == verdict.SKIP
    assert result.verdict.reason == ("0000:7f:1f.7 cannot be passed through: no PCI device "
                                     "0000:7f:1f.7")


@pytest.mark.full("nested-vfio")
def test_nested_full_tier_l2_drives_the_passed_gpu_and_shows_the_image(run_scenarios):
    """L2 boots with the device L1 gave to vfio-pci: its virtio_gpu initialises it, interrupts
    arrive, and the image L2 writes to its framebuffer comes out of the outer QEMU exact."""
    (result,) = run_scenarios(scenarios("vm-vfio-nested-boot", "vfio", timeout_s=1200))
    if outcome_or_skip(result) != verdict.PASS:
        pytest.fail(describe(result))
    report = report_of(result)
    assert [s["name"] for s in report["steps"]] == ["reaper-restores", "bind-edu", "dma-round-trip",
                                                    "bind-gpu",
                                                    "l2-boot", "restore-gpu", "restore-edu"]
    boot = report["l2_boot"]
    assert boot["interrupt_total"] > 0 and any(name.startswith("virtio")
                                               for name in boot["interrupts"])
    assert boot["framebuffer"].startswith("fb0 ") and "bpp 32" in boot["framebuffer"]
    scanout = next(c for c in result.verdict.checks if c.name == "scanout")
    assert scanout.ok, scanout.detail
    with (Image.open(result.result_dir / "scanout.png") as shown,
          Image.open(GOLDENS_DIR / "vfio.png") as golden):
        top_left = shown.convert("RGB").crop((0, 0, *golden.size))
        assert top_left.tobytes() == golden.convert("RGB").tobytes(), ("L2's image must come out "
                                                                       "pixel-exact")
