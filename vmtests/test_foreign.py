"""Other architectures for real: arm64 runtimes (bookworm-arm64, trixie-arm64) built with
mmdebstrap under qemu-user, an emulated arm64 app rendering through the host's x86-64
virglrenderer, the host-driver paths refused as wrong-architecture by the ELF header, the VM
paths' Skip, and the ELF classifier on the runtimes' own files."""
import pytest

from harness import emulation, matrix as matrix_mod, verdict
from harness.outcomes import FailureKind

from .conftest import describe, outcome_or_skip

COMPAT = matrix_mod.load(matrix_mod.DEFAULT_MATRIX.parent / "compat.toml")
FOREIGN = ("bookworm-arm64", "trixie-arm64")


def compat(scenario_id):
    (found,) = [s for s in COMPAT.scenarios if s.id == scenario_id]
    return found


def require_arm64():
    if emulation.how_runs("arm64") is None:
        raise AssertionError(emulation.why_not("arm64"))


@pytest.mark.parametrize("runtime", FOREIGN)
def test_an_emulated_arm64_app_renders_through_the_host_s_virglrenderer(runtime, run_scenarios):
    require_arm64()
    (result,) = run_scenarios([compat(f"vtest-virgl/{runtime}/gl")])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    execution = result.runtime_facts["execution"]
    assert execution["architecture"] == "arm64" and execution["runs"] == "emulated"
    assert execution["version"].startswith("qemu-aarch64 version")
    assert result.report.renderer.startswith("virgl")
    root = result.scenario.runtime.root
    assert emulation.elf_architecture(f"{root}/usr/bin/dash") == "arm64"  # the classifier on the runtime's own files
    assert emulation.tree_architecture(root) == "arm64"
    assert any("aarch64-linux-gnu" in library for library in result.report.raw["libraries"])


@pytest.mark.parametrize("path", ["sandbox-hostlibs", "sandbox-hostdeps", "sandbox-capsule"])
def test_the_host_s_driver_in_an_arm64_runtime_is_wrong_architecture_by_its_elf_header(path, run_scenarios):
    require_arm64()
    (result,) = run_scenarios([compat(f"{path}/bookworm-arm64/gl")])
    assert result.verdict.outcome is verdict.EXPECTED_FAIL, describe(result)
    assert result.verdict.failure_kind is FailureKind.WRONG_ARCHITECTURE
    assert "the host's amd64 driver in a runtime for arm64" in result.verdict.reason


def test_the_vm_paths_say_why_an_arm64_runtime_does_not_boot(run_scenarios):
    (result,) = run_scenarios([compat("vm-virgl/bookworm-arm64/gl")])
    assert result.verdict.outcome is verdict.SKIP and "qemu-system-aarch64" in result.verdict.reason


def test_the_elf_classifier_on_each_runtime_s_own_files():
    """The shells and C libraries of the built amd64, i386 and arm64 runtimes, read by their headers."""
    from harness import runtimes

    require_arm64()
    for name, architecture in (("bookworm", "amd64"), ("bookworm-i386", "i386"), ("bookworm-arm64", "arm64")):
        root = runtimes.ensure(name).root
        assert emulation.tree_architecture(root) == architecture, name
        libc = sorted(root.glob("usr/lib/*-linux-gnu*/libc.so.6"))
        assert libc and emulation.elf_architecture(libc[0]) == architecture, (name, libc)
