"""harness.system.vfio on fixture sysfs trees: what `check` finds, and the bind/restore state
machine
with each step failing in turn (a fake kernel answers the writes). The real kernel's answers
are in vmtests/test_vfio.py (the nested tier)."""
import errno
import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from harness.system import reaper, vfio
from harness.launch.vm import modules as modules_mod
from harness.launch.vm.qemu import QemuSpec

GPU, AUDIO, BRIDGE, OTHER = "0000:01:00.0", "0000:01:00.1", "0000:00:01.0", "0000:02:00.0"


class Tree:
    """A sysfs fixture: devices, drivers, IOMMU groups, as the kernel lays them out."""

    def __init__(self, root: Path, iommu=True, vfio_pci=True):
        self.root = root
        (root / "sys/bus/pci/devices").mkdir(parents=True)
        (root / "sys/bus/pci/drivers").mkdir(parents=True)
        (root / "sys/bus/pci/drivers_probe").write_text("")
        (root / "sys/kernel/iommu_groups").mkdir(parents=True)
        self.iommu = iommu
        if vfio_pci:
            self.driver("vfio-pci")

    def driver(self, name):
        folder = self.root / "sys/bus/pci/drivers" / name
        folder.mkdir(exist_ok=True)
        for control in ("bind", "unbind"):
            (folder / control).write_text("")
        return folder

    def device(self, bdf, ids="10de:2684", pci_class="0x030000", driver=None, group="7",
               boot_vga=None,
               reset="flr bus"):
        folder = self.root / "sys/bus/pci/devices" / bdf
        folder.mkdir()
        vendor, device = ids.split(":")
        for name, value in (("vendor", "0x" + vendor), ("device", "0x" + device), ("class",
                                                                                   pci_class),
                            ("driver_override", "(null)"), ("reset_method", reset)):
            if value is not None:
                (folder / name).write_text(value + "\n")
        if boot_vga is not None:
            (folder / "boot_vga").write_text(boot_vga)
        if driver:
            self.driver(driver)
            os.symlink(f"../../../bus/pci/drivers/{driver}", folder / "driver")
        if self.iommu and group is not None:
            members = self.root / "sys/kernel/iommu_groups" / group / "devices"
            members.mkdir(parents=True, exist_ok=True)
            os.symlink(f"../../../kernel/iommu_groups/{group}", folder / "iommu_group")
            os.symlink(f"../../../../bus/pci/devices/{bdf}", members / bdf)
        return folder


class FakeKernel(vfio.Sysfs):
    """The kernel's side of the sysfs writes bind and restore make, on a Tree; `fail` makes the
    next write for one step fail with an errno, as the kernel would."""

    def __init__(self, root, fail=None, fail_errno=errno.EBUSY, probe_ignores_override=False):
        super().__init__(str(root))
        self.fail, self.fail_errno = fail, fail_errno
        self.probe_ignores_override = probe_ignores_override
        self.writes = []

    def step_of(self, relative, value):
        if relative.endswith("driver_override"):
            return "clear-override" if value.strip() == "" else "driver_override"
        if relative.endswith("/unbind"):
            return "unbind"
        if relative.endswith("drivers_probe"):
            return "probe"
        return relative

    def write(self, relative, value):
        step = self.step_of(relative, value)
        self.writes.append(step)
        if step == self.fail:
            self.fail = None  # once: the rollback's own writes go through
            raise OSError(self.fail_errno, os.strerror(self.fail_errno))
        device = Path(self.path(relative)).parent
        if step in ("driver_override", "clear-override"):
            (device / "driver_override").write_text((value.strip() or "(null)") + "\n")
        elif step == "unbind":
            os.unlink(self.path(f"sys/bus/pci/devices/{value}/driver"))
        elif step == "probe":
            folder = Path(self.path(f"sys/bus/pci/devices/{value}"))
            override = (folder / "driver_override").read_text().strip()
            chosen = None if override == "(null)" or self.probe_ignores_override else override
            chosen = chosen or self.natural.get(value)
            if chosen and not (folder / "driver").exists():
                os.symlink(f"../../../bus/pci/drivers/{chosen}", folder / "driver")

    natural: dict = {GPU: "nvidia", AUDIO: "snd_hda_intel"}


