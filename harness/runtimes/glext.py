"""A runtime's Mesa as a Flatpak GL extension, the way Flatpak ships drivers.

A Flatpak runtime declares an extension point in its metadata (`[Extension
org.freedesktop.Platform.GL]`, `directory=lib/<multiarch>/GL`, `subdirectories=true`, ...), and
flatpak mounts each installed extension `<point>.<name>` at `/usr/lib/<multiarch>/GL/<name>`,
puts its `lib` on the library path (`add-ld-path`) and links the files of its `merge-dirs`
(vendor and ICD files, DRI drivers) into `/usr/lib/<multiarch>/GL/<dir>`; the runtime points
the loaders there (__EGL_VENDOR_LIBRARY_DIRS, LIBGL_DRIVERS_PATH, the Vulkan ICD path).

Here a harness runtime is split in two, as freedesktop-sdk's Platform and GL.default are:
  * the driver: what glvnd's EGL vendor files and the Vulkan ICD files name, the DRI drivers,
    glvnd's GLX vendors and GBM's backends, plus every library in their dependency closure that
    nothing else in the runtime needs (libgallium, libglapi, LLVM, libdrm, ...; glibc never);
  * the platform: everything else. It is the runtime with no Mesa of its own.
The driver becomes the extension's files (libraries in `lib/`, DRI drivers in `lib/dri/`, the
vendor and ICD files rewritten to name the libraries where the extension is mounted); the
platform becomes a runtime whose metadata declares the extension point. Nothing here runs
flatpak: the flatpak family exports and installs what this module lays out."""
import functools
import glob
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

from ..host import driverlayout, elfdeps, hostdriver
from ..core.errors import ComponentError

EXTENSION_POINT = "org.gpuharness.Platform.GL"
# freedesktop-sdk's GL extension point merges these folders of every GL extension into one.
MERGE_DIRS = ("vulkan/icd.d", "glvnd/egl_vendor.d", "lib/dri", "lib/gbm")
EGL_DIR, ICD_DIR, DRI_DIR, GBM_DIR, LIB_DIR = ("glvnd/egl_vendor.d", "vulkan/icd.d", "lib/dri",
                                               "lib/gbm", "lib")
MAX_LINKS = 40


