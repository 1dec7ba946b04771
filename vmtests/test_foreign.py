"""Other architectures for real: arm64 runtimes (bookworm-arm64, trixie-arm64) built with
mmdebstrap under qemu-user, an emulated arm64 app rendering through the host's x86-64
virglrenderer (alone, in a Flatpak as aarch64 refs, in an arm64 container image), the host-driver
paths refused as wrong-architecture by the ELF header, an arm64 guest booting the runtime's own
kernel under qemu-system-aarch64, what emulation costs, and the ELF classifier on the runtimes'
own files."""
import pytest

from harness.host import emulation
from harness.report import emulationcost
from harness import matrix as matrix_mod
from harness.judging import verdict
from harness.scenario.outcomes import FailureKind

from .conftest import describe, outcome_or_skip

pytestmark = pytest.mark.full("other-architectures")

COMPAT = matrix_mod.load(matrix_mod.DEFAULT_MATRIX.parent / "compat.toml")
FOREIGN = ("bookworm-arm64", "trixie-arm64")
RISCV = "sid-riscv64"


def compat(scenario_id):
    (found,) = [s for s in COMPAT.scenarios if s.id == scenario_id]
    return found


def require_emulated(architecture: str = "arm64"):
    if emulation.how_runs(architecture) is None:
        raise AssertionError(emulation.why_not(architecture))


@pytest.mark.parametrize("runtime", FOREIGN)
def test_an_emulated_arm64_app_renders_through_the_host_s_virglrenderer(runtime, run_scenarios):
    require_emulated()
    (result,) = run_scenarios([compat(f"vtest-virgl/{runtime}/gl")])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    execution = result.runtime_facts["execution"]
    assert execution["architecture"] == "arm64" and execution["runs"] == "emulated"
    assert execution["version"].startswith("qemu-aarch64 version")
    assert result.report.renderer.startswith("virgl")
    root = result.scenario.runtime.root
    # the classifier on the runtime's own files
    assert emulation.elf_architecture(f"{root}/usr/bin/dash") == "arm64"
    assert emulation.tree_architecture(root) == "arm64"
    assert any("aarch64-linux-gnu" in library for library in result.report.raw["libraries"])


@pytest.mark.parametrize("path", ["sandbox-hostlibs", "sandbox-hostdeps", "sandbox-capsule"])
def test_the_host_s_driver_in_an_arm64_runtime_has_the_wrong_elf_architecture(path, run_scenarios):
    require_emulated()
    (result,) = run_scenarios([compat(f"{path}/bookworm-arm64/gl")])
    assert result.verdict.outcome is verdict.EXPECTED_FAIL, describe(result)
    assert result.verdict.failure_kind is FailureKind.WRONG_ARCHITECTURE
    assert "the host's amd64 driver in a runtime for arm64" in result.verdict.reason


@pytest.mark.parametrize("runtime", FOREIGN)
def test_an_arm64_guest_boots_the_runtime_s_own_kernel_and_renders_with_virgl(runtime,
                                                                              run_scenarios):
    """qemu-system-aarch64 (virt, virtio-gpu-gl) under TCG: the arm64 kernel, busybox and Mesa are
    the runtime's; the host's virglrenderer renders what the guest's virgl driver sends."""
    (result,) = run_scenarios([compat(f"vm-virgl/{runtime}/gl")])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    facts, argv = result.launch.facts, result.launch.argv
    assert facts["guest_architecture"] == "arm64" and facts["accel"] == "tcg"
    assert facts["kernel"].startswith(f"{result.scenario.runtime.root}/boot/vmlinuz-")
    assert argv[0].endswith("qemu-system-aarch64") and argv[argv.index("-machine") + 1] == "virt"
    assert emulation.elf_architecture(result.scenario.runtime.root + "/bin/busybox") == "arm64"
    assert result.report.renderer.startswith("virgl")
    assert any("aarch64-linux-gnu" in library for library in result.report.raw["libraries"])
    # the guest's framebuffer, captured from the display
    assert "scanout" in result.launch.artifacts


def test_flatpak_runs_an_arm64_runtime_s_app_as_aarch64(run_scenarios):
    require_emulated()
    (result,) = run_scenarios([compat("flatpak-vtest/bookworm-arm64/gl")])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    assert ("--arch=aarch64" in result.launch.argv
            and result.launch.facts["flatpak_arch"] == "aarch64")
    assert any("aarch64-linux-gnu" in library for library in result.report.raw["libraries"])


