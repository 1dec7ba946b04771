"""The programs and libraries a run uses, with exact versions.

Either discovered on the host or loaded from a manifest (`toolset.json`, written by the Nix
layer). Both produce the same schema (see docs/toolset.md); reports always say which it was.
"""
import ctypes.util
import glob
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..core.errors import InputError, ToolMissing, cut, parse_json, read_text, shown, shown_key
from ..system import process

SCHEMA = "gpu-harness/toolset/v1"
MANIFEST_KEYS = ("schema", "source", "system", "render_nodes", "tools")  # the schema's own keys
# What `doctor --json` says about the machine besides the toolset: a manifest ignores these, so
# that doctor's output loads as one; any other key is refused (a misspelt schema key).
DOCTOR_KEYS = ("paths", "vm_acceleration", "architectures")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
EXTRA_KINDS = {  # the extra fields the harness reads: (types, as said in a problem)
    "modules_dir": ((str, type(None)), "a string or null"),
    "libEGL": ((str, type(None)), "a string or null"),
    "libGLESv2": ((str, type(None)), "a string or null"),
    "dri_dirs": ((list,), "a list of strings"),
    "drivers": ((list,), "a list of strings"),
    "vendors": ((list,), "a list of strings"),
    "vendor_files": ((list,), "a list of strings"),
    "vendor_dirs": ((list,), "a list of strings"),
    "icd_dirs": ((list,), "a list of strings"),
    "env": ((dict,), "an object of strings"),
}
EGL_VENDOR_DIRS = ("/etc/glvnd/egl_vendor.d", "/usr/share/glvnd/egl_vendor.d")
DRI_DIR_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/dri", "/usr/lib/aarch64-linux-gnu/dri",
                      "/usr/lib64/dri", "/usr/lib/dri", "/run/opengl-driver/lib/dri")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    executable: Optional[str]  # program to look up on PATH; None for libraries
    debian: str  # package that provides it on Debian/Ubuntu
    version_cmd: Optional[List[str]] = None  # argv suffix printing the version
    version_pattern: str = r"(\d+(?:\.\d+)+)"


TOOL_SPECS = {
    spec.name: spec
    for spec in (
        ToolSpec("bwrap", "bwrap", "bubblewrap", ["--version"]),
        ToolSpec("virgl_test_server", "virgl_test_server", "virgl-server"),
        ToolSpec("python3", "/usr/bin/python3", "python3", ["--version"]),
        ToolSpec("mesa", None, "libgl1-mesa-dri libegl1 libgles2"),
        ToolSpec("egl", None,
                 "libegl1 libgles2 and a vendor library (libegl-mesa0, or the GPU vendor's "
                 "driver)"),
        ToolSpec("host-driver", None,
                 "libegl-mesa0 libgl1-mesa-dri (or the GPU vendor's EGL/Vulkan driver)"),
        ToolSpec("qemu-system-x86_64", "qemu-system-x86_64", "qemu-system-x86", ["--version"]),
        # arm64 guests
        ToolSpec("qemu-system-aarch64", "qemu-system-aarch64", "qemu-system-arm", ["--version"]),
        # riscv64 guests
        ToolSpec("qemu-system-riscv64", "qemu-system-riscv64", "qemu-system-misc", ["--version"]),
        ToolSpec("Xvfb", "Xvfb", "xvfb"),
        # the display axis: a Wayland compositor, its screenshot client, X on Wayland
        ToolSpec("weston", "weston", "weston", ["--version"]),
        ToolSpec("weston-screenshooter", "weston-screenshooter", "weston"),
        # one DRM weston at a time on a machine guest's card
        ToolSpec("flock", "flock", "util-linux", ["--version"]),
        ToolSpec("Xwayland", "Xwayland", "xwayland", ["-version"],
                 r"Xwayland Version (\d+(?:\.\d+)+)"),
        ToolSpec("busybox", "busybox", "busybox-static", ["--help"], r"BusyBox v(\d+(?:\.\d+)+)"),
        ToolSpec("kernel", None, "linux-image-amd64"),
        ToolSpec("podman", "podman", "podman", ["--version"]),
        # podman's default crun fails on hybrid cgroups
        ToolSpec("runc", "runc", "runc", ["--version"]),
        ToolSpec("flatpak", "flatpak", "flatpak", ["--version"]),
        ToolSpec("nix-instantiate", "nix-instantiate", "nix-bin", ["--version"]),
        ToolSpec("nix-prefetch-git", "nix-prefetch-git", "nix-bin (or devShells.default)"),
    )
}


