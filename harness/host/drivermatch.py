"""Driver matching: whose userspace driver rendered (the host's, bound in, or the runtime's own),
and whether it fits the host's driver and kernel driver."""
import enum
import glob
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .driverlayout import PREFIX


class DriverUsed(str, enum.Enum):
    """Whose userspace driver rendered."""

    HOST_DRIVER = "host-driver"  # the host's, bound in
    RUNTIME = "runtime"  # the runtime's own (on the host runtime: the host's)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class DriverMatch:
    """Whose driver rendered and whether it fits the host's driver and kernel driver; in
    results.json as its to_dict()."""

    runtime_mesa: Optional[str] = None  # the Mesa the workload's own userspace carries
    # the toolset's host-driver: "mesa 22.3.6", "nvidia 580.95.05"
    host_driver: Optional[str] = None
    kernel_driver: Optional[str] = None
    kernel_driver_version: Optional[str] = None
    used: Optional[DriverUsed] = None  # None: neither was seen loaded
    mismatch: bool = False
    note: str = ""  # why it is a mismatch

    def to_dict(self) -> Dict[str, object]:
        return {"runtime_mesa": self.runtime_mesa, "host_driver": self.host_driver,
                "kernel_driver": self.kernel_driver,
                "kernel_driver_version": self.kernel_driver_version,
                "used": self.used.value if self.used else None, "mismatch": self.mismatch,
                "note": self.note}

    @classmethod
    def from_dict(cls, data: object) -> Optional["DriverMatch"]:
        """From its to_dict() as a results.json holds it (written by any version: a field of another
        type is left out); None where there is none."""
        if not isinstance(data, dict) or not data:
            return None

        def text(key: str) -> Optional[str]:
            value = data.get(key)
            return value if isinstance(value, str) and value else None

        used = data.get("used")
        return cls(text("runtime_mesa"), text("host_driver"), text("kernel_driver"),
                   text("kernel_driver_version"),
                   DriverUsed(used) if used in [u.value for u in DriverUsed] else None,
                   data.get("mismatch") is True, text("note") or "")


def kernel_driver() -> Dict[str, Optional[str]]:
    """The kernel driver behind the host's GPU nodes and its version, where there is one."""
    for node in sorted(glob.glob("/sys/class/drm/renderD*")):
        # A virtio GPU's DRM device is its PCI function (driver virtio-pci); the GPU driver
        # (virtio_gpu) is bound to the virtio device below it.
        links = sorted(glob.glob(os.path.join(node, "device", "virtio*", "driver"))) + \
            [os.path.join(node, "device", "driver")]
        link = next((candidate for candidate in links if os.path.islink(candidate)), "")
        if link:
            name = os.path.basename(os.readlink(link))
            return {"name": name, "version": module_version(name),
                    "node": "/dev/dri/" + os.path.basename(node)}
    if glob.glob("/dev/nvidia[0-9]*"):
        return {"name": "nvidia", "version": module_version("nvidia"),
                "node": sorted(glob.glob("/dev/nvidia[0-9]*"))[0]}
    return {"name": None, "version": None, "node": None}


def module_version(name: str) -> Optional[str]:
    try:
        return open(f"/sys/module/{name.replace('-', '_')}/version").read().strip() or None
    except OSError:
        pass
    if name == "nvidia":
        try:
            match = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)",
                              open("/proc/driver/nvidia/version").read())
            return match.group(1) if match else None
        except OSError:
            return None
    return None


MESA_FILES = re.compile(r"(libEGL_mesa|libgallium|_dri\.so|libvulkan_(lvp|radeon|intel|virtio))")


def driver_match(runtime_mesa: Optional[str], host_driver: Optional[str],
                 kernel: Dict[str, Optional[str]],
                 libraries: Sequence[str], direct: bool = True) -> DriverMatch:
    """Driver matching: whose userspace driver rendered (the host's, bound in, or the
    runtime's own), and whether it matches the host's driver and kernel driver. `direct`: the
    runtime's driver drives the host's GPU itself (not through virgl or a VM), where a version
    apart from the host's matters."""
    host_loaded = [p for p in libraries if p.startswith(PREFIX + "/")]
    runtime_loaded = [p for p in libraries if not p.startswith(PREFIX + "/")
                      and MESA_FILES.search(p)]
    used = DriverUsed.HOST_DRIVER if host_loaded else DriverUsed.RUNTIME if runtime_loaded else None
    host_mesa = (host_driver[len("mesa "):] if host_driver and host_driver.startswith("mesa ")
                 else None)
    notes: List[str] = []
    mismatch = False
    if used is DriverUsed.RUNTIME and direct and host_driver and runtime_mesa:
        if host_mesa is None:
            mismatch = True
            notes.append(f"the runtime's Mesa {runtime_mesa} rendered; the host's GPU needs "
                         f"{host_driver}")
        elif host_mesa != runtime_mesa:
            mismatch = True
            notes.append(f"runtime Mesa {runtime_mesa}, host Mesa {host_mesa}")
    nvidia = re.match(r"nvidia (\S+)", host_driver or "")
    if (used is DriverUsed.HOST_DRIVER and nvidia and kernel.get("version")
            and kernel["version"] != nvidia.group(1)):
        mismatch = True
        notes.append(f"NVIDIA userspace {nvidia.group(1)} with kernel module {kernel['version']}")
    return DriverMatch(runtime_mesa, host_driver, kernel.get("name"), kernel.get("version"), used,
                       mismatch,
                       "; ".join(notes))
