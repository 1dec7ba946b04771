"""The host's driver laid out in a sandbox, one way per mode (the host-driver paths): its
dependency closure as the driver root's own ldd resolves it (ordered for a capsule: dependencies
before their users), what is bound where, the loader environment, the device nodes."""
import functools
import glob
import json
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .hostdriver import GLIBC_NAMES, GLVND_ENTRY, HostDriver, VendorFile, dri_driver_files, under
from ..scenario.pathspec import DriverMode
from ..system import process

PREFIX = "/run/host-driver"  # where the driver appears inside: /run is the sandbox's own tmpfs
LIB_DIR = f"{PREFIX}/lib"
DRI_DIR = f"{PREFIX}/dri"
CAPSULE_MANIFEST = f"{PREFIX}/capsule.json"
CAPSULE_ENV = "GPU_HARNESS_CAPSULE"
NVIDIA_NODES = "/dev/nvidia*"


LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(\S+)(?:\s+\(0x[0-9a-f]+\))?\s*$")


def vendor_inside(vendor: VendorFile) -> str:
    """Where a vendor file, rewritten to name the library where it is bound, appears inside."""
    return f"{PREFIX}/{vendor.api}/{os.path.basename(vendor.source)}"


@dataclass(frozen=True)
class Resolved:
    """One file's dependency closure, as the root's ldd resolves it."""

    found: Tuple[Tuple[str, str], ...]  # (name, host file)
    missing: Tuple[str, ...]


