"""The path table: every rendering path the harness knows, as data (harness.scenario.pathspec): the
family
that launches it (by name) and what the workload must see. This module, the machine table
(harness.scenario.machine_specs) and harness/families/ are the only places that name a concrete path
or family."""
from typing import Dict, List, Optional

from .pathspec import CdiSource, DriDevices, DriverMode, FlatpakMode, Passthrough, PathSpec

LLVMPIPE = r"llvmpipe"
VENUS = r"^Virtio-GPU Venus"
NOT_SOFTWARE = r"^(?!.*llvmpipe)(?!.*softpipe).+"
VM_TOOLS = ("qemu-system-x86_64", "kernel", "busybox", "python3", "mesa")  # what a QEMU guest needs
# Flatpak as root keeps the host's user and uts namespaces (measured).
FLATPAK_NAMESPACES = ("mnt", "pid", "net", "ipc")
SANDBOX_NAMESPACES = ("mnt", "pid", "net", "ipc", "uts")
# Mesa names the host's renderer in parentheses since 21.x; Mesa 20.3 (bullseye) says "virgl" alone.
VIRGL = r"^virgl( \(.+\))?$"

PATHS: Dict[str, PathSpec] = {
    spec.id: spec
    for spec in (
        PathSpec(
            id="native",
            family="host",
            description="host process, host driver: the baseline for % of native",
            renderers={"gl": None, "vulkan": None},
            requires=("python3", "egl"),
            gpu=True,
            fps_reference=True,
        ),
        PathSpec(
            id="software",
            family="host",
            description="host process, llvmpipe (GL) and lavapipe (Vulkan) forced: renders "
                        "anywhere",
            renderers={"gl": LLVMPIPE, "vulkan": LLVMPIPE},
            requires=("python3", "mesa"),
            env=(("LIBGL_ALWAYS_SOFTWARE", "1"), ("GALLIUM_DRIVER", "llvmpipe"),
                 ("GPU_HARNESS_VK_DEVICE_TYPE", "cpu")),
            golden_renderer=True,
        ),
        PathSpec(
            id="sandbox-dri",
            family="sandbox",
            description="bwrap, runtime's own Mesa + host /dev/dri (flatpak --device=dri)",
            renderers={"gl": NOT_SOFTWARE, "vulkan": NOT_SOFTWARE},
            requires=("bwrap", "python3", "mesa"),
            needs_render_node=True,
            gpu=True,
            hides_host=True,
            own_namespaces=SANDBOX_NAMESPACES,
        ),
        *(PathSpec(
            id=path_id,
            family="sandbox",
            description=description,
            renderers={"gl": None, "vulkan": None},
            requires=("bwrap", "python3", "host-driver"),
            hides_host=True,
            own_namespaces=SANDBOX_NAMESPACES,
            host_driver=mode,
        ) for path_id, mode, description in (
            ("sandbox-hostlibs", DriverMode.LIBS,
             "bwrap over the runtime, the host's driver files bound in beside the runtime's own "
             "libraries"),
            ("sandbox-hostdeps", DriverMode.DEPS,
             "as sandbox-hostlibs, plus the driver's dependency closure first on the library path"),
            ("sandbox-hostdeps-glibc", DriverMode.DEPS_GLIBC,
             "as sandbox-hostdeps, with the host's glibc too: the variant expected to break the "
             "app itself"),
            ("sandbox-capsule", DriverMode.CAPSULE,
             "the host's GL stack and Vulkan loader dlmopen()ed into their own link-map namespace "
             "(a capsule) in the "
             "runtime's process"),
        )),
        *(PathSpec(
            id="vtest-virgl" + suffix,
            family="sandbox",
            description=description,
            renderers={"gl": VIRGL},
            requires=("bwrap", "virgl_test_server", "python3", "mesa"),
            no_dri_nodes=True,
            hides_host=True,
            own_namespaces=SANDBOX_NAMESPACES,
            services=("virgl_test_server",),
            env=(("GALLIUM_DRIVER", "virpipe"),),
            sync_fd=suffix == "-syncfd",
            confined_server=suffix == "-confined",
        ) for suffix, description in (
            ("", "bwrap with no /dev/dri; host virgl_test_server over a unix socket; Mesa virpipe"),
            ("-syncfd",
             "vtest-virgl with the server's life tied to the sandbox's: a supervised server ready "
             "and "
                        "stopped through one pipe that bwrap holds as --sync-fd"),
            ("-confined",
             "vtest-virgl with the host's server confined too: under bwrap (no network, /usr and "
             "/etc "
                          "read only, a private /tmp, only its socket's folder and the render "
                          "node) and a seccomp "
                          "filter (Flatpak's blocklist, AF_UNIX sockets only)"),
        )),
        PathSpec(
            id="vtest-venus",
            family="sandbox",
            description="bwrap with no /dev/dri; host virgl_test_server --venus over a unix "
                        "socket; Mesa's Venus ICD: "
                        "Vulkan over vtest",
            renderers={"vulkan": VENUS},
            requires=("bwrap", "virgl_test_server", "python3"),
            no_dri_nodes=True,
            hides_host=True,
            own_namespaces=SANDBOX_NAMESPACES,
            services=("virgl_test_server",),
            env=(("VN_DEBUG", "vtest"),),
            venus=True,
            vulkan_icd="virtio",
        ),
        *(PathSpec(
            id="podman-vtest" + suffix,
            family="container",
            description="rootful podman over the runtime, no device; host virgl_test_server's "
                        "socket bound at "
                        "/tmp/.virgl_test" + note,
            renderers={"gl": VIRGL},
            requires=("podman", "runc", "virgl_test_server"),
            no_dri_nodes=True,
            hides_host=True,
            own_namespaces=SANDBOX_NAMESPACES,
            services=("virgl_test_server",),
            env=(("GALLIUM_DRIVER", "virpipe"),),
            cap_drop_all=bool(suffix),
        ) for suffix, note in (("", ""), ("-capdrop", ", --cap-drop=ALL"))),
        *(PathSpec(
            id=path_id,
            family="container",
            description=description,
            renderers={"gl": None, "vulkan": None},
            requires=("podman", "runc", "host-driver"),
            hides_host=True,
            own_namespaces=SANDBOX_NAMESPACES,
            host_driver=None if source == CdiSource.SYSTEM else DriverMode.DEPS,
            cdi=source,
        ) for path_id, source, description in (
            ("podman-cdi", CdiSource.HARNESS,
             "rootful podman over the runtime, the host's driver and its dependencies from the "
             "harness's CDI spec "
             "(--device gpu-harness.dev/gpu=all; the spec in the scenario's own /var/run/cdi)"),
            ("podman-cdi-system", CdiSource.SYSTEM,
             "rootful podman over the runtime, the host's driver from the CDI specs the host has "
             "(/etc/cdi, "
             "/var/run/cdi: nvidia-ctk's, say)"),
            ("podman-cdi-stale", CdiSource.STALE,
             "podman-cdi after a driver upgrade: the spec made, then the driver's files it names "
             "replaced "
             "(cdi check names them before the run)"),
        )),
        *(PathSpec(
            id="podman-dri" + suffix,
            family="container",
            description=("rootful podman over the runtime, the host's " + what
                         + " passed with --device"),
            renderers={"gl": NOT_SOFTWARE, "vulkan": NOT_SOFTWARE, "kms": NOT_SOFTWARE},
            requires=("podman", "runc"),
            needs_render_node=True,
            gpu=True,
            hides_host=True,
            own_namespaces=SANDBOX_NAMESPACES,
            cap_drop_all=suffix == "-capdrop",
            dri_devices=scope,
        ) for suffix, scope, what in (("", DriDevices.RENDER, "render node"),
                                      ("-capdrop", DriDevices.RENDER,
                                       "render node, --cap-drop=ALL,"),
                                      ("-kms", DriDevices.KMS, "card and render nodes (KMS)"),
                                      ("-all", DriDevices.ALL, "whole /dev/dri"))),
        *(PathSpec(
            id="flatpak-vtest" + suffix,
            family="flatpak",
            description=("flatpak run --nodevice=dri over the runtime's /usr" + how
                         + "; host virgl_test_server's socket exposed with --filesystem"),
            renderers={"gl": VIRGL},
            requires=("flatpak", "virgl_test_server"),
            no_dri_nodes=True,
            hides_host=True,
            own_namespaces=FLATPAK_NAMESPACES,
            services=("virgl_test_server",),
            env=(("GALLIUM_DRIVER", "virpipe"),),
            flatpak_mode=mode,
        ) for suffix, mode, how in (("", FlatpakMode.USR_PATH, " (--usr-path)"),
                                    ("-exported", FlatpakMode.EXPORT,
                                     ", exported as a Flatpak runtime"))),
        PathSpec(
            id="flatpak-vtest-fallback",
            family="flatpak",
            description="the vtest fallback's own command: the workload exported as a Flatpak app "
                        "under its id and run as `flatpak run --nodevice=dri --filesystem=SOCKET "
                        "--env=VN_DEBUG=vtest --env=VTEST_SOCKET_NAME=SOCKET APP_ID` beside "
                        "`virgl_test_server --venus --use-gles --socket-path=SOCKET`: Vulkan "
                        "through Venus; GL gets nothing from it (llvmpipe)",
            renderers={"gl": LLVMPIPE, "vulkan": VENUS},
            requires=("flatpak", "virgl_test_server"),
            no_dri_nodes=True,
            hides_host=True,
            own_namespaces=FLATPAK_NAMESPACES,
            services=("virgl_test_server",),
            env=(("VN_DEBUG", "vtest"),),
            venus=True,
            server_gles=True,
            flatpak_mode=FlatpakMode.APP,
        ),
        PathSpec(
            id="flatpak-dri",
            family="flatpak",
            description="flatpak run --device=dri over the runtime's /usr: the runtime's Mesa on "
                        "the host's GPU",
            renderers={"gl": NOT_SOFTWARE, "vulkan": NOT_SOFTWARE},
            requires=("flatpak",),
            needs_render_node=True,
            gpu=True,
            hides_host=True,
            own_namespaces=FLATPAK_NAMESPACES,
        ),
        *(PathSpec(
            id="flatpak-ext" + suffix,
            family="flatpak",
            description="flatpak run over the runtime exported without its Mesa, the driver from a "
                        "GL extension "
                        "built from a runtime (matrix: gl_extension; else its own)" + how,
            renderers=renderers,
            requires=("flatpak", *services),
            needs_render_node=suffix == "-dri",
            gpu=suffix == "-dri",
            no_dri_nodes=suffix != "-dri",
            hides_host=True,
            own_namespaces=FLATPAK_NAMESPACES,
            services=services,
            env=env,
            flatpak_mode=FlatpakMode.GL_EXTENSION,
        ) for suffix, how, renderers, services, env in (
            ("", ", no device: llvmpipe and lavapipe", {"gl": LLVMPIPE, "vulkan": LLVMPIPE}, (),
             (("LIBGL_ALWAYS_SOFTWARE", "1"), ("GALLIUM_DRIVER", "llvmpipe"),
              ("GPU_HARNESS_VK_DEVICE_TYPE", "cpu"))),
            ("-vtest", ", --nodevice=dri; host virgl_test_server's socket (virpipe)", {"gl": VIRGL},
             ("virgl_test_server",), (("GALLIUM_DRIVER", "virpipe"),)),
            ("-dri", ", --device=dri: the extension's driver on the host's GPU",
             {"gl": NOT_SOFTWARE, "vulkan": NOT_SOFTWARE},
             (), ()),
        )),
        PathSpec(
            id="vm-headless",
            family="vm",
            description="QEMU guest with no GPU device; llvmpipe and lavapipe in the guest",
            renderers={"gl": LLVMPIPE, "vulkan": LLVMPIPE},
            requires=VM_TOOLS,
            no_dri_nodes=True,
        ),
        PathSpec(
            id="vm-virtio-2d",
            family="vm",
            description="QEMU virtio-gpu without 3D: llvmpipe in the guest, scanout checked from "
                        "outside",
            renderers={"gl": LLVMPIPE, "vulkan": LLVMPIPE},
            requires=VM_TOOLS,
            guest_gpu="virtio-gpu-pci",
            scanout=True,
        ),
        PathSpec(
            id="vm-virgl",
            family="vm",
            description="QEMU virtio-gpu-gl (virgl): guest GL runs on the host's GL",
            renderers={"gl": VIRGL},
            requires=VM_TOOLS,
            guest_gpu="virtio-gpu-gl-pci",
            scanout=True,
            services=("Xvfb",),
        ),
        PathSpec(
            id="vm-venus",
            family="vm",
            description="QEMU virtio-gpu-gl with Venus and blob resources: guest Vulkan (and GL) "
                        "on the host's",
            renderers={"gl": VIRGL, "vulkan": VENUS},
            requires=VM_TOOLS,
            guest_gpu="virtio-gpu-gl-pci,venus=on,blob=on,hostmem=256M",
            services=("Xvfb",),
            venus=True,
            vulkan_icd="virtio",
        ),
        PathSpec(
            id="vm-vfio",
            family="vfio",
            description="QEMU q35 with a whole host device (vfio-pci): the guest runs the device's "
                        "own driver",
            renderers={"gl": NOT_SOFTWARE, "vulkan": NOT_SOFTWARE},
            requires=VM_TOOLS,
            gpu=True,
            passthrough=Passthrough.HOST,
        ),
        PathSpec(
            id="vm-vfio-nested",
            family="vfio",
            description="the vfio flow with no hardware: an L1 guest with an emulated IOMMU binds "
                        "edu and a "
                        "virtio-gpu, moves the image by DMA and passes the GPU to an L2 QEMU",
            renderers={"vfio": r"^1af4:1050 vfio-pci host="},
            requires=VM_TOOLS,
            passthrough=Passthrough.NESTED,
        ),
        PathSpec(
            id="vm-vfio-nested-boot",
            family="vfio",
            description="vm-vfio-nested's full tier: L2 boots, its virtio_gpu drives the passed "
                        "device (interrupts "
                        "counted) and shows the image, captured from the outer QEMU",
            renderers={"vfio": r"^1af4:1050 vfio-pci host="},
            requires=VM_TOOLS,
            passthrough=Passthrough.NESTED_BOOT,
            scanout=True,
        ),
    )
}
FPS_REFERENCE = next(spec for spec in PATHS.values() if spec.fps_reference)  # native
GOLDEN_RENDERER = next(spec for spec in PATHS.values() if spec.golden_renderer)  # software