@dataclass
class Tool:
    name: str
    path: Optional[str] = None
    version: Optional[str] = None
    extra: Dict[str, object] = field(default_factory=dict)
    # why a manifest's path cannot be used: the tool then counts as not found
    problem: Optional[str] = None

    @property
    def found(self) -> bool:
        return self.path is not None and self.problem is None

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.problem is None:
            del data["problem"]
        return data


@dataclass
class Toolset:
    source: str  # "discovery" or "manifest:<file>"
    tools: Dict[str, Tool]
    render_nodes: List[str] = field(default_factory=list)

    def found(self, name: str) -> bool:
        return name in self.tools and self.tools[name].found

    def path(self, name: str) -> str:
        """The tool's path; only for a tool that is found (the paths that need it check first)."""
        path = self.tools[name].path
        if path is None:
            raise ToolMissing(f"tool {name} is not found")
        return path

    def version(self, name: str) -> Optional[str]:
        tool = self.tools.get(name)
        return tool.version if tool else None

    def missing(self, names) -> List[str]:
        return [name for name in names if not self.found(name)]

    def why_missing(self, name: str) -> str:
        """`name (install PACKAGE)`: a missing tool, with what provides it; or `name (manifest
        path P does not exist)` for a manifest's tool whose path cannot be used."""
        tool = self.tools.get(name)
        if tool and tool.problem:
            return f"{name} ({tool.problem})"
        spec = TOOL_SPECS.get(name)
        return f"{name} (install {spec.debian})" if spec else name

    def host_gl_env(self) -> Dict[str, str]:
        """Environment that points the host-side GL programs (virgl_test_server, Xvfb, QEMU's GL
        display) at the toolset's Mesa. Empty when discovered: the host's defaults apply. A Nix
        toolset sets it, since a build sandbox has no /run/opengl-driver for glvnd to find."""
        mesa = self.tools.get("mesa")
        env = mesa.extra.get("env") if mesa and mesa.found else None
        return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}

    def versions(self) -> Dict[str, Optional[str]]:
        return {name: tool.version for name, tool in sorted(self.tools.items()) if tool.found}

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "source": self.source,
            "render_nodes": self.render_nodes,
            "tools": {name: tool.to_dict() for name, tool in sorted(self.tools.items())},
        }


