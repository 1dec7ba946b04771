"""The probe registry: what each probe is, what goes beside it, how it is called, how its report is
read.

The probes are small stdlib+ctypes programs that run inside a path, render a fixed scene, read
the pixels back and print one JSON report. A ProbeSpec says where a probe's file is, which
support modules go beside it, how it is called in a sandbox, a guest and a container, its
golden, what "renderer" means for it, and the schema of a successful report."""
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

from ..core import places
from ..system import reaper, vfio, vfiocheck
from ..core.errors import ComponentError

PROBE_DIR = places.PROBES
GOLDENS_DIR = places.GOLDENS  # each probe's golden image, as shipped
# where a probe and its output folder appear inside a sandbox/guest/container
INSIDE = "/run/gpu-harness"
FieldType = Union[Type, Tuple[Type, ...]]
# The modules every probe imports, put beside it inside: the frame (probelib) and what it reports
# of the runtime (facts).
FRAME = (PROBE_DIR / "probelib.py", PROBE_DIR / "facts.py")
# What a rendering probe imports besides: the capsule, its host GL/Vulkan stack in a namespace of
# its own.
RENDERING = (*FRAME, PROBE_DIR / "capsule.py")


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    api: str  # what the path table's renderer expectations are keyed by
    file: Path
    renderer_meaning: str
    schema: Mapping[str, FieldType]  # fields a successful report must carry, and their types
    guest_frames: int = 10  # software rendering under TCG is slow: a guest renders fewer frames
    # Modules it imports, directly or through another: put beside it inside (Python finds them
    # there).
    support: Tuple[Path, ...] = RENDERING
    # Pure-python packages of the harness's environment it imports (a guest gets their files beside
    # it).
    packages: Tuple[str, ...] = ()
    golden: str = ""  # the golden its image is compared with (goldens/NAME.png); "": its own name's
    # It shows its image on a display, which a virtual GPU machine's host captures (kms-ready in
    # its output folder) and the verdict compares with the golden, scaled as shown.
    shown: bool = False
    # It runs what a matrix declares ([probes.NAME]), never by its own name in matrix.probes.
    declared_only: bool = False

    @property
    def golden_name(self) -> str:
        return self.golden or self.name

    @property
    def files(self) -> Tuple[Path, ...]:
        """The probe and what it imports: all of it goes, side by side, to INSIDE."""
        return (self.file, *self.support)

    def package_files(self) -> List[Tuple[str, Path]]:
        """(name beside the probe, file) for each module of its packages: `qemu/qmp/legacy.py`."""
        found: List[Tuple[str, Path]] = []
        for package in self.packages:
            spec = importlib.util.find_spec(package)
            assert spec is not None and spec.submodule_search_locations, (f"{package} is not a "
                                                                          "package")
            top = Path(list(spec.submodule_search_locations)[0]).parents[package.count(".")]
            for location in spec.submodule_search_locations:
                for module in sorted(Path(location).rglob("*.py")):
                    found.append((str(module.relative_to(top)), module))
        return found

    @property
    def file_inside(self) -> str:
        return f"{INSIDE}/{self.file.name}"

    def argv(self, python: Sequence[str], probe_file: str, out_dir: str, host_paths: Sequence[str],
             args: Sequence[str]) -> List[str]:
        argv = [*python, probe_file, "--out", out_dir]
        for host_path in host_paths:
            argv += ["--host-path", host_path]
        return argv + list(args)

    def host_argv(self, python: str, out_dir: str, host_paths: Sequence[str],
                  args: Sequence[str]) -> List[str]:
        return self.argv([python], str(self.file), out_dir, host_paths, args)

    def sandbox_argv(self, python: str, host_paths: Sequence[str],
                     args: Sequence[str]) -> List[str]:
        """Inside a sandbox or container: the probe file bound at file_inside, output at
        INSIDE/out."""
        return self.argv([python], self.file_inside, f"{INSIDE}/out", host_paths, args)

    container_argv = sandbox_argv

    def guest_argv(self, python: str, host_paths: Sequence[str], args: Sequence[str],
                   scanout: bool) -> List[str]:
        args = list(args)
        if "--frames" not in args:
            args += ["--frames", str(self.guest_frames)]
        if scanout:
            args += ["--scanout", "/dev/fb0"]
        # -S: no site-packages scan; the probe needs only the standard library.
        return self.argv([python, "-S"], self.file_inside, f"{INSIDE}/out", host_paths, args)


