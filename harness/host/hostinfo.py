"""What a run records of the host it ran on, once: its name and class (a CI runner's tag), its
GPUs and their kernel driver, the userspace driver, the kernel and the distribution. Runs of
several hosts merge into one report with a host axis (harness.report.merge)."""
import glob
import os
import platform
import socket
from typing import Dict, List, Optional

from . import drivermatch
from .toolset import Toolset


def gpus() -> List[str]:
    """Each DRM device's PCI vendor:device id, or NVIDIA's nodes where there is no DRM node."""
    found = []
    for node in sorted(glob.glob("/sys/class/drm/renderD*")):
        ids = [read(os.path.join(node, "device", name)) for name in ("vendor", "device")]
        found.append(":".join(i.removeprefix("0x") for i in ids if i) or os.path.basename(node))
    return found or sorted(os.path.basename(p) for p in glob.glob("/dev/nvidia[0-9]*"))


def read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def distro() -> Optional[str]:
    for line in read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip('"') or None
    return None


def describe_host(toolset: Toolset, host_class: str = "",
                  name: Optional[str] = None) -> Dict[str, object]:
    kernel = drivermatch.kernel_driver()
    return {"name": name or socket.gethostname(), "class": host_class, "kernel": platform.release(),
            "machine": platform.machine(), "distro": distro(), "render_nodes": toolset.render_nodes,
            "gpus": gpus(), "kernel_driver": kernel.get("name"),
            "kernel_driver_version": kernel.get("version"),
            "driver": toolset.version("host-driver"), "mesa": toolset.version("mesa")}
