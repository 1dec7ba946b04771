"""The host's GPU userspace driver, found the way its loaders find it: the EGL vendor files of
glvnd and the Vulkan ICD files name the driver libraries, Mesa's DRI folder holds its gallium
drivers. Nothing here knows a vendor by name: Mesa's libEGL_mesa and NVIDIA's libEGL_nvidia are
both just what a vendor file names.

The "host" is the toolset's `host-driver` root: "/" when discovered, a runtime's tree with
`--toolset runtime:NAME` (a newer host, simulated). harness.host.driverlayout puts the driver into
a sandbox; harness.host.drivermatch says whose driver rendered and whether it matches.
"""
import functools
import glob
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple
from ..system import process


EGL_VENDOR_DIRS = ("etc/glvnd/egl_vendor.d", "usr/share/glvnd/egl_vendor.d")
VULKAN_ICD_DIRS = ("etc/vulkan/icd.d", "usr/share/vulkan/icd.d", "usr/local/share/vulkan/icd.d")
DRI_DIRS = ("usr/lib/x86_64-linux-gnu/dri", "usr/lib64/dri", "usr/lib/dri")
# glibc's own libraries and the dynamic loader: never part of "the driver's dependencies"
# (the dependencies mode leaves them to the runtime; its glibc variant binds them on purpose).
GLIBC_NAMES = re.compile(r"^(ld-linux[^/]*|linux-vdso\.so\.\d+|linux-gate\.so\.\d+|"
                         r"lib(c|m|mvec|pthread|dl|rt|resolv|util|anl|BrokenLocale|thread_db|nsl|"
                         r"c_malloc_debug|memusage|pcprofile)\.so(\.\d+)*|libnss_[a-z]+\.so\.\d+)$")

# What an app links: the capsule's entry points (glvnd's GL, the Vulkan loader), the host's.
GLVND_ENTRY = ("libEGL.so.1", "libGLESv2.so.2", "libvulkan.so.1")

@dataclass(frozen=True)
class VendorFile:
    api: str  # egl | vulkan
    source: str  # the JSON file on the host
    library_path: str  # as the file says (a soname or an absolute path)
    library: Optional[str]  # the file it resolves to on the host, None if it does not
    data: dict = field(default_factory=dict, compare=False, hash=False)

    def rewritten(self, library_inside: str) -> str:
        data = json.loads(json.dumps(self.data))
        data["ICD"]["library_path"] = library_inside
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


@dataclass
class HostDriver:
    root: str
    vendors: List[VendorFile]
    dri_dirs: List[str]
    glvnd: Dict[str, str]  # libEGL.so.1 / libGLESv2.so.2 -> the host file
    problems: List[str] = field(default_factory=list)
    # libraries a vendor library opens by name (private_libraries)
    private: List[str] = field(default_factory=list)

    @property
    def libraries(self) -> List[str]:
        """The driver's own files: what the vendor files name, their private libraries, and the
        DRI drivers (one per file)."""
        named = [v.library for v in self.vendors if v.library]
        return unique_files(named + self.private + dri_driver_files(self.dri_dirs))

    @property
    def found(self) -> bool:
        return any(v.library for v in self.vendors)

    def to_dict(self) -> dict:
        return {"root": self.root, "vendors": [{"api": v.api, "file": v.source,
                                                "library_path": v.library_path,
                                                "library": v.library} for v in self.vendors],
                "dri_dirs": self.dri_dirs, "glvnd": self.glvnd, "problems": self.problems,
                "private": self.private}


def unique_files(paths: Iterable[str]) -> List[str]:
    """Paths in order, a file reached twice (a link, a hard link) kept once."""
    seen, kept = set(), []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            kept.append(path)
    return kept


def dri_driver_files(dri_dirs: Sequence[str]) -> List[str]:
    return unique_files(sorted(p for d in dri_dirs for p in glob.glob(os.path.join(d, "*_dri.so"))))


def under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def ld_cache(root: str) -> Dict[str, str]:
    """soname -> file, from the root's own loader cache (64-bit entries first)."""
    cache = under(root, "/etc/ld.so.cache")
    try:
        text = process.run_program(["ldconfig", "-p", "-C", cache], capture_output=True, text=True,
                                   timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: Dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if not match:
            continue
        name, flags, target = match.groups()
        wanted = "x86-64" in flags or "64bit" in flags
        if name not in found or wanted:
            path = under(root, target)
            if os.path.exists(path) and (name not in found or wanted):
                found[name] = path
    return found


LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib64", "lib",
                "usr/lib")


def resolve_library(root: str, library_path: str, cache: Dict[str, str]) -> Optional[str]:
    """The file a loader opens for `library_path`: an absolute path as it is; a name from the
    loader cache, then the default folders (as ld.so searches)."""
    if os.path.isabs(library_path):
        path = under(root, library_path)
        return path if os.path.exists(path) else None
    if library_path in cache:
        return cache[library_path]
    for folder in LIBRARY_DIRS:
        path = under(root, os.path.join(folder, library_path))
        if os.path.exists(path) and elf_class(path) in (None, 64):
            return path
    return None


def read_vendor_files(api: str, dirs: Sequence[str], root: str, cache: Dict[str, str],
                      problems: List[str]) -> List[VendorFile]:
    vendors = []
    for folder in dirs:
        for source in sorted(glob.glob(os.path.join(folder, "*.json"))):
            try:
                data = json.loads(open(source).read())
                library_path = data["ICD"]["library_path"]
            except (OSError, ValueError, KeyError, TypeError):
                problems.append(f"{source}: not a vendor/ICD file with ICD.library_path")
                continue
            if not isinstance(library_path, str):
                continue
            library = resolve_library(root, library_path, cache)
            if library is None:
                problems.append(f"{source}: {library_path} is not installed")
            vendors.append(VendorFile(api, source, library_path, library, data))
    return vendors