def run_text(argv: List[str], timeout: float = 10) -> str:
    try:
        done = process.run_program(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def package_version(path: str) -> Optional[str]:
    """Version of the Debian package that owns `path`, when dpkg knows it."""
    if not shutil.which("dpkg-query"):
        return None
    owner = run_text(["dpkg-query", "-S", os.path.realpath(path)])
    if ":" not in owner or "no path found" in owner:
        return None
    package = owner.split(":")[0].split(",")[0].strip()
    version = run_text(["dpkg-query", "-W", "-f", "${Version}", package])
    return version or None


def upstream_version(text: str, pattern: str) -> Optional[str]:
    match = re.search(pattern, text or "")
    return match.group(1) if match else None


def discover_program(spec: ToolSpec) -> Tool:
    assert spec.executable is not None
    path = spec.executable if os.path.isabs(spec.executable) else shutil.which(spec.executable)
    if not path or not os.access(path, os.X_OK):
        return Tool(spec.name)
    version = None
    if spec.version_cmd:
        version = upstream_version(run_text([path] + spec.version_cmd), spec.version_pattern)
    if version is None:
        version = upstream_version(package_version(path) or "", r"(?:\d+:)?(\d+(?:\.\d+)+)")
    return Tool(spec.name, path, version)


def discover_mesa() -> Tool:
    egl = ctypes.util.find_library("EGL")
    gles = ctypes.util.find_library("GLESv2")
    dri_dirs = [d for d in DRI_DIR_CANDIDATES if glob.glob(os.path.join(d, "*_dri.so"))]
    if not (egl and gles and dri_dirs):
        return Tool("mesa")
    drivers = sorted({os.path.basename(p)[:-len("_dri.so")] for d in dri_dirs
                      for p in glob.glob(os.path.join(d, "*_dri.so"))})
    version = None
    swrast = os.path.join(dri_dirs[0], "swrast_dri.so")
    if os.path.exists(swrast):
        version = upstream_version(package_version(swrast) or "", r"(?:\d+:)?(\d+(?:\.\d+)+)")
    return Tool("mesa", dri_dirs[0], version,
                {"dri_dirs": dri_dirs, "drivers": drivers, "libEGL": egl, "libGLESv2": gles})


def newest_kernel() -> Tool:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"), key=lambda p: [int(x) if x.isdigit() else x
                                                                  for x in re.split(r"[.-]", p)])
    readable = [k for k in kernels if os.access(k, os.R_OK)]
    if not readable:
        return Tool("kernel")
    path = readable[-1]
    release = os.path.basename(path)[len("vmlinuz-"):]
    modules = f"/lib/modules/{release}"
    return Tool("kernel", path, release, {"modules_dir": modules if os.path.isdir(modules)
                                          else None})


def egl_vendor_dirs() -> List[str]:
    """Where glvnd looks for EGL vendor files, as it does itself."""
    configured = os.environ.get("__EGL_VENDOR_LIBRARY_DIRS")
    return configured.split(":") if configured else list(EGL_VENDOR_DIRS)


