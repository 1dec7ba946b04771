"""Judges a CDI spec (the harness's, or one a vendor tool wrote) against the live driver: every
host path is there, every library is the live driver's version, device nodes have the host's
numbers, the vendor and ICD files are there and name libraries the spec mounts; and says
whether it carries 32-bit libraries. A spec that fails any of these is stale."""
import functools
import glob
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

from ..core import places
from . import drivermatch
from ..core.errors import InputError, one_line
from .hostdriver import HostDriver, elf_class, from_tool, under
from .toolset import Toolset

SCHEMA_DIR = places.DATA / "cdi"  # the CDI project's schema (Apache-2.0, LICENSE there)
# NVIDIA's libraries carry the driver's release in their names (libEGL_nvidia, libnvidia-*,
# libcuda, ...).
NVIDIA_VERSIONED = re.compile(r"(nvidia|libcuda|libnvcuvid|libnvoptix)[^/]*"
                              r"\.so\.(\d+\.\d+(?:\.\d+)?)$")
MESA_FILE = re.compile(r"(libEGL_mesa|libGLX_mesa|libgallium|_dri\.so$|libvulkan_[a-z_]+\.so)")
MESA_BANNER = re.compile(rb"Mesa (\d+\.\d+\.\d+(?:-devel)?)")
DRIVER_32 = ("usr/lib/i386-linux-gnu", "usr/lib32", "usr/lib/i386-linux-gnu/dri")
DRIVER_32_NAMES = ("libEGL_*.so*", "libGLX_*.so*", "libnvidia-*.so*", "*_dri.so", "libvulkan_*.so")


@dataclass(frozen=True)
class Finding:
    stale: bool  # the spec would not give a container the live driver as it is
    text: str


@dataclass(frozen=True)
class LiveDriver:
    """What the spec is judged against: the driver as discovered, its version ("mesa 22.3.6",
    "nvidia 580.95.05": the kernel module's where it is loaded)."""

    driver: HostDriver
    version: Optional[str]


def live_driver(toolset: Toolset) -> LiveDriver:
    """The driver of the toolset's `host-driver` entry; NVIDIA's version is its kernel module's
    where loaded."""
    tool = toolset.tools.get("host-driver")
    if tool is None or not tool.path:
        why = tool.problem if tool is not None and tool.problem else ("no EGL vendor or Vulkan ICD "
                                                                      "file names a library")
        raise InputError(f"no host driver here: {why}")
    version = tool.version
    module = drivermatch.module_version("nvidia")
    if version and version.startswith("nvidia ") and module:
        version = f"nvidia {module}"
    return LiveDriver(from_tool(tool.path, tool.extra), version)


@functools.lru_cache(maxsize=1)
def validator():
    from jsonschema import Draft7Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    schema = json.loads((SCHEMA_DIR / "schema.json").read_text())
    defs = Resource.from_contents(json.loads((SCHEMA_DIR / "defs.json").read_text()),
                                  default_specification=DRAFT7)
    return Draft7Validator(schema, registry=Registry().with_resource("defs.json", defs))