def test_check_finds_a_usable_device_and_its_group(tmp_path):
    tree = Tree(tmp_path)
    tree.device(GPU, driver="nvidia")
    tree.device(BRIDGE, ids="8086:1901", pci_class="0x060400", driver="pcieport", group="7")
    report = vfio.check(GPU, vfio.Sysfs(str(tmp_path)), guest_ram_mb=2048, memlock=None)
    assert report.usable, report.reason
    assert (report.ids, report.driver, report.iommu_group) == ("10de:2684", "nvidia", "7")
    assert {m.bdf for m in report.group} == {GPU, BRIDGE}
    assert next(m for m in report.group if m.bdf == BRIDGE).bridge
    assert report.reset_method == "flr bus"


def test_check_a_group_shared_with_a_bound_device_is_not_viable(tmp_path):
    tree = Tree(tmp_path)
    tree.device(GPU, driver="nvidia")
    tree.device(AUDIO, ids="10de:22ba", pci_class="0x040300", driver="snd_hda_intel")
    # already free: harmless
    tree.device(OTHER, ids="10de:0000", pci_class="0x0c0330", driver="vfio-pci")
    os.unlink(tmp_path / "sys/bus/pci/devices" / OTHER / "iommu_group")
    report = vfio.check(GPU, vfio.Sysfs(str(tmp_path)), memlock=None)
    assert not report.usable
    assert "group 7 not viable: 0000:01:00.1 (snd_hda_intel)" in report.reason


def test_check_without_iommu_or_vfio_pci_says_so(tmp_path):
    tree = Tree(tmp_path, iommu=False, vfio_pci=False)
    tree.device(GPU, driver="nvidia")
    report = vfio.check(GPU, vfio.Sysfs(str(tmp_path)), memlock=None)
    failed = {f.name for f in report.findings if not f.ok and f.blocking}
    assert failed == {"iommu", "vfio-pci"}
    assert "no IOMMU groups" in report.reason and "no vfio-pci module" in report.reason


def test_check_memlock_below_guest_ram_blocks_and_warnings_do_not(tmp_path):
    tree = Tree(tmp_path)
    tree.device(GPU, driver="nvidia", boot_vga="1", reset="")
    report = vfio.check(GPU, vfio.Sysfs(str(tmp_path)), guest_ram_mb=2048, memlock=64 * 1024 * 1024)
    assert [f.name for f in report.findings if not f.ok and f.blocking] == ["memlock"]
    assert "memlock limit 64 MiB < guest RAM 2048 MiB" in report.reason
    warnings = {f.name for f in report.findings if not f.ok and not f.blocking}
    assert warnings == {"reset", "boot-vga"}
    assert vfio.check(GPU, vfio.Sysfs(str(tmp_path)), guest_ram_mb=32,
                      memlock=64 * 1024 * 1024).usable


def test_check_of_a_missing_device(tmp_path):
    Tree(tmp_path)
    report = vfio.check(GPU, vfio.Sysfs(str(tmp_path)))
    assert not report.usable and report.reason == f"no PCI device {GPU}"


def test_check_never_writes(tmp_path):
    tree = Tree(tmp_path)
    tree.device(GPU, driver="nvidia")
    kernel = FakeKernel(tmp_path)
    vfio.check(GPU, kernel, memlock=None)
    assert kernel.writes == []