@dataclass(frozen=True, kw_only=True)
class ProbeReport:
    """What a probe reported: the JSON line it printed, with the fields the verdict reads."""

    ok: bool
    error: str = ""
    renderer: str = ""
    version: Optional[str] = None
    vendor: Optional[str] = None
    timings: Dict[str, Any] = field(default_factory=dict)
    isolation: Dict[str, Any] = field(default_factory=dict)
    peak_rss_kb: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict)

    def timing(self, name: str) -> Optional[float]:
        value = self.timings.get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value,
                                                                                  bool) else None

    @property
    def fps(self) -> Optional[float]:
        """The median of the probe's timed rounds."""
        return self.timing("fps")

    @property
    def fps_spread(self) -> Optional[Tuple[float, float]]:
        """The slowest and the fastest of its timed rounds."""
        low, high = self.timing("fps_min"), self.timing("fps_max")
        return (low, high) if low is not None and high is not None else None


class ReportError(ComponentError):
    """A report that does not match its probe's schema; the message says which field."""


GL_SCHEMA: Mapping[str, FieldType] = {
    "renderer": str, "version": str, "vendor": str, "pixels_md5": str, "size": list,
                                      "timings": dict,
    "isolation": dict,
}

VULKAN_SCHEMA: Mapping[str, FieldType] = {**GL_SCHEMA, "device": dict, "devices": list}

VFIO_SCHEMA: Mapping[str, FieldType] = {**GL_SCHEMA, "steps": list, "dma": dict, "l2": dict,
                                        "devices": dict}

PROBES: Dict[str, ProbeSpec] = {
    spec.name: spec
    for spec in (
        ProbeSpec(name="gl", api="gl", file=PROBE_DIR / "gles.py",
                  renderer_meaning="GL_RENDERER of an EGL/GLES2 context", schema=GL_SCHEMA),
        ProbeSpec(name="vulkan", api="vulkan", file=PROBE_DIR / "vk.py",
                  renderer_meaning="VkPhysicalDeviceProperties.deviceName of the device that "
                                   "rendered",
                  schema=VULKAN_SCHEMA,
                  support=(*RENDERING, PROBE_DIR / "vkapi.py", PROBE_DIR / "vkshaders.py")),
        # The gl probe's scene shown on the card by the runtime's compositor (weston, DRM backend).
        ProbeSpec(name="kms", api="kms", file=PROBE_DIR / "kms.py",
                  renderer_meaning="GL_RENDERER of the EGL/GLES2 context that rendered what the "
                                   "compositor shows",
                  schema={**GL_SCHEMA, "kms": dict}, support=(*RENDERING, PROBE_DIR / "gles.py"),
                  golden="gl",
                  shown=True),
        # The gl and vulkan probes' scenes presented in a window on a display server the harness
        # started (its socket and DISPLAY/WAYLAND_DISPLAY given), which captures the screen
        # between the probe's present-ready.json and its present-captured
        # (harness/probe/present.py). Never named in matrix.probes, nor among a path's probes:
        # a display runs one in place of gl or vulkan (model.PRESENTING).
        ProbeSpec(name="present-gl", api="gl", file=PROBE_DIR / "present.py",
                  renderer_meaning="GL_RENDERER of the EGL/GLES2 context on the display's window "
                                   "surface",
                  schema={**GL_SCHEMA, "display": str, "presentation": dict, "captured": bool},
                  support=(*RENDERING, PROBE_DIR / "gles.py", PROBE_DIR / "windows.py",
                           PROBE_DIR / "wlproto.py"),
                  golden="gl", declared_only=True),
        ProbeSpec(name="present-vulkan", api="vulkan", file=PROBE_DIR / "present.py",
                  renderer_meaning="VkPhysicalDeviceProperties.deviceName of the device that "
                                   "presented to the display's surface",
                  schema={**VULKAN_SCHEMA, "display": str, "presentation": dict,
                          "captured": bool},
                  support=(*RENDERING, PROBE_DIR / "gles.py", PROBE_DIR / "windows.py",
                           PROBE_DIR / "wlproto.py", PROBE_DIR / "vk.py", PROBE_DIR / "vkapi.py",
                           PROBE_DIR / "vkshaders.py", PROBE_DIR / "vkwsi.py",
                           PROBE_DIR / "vkpresent.py"),
                  golden="vulkan", declared_only=True),
        # A workload a matrix declares ([probes.NAME]: piglit, the user's command), after the gl
        # scene.
        ProbeSpec(name="workload", api="gl", file=PROBE_DIR / "workload.py",
                  renderer_meaning="GL_RENDERER of the EGL/GLES2 context the workload's "
                                   "environment gives",
                  schema={**GL_SCHEMA, "steps": list}, support=(*RENDERING, PROBE_DIR / "gles.py"),
                  golden="gl",
                  declared_only=True),
        # The nested VFIO tier's probe: the image is moved through a passed-through device's DMA
        # and the IOMMU rather than rendered (harness/probe/vfio_nested.py).
        ProbeSpec(name="vfio", api="vfio", file=PROBE_DIR / "vfio_nested.py",
                  renderer_meaning="the passed-through device as the L2 guest's QEMU lists it "
                                   "(query-pci)",
                  schema=VFIO_SCHEMA,
                  support=(*FRAME, PROBE_DIR / "vfiodma.py", PROBE_DIR / "l2guest.py",
                           Path(vfio.__file__), Path(vfiocheck.__file__), Path(reaper.__file__)),
                  packages=("qemu.qmp",)),
    )
}


