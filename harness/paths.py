"""The rendering paths the harness knows: what each launches and what the workload must see."""
from dataclasses import dataclass, field
from typing import Optional, Tuple

LLVMPIPE = r"llvmpipe"


@dataclass(frozen=True)
class PathSpec:
    id: str
    family: str  # which launcher runs it: host | sandbox | vm
    description: str
    # Renderer the probe must report. None: decided from the host (see expected_renderer).
    renderer: Optional[str]
    requires: Tuple[str, ...] = ()  # toolset entries without which the path cannot run
    needs_render_node: bool = False
    no_dri_nodes: bool = False  # the workload must see no /dev/dri node at all
    hides_host: bool = False  # the workload must not see the host sentinel paths
    own_namespaces: Tuple[str, ...] = ()  # namespaces that must differ from the host's
    services: Tuple[str, ...] = ()
    env: Tuple[Tuple[str, str], ...] = field(default=())
    guest_gpu: Optional[str] = None  # vm family: the QEMU display device, if any
    scanout: bool = False  # vm family: the guest shows the image and the host captures it


SANDBOX_NAMESPACES = ("mnt", "pid", "net", "ipc", "uts")
VM_TOOLS = ("qemu-system-x86_64", "kernel", "busybox", "python3", "mesa")

PATHS = {
    spec.id: spec
    for spec in (
        PathSpec(
            id="native",
            family="host",
            description="host process, host driver: the baseline for % of native",
            renderer=None,
            requires=("python3", "mesa"),
        ),
        PathSpec(
            id="software",
            family="host",
            description="host process, llvmpipe forced: renders anywhere",
            renderer=LLVMPIPE,
            requires=("python3", "mesa"),
            env=(("LIBGL_ALWAYS_SOFTWARE", "1"), ("GALLIUM_DRIVER", "llvmpipe")),
        ),
        PathSpec(
            id="sandbox-dri",
            family="sandbox",
            description="bwrap, runtime's own Mesa + host /dev/dri (flatpak --device=dri)",
            renderer=r"^(?!.*llvmpipe)(?!.*softpipe).+",
            requires=("bwrap", "python3", "mesa"),
            needs_render_node=True,
            hides_host=True,
            own_namespaces=SANDBOX_NAMESPACES,
        ),
        PathSpec(
            id="vtest-virgl",
            family="sandbox",
            description="bwrap with no /dev/dri; host virgl_test_server over a unix socket; Mesa virpipe",
            renderer=r"^virgl \(.+\)",
            requires=("bwrap", "virgl_test_server", "python3", "mesa"),
            no_dri_nodes=True,
            hides_host=True,
            own_namespaces=SANDBOX_NAMESPACES,
            services=("virgl_test_server",),
            env=(("GALLIUM_DRIVER", "virpipe"),),
        ),
        PathSpec(
            id="vm-headless",
            family="vm",
            description="QEMU guest with no GPU device; llvmpipe in the guest",
            renderer=LLVMPIPE,
            requires=VM_TOOLS,
            no_dri_nodes=True,
        ),
        PathSpec(
            id="vm-virtio-2d",
            family="vm",
            description="QEMU virtio-gpu without 3D: llvmpipe in the guest, scanout checked from outside",
            renderer=LLVMPIPE,
            requires=VM_TOOLS,
            guest_gpu="virtio-gpu-pci",
            scanout=True,
        ),
        PathSpec(
            id="vm-virgl",
            family="vm",
            description="QEMU virtio-gpu-gl (virgl): guest GL runs on the host's GL",
            renderer=r"^virgl \(.+\)",
            requires=VM_TOOLS,
            guest_gpu="virtio-gpu-gl-pci",
            scanout=True,
            services=("Xvfb",),
        ),
    )
}


def expected_renderer(spec: PathSpec, host_has_render_node: bool) -> str:
    """Regex the reported GL_RENDERER must match.

    The native path has no fixed renderer: with a render node on the host, falling back to
    llvmpipe is a silent failure; without one llvmpipe is the honest answer.
    """
    if spec.renderer is not None:
        return spec.renderer
    if host_has_render_node:
        return r"^(?!.*llvmpipe)(?!.*softpipe).+"
    return LLVMPIPE


def get(path_id: str) -> PathSpec:
    return PATHS[path_id]
