"""The VM family (vm-headless, vm-virtio-2d, vm-virgl, vm-venus): the workload runs in a QEMU guest
(harness.launch.families.vm_launch); a test's target is the same guest booted with the command agent
(harness.launch.families.vm_guest)."""
import functools
import subprocess
import time
from pathlib import Path
from typing import ClassVar, List, Optional, Sequence, Type

from ..lifecycle import LaunchContext, Prepared
from ...scenario.model import Scenario
from ...scenario.pathspec import PathSpec
from ..target import Target
from ...host.toolset import Toolset
from ..vm import display as display_mod
from .base import Family
from . import vm_boot
from .vm_guest import Guest
from ..vm import kernel as kernel_mod, stdin as stdin_mod
from .vm_launch import VmLaunch, acceleration
from ...system import process


@functools.lru_cache(maxsize=8)
def qemu_has_venus(qemu: str) -> bool:
    """Whether this QEMU's virtio-gpu-gl-pci takes venus=on (QEMU 9.2 and later, built with it)."""
    try:
        done = process.run_program([qemu, "-device", "virtio-gpu-gl-pci,help"], capture_output=True,
                                   text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "venus=" in done.stdout


class VmFamily(Family):
    name = "vm"
    system_features = ("kvm",)
    nix_systems = ("x86_64-linux",)  # the guest is an x86_64 QEMU machine
    launch_class: ClassVar[Type[VmLaunch]] = VmLaunch
    runs_in_guest = False  # a guest in a TCG guest: nested emulation, minutes per boot

    def launch(self, ctx: LaunchContext) -> VmLaunch:
        return self.launch_class(ctx, self.probe_args(ctx))

    def prepare_run(self, scenarios: Sequence[Scenario], toolset: Toolset,
                    scratch: Path) -> List[Prepared]:
        """The guest kernel unpacked and KVM tried (a tiny guest under a short bound), once."""
        if not scenarios:
            return []
        started = time.monotonic()
        kernel = kernel_mod.unpacked(toolset.path("kernel"))
        unpacked = time.monotonic()
        accel = acceleration(toolset, scratch)
        return [Prepared("guest kernel", unpacked - started, kernel),
                Prepared("guest acceleration", time.monotonic() - unpacked,
                         f"{accel.name}: {accel.reason}")]

    def available(self, spec: PathSpec, toolset: Toolset) -> Optional[str]:
        reason = super().available(spec, toolset)
        if reason:
            return reason
        if not (toolset.tools["kernel"].extra or {}).get("modules_dir"):
            return (f"kernel {toolset.path('kernel')} has no modules directory (the guest needs "
                    "virtio and 9p modules)")
        if display_mod.needs_xvfb(spec.guest_gpu or "", toolset) and not toolset.found("Xvfb"):
            return ("no render node for egl-headless and no Xvfb for an SDL GL display (install "
                    "xvfb)")
        if spec.venus and not qemu_has_venus(toolset.path("qemu-system-x86_64")):
            return (f"QEMU {toolset.version('qemu-system-x86_64') or '?'} has no venus on "
                    "virtio-gpu-gl-pci "
                    "(QEMU >= 9.2: --toolset runtime:trixie-host)")
        return None

    def unavailable_in(self, ctx: LaunchContext) -> Optional[str]:
        try:
            boot = vm_boot.guest_boot(ctx.toolset, ctx.scenario.runtime)
        except vm_boot.BootUnavailable as exc:
            return str(exc)
        if ctx.interactive and not boot.arch.second_serial:
            return (f"an {boot.arch.name} guest ({boot.arch.machine} machine) has one serial port: "
                    "no second one for the command agent")
        if ctx.inherit_stdio and not ctx.interactive:
            reason = stdin_mod.unavailable(boot.modules_dir)
            if reason:
                return reason
        return super().unavailable_in(ctx)

    def target(self, ctx: LaunchContext) -> Target:
        """The guest booted with the command agent; this family's own launch (a vfio guest is a
        VfioLaunch)."""
        return Guest(ctx, self)


FAMILY = VmFamily()
