"""The vfio family: a whole PCI device given to a QEMU guest with vfio-pci (the answer for
a VM that needs the GPU natively).

- vm-vfio: a device of this host, named by GPU_HARNESS_VFIO_DEVICE (never one the harness picks),
  checked and bound with harness.system.vfio before QEMU starts and given back after, or by the
  reaper
  if the harness dies; the GL/Vulkan probes run in the guest with the device's own driver.
- vm-vfio-nested: the same flow with no hardware. An L1 guest (q35, an emulated Intel IOMMU with
  interrupt remapping, ACPI on for its DMAR table) has two devices to pass: QEMU's edu and a
  virtio-gpu behind the IOMMU (iommu_platform=on, else its DMA bypasses the IOMMU and an L2
  driver gets no interrupts). The vfio probe, with harness.system.vfio beside it, binds them, moves
  an
  image through edu's DMA, starts an L2 QEMU with the GPU and restores them (probe/vfio_nested.py).
"""
import dataclasses
import hashlib
import os
from pathlib import Path
from typing import List, Optional, Tuple

from ...runtimes import cache
from ...scenario import probes
from ...system import reaper, vfio
from ..lifecycle import LaunchAborted, LaunchContext
from ...scenario.outcomes import FailureKind
from ...core.templating import render
from ...host.toolset import Toolset
from ..vm import console, initramfs, kernel as kernel_mod, modules as modules_mod
from ..vm.qemu import QemuSpec, opt
from ...scenario.pathspec import Passthrough, PathSpec
from .vm import VmFamily
from .vm_launch import VmLaunch

DEVICE_ENV = "GPU_HARNESS_VFIO_DEVICE"
ACK_FILE = "scanout-captured"  # in the result share: the host has captured L2's image
L2_MODULES = ("virtio_pci", "virtio_gpu")
# No ACPI in L2 (faster; QMP quit stops it); no console cursor on the image.
L2_KERNEL_ARGS = ("console=ttyS0", "panic=-1", "loglevel=4", "acpi=off", "mitigations=off",
                  "tsc=reliable",
                  "no_timer_check", "vt.global_cursor_default=0")
PATTERN_SIZE = 64  # the vfio probe's image: small, as edu moves it 4 KiB at a time
# type1 is only a softdep of vfio: named here
VFIO_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")
L2_PREFIX = "gpu-harness-l2:"  # the L2 init's console lines (the probe reads them)
CACHE_DIR = initramfs.CACHE_DIR.parent / "vfio"
L1_MEMORY_MB = 1024  # the L1 guest, its python, and the L2 QEMU with all of its 64 MiB pinned
GUEST_MEMORY_MB = 2048  # a guest with a real GPU and its driver
# An IOMMU with interrupt remapping, before every other device; the devices L1 passes on.
NESTED_IOMMU = "intel-iommu,intremap=on,caching-mode=on"
NESTED_DEVICES = ("virtio-gpu-pci,iommu_platform=on,disable-legacy=on", "edu")


def requested_device() -> Optional[str]:
    value = os.environ.get(DEVICE_ENV, "").strip()
    return value or None


# Where the L1 guest's init mounts its own file systems over the host's root: what lies there on
# the host is not seen in the guest.
GUEST_MOUNTS = ("/tmp", "/run", "/proc", "/sys", "/dev")


def hidden_in_guest(path: str) -> bool:
    return any(path == top or path.startswith(top + "/") for top in GUEST_MOUNTS)


def pattern_file(golden: Path) -> Path:
    """The golden as the L2's framebuffer takes it (32 bpp, B G R X), cached by the golden's
    content: the image the L1 probe moves by DMA is what L2 shows, and both match this golden."""
    from PIL import Image

    digest = hashlib.sha256(golden.read_bytes()).hexdigest()[:16]
    target = CACHE_DIR / f"pattern-{digest}.bgrx"
    if not target.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with Image.open(golden) as image:
            red, green, blue = image.convert("RGB").split()
            data = Image.merge("RGBA", (blue, green, red, Image.new("L", image.size, 0))).tobytes()
        partial = target.with_suffix(f".{os.getpid()}.partial")
        with reaper.temp_file(partial):
            partial.write_bytes(data)
            os.replace(partial, target)
        cache.record_made(target)
    return target


def l2_initrd(toolset: Toolset, golden: Path) -> Path:
    """The L2 guest's initramfs: virtio_gpu for the passed device, and an init that shows the
    pattern on its framebuffer (templates/l2-init.sh.j2). Cached by content like L1's."""
    modules_dir = str(toolset.tools["kernel"].extra["modules_dir"])
    modules = modules_mod.resolve_for_kernel(modules_dir, L2_MODULES)
    pattern = pattern_file(golden)
    init = render("l2-init.sh.j2", modules=modules, prefix=L2_PREFIX, size=PATTERN_SIZE,
                  pattern=pattern.name)
    return initramfs.build(initramfs.InitramfsSpec(toolset.path("busybox"), modules_dir,
                                                   tuple(modules), init,
                                                   ((pattern.name, str(pattern)),)))[0]


