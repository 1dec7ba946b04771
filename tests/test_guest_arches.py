"""A foreign runtime's guest, container and Flatpak, as logic: which kernel and QEMU boot a
runtime's guest (or what is missing), what a runtime's image and Flatpak export leave out, and
what emulation costs from the numbers of two runs. The real boots, images and Flatpaks are in
vmtests/test_foreign.py."""
import re
import shutil
from pathlib import Path

import pytest

from harness.host import emulation
from harness.report import emulationcost
from harness.runtimes import imagearchive
from harness.launch.families import vm_boot
from harness.launch.families.flatpak_install import HOST_ARCH, flatpak_arch
from harness.scenario.model import Runtime, RuntimeKind
from harness.report import answers, records
from harness.host.toolset import Tool, Toolset
from harness.launch.vm import arches


def toolset(*missing: str) -> Toolset:
    tools = {name: Tool(name, f"/usr/bin/{name}") for name in ("qemu-system-x86_64",
                                                               "qemu-system-aarch64", "busybox")
             if name not in missing}
    tools["kernel"] = Tool("kernel", "/boot/vmlinuz-host",
                           extra={"modules_dir": "/lib/modules/host"})
    return Toolset("test", tools)


def tree(folder: Path, kernel: bool = True, busybox: bool = True) -> Runtime:
    """A runtime tree with the host's shell (its architecture is what a test says it is)."""
    (folder / "usr/bin").mkdir(parents=True)
    shutil.copy("/bin/dash", folder / "usr/bin/dash")
    if kernel:
        (folder / "boot").mkdir()
        (folder / "boot/vmlinuz-6.1.0-50-arm64").write_bytes(b"")
        (folder / "usr/lib/modules/6.1.0-50-arm64").mkdir(parents=True)
        (folder / "usr/lib/modules/6.1.0-50-arm64/modules.dep").write_text("")
    if busybox:
        (folder / "bin").mkdir()
        (folder / "bin/busybox").write_bytes(b"")
    return Runtime("bookworm-arm64", RuntimeKind.ROOTFS, str(folder), "a test tree")


def as_architecture(monkeypatch, name: str) -> None:
    monkeypatch.setattr(emulation, "tree_architecture", lambda root: name)


def test_a_native_runtime_boots_the_toolset_s_kernel_with_kvm_possible(tmp_path):
    boot = vm_boot.guest_boot(toolset(), tree(tmp_path))
    assert boot.arch is arches.AMD64 and not boot.foreign
    assert (boot.qemu, boot.kernel, boot.modules_dir) == ("/usr/bin/qemu-system-x86_64",
                                                          "/boot/vmlinuz-host",
                                                         "/lib/modules/host")


def test_an_arm64_runtime_boots_its_own_kernel_modules_and_busybox(tmp_path, monkeypatch):
    as_architecture(monkeypatch, "arm64")
    boot = vm_boot.guest_boot(toolset(), tree(tmp_path))
    assert (boot.foreign and boot.arch.qemu == "qemu-system-aarch64"
            and boot.qemu == "/usr/bin/qemu-system-aarch64")
    assert boot.kernel == str(tmp_path / "boot/vmlinuz-6.1.0-50-arm64")
    assert boot.modules_dir == str(tmp_path / "usr/lib/modules/6.1.0-50-arm64")
    assert boot.busybox == str(tmp_path / "bin/busybox")
    assert (boot.arch.machine, boot.arch.console, boot.arch.second_serial) == ("virt", "ttyAMA0",
                                                                               False)


@pytest.mark.parametrize("case, said", [
    ("no kernel", "has no arm64 kernel with modules or no busybox of its own"),
    ("no busybox", "its recipe adds linux-image-arm64 busybox-static"),
    ("no qemu", "its guest needs qemu-system-aarch64 (install qemu-system-arm)"),
    ("mips64el", "the VM paths boot amd64, arm64, riscv64 guests only"),
])
def test_each_reason_a_foreign_guest_cannot_boot_says_what_is_missing(tmp_path, monkeypatch, case,
                                                                      said):
    as_architecture(monkeypatch, "mips64el" if case == "mips64el" else "arm64")
    runtime = tree(tmp_path, kernel=case != "no kernel", busybox=case != "no busybox")
    with pytest.raises(vm_boot.BootUnavailable, match=re.escape(said)):
        vm_boot.guest_boot(toolset("qemu-system-aarch64") if case == "no qemu" else toolset(),
                           runtime)


def test_a_runtime_s_kernel_stays_out_of_its_container_image(tmp_path):
    argv = imagearchive.layer_argv(tmp_path)
    assert ("--anchored" in argv and "--exclude=boot/*" in argv
            and "--exclude=usr/lib/modules/*" in argv)
    assert argv.index("--exclude=boot/*") < argv.index("--")  # options, not members


def test_flatpak_refs_are_the_host_s_arch_unless_the_runtime_is_emulated(tmp_path, monkeypatch):
    assert flatpak_arch("/") == HOST_ARCH == "x86_64"
    as_architecture(monkeypatch, "i386")
    # a 32-bit runtime runs as multiarch on the host's
    assert flatpak_arch(str(tmp_path)) == HOST_ARCH
    as_architecture(monkeypatch, "arm64")
    assert flatpak_arch(str(tmp_path)) == "aarch64"