def golden_renderer_for(probe: str) -> PathSpec:
    """The path a probe's golden is rendered on: llvmpipe where the probe renders, else the one
    path that speaks its API (the vfio probe's image comes through the nested tier's DMA)."""
    if probe in GOLDEN_RENDERER.probes:
        return GOLDEN_RENDERER
    return next(spec for spec in PATHS.values() if probe in spec.probes)


def expected_renderer(spec: PathSpec, api: str, host_has_gpu: bool,
                      machine_gpu: Optional[str] = None) -> Optional[str]:
    """Regex the reported renderer must match, or None when the path makes no promise for `api`.

    A path with no fixed renderer (native) is decided by the host: with a GPU device node,
    falling back to llvmpipe is a silent failure; without one llvmpipe is the honest answer.
    On a virtual GPU machine, a path that promises the GPU's own renderer (native, the -dri
    paths) must show that machine's (`machine_gpu`: virgl, Venus).
    """
    if api not in spec.renderers:
        return None
    pattern = spec.renderers[api]
    if machine_gpu is not None and pattern in (None, NOT_SOFTWARE):
        return machine_gpu
    if pattern is not None:
        return pattern
    return NOT_SOFTWARE if host_has_gpu else LLVMPIPE


def get(path_id: str) -> PathSpec:
    return PATHS[path_id]


def known_ids() -> str:
    """Every path id for a message, grouped by its first word: "native, sandbox-{dri, capsule},
    ..."."""
    groups: Dict[str, List[str]] = {}
    for path_id in PATHS:
        head, _, rest = path_id.partition("-")
        groups.setdefault(head, []).append(rest)
    return ", ".join(head if rests == [""]
                     else f"{head}-{{{', '.join(r or '(none)' for r in rests)}}}"
                     if len(rests) > 1 else f"{head}-{rests[0]}" for head, rests in groups.items())


def needing(tool: str) -> List[str]:
    """The paths that cannot run without `tool`."""
    return [spec.id for spec in PATHS.values() if tool in spec.requires]
