"""The nouns a run is made of: a scenario (path x runtime x probe x display, with its settings
and expectation), its runtime, its image tolerance, a workload a matrix declares as a probe."""
import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

from .pathspec import PathSpec
from .paths import get as path_spec
from ..core.textenum import TextEnum

HOST_RUNTIME = "host"  # the runtime named host: the machine's own root filesystem
LOCAL = "local"  # the machine a scenario runs on unless it names one: this host
DEFAULT_TIMEOUT_S = 60.0
# A runtime's own kernel (an arm64 runtime's, which its VM paths boot): for its guest only, so a
# container image or Flatpak runtime made from it leaves these out (300 MB for Debian's arm64).
GUEST_KERNEL_PARTS = ("boot", "usr/lib/modules")


class RuntimeKind(TextEnum):
    HOST = "host"  # the machine's own root filesystem
    ROOTFS = "rootfs"  # a root filesystem tree the user names
    DEBOOTSTRAP = "debootstrap"  # built from a shipped recipe and lock (harness.runtimes.builds)
    # a container image archive (matrix: archive = FILE, or recipe = NAME: made from that runtime)
    IMAGE = "image"


# The kinds by their old names: the same values.
HOST_KIND, ROOTFS_KIND, DEBOOTSTRAP_KIND, IMAGE_KIND = (RuntimeKind.HOST, RuntimeKind.ROOTFS,
                                                        RuntimeKind.DEBOOTSTRAP,
                                                        RuntimeKind.IMAGE)


class Display(TextEnum):
    """Where a scenario's frames go: read back by the probe itself (offscreen), or presented in a
    window on a display server the harness starts and captures (wayland: weston; x11: Xvfb;
    xwayland: X11 on weston's Xwayland, whose DRI3 a hardware driver presents through)."""

    OFFSCREEN = "offscreen"
    WAYLAND = "wayland"
    X11 = "x11"
    XWAYLAND = "xwayland"

    @property
    def protocol(self) -> str:
        """What a client speaks to it: X11 on Xwayland too."""
        return Display.X11.value if self is Display.XWAYLAND else self.value


# The probe that presents each offscreen probe's scene in a window (probes.PROBES keys).
PRESENTING = {"gl": "present-gl", "vulkan": "present-vulkan"}


class Expected(TextEnum):
    """What the matrix expects of a scenario."""

    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class Tolerance:
    """A pixel differs when any channel differs by more than `channel`; the image matches
    when at most `fraction` of its pixels differ."""

    channel: int = 32
    fraction: float = 0.01


@dataclass(frozen=True)
class Runtime:
    name: str
    kind: RuntimeKind
    # debootstrap: set once the runtime is built (runtimes.ensure); image: the archive
    root: str = "/"
    description: str = ""
    recipe: str = ""  # debootstrap, and an image made from a runtime: the recipe's name
    # debootstrap (and an image made from one): packages a workload needs beyond the recipe's,
    # built into a derived runtime (the recipe's lock pins the rest; cached by the whole list)
    extra_packages: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RuntimeKind(self.kind))
        object.__setattr__(self, "extra_packages", tuple(self.extra_packages))

    @property
    def build_name(self) -> str:
        """What a run builds it as: its name, and its extra packages where it has them
        (trixie+piglit)."""
        return "+".join((self.name, *self.extra_packages))

    @property
    def needs_build(self) -> bool:
        return self.kind is RuntimeKind.DEBOOTSTRAP

    @property
    def image_from_recipe(self) -> bool:
        """An image made from a shipped runtime (matrix: kind = "image", recipe = NAME)."""
        return self.kind is RuntimeKind.IMAGE and bool(self.recipe)


HOST = Runtime(HOST_RUNTIME, RuntimeKind.HOST, "/", "the host's own root filesystem")


@dataclass(frozen=True)
class Expectation:
    outcome: Expected = Expected.PASS
    reason: str = ""
    # with fail: the failure class it must fail with (outcomes.FailureKind), or any
    failure: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Expected(self.outcome))

    @property
    def fails(self) -> bool:
        return self.outcome is Expected.FAIL