def test_bind_then_restore_round_trip(tmp_path):
    tree = Tree(tmp_path)
    tree.device(GPU, driver="nvidia")
    kernel = FakeKernel(tmp_path)
    record = vfio.bind(GPU, kernel)
    assert kernel.driver(GPU) == "vfio-pci"
    assert record == vfio.BindRecord(GPU, "nvidia", "(null)")
    assert kernel.writes == ["driver_override", "unbind", "probe"]
    vfio.restore(record, kernel)
    assert kernel.driver(GPU) == "nvidia"
    assert kernel.read(kernel.device(GPU, "driver_override")) == "(null)"
    assert kernel.writes[3:] == ["unbind", "clear-override", "probe"]


def test_bind_and_restore_of_a_device_with_no_driver(tmp_path):
    tree = Tree(tmp_path)
    tree.device(OTHER, ids="1234:11e8", pci_class="0x00ff00")
    kernel = FakeKernel(tmp_path)
    record = vfio.bind(OTHER, kernel)
    assert kernel.writes == ["driver_override", "probe"] and kernel.driver(OTHER) == "vfio-pci"
    vfio.restore(record, kernel)
    assert kernel.driver(OTHER) is None
    assert kernel.writes[2:] == ["unbind", "clear-override"]


@pytest.mark.parametrize("failing, code, words", [
    ("driver_override", errno.EACCES, "not permitted"),
    ("unbind", errno.EBUSY, "device busy (in use by nvidia)"),
    ("probe", errno.ENODEV, "no such device or driver"),
])
def test_each_bind_step_failing_names_it_and_gives_the_device_back(tmp_path, failing, code, words):
    tree = Tree(tmp_path)
    tree.device(GPU, driver="nvidia")
    kernel = FakeKernel(tmp_path, fail=failing, fail_errno=code)
    with pytest.raises(vfio.VfioError) as raised:
        vfio.bind(GPU, kernel)
    step = "bind" if failing == "probe" else failing
    assert raised.value.step == step and words in raised.value.reason
    assert kernel.driver(GPU) == "nvidia", "a failed bind must leave the device with its driver"
    assert kernel.read(kernel.device(GPU, "driver_override")) == "(null)"


def test_bind_verifies_the_driver_that_took_the_device(tmp_path):
    tree = Tree(tmp_path)
    tree.device(GPU, driver="nvidia")
    # vfio-pci not loaded: the old driver comes back
    kernel = FakeKernel(tmp_path, probe_ignores_override=True)
    with pytest.raises(vfio.VfioError) as raised:
        vfio.bind(GPU, kernel)
    assert (raised.value.step == "verify"
            and "driver is nvidia after the probe" in raised.value.reason)


def test_bind_refuses_a_device_check_rejects(tmp_path):
    tree = Tree(tmp_path, iommu=False)
    tree.device(GPU, driver="nvidia")
    kernel = FakeKernel(tmp_path)
    with pytest.raises(vfio.VfioError) as raised:
        vfio.bind(GPU, kernel)
    assert raised.value.step == "preflight" and "no IOMMU groups" in raised.value.reason
    assert kernel.writes == []


@pytest.mark.parametrize("failing", ["unbind", "clear-override", "probe"])
def test_each_restore_step_failing_names_it(tmp_path, failing):
    tree = Tree(tmp_path)
    tree.device(GPU, driver="nvidia")
    kernel = FakeKernel(tmp_path)
    record = vfio.bind(GPU, kernel)
    kernel.fail = failing
    with pytest.raises(vfio.VfioError) as raised:
        vfio.restore(record, kernel)
    assert raised.value.step == ("reprobe" if failing == "probe" else failing)
    vfio.restore(record, kernel)  # a second try (the reaper's) finishes the job
    assert kernel.driver(GPU) == "nvidia"


def test_restore_verifies_the_original_driver_is_back(tmp_path):
    tree = Tree(tmp_path)
    tree.device(GPU, driver="nvidia")
    kernel = FakeKernel(tmp_path)
    record = vfio.bind(GPU, kernel)
    kernel.natural = {}  # the original driver no longer takes it (unloaded meanwhile)
    with pytest.raises(vfio.VfioError) as raised:
        vfio.restore(record, kernel)
    assert raised.value.step == "verify" and "expected nvidia back" in raised.value.reason