def nested_tier(spec: PathSpec) -> bool:
    """The flow in an L1 guest with emulated devices, not with a device of this host."""
    return spec.passthrough is not None and spec.passthrough.nested


class VfioLaunch(VmLaunch):
    record: Optional[vfio.BindRecord] = None

    @property
    def nested(self) -> bool:
        return nested_tier(self.ctx.scenario.spec)

    @property
    def boots_l2(self) -> bool:
        return self.ctx.scenario.spec.passthrough is Passthrough.NESTED_BOOT

    def guest_scanout(self) -> bool:
        return False  # L2 shows the image, through the passed device; L1's init shows nothing

    def watch_step(self) -> bool:
        machine = self.machine
        # Only while QEMU runs: once it has exited there is no display to capture, and the base
        # watch judges the console it left.
        if self.boots_l2 and machine is not None and "scanout" not in self.result.artifacts and \
                machine.running() and console.seen(machine.console(),
                                                   console.Marker.PASSED_SCANOUT_READY):
            self.capture_scanout()
            (self.ctx.workspace.probe_out / ACK_FILE).write_text("captured\n")
        return super().watch_step()

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
        # intremap under KVM needs split
        machine = "q35,kernel-irqchip=split" if qemu.accel == "kvm" else "q35"
        if self.nested:
            return dataclasses.replace(qemu, machine=machine, memory_mb=L1_MEMORY_MB,
                                       first_devices=(NESTED_IOMMU,),
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
            self.result.facts["vfio"] = {"device": record.bdf,
                                         "original_driver": record.original_driver,
                                         "restored": True}
        except vfio.VfioError as exc:
            self.result.fail(f"vfio restore {exc} (the reaper tries again)", FailureKind.VFIO)
            return
        reaper.get().untrack_vfio(record.to_line())


class VfioFamily(VmFamily):
    name = "vfio"
    launch_class = VfioLaunch

    def unavailable_in(self, ctx: LaunchContext) -> Optional[str]:
        passthrough = ctx.scenario.spec.passthrough
        if nested_tier(ctx.scenario.spec) and ctx.scenario.runtime.root != "/":
            return ("the nested tier's L1 guest runs the host's QEMU from its root: host runtime "
                    "only")
        cache = str(initramfs.CACHE_DIR)
        if passthrough is Passthrough.NESTED_BOOT and hidden_in_guest(cache):
            return (f"the L2 kernel and initramfs are cached under {cache}, which the L1 guest "
                    "does not see "
                    f"(it mounts its own {', '.join(GUEST_MOUNTS)}): set XDG_CACHE_HOME elsewhere")
        return super().unavailable_in(ctx)

    def available(self, spec: PathSpec, toolset: Toolset) -> Optional[str]:
        reason = super().available(spec, toolset)
        if reason or nested_tier(spec):
            return reason
        device = requested_device()
        if device is None:
            found = vfio.candidates()
            listed = "; ".join(f"{bdf}: "
                               f"{vfio.check(bdf, guest_ram_mb=GUEST_MEMORY_MB).reason or 'usable'}"
                               for bdf in found) or "no display controller on this host"
            return (f"no device named for passthrough (set {DEVICE_ENV}=BDF; gpu-harness vfio "
                    f"check: {listed})")
        try:
            bdf = vfio.parse_bdf(device)
        except vfio.BadDevice as exc:
            return f"{DEVICE_ENV}: {exc}"
        report = vfio.check(bdf, guest_ram_mb=GUEST_MEMORY_MB)
        return None if report.usable else f"{bdf} cannot be passed through: {report.reason}"

    def probe_args(self, ctx: LaunchContext) -> List[str]:
        if not nested_tier(ctx.scenario.spec):
            return []
        args = ["--size", str(PATTERN_SIZE), "--qemu", ctx.toolset.path("qemu-system-x86_64")]
        if ctx.scenario.spec.passthrough is Passthrough.NESTED_BOOT:
            # The L1 guest's root is the host's: the cached kernel and initramfs are at the same
            # paths there.
            # the probe's own pattern, as shipped
            golden = probes.GOLDENS_DIR / f"{ctx.scenario.golden}.png"
            args += ["--l2-kernel", kernel_mod.unpacked(ctx.toolset.path("kernel")),
                     "--l2-initrd", str(l2_initrd(ctx.toolset, golden)),
                     "--l2-append", " ".join(L2_KERNEL_ARGS), "--ack-file",
                     f"{probes.INSIDE}/out/{ACK_FILE}"]
        return args


FAMILY = VfioFamily()
