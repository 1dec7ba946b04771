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

from .errors import InputError

SCHEMA = "gpu-harness/toolset/v1"
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
        ToolSpec("qemu-system-x86_64", "qemu-system-x86_64", "qemu-system-x86", ["--version"]),
        ToolSpec("Xvfb", "Xvfb", "xvfb"),
        ToolSpec("busybox", "busybox", "busybox-static", ["--help"], r"BusyBox v(\d+(?:\.\d+)+)"),
        ToolSpec("kernel", None, "linux-image-amd64"),
        ToolSpec("podman", "podman", "podman", ["--version"]),
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

    @property
    def found(self) -> bool:
        return self.path is not None


@dataclass
class Toolset:
    source: str  # "discovery" or "manifest:<file>"
    tools: Dict[str, Tool]
    render_nodes: List[str] = field(default_factory=list)

    def found(self, name: str) -> bool:
        return name in self.tools and self.tools[name].found

    def path(self, name: str) -> str:
        return self.tools[name].path

    def version(self, name: str) -> Optional[str]:
        tool = self.tools.get(name)
        return tool.version if tool else None

    def missing(self, names) -> List[str]:
        return [name for name in names if not self.found(name)]

    def why_missing(self, name: str) -> str:
        """`name (install PACKAGE)`: a missing tool, with what provides it."""
        spec = TOOL_SPECS.get(name)
        return f"{name} (install {spec.debian})" if spec else name

    def versions(self) -> Dict[str, Optional[str]]:
        return {name: tool.version for name, tool in sorted(self.tools.items()) if tool.found}

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "source": self.source,
            "render_nodes": self.render_nodes,
            "tools": {name: asdict(tool) for name, tool in sorted(self.tools.items())},
        }


def run_text(argv: List[str], timeout: float = 10) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
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
    return Tool("kernel", path, release, {"modules_dir": modules if os.path.isdir(modules) else None})


def render_nodes() -> List[str]:
    return sorted(glob.glob("/dev/dri/renderD*"))


def discover() -> Toolset:
    tools = {}
    for name, spec in TOOL_SPECS.items():
        if name == "mesa":
            tools[name] = discover_mesa()
        elif name == "kernel":
            tools[name] = newest_kernel()
        else:
            tools[name] = discover_program(spec)
    return Toolset("discovery", tools, render_nodes())


def load_manifest(path: Path) -> Toolset:
    """Load a toolset.json; unknown tools are kept, malformed entries are InputErrors."""
    source = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"{source}: cannot read toolset manifest: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON: {exc}") from None
    problems = []
    if not isinstance(data, dict):
        raise InputError(f"{source}: must be a JSON object")
    if data.get("schema") != SCHEMA:
        problems.append(f"{source}: schema: must be {SCHEMA!r}, not {data.get('schema')!r}")
    tools_data = data.get("tools")
    if not isinstance(tools_data, dict):
        problems.append(f"{source}: tools: must be an object of name -> {{path, version}}")
        tools_data = {}
    unknown = set(data) - {"schema", "source", "tools", "render_nodes", "system"}
    problems += [f"{source}: {key}: unknown key" for key in sorted(unknown)]
    tools = {name: Tool(name) for name in TOOL_SPECS}
    for name, entry in tools_data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), (str, type(None))):
            problems.append(f"{source}: tools.{name}: must be an object with a string path")
            continue
        extra = entry.get("extra", {})
        tools[name] = Tool(name, entry.get("path"), entry.get("version"), extra if isinstance(extra, dict) else {})
    if problems:
        raise InputError(problems)
    # Render nodes belong to the machine, not to the pinned build.
    return Toolset(f"manifest:{source}", tools, render_nodes())


def load(manifest: Optional[Path] = None) -> Toolset:
    manifest = manifest or os.environ.get("GPU_HARNESS_TOOLSET")
    return load_manifest(Path(manifest)) if manifest else discover()
