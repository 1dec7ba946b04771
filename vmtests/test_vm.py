"""VM paths: guest faults end in the right verdict within seconds, and nothing survives."""
import pytest

from harness import matrix as matrix_mod, verdict

from .conftest import describe, outcome_or_skip
from .test_faults import processes_mentioning


def vm_scenario(path="vm-headless", timeout_s=120, **settings):
    return matrix_mod.expand({"matrix": {"paths": [path]}, "defaults": {"timeout_s": timeout_s, **settings}},
                             "<test>").scenarios


def test_guest_kernel_panic_fails_fast_with_the_reason(run_scenarios):
    (result,) = run_scenarios(vm_scenario(kernel_args=["gpu_harness.fault=panic"]))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL, describe(result)
    assert result.verdict.reason.startswith("guest kernel panic: sysrq triggered crash")
    assert result.wall_s < 30, f"{result.wall_s:.1f} s: the panic should end the run, not the 120 s timeout"


def test_guest_init_failure_fails_with_the_reason(run_scenarios):
    (result,) = run_scenarios(vm_scenario(kernel_args=["gpu_harness.fault=init-fail"]))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL
    assert "guest init failed: fault injected" in result.verdict.reason
    assert result.wall_s < 30


def test_hung_guest_times_out_and_qemu_is_gone(run_scenarios, tmp_path):
    (result,) = run_scenarios(vm_scenario(timeout_s=8, kernel_args=["gpu_harness.fault=hang"]))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL
    assert "timed out after 8 s" in result.verdict.reason
    assert processes_mentioning(str(result.result_dir)) == []


def test_vm_result_records_acceleration_and_console(run_scenarios):
    (result,) = run_scenarios(vm_scenario())
    if outcome_or_skip(result) != verdict.PASS:
        pytest.fail(describe(result))
    assert result.probe.facts["accel"] in ("kvm", "tcg") and result.probe.facts["accel_reason"]
    assert "gpu-harness: probe exited 0" in (result.result_dir / "console.log").read_text()
    assert result.probe.service_rss_kb["qemu"] > 0
    assert result.probe.data["isolation"]["dri_nodes"] == []