VENDOR_LIBRARY = re.compile(r"^lib(?:EGL|GLX)_(?P<vendor>[A-Za-z0-9]+)"
                            r"\.so\.(?P<version>\d+(?:\.\d+)+)$")


def private_libraries(vendor_library: str) -> List[str]:
    """The libraries a glvnd vendor library opens at run time by name, not as a link-time
    dependency (ldd does not see them). By glvnd's naming, the vendor `V` of libEGL_V/libGLX_V
    ships them as lib`V`-*.so.VERSION beside it, VERSION being its own (NVIDIA's
    libnvidia-eglcore, -glcore, -glsi, -tls of the same driver release). Of those, only the ones
    the vendor library names in its own bytes, and what they name in turn: the same release also
    ships libraries no GL driver opens (NVIDIA's nvidia-settings GTK plugins, OpenCL, NVML).
    Mesa's vendor library (libEGL_mesa.so.0.0.0) has none."""
    real = os.path.realpath(vendor_library)
    named = VENDOR_LIBRARY.match(os.path.basename(real))
    if not named:
        return []
    folder, vendor, version = os.path.dirname(real), named["vendor"], named["version"]
    beside = {os.path.basename(path)[:-len(f".so.{version}")]: path
              for path in glob.glob(os.path.join(folder, f"lib{glob.escape(vendor)}-*.so."
                                                         f"{glob.escape(version)}"))
              if elf_class(path) in (None, 64)}
    chosen: Dict[str, str] = {}
    readers = [real]
    while readers:
        content = read_bytes(readers.pop())
        for stem, path in sorted(beside.items()):
            if stem not in chosen and stem.encode() + b".so" in content:
                chosen[stem] = path
                readers.append(path)
    return sorted(chosen.values())


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def standard_dirs(root: str, dirs: Sequence[str]) -> List[str]:
    return [under(root, d) for d in dirs if os.path.isdir(under(root, d))]


def driver_version(driver: HostDriver, mesa_version: Optional[str]) -> Optional[str]:
    """NVIDIA's version is in its libraries' file names (libEGL_nvidia.so.580.95.05); Mesa's is
    its package's."""
    for vendor in driver.vendors:
        if vendor.library:
            match = re.search(r"nvidia\.so\.(\d+(?:\.\d+)+)$", os.path.realpath(vendor.library))
            if match:
                return f"nvidia {match.group(1)}"
    return f"mesa {mesa_version}" if mesa_version else None


LIBC_FILES = ("lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libc.so.6",
              "lib/i386-linux-gnu/libc.so.6",
              "usr/lib/i386-linux-gnu/libc.so.6", "lib64/libc.so.6", "lib/libc.so.6")


@functools.lru_cache(maxsize=32)
def glibc_version(root: str) -> Optional[str]:
    """The glibc version of a root, from its libc's own banner ("... release version 2.36.")."""
    for name in LIBC_FILES:
        try:
            with open(under(root, name), "rb") as handle:
                match = re.search(rb"release version (\d+\.\d+)", handle.read())
        except OSError:
            continue
        if match:
            return match.group(1).decode()
    return None


def from_tool(root: str, extra: Dict[str, object]) -> HostDriver:
    """The driver a toolset's `host-driver` entry describes."""
    def dirs(key: str) -> Optional[List[str]]:
        value = extra.get(key)
        return [str(v) for v in value] if isinstance(value, list) else None

    return cached_discover(root, tuple(dirs("vendor_dirs") or ()), tuple(dirs("icd_dirs") or ()),
                           tuple(dirs("dri_dirs") or ()))


@functools.lru_cache(maxsize=8)
def cached_discover(root: str, egl_dirs: Tuple[str, ...], icd_dirs: Tuple[str, ...],
                    dri_dirs: Tuple[str, ...]) -> HostDriver:
    return discover(root, egl_dirs, icd_dirs, dri_dirs)


def discover(root: str = "/", egl_dirs: Optional[Sequence[str]] = None,
             icd_dirs: Optional[Sequence[str]] = None,
             dri_dirs: Optional[Sequence[str]] = None) -> HostDriver:
    """The driver under `root`; the folders default to the standard ones there."""
    cache = ld_cache(root)
    problems: List[str] = []
    egl_dirs = list(egl_dirs) if egl_dirs is not None else [under(root, d) for d in EGL_VENDOR_DIRS]
    icd_dirs = list(icd_dirs) if icd_dirs is not None else [under(root, d) for d in VULKAN_ICD_DIRS]
    if dri_dirs is None:
        dri_dirs = [under(root, d) for d in DRI_DIRS]
    vendors = (read_vendor_files("egl", egl_dirs, root, cache, problems)
               + read_vendor_files("vulkan", icd_dirs, root, cache, problems))
    # An ICD for another architecture (intel_icd.i686.json names a 32-bit file) is not this host's.
    vendors = [v for v in vendors if v.library is None or elf_class(v.library) in (None, 64)]
    glvnd = {name: path for name in GLVND_ENTRY for path in [resolve_library(root, name,
                                                                             cache)] if path}
    private = unique_files(p for v in vendors if v.library for p in private_libraries(v.library))
    return HostDriver(root, vendors, [d for d in dri_dirs if dri_driver_files([d])], glvnd,
                      problems, private)


def elf_class(path: str) -> Optional[int]:
    try:
        with open(path, "rb") as handle:
            head = handle.read(5)
    except OSError:
        return None
    if head[:4] != b"\x7fELF":
        return None
    return {1: 32, 2: 64}.get(head[4])