def ldd_argv(root: str, path_inside: str, bwrap: Optional[str]) -> List[str]:
    if root == "/":
        return ["ldd", path_inside]
    assert bwrap, "resolving a foreign root's libraries needs bwrap"
    argv = [bwrap, "--die-with-parent", "--ro-bind", under(root, "/usr"), "/usr", "--ro-bind",
            under(root, "/etc"),
            "/etc", "--proc", "/proc", "--dev", "/dev"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32"):
        entry = under(root, "/" + name)
        if os.path.islink(entry):
            argv += ["--symlink", os.readlink(entry), f"/{name}"]
        elif os.path.isdir(entry):
            argv += ["--ro-bind", entry, f"/{name}"]
    return argv + ["--", "/usr/bin/ldd", path_inside]


@functools.lru_cache(maxsize=512)
def resolve(root: str, path: str, bwrap: Optional[str] = None) -> Resolved:
    inside = "/" + os.path.relpath(path, root) if root != "/" else path
    try:
        done = process.run_program(ldd_argv(root, inside, bwrap), capture_output=True, text=True,
                                   timeout=60,
                              env={"PATH": "/usr/bin:/bin", "LANG": "C"})
    except (OSError, subprocess.TimeoutExpired):
        return Resolved((), ())
    found, missing = [], []
    for line in done.stdout.splitlines():
        match = LDD_LINE.match(line)
        if not match:
            continue
        name, target = match.groups()
        if target == "not":
            missing.append(name)
        elif target.startswith("/"):
            found.append((name, under(root, target)))
    return Resolved(tuple(found), tuple(missing))


def is_glibc(name: str) -> bool:
    return GLIBC_NAMES.match(os.path.basename(name)) is not None


@dataclass(frozen=True)
class Closure:
    libraries: Tuple[Tuple[str, str], ...]  # (name it is loaded by, host file), dependencies first
    glibc: Tuple[Tuple[str, str], ...]  # glibc's libraries the driver uses (not the loader)
    missing: Tuple[str, ...]  # names the root itself cannot resolve


def closure(files: Sequence[str], root: str = "/", bwrap: Optional[str] = None) -> Closure:
    """The dependency closure of `files`, each file once, ordered so that a library comes after
    everything it needs (its own closure is smaller than any user's): the order a capsule loads
    them in, since dlmopen finds a DT_NEEDED name among what the namespace already holds."""
    names: Dict[str, str] = {}
    missing: List[str] = []
    for path in files:
        resolved = resolve(root, path, bwrap)
        names.setdefault(os.path.basename(path), path)
        for name, target in resolved.found:
            names.setdefault(name, target)
        missing += [m for m in resolved.missing if m not in missing]
    glibc = tuple(sorted((n, p) for n, p in names.items() if is_glibc(n)
                         and not n.startswith(("ld-", "linux-"))))
    kept = [(n, p) for n, p in names.items() if not is_glibc(n)]
    size = {p: len(resolve(root, p, bwrap).found) for _, p in kept}
    ordered = sorted(kept, key=lambda item: (size[item[1]], item[0]))
    return Closure(tuple(ordered), glibc, tuple(missing))


@dataclass
class DriverLayout:
    """The host driver laid out in a sandbox for one mode."""

    binds: List[Tuple[str, str]]  # (host file or folder, path inside), read-only
    files: Dict[str, str]  # path inside -> content: generated vendor files and the capsule manifest
    env: Dict[str, str]
    devices: List[str]  # host device nodes to bind
    libraries: List[Tuple[str, str]]  # (name, host file) of everything bound in (for the report)


def device_nodes() -> List[str]:
    """What a host driver opens: the DRM nodes, or NVIDIA's own nodes where there are no DRM
    ones."""
    nodes = sorted(glob.glob("/dev/dri/*")) if os.path.isdir("/dev/dri") else []
    return ["/dev/dri"] * bool(nodes) + sorted(p for p in glob.glob(NVIDIA_NODES)
                                               if not os.path.isdir(p))


def layout(driver: HostDriver, mode: DriverMode, bwrap: Optional[str] = None) -> DriverLayout:
    mode = DriverMode(mode)
    binds: Dict[str, str] = {}  # inside -> host
    files: Dict[str, str] = {}
    env: Dict[str, str] = {}
    entry = [driver.glvnd[name] for name in GLVND_ENTRY
             if name in driver.glvnd] if mode == DriverMode.CAPSULE else []
    for vendor in driver.vendors:
        if vendor.library is None:
            continue
        inside = f"{LIB_DIR}/{os.path.basename(vendor.library_path)}"
        binds[inside] = vendor.library
        files[vendor_inside(vendor)] = vendor.rewritten(inside)
    for library in driver.private:
        binds.setdefault(f"{LIB_DIR}/{os.path.basename(library)}", library)
    egl = sorted(vendor_inside(v) for v in driver.vendors if v.api == "egl" and v.library)
    vulkan = sorted(vendor_inside(v) for v in driver.vendors if v.api == "vulkan" and v.library)
    if egl:
        env["__EGL_VENDOR_LIBRARY_FILENAMES"] = ":".join(egl)
    if vulkan:
        env["VK_DRIVER_FILES"] = env["VK_ICD_FILENAMES"] = ":".join(vulkan)
    dri_inside = [DRI_DIR + (str(index) if index else "") for index in range(len(driver.dri_dirs))]
    binds.update(zip(dri_inside, driver.dri_dirs, strict=True))
    if dri_inside:
        env["LIBGL_DRIVERS_PATH"] = ":".join(dri_inside)
    if mode != DriverMode.LIBS:
        deps = closure(entry + driver.libraries, driver.root, bwrap)
        dri = set(dri_driver_files(driver.dri_dirs))  # reached through DRI_DIR
        chosen = ([(n, p) for n, p in deps.libraries if p not in dri]
                  + (list(deps.glibc) if mode == DriverMode.DEPS_GLIBC else []))
        for name, path in chosen:
            binds.setdefault(f"{LIB_DIR}/{name}", path)
        if mode == DriverMode.CAPSULE:
            files[CAPSULE_MANIFEST] = json.dumps({
                "load": [f"{LIB_DIR}/{name}" for name, path in deps.libraries if path not in dri],
                "entry": {name: f"{LIB_DIR}/{name}" for name in GLVND_ENTRY
                          if name in driver.glvnd},
            }, indent=1) + "\n"
            env[CAPSULE_ENV] = CAPSULE_MANIFEST
        else:
            env["LD_LIBRARY_PATH"] = LIB_DIR
    elif driver.private:
        # The vendor library opens its private libraries by name: the folder of the driver's own
        # files (nothing of the host beyond them) goes on the path, as #1 needs it to load at all.
        env["LD_LIBRARY_PATH"] = LIB_DIR
    libraries = sorted((os.path.basename(inside), host) for inside, host in binds.items()
                       if inside.startswith(LIB_DIR))
    return DriverLayout(sorted((host, inside) for inside, host in binds.items()), files, env,
                        device_nodes(),
                        libraries)