# what a matrix that names no probes runs (nix/scenarios.nix says the same)
DEFAULT_PROBES = ("gl",)


def get(name: str) -> ProbeSpec:
    return PROBES[name]


# a line a probe prints on the way (its facts before any driver code ran); not its report
STAGE = "stage"


def json_lines(stdout_path: Path) -> List[Optional[dict]]:
    """Each line of a probe's stdout that looks like JSON, parsed (None where it does not parse)."""
    try:
        lines = Path(stdout_path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    parsed: List[Optional[dict]] = []
    for line in (line.strip() for line in lines):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                data = None
            parsed.append(data if isinstance(data, dict) else None)
    return parsed


def last_json_line(stdout_path: Path) -> Optional[dict]:
    """The probe's report: its last JSON line that is not a stage line."""
    reports = [data for data in json_lines(stdout_path) if data is None or STAGE not in data]
    return reports[-1] if reports else None


def started_facts(stdout_path: Optional[str]) -> Optional[dict]:
    """What the probe saw before any driver code ran (its mounts, isolation, libc), or None."""
    if not stdout_path:
        return None
    return next((d for d in json_lines(Path(stdout_path)) if d and d.get(STAGE) == "started"), None)


def type_label(kind: FieldType) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def parse_report(spec: ProbeSpec, data: dict) -> ProbeReport:
    """A ProbeReport from a probe's JSON; ReportError if a successful report breaks the schema."""
    ok = data.get("ok") is True
    if ok:
        for name, kind in spec.schema.items():
            if not isinstance(data.get(name), kind):
                raise ReportError(f"{spec.name} report field {name!r} must be {type_label(kind)}, "
                                  f"not {type(data.get(name)).__name__}")
    rss = data.get("peak_rss_kb")
    return ProbeReport(
        ok=ok,
        error=str(data.get("error", "")),
        renderer=str(data.get("renderer") or ""),
        version=data.get("version") if isinstance(data.get("version"), str) else None,
        vendor=data.get("vendor") if isinstance(data.get("vendor"), str) else None,
        timings=data["timings"] if isinstance(data.get("timings"), dict) else {},
        isolation=data["isolation"] if isinstance(data.get("isolation"), dict) else {},
        peak_rss_kb=rss if isinstance(rss, int) and not isinstance(rss, bool) else None,
        raw=data,
    )


def read_report(spec: ProbeSpec, stdout_path: Optional[str]) -> Tuple[Optional[ProbeReport], str]:
    """(report, problem): the report the probe printed, or None and why there is none usable."""
    if not stdout_path:
        return None, ""
    data = last_json_line(Path(stdout_path))
    if data is None:
        return None, ""
    try:
        return parse_report(spec, data), ""
    except ReportError as exc:
        return None, str(exc)
