"""What a rendering path is, as data: the PathSpec noun and the kinds its fields take. A path
names its family; the family objects that launch it are in harness.launch.families.registry."""
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

from .probes import PROBES
from ..core.textenum import TextEnum


class DriverMode(TextEnum):
    """How the host's driver is given to a sandbox (the host-driver paths)."""

    LIBS = "libs"  # the driver files only; dependencies from the runtime
    DEPS = "deps"  # and its dependency closure first on the library path (glibc excluded)
    DEPS_GLIBC = "deps+glibc"  # with the host's glibc too: what is predicted to break the app
    CAPSULE = "capsule"  # everything in its own link-map namespace (dlmopen), nothing on the path


class DriDevices(TextEnum):
    """Which of the host's DRM nodes a container is given."""

    RENDER = "render"  # the render node
    KMS = "kms"  # the card too (modesetting)
    ALL = "all"  # the whole /dev/dri


class FlatpakMode(TextEnum):
    """How a Flatpak path makes the runtime a Flatpak runtime."""

    USR_PATH = "usr-path"  # a stub runtime, the runtime's /usr given with --usr-path
    EXPORT = "export"  # the runtime exported as a Flatpak runtime
    GL_EXTENSION = "gl-extension"  # exported without its Mesa, which a GL extension brings
    # the runtime exported, the workload exported as an app under its own id and run by that id
    # alone (`flatpak run ... APP_ID`, no --command): the vtest fallback's own command
    APP = "app"


class CdiSource(TextEnum):
    """Which CDI spec a container path's podman applies (`--device KIND=all`)."""

    # the harness's own, for the host's driver, in the scenario's private spec folder
    HARNESS = "harness"
    SYSTEM = "system"  # the specs the host already has (/etc/cdi, /var/run/cdi), as they are
    STALE = "stale"  # the harness's, then the driver's files it names replaced, as an upgrade does


class Passthrough(TextEnum):
    """Which device a vfio path passes to its guest."""

    HOST = "host"  # a device of this host
    NESTED = "nested"  # an emulated device, in an L1 guest with an emulated IOMMU; L2 paused
    NESTED_BOOT = "nested-boot"  # the same, and L2 boots and shows an image through it

    @property
    def nested(self) -> bool:
        return self is not Passthrough.HOST


@dataclass(frozen=True)
class PathSpec:
    id: str
    family: str  # the name of the family that launches it (harness.launch.families.registry)
    description: str
    # Renderer each probe API must report (a regex). None: decided from the host (see
    # paths.expected_renderer).
    renderers: Mapping[str, Optional[str]]
    requires: Tuple[str, ...] = ()  # toolset entries without which the path cannot run
    needs_render_node: bool = False
    # meaningful only on a machine with a GPU: a Nix check that needs the "gpu" feature
    gpu: bool = False
    no_dri_nodes: bool = False  # the workload must see no /dev/dri node at all
    hides_host: bool = False  # the workload must not see the host sentinel paths
    own_namespaces: Tuple[str, ...] = ()  # namespaces that must differ from the host's
    services: Tuple[str, ...] = ()
    env: Tuple[Tuple[str, str], ...] = field(default=())
    # vm family: the QEMU display device, if any (its whole -device value)
    guest_gpu: Optional[str] = None
    # Vulkan through virglrenderer's Venus (virgl_test_server --venus, or QEMU venus=on)
    venus: bool = False
    server_gles: bool = False  # virgl_test_server --use-gles (a GLES context for its renderer)
    # the runtime's Vulkan ICD the workload must use (its file name's start)
    vulkan_icd: Optional[str] = None
    scanout: bool = False  # vm family: the guest shows the image and the host captures it
    host_driver: Optional[DriverMode] = None  # sandbox family: how the host's driver is given
    cap_drop_all: bool = False  # container family: --cap-drop=ALL
    dri_devices: DriDevices = DriDevices.RENDER  # container family
    cdi: Optional[CdiSource] = None  # container family: the host's driver from a CDI spec
    sync_fd: bool = False  # sandbox family: the server supervised and tied to bwrap by --sync-fd
    # sandbox family: the host's server under bwrap and seccomp (harness/system/serverconfine.py)
    confined_server: bool = False
    passthrough: Optional[Passthrough] = None  # vfio family
    flatpak_mode: FlatpakMode = FlatpakMode.USR_PATH  # flatpak family
    fps_reference: bool = False  # the path others' fps is compared with (% of native)
    # the path that renders the goldens (llvmpipe: the same pixels anywhere)
    golden_renderer: bool = False

    @property
    def probes(self) -> List[str]:
        """The probes this path runs: those whose API it promises a renderer for."""
        return [name for name, probe in PROBES.items() if probe.api in self.renderers
                and not probe.declared_only]

    def runs(self, probe_program: str) -> bool:
        """Whether it speaks that probe program's API (probes.PROBES key; a declared probe's is the
        workload probe)."""
        return PROBES[probe_program].api in self.renderers
