"""A Container Device Interface (CDI) spec for the host's driver, made from the layout the
host-driver paths use (harness.host.driverlayout): what podman, Docker and Kubernetes apply with
`--device gpu-harness.dev/gpu=all`.

The driver appears inside at /run/host-driver, as in the sandbox: its libraries (and, in the
deps mode, their dependency closure) under lib/, Mesa's DRI folders under dri/, the EGL vendor
and Vulkan ICD files rewritten to name the libraries where they are mounted, and the loaders'
environment (`__EGL_VENDOR_LIBRARY_FILENAMES`, `VK_DRIVER_FILES`, `LIBGL_DRIVERS_PATH`,
`LD_LIBRARY_PATH`: no hook program is needed). A rewritten file has no host file to mount, so it
is written into a folder beside the spec (FILE's name with `.files`), which must stay where it is.

The spec says cdiVersion 0.5.0: the least the CDI project's own rule (MinimumRequiredVersion)
asks for what it uses (a device name may start with a digit from 0.5.0), and what podman 4.3
reads (measured here)."""
import glob
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .driverlayout import NVIDIA_NODES, PREFIX, DriverLayout, layout
from .hostdriver import HostDriver
from ..core.errors import InputError, ToolMissing
from ..scenario.pathspec import DriverMode

CDI_VERSION = "0.5.0"
VENDOR, CLASS = "gpu-harness.dev", "gpu"
KIND = f"{VENDOR}/{CLASS}"
ALL = "all"
# where podman 4.3 (and the CDI library's default cache) reads specs
SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
MOUNT_OPTIONS = ["ro", "nosuid", "nodev", "bind"]


@dataclass(frozen=True)
class Generated:
    """A spec and the files it mounts that it had to write (path on the host -> content)."""

    spec: dict
    files: Dict[str, str]

    def write(self, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        for path, content in sorted(self.files.items()):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(content)
        out.write_text(json.dumps(self.spec, indent=1) + "\n")


def files_folder(out: Path) -> Path:
    """Where a spec written to `out` keeps its generated files (a folder: CDI readers skip
    folders)."""
    return out.with_name(out.stem + ".files").absolute()


def device_node(path: str) -> Optional[dict]:
    """A CDI device node for a host character device: its numbers as the host has them."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISCHR(info.st_mode):
        return None
    return {"path": path, "type": "c", "major": os.major(info.st_rdev),
            "minor": os.minor(info.st_rdev),
            "permissions": "rw"}


def host_nodes() -> List[str]:
    """The nodes a GPU driver opens: /dev/dri's cards and render nodes, NVIDIA's own."""
    return sorted(p for p in glob.glob("/dev/dri/*") + glob.glob(NVIDIA_NODES) if device_node(p))


def edits(driver_layout: DriverLayout,
          files_dir: Path) -> Tuple[List[dict], List[str], Dict[str, str]]:
    """The container edits every device shares (mounts, environment) and the files they need."""
    written = {str(files_dir / inside[len(PREFIX) + 1:]): content for inside,
               content in driver_layout.files.items()}
    mounts = [{"hostPath": host, "containerPath": inside, "options": list(MOUNT_OPTIONS)}
              for host, inside in driver_layout.binds]
    mounts += [{"hostPath": str(files_dir / inside[len(PREFIX) + 1:]), "containerPath": inside,
                "options": list(MOUNT_OPTIONS)} for inside in sorted(driver_layout.files)]
    env = [f"{key}={value}" for key, value in sorted(driver_layout.env.items())]
    return sorted(mounts, key=lambda m: m["containerPath"]), env, written


def container_edits(env: List[str], mounts: List[dict], nodes: List[str]) -> dict:
    """One device's edits; an empty list is no edit and is left out."""
    found = [node for node in map(device_node, nodes) if node]
    return {key: value for key, value in (("env", env), ("mounts", mounts), ("deviceNodes",
                                                                             found)) if value}


def generate(driver: HostDriver, mode: DriverMode, out: Path, bwrap: Optional[str] = None,
             nodes: Optional[List[str]] = None) -> Generated:
    """The spec for `driver` in `mode` (libs: the driver's files; deps: and their dependency
    closure), to be written at `out`: a device `all` with every node, and one per render node."""
    if mode not in (DriverMode.LIBS, DriverMode.DEPS):
        raise InputError(f"a CDI spec carries the driver as files on the library path: {mode} is "
                         "not one")
    if not driver.found:
        raise ToolMissing(f"no EGL vendor or Vulkan ICD file under {driver.root} names an "
                          "installed library")
    driver_layout = layout(driver, mode, bwrap)
    mounts, env, written = edits(driver_layout, files_folder(out))
    node_list = host_nodes() if nodes is None else nodes
    render = [n for n in node_list if os.path.basename(n).startswith("renderD")]
    devices = [{"name": name, "containerEdits": container_edits(env, mounts, chosen)}
               for name, chosen in [(ALL, node_list), *((os.path.basename(n), [n])
                                                        for n in render)]]
    return Generated({"cdiVersion": CDI_VERSION, "kind": KIND, "devices": devices}, written)


def system_specs(dirs=SPEC_DIRS) -> List[str]:
    """The spec files the host's container engines read (the CDI readers take *.json and *.yaml)."""
    return sorted(p for d in dirs for p in glob.glob(os.path.join(d, "*")) if p.endswith((".json",
                                                                                          ".yaml"))
                  and os.path.isfile(p))