def measured(runtime, runs, probe_s, fps, spread, suite="bookworm", path="vtest-virgl"):
    return emulationcost.Measured(path, "gl", runtime, suite, runs, "arm64"
                                  if runs == "emulated" else "amd64",
                                  "qemu-aarch64 version 7.2.22" if runs == "emulated" else "",
                                  probe_s, fps, spread)


def test_an_emulated_scenario_is_measured_against_the_native_runtime_of_its_suite():
    costs = emulationcost.pairs([
        measured("bookworm-i386", "natively", 1.0, 900.0, (800.0, 950.0)),
        measured("bookworm", "natively", 0.8, 1100.0, (450.0, 1400.0)),
        measured("bookworm-arm64", "emulated", 3.9, 745.0, (282.0, 823.0)),
        # no native trixie
        measured("trixie-arm64", "emulated", 8.6, 160.0, (121.0, 212.0), suite="trixie"),
    ])
    (cost,) = costs
    assert cost.native.runtime == "bookworm"  # the suite's own name first, not bookworm-i386
    assert (cost.probe_factor == pytest.approx(3.9 / 0.8)
            and cost.fps_share == pytest.approx(745 / 1100))
    assert cost.fps_same  # the rounds overlap: the share is noise
    said = emulationcost.describe(cost.to_dict())
    assert said == ("bookworm-arm64/gl: probe x4.9 (3.90 s against 0.80 s), fps the same as "
                    "bookworm's (within the spread)")


def test_a_share_outside_the_spread_is_said_as_a_share():
    (cost,) = emulationcost.pairs([measured("trixie", "natively", 0.84, 1221.0, (538.0, 1698.0),
                                            suite="trixie"),
                                   measured("trixie-arm64", "emulated", 8.63, 160.0, (121.0, 212.0),
                                            suite="trixie")])
    assert (not cost.fps_same
            and emulationcost.describe(cost.to_dict()).endswith("fps 13% of trixie's"))


def entry(runtime, runs, probe_s, fps, spread, outcome="Pass"):
    execution = {"architecture": "arm64", "runs": "emulated",
                 "version": "qemu-aarch64 version 7.2.22"} \
        if runs == "emulated" else {"architecture": "amd64", "runs": "natively"}
    return {"id": f"vtest-virgl/{runtime}/gl", "path": "vtest-virgl", "runtime": runtime,
            "probe": "gl",
            "outcome": outcome, "reason": "", "wall_s": probe_s + 0.5,
            "phases_s": {"probe_s": probe_s},
            "fps": fps, "fps_spread": list(spread), "peak_rss_kb": {"probe": 50_000},
            "runtime_facts": {"suite": "bookworm", "execution": execution}}


def test_the_cost_answer_says_emulated_against_native_for_the_path():
    cost = next(a for a in answers.build(records.entries([
        entry("bookworm", "natively", 0.79, 1109.0, (448.0, 1427.0)),
        entry("bookworm-arm64", "emulated", 3.90, 300.0, (282.0, 320.0))])) if a.key == "cost")
    (record,) = cost.records
    (emulated,) = record["emulation"]
    assert emulated["runtime"] == "bookworm-arm64" and emulated["native_runtime"] == "bookworm"
    assert emulated["fps_vs_native"] == pytest.approx(300 / 1109, abs=1e-3)
    assert cost.rows[0][-1].text == ("bookworm-arm64/gl: probe x4.9 (3.90 s against 0.79 s), fps "
                                     "27% of bookworm's")


def test_a_failed_emulated_scenario_costs_nothing():
    cost = next(a for a in answers.build(records.entries([
        entry("bookworm", "natively", 0.79, 1109.0, (448.0, 1427.0)),
        entry("bookworm-arm64", "emulated", 3.90, None, (0, 0), outcome="Fail")]))
                if a.key == "cost")
    assert cost.records[0]["emulation"] == [] and cost.rows[0][-1].text == "-"


def test_the_grid_says_each_row_s_architecture_where_the_run_mixes_them():
    from harness.report import grid

    native, emulated = (entry("bookworm", "natively", 0.79, 1109.0, (448.0, 1427.0)),
                        entry("bookworm-arm64", "emulated", 3.90, 300.0, (282.0, 320.0)))
    (mixed,) = grid.build(records.entries([native, emulated]))
    assert mixed.architectures == {"bookworm": "amd64", "bookworm-arm64": "arm64, emulated"}
    assert mixed.to_json()["architectures"] == mixed.architectures
    (alone,) = grid.build(records.entries([native]))
    assert alone.architectures == {}  # one architecture: the rows need no telling apart
    from harness.report import html

    from .runs import document

    made = document(20)
    for index, scenario in enumerate(made["scenarios"]):
        scenario["runtime_facts"] = {"execution": {"architecture": "arm64", "runs": "emulated"}
                                     if index == 0
                                     else {"architecture": "amd64", "runs": "natively"}}
    made["scenarios"][0]["runtime"] = "bookworm-arm64"  # a row of its own
    page = html.render(records.parse(made))
    assert page.count("<small>arm64, emulated</small>") >= 1 and "<small>amd64</small>" in page
