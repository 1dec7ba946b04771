"""What boots a VM path's guest: the runtime's architecture, its QEMU, and the kernel, modules and
busybox (the toolset's for an amd64 guest, the runtime's own for a guest of another
architecture), or why none can."""
import glob
import os
from dataclasses import dataclass
from typing import Optional, Tuple

from ...host import emulation
from ...scenario.model import Runtime
from ...host.toolset import Toolset
from ..vm import arches
from ...core.errors import ToolMissing

# What a runtime's recipe adds to boot its guest.
FOREIGN_KERNEL_PACKAGES = {"arm64": "linux-image-arm64 busybox-static",
                           "riscv64": "linux-image-riscv64 busybox-static"}
# Debian's names: compressed (amd64, arm64) or not (riscv64)
KERNEL_IMAGES = ("vmlinuz-", "vmlinux-")


class BootUnavailable(ToolMissing):
    """No guest of this runtime can boot here; the message says what is missing."""


@dataclass(frozen=True)
class GuestBoot:
    arch: arches.GuestArch
    qemu: str
    kernel: str
    modules_dir: str
    busybox: str
    foreign: bool  # the runtime's own kernel, under TCG: no CPU here runs it

    @property
    def kernel_source(self) -> str:
        return "the runtime's" if self.foreign else "the toolset's"


def runtime_architecture(runtime: Runtime) -> str:
    """The runtime's architecture by its files' ELF headers; the host's where it has none to read
    (the host's own root, a runtime not built yet)."""
    found = emulation.tree_architecture(runtime.root) if runtime.root else None
    return found or emulation.host_architecture()


def runtime_kernel(root: str) -> Optional[Tuple[str, str]]:
    """(vmlinuz, modules folder) of the newest kernel a runtime has installed, or None."""
    images = [image for prefix in KERNEL_IMAGES for image in glob.glob(os.path.join(root, "boot",
                                                                                    f"{prefix}*"))]
    for image in sorted(images, key=os.path.basename, reverse=True):
        version = os.path.basename(image).split("-", 1)[1]
        for modules in (os.path.join(root, "usr/lib/modules", version), os.path.join(root,
                                                                                     "lib/modules",
                                                                                     version)):
            if os.path.isfile(os.path.join(modules, "modules.dep")):
                return image, modules
    return None


def guest_boot(toolset: Toolset, runtime: Runtime) -> GuestBoot:
    """The boot of `runtime`'s guest; BootUnavailable says what this host or runtime lacks."""
    name = runtime_architecture(runtime)
    native = name in emulation.NATIVE.get(emulation.host_architecture(), ())
    arch = arches.AMD64 if native else arches.get(name)
    if arch is None:
        raise BootUnavailable(f"runtime {runtime.name} is {name}: the VM paths boot "
                              f"{', '.join(sorted(arches.ARCHES))} guests only")
    if not toolset.found(arch.qemu):
        raise BootUnavailable(f"runtime {runtime.name} is {name}: its guest needs "
                              f"{toolset.why_missing(arch.qemu)}")
    if native:
        return GuestBoot(arch, toolset.path(arch.qemu), toolset.path("kernel"),
                         str(toolset.tools["kernel"].extra.get("modules_dir") or ""),
                         toolset.path("busybox"), False)
    kernel = runtime_kernel(runtime.root)
    busybox = os.path.join(runtime.root, "bin", "busybox")
    if kernel is None or not os.path.isfile(busybox):
        packages = FOREIGN_KERNEL_PACKAGES.get(name, f"a {name} kernel and busybox-static")
        raise BootUnavailable(f"runtime {runtime.name} is {name} and has no {name} kernel with "
                              "modules or no "
                              "busybox of its own to boot its guest with (its recipe adds "
                              f"{packages})")
    return GuestBoot(arch, toolset.path(arch.qemu), kernel[0], kernel[1], busybox, True)
