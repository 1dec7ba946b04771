"""Host-side programs from a built runtime (`--toolset runtime:NAME`): virgl_test_server, QEMU
and Xvfb of a newer Debian on an older host, the Debian twin of the Nix toolset. Each runs from
the runtime's /usr and /etc through bwrap, with the host's files, sockets and devices as they
are (no namespace is unshared: the harness reaches its sockets and process groups as usual)."""
import os
import shlex
from pathlib import Path
from typing import Dict

from ..host import hostdriver, toolset as toolset_mod
from . import recipes, builds
from ..core.errors import InputError
from ..host.toolset import Tool, Toolset

PREFIX = "runtime:"
# where the host's own root is seen from inside (the VM family's 9p export of "/")
HOST_ROOT = "/.host"
# Top-level folders that come from the runtime, not the host.
FROM_RUNTIME = {"usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "proc", "dev"}
# tool -> (program inside the runtime, the Debian package that has it)
RUNTIME_TOOLS: Dict[str, tuple] = {
    "virgl_test_server": ("/usr/bin/virgl_test_server", "virgl-server"),
    "qemu-system-x86_64": ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
    "Xvfb": ("/usr/bin/Xvfb", "xvfb"),
}


def wrapper(bwrap: str, runtime: str, root: Path, program: str) -> str:
    """A new root on a tmpfs: the runtime's /usr and /etc (and its merged-usr links), every other
    top-level folder of the host as it is, the host's whole root at HOST_ROOT."""
    argv = [bwrap, "--tmpfs", "/"]
    for entry in sorted(Path("/").iterdir()):
        if entry.name not in FROM_RUNTIME and entry.is_dir() and not entry.is_symlink():
            argv += ["--bind", str(entry), str(entry)]
    argv += ["--ro-bind", str(root / "usr"), "/usr", "--ro-bind", str(root / "etc"), "/etc"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        entry = root / name
        if entry.is_symlink():
            argv += ["--symlink", str(entry.readlink()), f"/{name}"]
        elif entry.is_dir():
            argv += ["--ro-bind", str(entry), f"/{name}"]
    argv += ["--dev-bind", "/dev", "/dev", "--proc", "/proc", "--bind", "/", HOST_ROOT,
             "--die-with-parent", "--",
             program]
    return (f"#!/bin/sh\n# gpu-harness: {program} from runtime {runtime} ({root}), with the host's "
            "files and "
            f"devices.\nexec {' '.join(shlex.quote(arg) for arg in argv)} \"$@\"\n")


def load(spec: str) -> Toolset:
    name = spec[len(PREFIX):]
    host = toolset_mod.discover()
    if not host.found("bwrap"):
        raise InputError(f"--toolset {spec}: running programs from a runtime needs bwrap (install "
                         "bubblewrap)")
    built = builds.ensure(name)
    versions = builds.installed(built.root)
    folder = built.root.parent / "tools"
    folder.mkdir(exist_ok=True)
    for tool, (program, package) in RUNTIME_TOOLS.items():
        if not (built.root / program.lstrip("/")).exists():
            host.tools[tool] = Tool(tool,
                                    problem=f"not in runtime {name} (add {package} to its recipe)")
            continue
        script = folder / tool
        script.write_text(wrapper(host.path("bwrap"), name, built.root, program))
        script.chmod(0o755)
        version = recipes.upstream_version(versions[package][0]) if package in versions else None
        host.tools[tool] = Tool(tool, str(script), version, {"runtime": name, "program": program,
                                                            "runtime_root": str(built.root),
                                                             "host_root": HOST_ROOT})
    host.tools["host-driver"] = runtime_driver(name, built.root, versions)
    host.source = spec
    return host


def runtime_driver(name: str, root: Path, versions: Dict[str, tuple]) -> Tool:
    """The runtime's Mesa as "the host's driver": a newer host, simulated on an older one."""
    driver = hostdriver.discover(str(root))
    if not driver.found:
        return Tool("host-driver",
                    problem=f"runtime {name} has no EGL/Vulkan driver (add libegl-mesa0 to its "
                            "recipe)")
    mesa = versions.get("libegl-mesa0") or versions.get("libgl1-mesa-dri")
    version = hostdriver.driver_version(driver, recipes.upstream_version(mesa[0]) if mesa else None)
    return Tool("host-driver", str(root), version,
                {"runtime": name,
                 "vendor_dirs": hostdriver.standard_dirs(str(root), hostdriver.EGL_VENDOR_DIRS),
                 "icd_dirs": hostdriver.standard_dirs(str(root), hostdriver.VULKAN_ICD_DIRS),
                 "dri_dirs": driver.dri_dirs,
                 "vendors": sorted({os.path.basename(v.library_path) for v in driver.vendors
                                    if v.library})})
