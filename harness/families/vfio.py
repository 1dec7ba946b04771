"""The vfio family: a whole PCI device given to a QEMU guest with vfio-pci (seed 003's answer for
a VM that needs the GPU natively).

- vm-vfio: a device of this host, named by GPU_HARNESS_VFIO_DEVICE (never one the harness picks),
  checked and bound with harness.vfio before QEMU starts and given back after, or by the reaper
  if the harness dies; the GL/Vulkan probes run in the guest with the device's own driver.
- vm-vfio-nested: the same flow with no hardware. An L1 guest (q35, an emulated Intel IOMMU with
  interrupt remapping, ACPI on for its DMAR table) has two devices to pass: QEMU's edu and a
  virtio-gpu behind the IOMMU (iommu_platform=on, else its DMA bypasses the IOMMU and an L2
  driver gets no interrupts). The vfio probe, with harness.vfio beside it, binds them, moves an
  image through edu's DMA, starts an L2 QEMU with the GPU and restores them (probe/vfio_nested.py).
"""
import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

from .. import reaper, vfio
from ..lifecycle import LaunchAborted, LaunchContext
from ..outcomes import FailureKind
from ..toolset import Toolset
from ..vm import modules as modules_mod
from ..vm.qemu import QemuSpec, opt
from .vm import VmFamily, VmLaunch

if TYPE_CHECKING:
    from ..paths import PathSpec

DEVICE_ENV = "GPU_HARNESS_VFIO_DEVICE"
HOST, NESTED = "host", "nested"
VFIO_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")  # type1 is only a softdep of vfio: named here
L1_MEMORY_MB = 1024  # the L1 guest, its python, and the L2 QEMU with all of its 64 MiB pinned
GUEST_MEMORY_MB = 2048  # a guest with a real GPU and its driver
# An IOMMU with interrupt remapping, before every other device; the devices L1 passes on.
NESTED_IOMMU = "intel-iommu,intremap=on,caching-mode=on"
NESTED_DEVICES = ("virtio-gpu-pci,iommu_platform=on,disable-legacy=on", "edu")


def requested_device() -> Optional[str]:
    value = os.environ.get(DEVICE_ENV, "").strip()
    return value or None


def qemu_library_path() -> str:
    """Where the harness's own qemu.qmp is: the L1 guest's root is the host's, so the probe
    there imports it from the same folder."""
    spec = importlib.util.find_spec("qemu.qmp")
    assert spec is not None and spec.origin is not None
    return str(Path(spec.origin).parents[2])


class VfioLaunch(VmLaunch):
    record: Optional[vfio.BindRecord] = None

    @property
    def nested(self) -> bool:
        return self.ctx.scenario.spec.passthrough == NESTED

    def guest_modules(self) -> Tuple[str, ...]:
        if self.nested:
            return modules_mod.BASE_MODULES + VFIO_MODULES
        return modules_mod.BASE_MODULES + self.device_modules()

    def device_modules(self) -> Tuple[str, ...]:
        """The passed device's own driver, found as the guest kernel's modprobe would: its modalias
        against the kernel's modules.alias."""
        bdf = vfio.parse_bdf(requested_device() or "")
        modalias = vfio.Sysfs().read(vfio.Sysfs().device(bdf, "modalias")) or ""
        modules_dir = str(self.ctx.toolset.tools["kernel"].extra["modules_dir"])
        return tuple(modules_mod.for_modalias(modules_dir, modalias))

    def kernel_args(self) -> Tuple[str, ...]:
        # ACPI stays on: the IOMMU is described to the guest by ACPI's DMAR table.
        args = tuple(arg for arg in super().kernel_args() if arg != "acpi=off")
        return (*args, "intel_iommu=on") if self.nested else args

    def machine_spec(self, qemu: QemuSpec) -> QemuSpec:
        machine = "q35,kernel-irqchip=split" if qemu.accel == "kvm" else "q35"  # intremap under KVM needs split
        if self.nested:
            return dataclasses.replace(qemu, machine=machine, memory_mb=L1_MEMORY_MB, first_devices=(NESTED_IOMMU,),
                                       devices=NESTED_DEVICES)
        assert self.record is not None
        return dataclasses.replace(qemu, machine=machine, memory_mb=GUEST_MEMORY_MB,
                                   devices=(f"vfio-pci,host={opt(self.record.bdf)}",))

    def prepare(self):
        if not self.nested:
            self.bind()
        return super().prepare()

    def bind(self) -> None:
        bdf = vfio.parse_bdf(requested_device() or "")
        try:
            self.record = vfio.bind(bdf)
        except vfio.VfioError as exc:
            self.result.fail(f"vfio {exc}", FailureKind.VFIO)
            raise LaunchAborted() from None
        reaper.get().track_vfio(self.record.to_line())
        self.result.facts["vfio"] = {"device": bdf, "original_driver": self.record.original_driver,
                                     "restored": False}

    def stop_workload(self) -> None:
        try:
            super().stop_workload()
        finally:
            self.give_back()

    def give_back(self) -> None:
        if self.record is None:
            return
        record, self.record = self.record, None
        try:
            vfio.restore(record)
            self.result.facts["vfio"] = {"device": record.bdf, "original_driver": record.original_driver,
                                         "restored": True}
        except vfio.VfioError as exc:
            self.result.fail(f"vfio restore {exc} (the reaper tries again)", FailureKind.VFIO)
            return
        reaper.get().untrack_vfio(record.to_line())


class VfioFamily(VmFamily):
    name = "vfio"
    launch_class = VfioLaunch

    def unavailable_in(self, ctx: LaunchContext) -> Optional[str]:
        if ctx.scenario.spec.passthrough == NESTED and ctx.scenario.runtime.root != "/":
            return ("the nested tier's L1 guest runs the host's QEMU and the harness's qemu.qmp from its root: "
                    "host runtime only")
        return super().unavailable_in(ctx)

    def available(self, spec: "PathSpec", toolset: Toolset) -> Optional[str]:
        reason = super().available(spec, toolset)
        if reason or spec.passthrough == NESTED:
            return reason
        device = requested_device()
        if device is None:
            found = vfio.candidates()
            listed = "; ".join(f"{bdf}: {vfio.check(bdf, guest_ram_mb=GUEST_MEMORY_MB).reason or 'usable'}"
                               for bdf in found) or "no display controller on this host"
            return f"no device named for passthrough (set {DEVICE_ENV}=BDF; gpu-harness vfio check: {listed})"
        try:
            bdf = vfio.parse_bdf(device)
        except vfio.BadDevice as exc:
            return f"{DEVICE_ENV}: {exc}"
        report = vfio.check(bdf, guest_ram_mb=GUEST_MEMORY_MB)
        return None if report.usable else f"{bdf} cannot be passed through: {report.reason}"

    def probe_args(self, ctx: LaunchContext) -> List[str]:
        if ctx.scenario.spec.passthrough != NESTED:
            return []
        return ["--qemu", ctx.toolset.path("qemu-system-x86_64"), "--library-path", qemu_library_path()]


FAMILY = VfioFamily()