def test_bdf_parsing():
    assert vfio.parse_bdf("01:00.0") == "0000:01:00.0"
    assert vfio.parse_bdf(" 0000:0A:00.1 ") == "0000:0a:00.1"
    for bad in ("", "1:0.0", "0000:01:00.8", "0000:01:00.0 --extra", "../../x"):
        with pytest.raises(vfio.BadDevice):
            vfio.parse_bdf(bad)


def test_cli_check_on_a_fixture_tree_and_bad_input(tmp_path):
    tree = Tree(tmp_path)
    tree.device(GPU, driver="nvidia")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert vfio.main(["check", "--guest-ram-mb", "0"], root=str(tmp_path)) in (0, 1)
        assert vfio.main(["bind", "not-a-device"], root=str(tmp_path)) == 2
        assert vfio.main(["restore", GPU, "--state-dir", str(tmp_path / "state")],
                         root=str(tmp_path)) == 2
    # the display controller is listed without asking for it
    assert f"{GPU} [10de:2684]" in out.getvalue()
    assert "is not a PCI address" in err.getvalue() and "no record of binding" in err.getvalue()


def test_a_driver_override_set_before_bind_is_put_back(tmp_path):
    tree = Tree(tmp_path)
    folder = tree.device(GPU, driver="nvidia")
    (folder / "driver_override").write_text("nvidia\n")
    kernel = FakeKernel(tmp_path)
    record = vfio.bind(GPU, kernel)
    assert record.original_override == "nvidia"
    vfio.restore(vfio.BindRecord.from_line(record.to_line()), kernel)  # as the reaper gets it
    assert (kernel.read(kernel.device(GPU, "driver_override")) == "nvidia"
            and kernel.driver(GPU) == "nvidia")


def test_bind_records_survive_as_lines_and_files(tmp_path):
    record = vfio.BindRecord(GPU, "nvidia")
    assert vfio.BindRecord.from_line(record.to_line()) == record
    assert vfio.BindRecord.from_line(f"{GPU} nvidia") == record  # a line without the override
    assert vfio.BindRecord.from_line(vfio.BindRecord(OTHER, None).to_line()).original_driver is None
    vfio.save(record, str(tmp_path))
    assert vfio.load(GPU, str(tmp_path)) == record
    vfio.forget(GPU, str(tmp_path))
    assert vfio.load(GPU, str(tmp_path)) is None


def test_reaper_gives_back_tracked_devices_and_not_untracked_ones(monkeypatch):
    restored = []
    monkeypatch.setattr(vfio, "restore", lambda record: restored.append(record))
    # the reaper imports it as a script would
    monkeypatch.setitem(__import__("sys").modules, "vfio", vfio)
    reaper.serve(io.StringIO(f"vfio {GPU} nvidia\nvfio {OTHER} -\nunvfio {OTHER} -\n"))
    assert restored == [vfio.BindRecord(GPU, "nvidia")]


def test_modalias_finds_the_driver_module():
    aliases = ("alias pci:v000010DEd*sv*sd*bc03sc*i* nouveau\n"
               "alias pci:v00001AF4d00001050sv*sd*bc*sc*i* virtio_gpu\n"
               "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio-pci\n")
    modalias = "pci:v00001AF4d00001050sv00001AF4sd00001100bc03sc00i00"
    assert modules_mod.aliases_matching(aliases, modalias) == ["virtio_gpu", "virtio_pci"]
    assert modules_mod.aliases_matching(aliases, "pci:v00008086d00001234sv0sd0bc03sc00i00") == []


