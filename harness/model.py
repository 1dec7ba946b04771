"""The nouns a run is made of: a scenario (path x runtime x probe, with its settings and
expectation), its runtime, its image tolerance."""
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Optional, Tuple

if TYPE_CHECKING:
    from .paths import PathSpec

HOST_RUNTIME = "host"  # the runtime named host: the machine's own root filesystem
HOST_KIND = "host"  # its kind
DEBOOTSTRAP_KIND = "debootstrap"  # built from a shipped recipe and lock (harness.runtimes)
IMAGE_KIND = "image"  # a container image archive (matrix: archive = FILE, or recipe = NAME: made from that runtime)
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Tolerance:
    """A pixel differs when any channel differs by more than `channel`; the image matches
    when at most `fraction` of its pixels differ."""

    channel: int = 32
    fraction: float = 0.01


@dataclass(frozen=True)
class Runtime:
    name: str
    kind: str  # host | rootfs | debootstrap
    root: str = "/"  # debootstrap: set once the runtime is built (runtimes.ensure)
    description: str = ""
    recipe: str = ""  # debootstrap: the recipe's name

    @property
    def needs_build(self) -> bool:
        return self.kind == DEBOOTSTRAP_KIND

    @property
    def image_from_recipe(self) -> bool:
        """An image made from a shipped runtime (matrix: kind = "image", recipe = NAME)."""
        return self.kind == IMAGE_KIND and bool(self.recipe)


@dataclass(frozen=True)
class Expectation:
    outcome: str = "pass"  # pass | fail
    reason: str = ""
    failure: str = ""  # with fail: the failure class it must fail with (outcomes.FailureKind), or any

    @property
    def fails(self) -> bool:
        return self.outcome == "fail"


@dataclass(frozen=True)
class Scenario:
    id: str
    path_id: str  # the rendering path (paths.PATHS key)
    runtime: Runtime
    probe: str  # the probe's name (probes.PROBES key)
    expect: Expectation = Expectation()
    timeout_s: float = DEFAULT_TIMEOUT_S
    tolerance: Tolerance = Tolerance()
    golden: str = ""
    env: Tuple[Tuple[str, str], ...] = ()
    probe_args: Tuple[str, ...] = ()
    kernel_args: Tuple[str, ...] = ()  # vm family: appended to the guest kernel's command line
    gl_extension: Optional[Runtime] = None  # flatpak GL-extension paths: the runtime the driver comes from

    @property
    def slug(self) -> str:
        return self.id.replace("/", "__")

    @property
    def spec(self) -> "PathSpec":
        from .paths import get  # the path table imports the families, which use this module

        return get(self.path_id)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = data.pop("path_id")
        data["env"] = dict(self.env)
        data["probe_args"] = list(self.probe_args)
        data["kernel_args"] = list(self.kernel_args)
        return data
