"""Sandbox-family paths (sandbox-dri, vtest-virgl): the workload runs in bubblewrap over the
runtime's root filesystem, as Flatpak would run it."""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from ..matrix import Runtime, Scenario
from ..services import ServiceSpec
from ..templating import render_argv
from ..toolset import Toolset
from .base import PROBE_FILES, LaunchPlan, Workload, Workspace, probe_command

INSIDE = "/run/gpu-harness"
HOME = "/run/gpu-harness/home"
# Mesa virpipe in Mesa <= 23 ignores VTEST_SOCKET_NAME and always connects here; newer Mesa
# reads the variable. Binding the per-scenario socket here serves both.
VTEST_SOCKET_INSIDE = "/tmp/.virgl_test"
SYS_DIRS = ("/sys/dev", "/sys/devices", "/sys/bus", "/sys/class")
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
NIX_STORE = "/nix/store"


@dataclass(frozen=True)
class RuntimeLayout:
    binds: Tuple[Tuple[str, str], ...]
    symlinks: Tuple[Tuple[str, str], ...]  # (target, link)


def runtime_layout(runtime: Runtime, extra_binds: List[Tuple[str, str]] = ()) -> RuntimeLayout:
    """/usr and /etc of the runtime, and its top-level lib/bin dirs as links or binds."""
    root = Path(runtime.root)
    binds, symlinks = list(extra_binds), []
    for name in ("usr", "etc"):
        if (root / name).is_dir():
            binds.append((str(root / name), f"/{name}"))
    for name in MERGED_DIRS:
        entry = root / name
        if entry.is_symlink():
            symlinks.append((os.readlink(entry), f"/{name}"))
        elif entry.is_dir():
            binds.append((str(entry), f"/{name}"))
    return RuntimeLayout(tuple(binds), tuple(symlinks))


def probe_python(toolset: Toolset) -> Tuple[str, List[Tuple[str, str]]]:
    """The python3 to run inside, and what must be bound for it. A Nix toolset's python3 is a
    store path (a wrapper that points EGL at the pinned Mesa): bind the store read-only and run
    it as is. Otherwise the runtime's own /usr/bin/python3."""
    python = toolset.path("python3")
    if python.startswith(NIX_STORE + "/"):
        return python, [(NIX_STORE, NIX_STORE)]
    return os.path.join("/usr/bin", os.path.basename(python)), []


def base_env(scenario: Scenario) -> List[Tuple[str, str]]:
    env = {"PATH": "/usr/bin:/bin", "HOME": HOME, "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": HOME}
    env.update(dict(scenario.spec.env))
    if scenario.path == "vtest-virgl":
        env["VTEST_SOCKET_NAME"] = VTEST_SOCKET_INSIDE
    env.update(dict(scenario.env))
    return sorted(env.items())


def virgl_service(toolset: Toolset, workspace: Workspace) -> ServiceSpec:
    socket = str(workspace.tmp_dir / "virgl.sock")
    argv = render_argv("virgl_test_server.args.j2", program=toolset.path("virgl_test_server"), socket=socket,
                       render_node=(toolset.render_nodes or [None])[0], use_gles=False)
    # virgl_test_server refuses to start without XDG_RUNTIME_DIR.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "XDG_RUNTIME_DIR": str(workspace.tmp_dir)}
    return ServiceSpec("virgl_test_server", argv, env, str(workspace.result_dir / "virgl_test_server.log"),
                       ready_socket=socket)


def plan(scenario: Scenario, toolset: Toolset, workspace: Workspace, workload: Workload) -> LaunchPlan:
    services = []
    sockets = []
    if "virgl_test_server" in scenario.spec.services:
        service = virgl_service(toolset, workspace)
        services.append(service)
        sockets.append((service.ready_socket, VTEST_SOCKET_INSIDE))
    ro_files, rw_dirs = [], []
    python, store_binds = probe_python(toolset)
    if workload.is_probe:
        probe_inside = f"{INSIDE}/{PROBE_FILES[workload.probe].name}"
        ro_files.append((str(PROBE_FILES[workload.probe]), probe_inside))
        rw_dirs.append((str(workspace.probe_out), f"{INSIDE}/out"))
        command = probe_command(python, probe_inside, f"{INSIDE}/out", workspace.host_paths(), workload.probe_args)
    else:
        command = list(workload.command)
    env = base_env(scenario)
    argv = render_argv(
        "bwrap.args.j2",
        bwrap=toolset.path("bwrap"),
        runtime=runtime_layout(scenario.runtime, store_binds),
        home=HOME,
        dri=scenario.spec.needs_render_node,
        sys_dirs=[d for d in SYS_DIRS if os.path.isdir(d)],
        sockets=sockets,
        ro_files=ro_files,
        rw_dirs=rw_dirs,
        env=env,
        workload=command,
    )
    return LaunchPlan(services=services, argv=argv, env=dict(env), env_mode="clear",
                      dirs=[str(workspace.tmp_dir)])