WORKLOAD_PROBE = "workload"  # the probe (probes.PROBES) that runs a declared workload inside a path


@dataclass(frozen=True)
class DeclaredProbe:
    """A probe a matrix declares ([probes.NAME]): a workload of a kind (harness.workloads: piglit,
    command, ...) with its settings as the kind checked them, and the packages it needs."""

    name: str
    kind: str
    settings_json: str = "{}"  # JSON text: the settings stay hashable with the scenario
    packages: Tuple[str, ...] = ()

    @property
    def settings(self) -> Dict[str, Any]:
        return dict(json.loads(self.settings_json))

    @classmethod
    def of(cls, name: str, kind: str, settings: Dict[str, Any],
           packages: Tuple[str, ...] = ()) -> "DeclaredProbe":
        return cls(name, kind, json.dumps(settings, sort_keys=True), tuple(packages))

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "settings": self.settings,
                "packages": list(self.packages)}

    @classmethod
    def from_dict(cls, data: dict) -> "DeclaredProbe":
        return cls.of(data["name"], data["kind"], data.get("settings") or {},
                      tuple(data.get("packages") or ()))


@dataclass(frozen=True)
class Scenario:
    id: str
    path_id: str  # the rendering path (paths.PATHS key)
    runtime: Runtime
    probe: str  # the probe's name (probes.PROBES key, or a declared probe's name)
    expect: Expectation = Expectation()
    timeout_s: float = DEFAULT_TIMEOUT_S
    tolerance: Tolerance = Tolerance()
    golden: str = ""
    env: Tuple[Tuple[str, str], ...] = ()
    probe_args: Tuple[str, ...] = ()
    kernel_args: Tuple[str, ...] = ()  # vm family: appended to the guest kernel's command line
    # flatpak GL-extension paths: the runtime the driver comes from
    gl_extension: Optional[Runtime] = None
    # where the path runs: this host, or a virtual GPU machine (harness.scenario.machine_specs)
    machine: str = LOCAL
    # a workload the matrix declares, run by the workload probe
    declared: Optional[DeclaredProbe] = None
    # where its frames go (a window on a display server, or the probe's own read-back)
    display: str = Display.OFFSCREEN

    @property
    def probe_program(self) -> str:
        """The probe that runs inside the path (probes.PROBES key): the workload probe for a
        declared one, the presenting one for a display."""
        if self.declared:
            return WORKLOAD_PROBE
        return self.probe if self.display == Display.OFFSCREEN else PRESENTING[self.probe]

    @property
    def presents(self) -> bool:
        return self.display != Display.OFFSCREEN

    @property
    def slug(self) -> str:
        """The id as a file and Nix store name (neither takes '/'; a store name takes no '@')."""
        return self.id.replace("/", "__").replace("@", "__on__")

    @property
    def spec(self) -> PathSpec:
        return path_spec(self.path_id)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = data.pop("path_id")
        data["env"] = dict(self.env)
        data["probe_args"] = list(self.probe_args)
        data["kernel_args"] = list(self.kernel_args)
        data["declared"] = self.declared.to_dict() if self.declared else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Scenario":
        """The scenario to_dict() wrote (a machine's guest gets its scenarios this way)."""
        extension = data.get("gl_extension")
        return cls(id=data["id"], path_id=data["path"], runtime=Runtime(**data["runtime"]),
                   probe=data["probe"],
                   expect=Expectation(**data["expect"]), timeout_s=float(data["timeout_s"]),
                   tolerance=Tolerance(**data["tolerance"]), golden=data["golden"],
                   env=tuple(sorted(data["env"].items())), probe_args=tuple(data["probe_args"]),
                   kernel_args=tuple(data["kernel_args"]),
                   gl_extension=Runtime(**extension) if extension else None,
                   machine=data.get("machine", LOCAL),
                   display=data.get("display", Display.OFFSCREEN),
                   declared=DeclaredProbe.from_dict(data["declared"]) if data.get("declared")
                   else None)