def test_the_iommu_comes_before_every_other_device():
    spec = QemuSpec(qemu="qemu", accel="tcg", memory_mb=1024, kernel="k", initrd="i", cmdline="c",
                    serial_log="s",
                    qmp_socket="q", runtime_root="/", out_dir="/o", display="none", machine="q35",
                    first_devices=("intel-iommu,intremap=on,caching-mode=on",), devices=("edu",))
    argv = spec.argv()
    iommu = argv.index("intel-iommu,intremap=on,caching-mode=on")
    assert argv[iommu - 1] == "-device" and iommu < argv.index("-virtfs") < argv.index("edu")
    assert argv[argv.index("-machine") + 1] == "q35"


def nested_probe(module="vfio_nested"):
    """The vfio probe (or one of its modules: l2guest, vfiodma) as the L1 guest imports it:
    probelib and vfio beside it."""
    import importlib
    import sys

    from harness.scenario.probes import PROBE_DIR

    # In the guest the probe's support modules lie beside it; here: the probe folder, and vfio's.
    for folder in (str(PROBE_DIR), str(Path(vfio.__file__).parent)):
        if folder not in sys.path:
            sys.path.append(folder)
    return importlib.import_module(module)


def test_the_probe_and_the_host_agree_on_the_console_protocol():
    from harness.launch.families import vfio as vfio_family
    from harness.launch.vm import console

    l2 = nested_probe("l2guest")
    assert l2.SCANOUT_READY_LINE == console.Marker.PASSED_SCANOUT_READY.line
    assert l2.L2_PREFIX == vfio_family.L2_PREFIX
    assert len(nested_probe().pattern(vfio_family.PATTERN_SIZE)) == vfio_family.PATTERN_SIZE


def test_l2_interrupt_counts_from_its_console():
    l2 = nested_probe("l2guest")
    text = "\n".join(["gpu-harness-l2: interrupts 24:          0   PCI-MSI 16384-edge      "
                      "virtio0-config",
                      "gpu-harness-l2: interrupts 25:        171   PCI-MSI 16385-edge      "
                      "virtio0-control",
                      "some kernel line 26: 99 virtio0-cursor",
                      "gpu-harness-l2: interrupts end"])
    assert l2.interrupts(text) == {"virtio0-config": 0, "virtio0-control": 171}


def test_the_test_pattern_tells_every_chunk_apart():
    """A lost, doubled or shifted 4032-byte DMA chunk must change the image."""
    chunk = nested_probe("vfiodma").EDU_CHUNK
    data = b"".join(nested_probe().pattern(64))
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    assert len(set(chunks)) == len(chunks) > 1
    assert chunk < 4096


def test_the_vfio_probe_takes_qemu_qmp_with_it():
    """The L1 guest may not see the harness's environment (a checkout under /tmp, which the guest
    mounts over): qemu.qmp's modules travel beside the probe, as importable names."""
    from harness.scenario import probes

    names = dict(probes.get("vfio").package_files())
    assert "qemu/qmp/legacy.py" in names and "qemu/qmp/__init__.py" in names
    assert all(path.is_file() and str(path).endswith(name) for name, path in names.items())


@pytest.mark.parametrize("iommu, vfio_pci", [(False, False), (True, True)])
def test_check_with_no_display_controller_says_what_the_host_gives_any_device(tmp_path, iommu,
                                                                              vfio_pci):
    Tree(tmp_path, iommu=iommu, vfio_pci=vfio_pci).device("0000:00:1f.0", ids="8086:7a06",
                                                          pci_class="0x060100",
                                                          # an ISA bridge: no display
                                                          driver="lpc_ich")
    out = io.StringIO()
    with redirect_stdout(out):
        assert vfio.main(["check"], root=str(tmp_path)) == 1  # nothing to pass: not usable
    lines = out.getvalue().splitlines()
    assert lines[0] == ("no display controllers (PCI class 03) on this machine; for any other "
                        "device this host has:")
    assert [line.split()[:2] for line in lines[1:3]] == [["ok" if iommu else "FAIL", "iommu"],
                                                         ["ok" if vfio_pci else "FAIL", "vfio-pci"]]