@functools.lru_cache(maxsize=1)
def layout_digest() -> str:
    """This module's code, hashed: what is built from a runtime by it (the GL split) is cached
    under this, so a change to the split builds anew."""
    with open(__file__, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


class ExtensionError(ComponentError):
    """A runtime cannot be split into a platform and a GL extension; the message says why."""


def multiarch(root: str) -> Optional[str]:
    """The root's Debian multiarch folder name (x86_64-linux-gnu), from where its libc lives."""
    found = sorted(os.path.basename(os.path.dirname(p))
                   for p in glob.glob(os.path.join(root, "usr/lib/*/libc.so.6")))
    return "x86_64-linux-gnu" if "x86_64-linux-gnu" in found else (found[0] if found else None)


def inside(root: str, path: str) -> str:
    """`path` (a path on the host under `root`) as the root itself resolves it: an absolute path
    inside the root with every link followed as if `root` were `/`."""
    parts = [p for p in os.path.relpath(path, root).split(os.sep) if p not in ("", ".")]
    resolved: List[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = resolved[:-1]
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > MAX_LINKS:
                raise ExtensionError(f"too many links resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return "/" + "/".join(resolved)


@dataclass(frozen=True)
class LoaderFile:
    """A glvnd EGL vendor file or Vulkan ICD file of the driver, and the library it names."""

    folder: str  # EGL_DIR or ICD_DIR
    name: str  # the file's name
    data: dict = field(compare=False, hash=False)
    library: str  # the library's name in the extension's lib/

    def rewritten(self, mount: str) -> str:
        """The file with its library named where the extension is mounted (absolute, so it does not
        depend on the library path)."""
        data = json.loads(json.dumps(self.data))
        data["ICD"]["library_path"] = f"{mount}/{LIB_DIR}/{self.library}"
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


@dataclass
class Split:
    """A runtime's Mesa and the rest. Paths are inside the root (`/usr/lib/...`), links resolved."""

    root: str
    multiarch: str
    loader_files: List[LoaderFile]
    loader_sources: List[str]  # the vendor/ICD files themselves
    # name in the extension's lib/ -> file: the driver's and what only it needs
    libraries: Dict[str, str]
    dri: Dict[str, str]  # DRI driver name -> file
    gbm: Dict[str, str]  # GBM backend name -> file
    # names of the libraries moved with the driver because nothing else needs them
    only_driver: List[str]
    missing: List[str] = field(default_factory=list)  # names the driver needs that the root lacks

    @property
    def files(self) -> Set[str]:
        """Everything the platform loses."""
        return {*self.libraries.values(), *self.dri.values(), *self.gbm.values(),
                *self.loader_sources}


def loader_files(root: str, driver: hostdriver.HostDriver) -> Tuple[List[LoaderFile],
                                                                     Dict[str, str], List[str]]:
    """The driver's vendor/ICD files, the libraries they name (name in lib/ -> file) and the
    files."""
    found, libraries, sources = [], {}, []
    for vendor in driver.vendors:
        sources.append(inside(root, vendor.source))
        if vendor.library is None:
            continue
        name = os.path.basename(vendor.library_path)
        libraries[name] = inside(root, vendor.library)
        found.append(LoaderFile(EGL_DIR if vendor.api == "egl" else ICD_DIR,
                                os.path.basename(vendor.source),
                                vendor.data, name))
    return found, libraries, sources


def named_files(root: str, pattern: str) -> Dict[str, str]:
    """name -> file inside the root, for each file (or link to one) the glob names."""
    return {os.path.basename(p): inside(root, p) for p in sorted(glob.glob(os.path.join(root,
                                                                                        pattern)))
            if os.path.isfile(p)}


class Resolver:
    """DT_NEEDED names to files, as the root's loader finds them (its cache, then the default
    folders), and each file's own needs."""

    def __init__(self, root: str):
        self.root = root
        self.cache = hostdriver.ld_cache(root)
        self.names: Dict[str, Optional[str]] = {}

    def find(self, name: str) -> Optional[str]:
        if name not in self.names:
            path = hostdriver.resolve_library(self.root, name, self.cache)
            self.names[name] = inside(self.root, path) if path else None
        return self.names[name]

    def needed(self, path_inside: str) -> Tuple[str, ...]:
        found = elfdeps.dynamic(hostdriver.under(self.root, path_inside))
        return found.needed if found else ()


def closure(resolver: Resolver, files: Sequence[str]) -> Tuple[Dict[str, str], List[str]]:
    """name -> file of everything `files` need, transitively, glibc excluded; and what is
    missing."""
    names: Dict[str, str] = {}
    missing: List[str] = []
    todo = list(files)
    seen: Set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in resolver.needed(path):
            if driverlayout.is_glibc(name):
                continue
            target = resolver.find(name)
            if target is None:
                if name not in missing:
                    missing.append(name)
            elif name not in names:
                names[name] = target
                todo.append(target)
    return names, missing


def platform_needs(resolver: Resolver, candidates: Dict[str, str], driver: Set[str]) -> Set[str]:
    """The candidates (libraries the driver needs) that something outside the driver needs too:
    what any ELF file of the root that is neither the driver nor a remaining candidate names,
    until nothing changes (a library kept for the platform brings its own needs)."""
    moving = set(candidates.values())
    kept: Set[str] = set()
    outside = [inside(resolver.root, p) for p in elfdeps.elf_files(os.path.join(resolver.root,
                                                                                "usr"))]
    todo = [p for p in outside if p not in driver and p not in moving]
    while todo:
        path = todo.pop()
        for name in resolver.needed(path):
            target = resolver.find(name)
            if target in moving:
                moving.discard(target)
                kept.add(target)
                todo.append(target)
    return kept


def split(root: str) -> Split:
    """The runtime at `root` as a GL driver and a platform (see the module's description)."""
    arch = multiarch(root)
    if arch is None:
        raise ExtensionError(f"{root} has no usr/lib/<multiarch>/libc.so.6: not a Debian-layout "
                             "runtime")
    driver = hostdriver.discover(root)
    found, libraries, sources = loader_files(root, driver)
    if not any(f.folder == EGL_DIR for f in found):
        raise ExtensionError(f"{root} has no EGL vendor file naming an installed library: no Mesa "
                             "to move")
    libdir = f"usr/lib/{arch}"
    # glvnd's GLX vendors: opened by name
    libraries.update(named_files(root, f"{libdir}/libGLX_*.so.0"))
    dri = {name: path for d in driver.dri_dirs for name, path in named_files(root, os.path.join(
        os.path.relpath(d, root), "*_dri.so")).items()}
    gbm = named_files(root, f"{libdir}/gbm/*.so")
    resolver = Resolver(root)
    own = {*libraries.values(), *dri.values(), *gbm.values()}
    needs, missing = closure(resolver, sorted(own))
    candidates = {name: path for name, path in needs.items() if path not in own}
    kept = platform_needs(resolver, candidates, own)
    moved = {name: path for name, path in candidates.items() if path not in kept}
    libraries.update(moved)
    return Split(root, arch, found, sorted(set(sources)), dict(sorted(libraries.items())), dri, gbm,
                 sorted(moved), sorted(missing))


def mount_point(arch: str, name: str) -> str:
    """Where flatpak mounts extension `<EXTENSION_POINT>.<name>` of a runtime with our extension
    point."""
    return f"/usr/lib/{arch}/GL/{name}"


def gl_folder(arch: str) -> str:
    return f"/usr/lib/{arch}/GL"


def extension_files(parts: Split, name: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """The extension's tree: (relative path -> file inside the source root to link there,
    relative path -> generated content)."""
    links = {f"{LIB_DIR}/{lib}": path for lib, path in parts.libraries.items()}
    links.update({f"{DRI_DIR}/{n}": path for n, path in parts.dri.items()})
    links.update({f"{GBM_DIR}/{n}": path for n, path in parts.gbm.items()})
    mount = mount_point(parts.multiarch, name)
    generated = {f"{f.folder}/{f.name}": f.rewritten(mount) for f in parts.loader_files}
    return links, generated


def extension_metadata(extension_id: str) -> str:
    return f"[Runtime]\nname={extension_id}\n"


def loader_env(arch: str) -> Dict[str, str]:
    """What the platform sets so that the loaders look where the extensions' folders are merged."""
    folder = gl_folder(arch)
    return {"__EGL_VENDOR_LIBRARY_DIRS": f"{folder}/{EGL_DIR}:/usr/share/glvnd/egl_vendor.d",
            "LIBGL_DRIVERS_PATH": f"{folder}/{DRI_DIR}",
            "GBM_BACKENDS_PATH": f"{folder}/{GBM_DIR}",
            "VK_DRIVER_FILES": f"{folder}/{ICD_DIR}",
            "VK_ICD_FILENAMES": f"{folder}/{ICD_DIR}"}


def platform_metadata(runtime_id: str, arch: str, branch: str, flatpak_arch: str = "x86_64") -> str:
    """A runtime's metadata with freedesktop-sdk's GL extension point (our name for it) and the
    loaders pointed into it."""
    lines = ["[Runtime]", f"name={runtime_id}", f"runtime={runtime_id}/{flatpak_arch}/{branch}",
             f"sdk={runtime_id}/{flatpak_arch}/{branch}", "",
             f"[Extension {EXTENSION_POINT}]", f"directory=lib/{arch}/GL", f"version={branch}",
             "subdirectories=true", "no-autodownload=true", "autodelete=false", "add-ld-path=lib",
             "merge-dirs=" + ";".join(MERGE_DIRS), "download-if=active-gl-driver",
             "enable-if=active-gl-driver",
             "", "[Environment]"]
    lines += [f"{key}={value}" for key, value in sorted(loader_env(arch).items())]
    return "\n".join(lines) + "\n"


def place(source: str, target: str) -> None:
    """A hard link where the file system allows one (it costs no space), else a copy."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_extension(parts: Split, name: str, files: str) -> int:
    """The extension's tree in `files`; returns its size in bytes (each file once)."""
    links, generated = extension_files(parts, name)
    seen: Set[Tuple[int, int]] = set()
    size = 0
    for relative, path in sorted(links.items()):
        source = hostdriver.under(parts.root, path)
        place(source, os.path.join(files, relative))
        info = os.stat(source)
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            size += info.st_size
    for relative, content in sorted(generated.items()):
        os.makedirs(os.path.dirname(os.path.join(files, relative)), exist_ok=True)
        with open(os.path.join(files, relative), "w") as handle:
            handle.write(content)
    for folder in MERGE_DIRS:
        os.makedirs(os.path.join(files, folder), exist_ok=True)
    return size


def strip(parts: Split, usr: str) -> List[str]:
    """Remove the driver from a copy of the root's /usr at `usr`, and the links that named its
    files; leave the extension point's folder for flatpak to mount on. Returns what was removed."""
    removed = sorted(parts.files)
    gone = set(removed)
    for folder, _dirs, names in os.walk(usr):
        for entry in names:
            path = os.path.join(folder, entry)
            path_inside = "/usr/" + os.path.relpath(path, usr)
            if path_inside in gone or (os.path.islink(path)
                                       and inside(parts.root,
                                                  hostdriver.under(parts.root, path_inside))
                                       in gone):
                os.unlink(path)
    os.makedirs(os.path.join(usr, os.path.relpath(gl_folder(parts.multiarch), "/usr")),
                exist_ok=True)
    return removed