def test_podman_runs_an_arm64_image_for_its_platform(run_scenarios):
    """The runtime as an image whose config says arm64, run with --arch arm64; the kernel the
    runtime carries for its guest is not in the image."""
    from harness.runtimes import imagearchive, builds

    require_emulated()
    (result,) = run_scenarios([compat("podman-vtest/bookworm-arm64-image/gl")])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    argv = result.launch.argv
    assert argv[argv.index("--arch") + 1] == "arm64"
    archive = builds.image_archive_path("bookworm-arm64")
    assert imagearchive.read(str(archive)).architecture == "arm64"
    assert not [name for name in layer_names(archive) if name.startswith(("boot/",
                                                                          "usr/lib/modules/")) and
                not name.endswith("/")]
    assert result.report.renderer.startswith("virgl")


def layer_names(archive) -> list:
    import gzip
    import tarfile

    with gzip.open(archive) as raw, tarfile.open(fileobj=raw) as outer:
        layer = next(member for member in outer.getmembers() if member.name.endswith("layer.tar"))
        with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
            return inner.getnames()


def test_what_emulation_costs_is_the_emulated_run_against_the_native_one(run_scenarios):
    """The same path and probe on bookworm and bookworm-arm64, paired by their suite, each side's
    probe time and fps from the run (what bench and the cost answer show)."""
    require_emulated()
    results = run_scenarios([compat("vtest-virgl/bookworm/gl"),
                             compat("vtest-virgl/bookworm-arm64/gl")])
    for result in results:
        assert outcome_or_skip(result) == verdict.PASS, describe(result)
    measured = [emulationcost.Measured.from_facts(r.scenario.path_id, r.scenario.probe,
                                                  r.scenario.runtime.name,
                                                  r.runtime_facts, r.launch.phases.get("probe_s"),
                                                  r.report.fps,
                                                  r.report.fps_spread) for r in results]
    (cost,) = emulationcost.pairs(m for m in measured if m is not None)
    assert (cost.emulated.runtime, cost.native.runtime) == ("bookworm-arm64", "bookworm")
    assert cost.emulated.emulator.startswith("qemu-aarch64 version")
    assert cost.probe_factor is not None and cost.fps_share is not None  # both sides measured
    assert emulationcost.describe(cost.to_dict()).startswith("bookworm-arm64/gl: probe x")


def test_a_riscv64_runtime_renders_alone_in_flatpak_in_podman_and_in_its_own_guest(run_scenarios):
    """The second foreign architecture: sid's riscv64 Mesa under qemu-riscv64 (vtest, Flatpak as
    riscv64 refs, the image with --arch riscv64), and a riscv64 guest (qemu-system-riscv64, its
    OpenSBI, the runtime's kernel) whose virgl driver the host's virglrenderer serves; the host's
    driver is wrong-architecture."""
    require_emulated("riscv64")
    ids = [f"vtest-virgl/{RISCV}/gl", f"flatpak-vtest/{RISCV}/gl", f"podman-vtest/{RISCV}-image/gl",
           f"vm-virgl/{RISCV}/gl", f"sandbox-hostlibs/{RISCV}/gl"]
    results = {r.scenario.id: r for r in run_scenarios([compat(i) for i in ids])}
    for scenario_id in ids[:4]:
        assert outcome_or_skip(results[scenario_id]) == verdict.PASS, describe(results[scenario_id])
        assert any("riscv64-linux-gnu" in lib
                   for lib in results[scenario_id].report.raw["libraries"]), scenario_id
    assert results[ids[0]].runtime_facts["execution"]["version"].startswith("qemu-riscv64 version")
    assert "--arch=riscv64" in results[ids[1]].launch.argv
    podman = results[ids[2]].launch.argv
    assert podman[podman.index("--arch") + 1] == "riscv64"
    guest = results[ids[3]]
    assert (guest.launch.facts["guest_architecture"] == "riscv64"
            and guest.launch.argv[0].endswith("qemu-system-riscv64"))
    driver = results[ids[4]]
    assert (driver.verdict.outcome is verdict.EXPECTED_FAIL
            and driver.verdict.failure_kind is FailureKind.WRONG_ARCHITECTURE)
    assert "the host's amd64 driver in a runtime for riscv64" in driver.verdict.reason


def test_the_elf_classifier_on_each_runtime_s_own_files():
    """The shells and C libraries of the built amd64, i386 and arm64 runtimes, read by their
    headers."""
    from harness.runtimes import builds

    require_emulated()
    for name, architecture in (("bookworm", "amd64"), ("bookworm-i386", "i386"), ("bookworm-arm64",
                                                                                  "arm64"),
                               (RISCV, "riscv64")):
        root = builds.ensure(name).root
        assert emulation.tree_architecture(root) == architecture, name
        libc = sorted(root.glob("usr/lib/*-linux-gnu*/libc.so.6"))
        assert libc and emulation.elf_architecture(libc[0]) == architecture, (name, libc)
