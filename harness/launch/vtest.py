"""virgl_test_server as a per-scenario service: the host side of the vtest paths."""
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from ..system import supervisor
from ..system import serverconfine
from .lifecycle import Workspace
from ..system.services import ServiceSpec
from ..system.syncfd import SyncPipe
from ..host.toolset import Toolset
from ..system import process

# Mesa virpipe in Mesa <= 23 ignores VTEST_SOCKET_NAME and always connects here; newer Mesa
# reads the variable. Binding the per-scenario socket here serves both.
SOCKET_INSIDE = "/tmp/.virgl_test"
SERVICE = "virgl_test_server"


def server_argv(program: str, socket: str, render_node: Optional[str], use_gles: bool = False,
                venus: bool = False, multi_clients: bool = False) -> List[str]:
    """Options take the `=` form: `--socket-path PATH` (with a space) reads PATH as a replay file
    and the server exits. EGL surfaceless lets it render without a display; with a render node it
    renders on that GPU. The server forks a process for each client, --multi-clients or not
    (that option only lets it take new clients while others are active): one process serves
    them all only with --no-fork as well (virglrenderer's vtest_server.c; measured)."""
    argv = [program, "--use-egl-surfaceless"]
    if use_gles:
        argv.append("--use-gles")
    if render_node:
        argv.append(f"--rendernode={render_node}")
    if venus:
        argv.append("--venus")
    if multi_clients:
        argv += ["--no-fork", "--multi-clients"]
    return argv + [f"--socket-path={socket}"]


SUPERVISOR = Path(supervisor.__file__)  # run by path: a program of its own


def server_spec(toolset: Toolset, workspace: Workspace, venus: bool = False,
                sync: Optional[SyncPipe] = None, multi_clients: bool = False,
                confined: bool = False, use_gles: bool = False) -> ServiceSpec:
    """The server for one scenario; with `sync`, run under the supervisor that ties its life to
    the sandbox's through that pipe (one pipe for readiness and shutdown); `confined`: under bwrap
    and its seccomp filter, the socket's folder its only writable host folder."""
    socket = str(workspace.tmp_dir / "virgl.sock")
    render_node = toolset.render_nodes[0] if toolset.render_nodes else None
    argv = server_argv(toolset.path(SERVICE), socket, render_node, use_gles=use_gles,
                       venus=venus, multi_clients=multi_clients)
    handed: Tuple[Tuple[int, str], ...] = ()
    if confined:  # its filter kept with the scenario's results: rerun.sh hands it over again
        made = serverconfine.confine(toolset.path("bwrap"), toolset.path("python3"), argv,
                                     str(workspace.tmp_dir),
                                     render_node, workspace.result_dir, SERVICE)
        argv, handed = made.argv, made.handed
    if sync is not None:
        argv = [sys.executable, str(SUPERVISOR), str(sync.write_fd), socket, "--", *argv]
    # virgl_test_server refuses to start without XDG_RUNTIME_DIR.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "XDG_RUNTIME_DIR": str(workspace.tmp_dir),
           **toolset.host_gl_env()}
    return ServiceSpec(SERVICE, argv, env, str(workspace.result_dir / f"{SERVICE}.log"),
                       ready_socket=socket, sync=sync,
                       handed=handed)


@functools.lru_cache(maxsize=8)
def has_venus(program: str) -> bool:
    """Whether this virgl_test_server takes --venus (it prints its usage for an unknown option)."""
    try:
        done = process.run_program([program, "--gpu-harness-usage"], capture_output=True, text=True,
                                   timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--venus" in done.stdout + done.stderr


def venus_missing(toolset: Toolset) -> Optional[str]:
    """Why this toolset's server cannot serve Venus (it lacks --venus), or None."""
    if has_venus(toolset.path(SERVICE)):
        return None
    version = toolset.version(SERVICE) or "?"
    return (f"virgl_test_server {version} has no Venus (--venus): use --toolset "
            "runtime:trixie-host, runtime:sid-host or the Nix toolset")