def egl_vendors(dirs: List[str]) -> Dict[str, str]:
    """vendor file -> the library it names (libEGL_mesa.so.0, libEGL_nvidia.so.0, ...)."""
    vendors = {}
    for folder in dirs:
        for vendor_file in sorted(glob.glob(os.path.join(folder, "*.json"))):
            try:
                library = json.loads(Path(vendor_file).read_text())["ICD"]["library_path"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if isinstance(library, str):
                vendors[vendor_file] = library
    return vendors


def library_file(soname: str) -> Optional[str]:
    """Where the dynamic loader finds `soname` (from its cache), or None."""
    for line in run_text(["ldconfig", "-p"]).splitlines():
        name, _, target = line.strip().partition(" => ")
        if name.split(" ")[0] == soname and os.path.exists(target):
            return target
    return None


def discover_egl() -> Tool:
    """An EGL + GLES stack through glvnd, whoever the vendor is: what the native path needs."""
    egl, gles = ctypes.util.find_library("EGL"), ctypes.util.find_library("GLESv2")
    vendors = egl_vendors(egl_vendor_dirs())
    egl_file = library_file(egl) if egl else None
    if not (egl_file and gles and vendors):
        return Tool("egl")
    return Tool("egl", egl_file, None, {"libGLESv2": library_file(gles) or gles,
                                        "vendor_files": sorted(vendors),
                                        "vendors": sorted(set(vendors.values()))})


def discover_host_driver(mesa: Tool) -> Tool:
    """The host's GPU userspace driver as its loaders find it (harness.host.hostdriver): its root is
    the tool's path, its folders the extra."""
    from . import hostdriver

    driver = hostdriver.discover("/")
    if not driver.found:
        return Tool("host-driver")
    return Tool("host-driver", "/", hostdriver.driver_version(driver, mesa.version),
                {"vendor_dirs": [d for d in hostdriver.standard_dirs("/",
                                                                     hostdriver.EGL_VENDOR_DIRS)],
                 "icd_dirs": [d for d in hostdriver.standard_dirs("/", hostdriver.VULKAN_ICD_DIRS)],
                 "dri_dirs": driver.dri_dirs,
                 "vendors": sorted({os.path.basename(v.library_path) for v in driver.vendors
                                    if v.library})})


def gpu_device_nodes() -> List[str]:
    """Device nodes through which a process reaches a GPU: DRM render nodes, or the NVIDIA
    driver's own nodes on hosts whose driver exposes no DRM node (as in many containers)."""
    return render_nodes() + sorted(glob.glob("/dev/nvidia[0-9]*"))


def render_nodes() -> List[str]:
    return sorted(glob.glob("/dev/dri/renderD*"))


def discover() -> Toolset:
    tools = {}
    for name, spec in TOOL_SPECS.items():
        if name == "mesa":
            tools[name] = discover_mesa()
        elif name == "egl":
            tools[name] = discover_egl()
        elif name == "host-driver":
            tools[name] = discover_host_driver(tools["mesa"])
        elif name == "kernel":
            tools[name] = newest_kernel()
        else:
            tools[name] = discover_program(spec)
    return Toolset("discovery", tools, render_nodes())


def load_manifest(path: Path) -> Toolset:
    """Load a toolset.json; unknown tools are kept, malformed entries are InputErrors."""
    source = str(path)
    data = parse_json(read_text(path, "toolset manifest"), source)
    if not isinstance(data, dict):
        raise InputError(f"{source}: must be a JSON object, not {shown(data)}")
    problems = []
    if data.get("schema") != SCHEMA:
        problems.append(f"{source}: schema: must be {SCHEMA!r}, not {shown(data.get('schema'))}")
    tools_data = data.get("tools")
    if not isinstance(tools_data, dict):
        problems.append(f"{source}: tools: must be an object of name -> {{path, version}}")
        tools_data = {}
    unknown = [key for key in data if key not in MANIFEST_KEYS and key not in DOCTOR_KEYS]
    problems += [f"{source}: {shown_key(key)}: unknown key (allowed: {', '.join(MANIFEST_KEYS)}; "
                 f"ignored: {', '.join(DOCTOR_KEYS)})" for key in sorted(unknown, key=str)]
    tools = {name: Tool(name) for name in TOOL_SPECS}
    for name, entry in tools_data.items():
        why = entry_problem(entry) if TOOL_NAME.match(name) else ("a tool name is letters, digits, "
                                                                  "'.', '_', '+' and '-'")
        if why:
            problems.append(f"{source}: tools.{shown_key(name)}: {why}")
            continue
        path_text = entry.get("path")
        tools[name] = Tool(name, path_text, entry.get("version"), entry.get("extra", {}),
                           path_problem(name, path_text) if path_text is not None else None)
    if problems:
        raise InputError(problems)
    # Render nodes belong to the machine, not to the pinned build.
    return Toolset(f"manifest:{source}", tools, render_nodes())


def entry_problem(entry) -> Optional[str]:
    """What is wrong with a manifest's tool entry, or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), (str, type(None))):
        return "must be an object with a string path"
    if not isinstance(entry.get("version"), (str, type(None))):
        return f"version: must be a string or null, not {shown(entry['version'])}"
    extra = entry.get("extra", {})
    if not isinstance(extra, dict):
        return f"extra: must be an object, not {shown(extra)}"
    for key, (kinds, label) in EXTRA_KINDS.items():
        if key in extra and not fits(extra[key], kinds):
            return f"extra.{key}: must be {label}, not {shown(extra[key])}"
    return None


def fits(value, kinds: tuple) -> bool:
    if isinstance(value, list):
        return list in kinds and all(isinstance(item, str) for item in value)
    if isinstance(value, dict):
        return dict in kinds and all(isinstance(k, str) and isinstance(v, str) for k,
                                     v in value.items())
    return isinstance(value, kinds)


def path_problem(name: str, path: str) -> Optional[str]:
    """Why a manifest's path for a tool cannot be used (the tool then counts as not found), or
    None."""
    where = f"manifest path {cut(path, 160)}"
    if not os.path.isabs(path):
        return f"{where} is not absolute"
    if not os.path.exists(path):
        return f"{where} does not exist"
    spec = TOOL_SPECS.get(name)
    if spec and spec.executable:
        if os.path.isdir(path):
            return f"{where} is a directory, not a program"
        if not os.access(path, os.X_OK):
            return f"{where} is not executable"
    return None
