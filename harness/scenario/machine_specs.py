"""Where a scenario's path runs, as data: this host (`local`) or a virtual GPU machine, a QEMU
guest whose virtio-gpu is a real GPU for the sandboxes, containers and Flatpak apps inside it."""
from dataclasses import dataclass
from typing import Dict, Mapping, Optional

from .model import LOCAL
from .paths import VENUS, VIRGL
# set inside a machine's guest: the machine the harness there runs as
MACHINE_ENV = "GPU_HARNESS_MACHINE"


@dataclass(frozen=True)
class MachineSpec:
    name: str
    description: str
    # the VM path whose guest it is (its QEMU display device, display and toolset needs)
    boots_like: str
    # What a path that promises a GPU's own renderer (sandbox-dri, native, ...) must see in it.
    renderers: Mapping[str, Optional[str]]
    memory_mb: int = 2048  # the harness, podman and Flatpak inside, and a runtime's Mesa

    def renderer(self, api: str) -> Optional[str]:
        return self.renderers.get(api)


MACHINES: Dict[str, MachineSpec] = {
    spec.name: spec
    for spec in (
        MachineSpec("virgl-guest",
                    "a QEMU guest with virtio-gpu-gl (virgl): /dev/dri/card0 and renderD128 of its "
                                   "own, rendering on the host's GL", "vm-virgl", {"gl": VIRGL,
                                                                                   "kms": VIRGL}),
        MachineSpec("venus-guest",
                    "a QEMU guest with virtio-gpu-gl, Venus and blob resources (QEMU >= 9.2): "
                                   "Vulkan on the host's, GL through virgl", "vm-venus",
                    {"gl": VIRGL, "vulkan": VENUS, "kms": VIRGL}),
    )
}


def known(name: str) -> bool:
    return name == LOCAL or name in MACHINES


def get(name: str) -> MachineSpec:
    return MACHINES[name]