def load(path: str) -> dict:
    """A spec file as CDI readers take it (JSON, or YAML for .yaml), checked against the CDI schema;
    anything else is bad input, said in one line."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    spec = parse(path, text)
    try:
        errors = sorted(validator().iter_errors(spec), key=lambda e: list(e.absolute_path))
    except RecursionError:
        raise InputError(f"{path}: not a CDI spec: nested too deeply") from None
    if errors:
        where = "/".join(str(part) for part in errors[0].absolute_path) or "the top"
        raise InputError(f"{path}: not a CDI spec: {one_line(errors[0].message, 200)} (at {where})")
    assert isinstance(spec, dict)
    return spec


def parse(path: str, text: str) -> object:
    if path.endswith(".yaml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not YAML: {one_line(str(exc), 200)}") from None
        except RecursionError:
            raise InputError(f"{path}: not YAML: nested too deeply") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{path}: not JSON: {one_line(str(exc), 200)}") from None
    except RecursionError:
        raise InputError(f"{path}: not JSON: nested too deeply") from None


def all_edits(spec: dict) -> Iterator[dict]:
    yield spec.get("containerEdits") or {}
    for device in spec.get("devices", []):
        yield device.get("containerEdits") or {}


def node_findings(node: dict) -> List[Finding]:
    host = node.get("hostPath") or node["path"]
    try:
        info = os.stat(host)
    except OSError:
        return [Finding(True, f"device node {host} does not exist")]
    if not (stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)):
        return [Finding(True, f"device node {host} is not a device")]
    said = (node.get("major"), node.get("minor"))
    here = (os.major(info.st_rdev), os.minor(info.st_rdev))
    if None not in said and said != here:
        return [Finding(True,
                        f"device node {host} is {here[0]}:{here[1]} here; the spec says "
                        f"{said[0]}:{said[1]}")]
    return []


def embedded_mesa(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            match = MESA_BANNER.search(handle.read())
    except OSError:
        return None
    return match.group(1).decode() if match else None


def version_finding(host_path: str, live: Optional[str]) -> Optional[Finding]:
    """A library of another release than the live driver's (by its name for NVIDIA, by the
    banner Mesa builds into its drivers)."""
    name = os.path.basename(os.path.realpath(host_path))
    nvidia = NVIDIA_VERSIONED.search(name)
    if nvidia and live and live.startswith("nvidia ") and nvidia.group(2) != live.split()[1]:
        return Finding(True,
                       f"{host_path} is driver {nvidia.group(2)}; the live driver is "
                       f"{live.split()[1]}")
    if MESA_FILE.search(name) and live and live.startswith("mesa "):
        found = embedded_mesa(host_path)
        if found and found != live.split()[1]:
            return Finding(True,
                           f"{host_path} is Mesa {found}; the live driver is Mesa "
                           f"{live.split()[1]}")
    return None


def hook_links(spec: dict) -> Set[str]:
    """Names a create-symlinks hook makes inside (nvidia-ctk's: `--link TARGET::LINK`)."""
    return {os.path.basename(arg.split("::", 1)[1]) for edits in all_edits(spec)
            for hook in edits.get("hooks", [])
            for arg in hook.get("args", []) if "::" in arg}


def vendor_file(host_path: str) -> Optional[str]:
    """The library an EGL vendor or Vulkan ICD file names, where `host_path` is one."""
    if not host_path.endswith(".json"):
        return None
    try:
        library = json.loads(Path(host_path).read_text())["ICD"]["library_path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return library if isinstance(library, str) else None


def provided(library: str, mounted: Dict[str, str], links: Set[str]) -> bool:
    """Whether the container gets `library` from the spec: an absolute path mounted there; a name
    (found on the library path or in the loader cache a hook updates) mounted or linked as it, or
    as the file it is a link to (lib.so.0 -> lib.so.0.0.0, lib.so.1 -> lib.so.580.95.05)."""
    if os.path.isabs(library):
        return library in mounted
    names = {os.path.basename(inside) for inside in mounted} | links
    stem = library.split(".so")[0] + ".so"
    return library in names or any(name.startswith(stem + ".") or name == stem for name in names)


def mount_findings(spec: dict, live: LiveDriver) -> List[Finding]:
    mounts = [m for edits in all_edits(spec) for m in edits.get("mounts", [])]
    mounted = {m["containerPath"]: m["hostPath"] for m in mounts}
    links = hook_links(spec)
    findings: List[Finding] = []
    for inside, host in sorted(mounted.items()):
        if not os.path.exists(host):
            findings.append(Finding(True, f"{host} (mounted at {inside}) does not exist"))
            continue
        if os.path.isfile(host):
            version = version_finding(host, live.version)
            findings += [version] if version else []
            library = vendor_file(host)
            if library and not provided(library, mounted, links):
                findings.append(Finding(True,
                                        f"{inside} names {library}, which the spec does not mount"))
    vendor_names = {os.path.basename(inside) for inside in mounted if inside.endswith(".json")}
    for vendor in live.driver.vendors:
        if vendor.library and os.path.basename(vendor.source) not in vendor_names:
            findings.append(Finding(True,
                                    f"the live driver's {vendor.api} file {vendor.source} is not "
                                    "in the spec"))
    findings.append(thirty_two_bit(mounted, live.driver))
    return findings


def thirty_two_bit(mounted: Dict[str, str], driver: HostDriver) -> Finding:
    ours = [host for host in mounted.values() if os.path.isfile(host) and elf_class(host) == 32]
    if ours:
        return Finding(False, f"{len(ours)} 32-bit libraries mounted")
    host = sorted({p for d in DRIVER_32 for pattern in DRIVER_32_NAMES
                   for p in glob.glob(os.path.join(under(driver.root, d), pattern))
                   if elf_class(p) == 32})
    if host:
        return Finding(False,
                       "no 32-bit libraries: a 32-bit app (Steam, Wine) gets no driver, while the "
                       "host has "
                              f"{len(host)} ({os.path.basename(host[0])}, ...)")
    return Finding(False, "no 32-bit libraries (nor has the host's driver any)")


def check(spec: dict, live: LiveDriver) -> List[Finding]:
    """What is wrong with `spec` for the live driver (stale), and what is worth saying (not)."""
    findings = [f for edits in all_edits(spec) for node in edits.get("deviceNodes", [])
                for f in node_findings(node)]
    findings += mount_findings(spec, live)
    for edits in all_edits(spec):
        for hook in edits.get("hooks", []):
            if not os.path.exists(hook["path"]):
                findings.append(Finding(True,
                                        f"hook {hook['hookName']}: {hook['path']} does not exist"))
    unique: Dict[str, Finding] = {}
    for finding in findings:
        unique.setdefault(finding.text, finding)
    return list(unique.values())
