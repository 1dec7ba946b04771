"""X11 on Xwayland: weston (displayservers.weston) with its X server, for the `xwayland` display.

weston 10 picks its X display number itself, the first whose lock and abstract socket are free,
after the sandboxes' binds are planned. So weston runs under bwrap in a mount and network
namespace of its own with a private /tmp (the scenario's folders bound back in): its X display is
always :0, its lock and X socket are in the scenario's temp folder, and its abstract socket is in
its own network namespace, clear of the host's X servers. A sandboxed client, in a network
namespace of its own as well, gets that socket at /tmp/.X11-unix/X0 and DISPLAY=:0. Xwayland
starts on the first X client; where weston draws with GL on a render node, Xwayland's glamor uses
it, and its DRI3 is what a hardware driver presents through. The screen is weston's, captured by
its screenshooter (an X window is a window of weston's desktop)."""
import os
import socket
import struct
import time
from pathlib import Path
from typing import Dict, Tuple

from .displayservers import X_SETUP, DisplayServer, WireError, weston, x_received
from .lifecycle import Workspace
from ..host.toolset import Toolset

PRIVATE_TMP = "xwayland-tmp"  # in the scenario's temp folder: weston's /tmp
# what decides how an X client's frames reach the server: DRI3 and Present (a hardware driver's
# buffers handed over), MIT-SHM (shared memory), GLX
EXTENSIONS = ("DRI3", "Present", "MIT-SHM", "GLX")
QUERY_EXTENSION = 98


def xwayland(toolset: Toolset, workspace: Workspace, renderer: str,
             size: Tuple[int, int]) -> DisplayServer:
    workspace.tmp_dir.mkdir(parents=True, exist_ok=True)
    workspace.result_dir.mkdir(parents=True, exist_ok=True)
    server = weston(toolset, workspace, renderer, size)
    private = workspace.tmp_dir / PRIVATE_TMP
    (private / ".X11-unix").mkdir(parents=True, exist_ok=True)
    os.chmod(private / ".X11-unix", 0o1777)  # as X servers expect the folder
    argv = server.spec.argv
    at = argv.index(toolset.path("weston"))  # after flock on a machine guest's card
    kept = sorted({str(workspace.tmp_dir), str(workspace.result_dir)})
    binds = [arg for folder in kept for arg in ("--bind", folder, folder)]
    server.spec.argv = [*argv[:at], toolset.path("bwrap"), "--dev-bind", "/", "/",
                        "--unshare-net", "--bind", str(private), "/tmp", *binds,
                        "--die-with-parent", *argv[at:], "--xwayland"]
    server.display, server.server = "x11", "weston+Xwayland"
    server.x_socket = private / ".X11-unix" / "X0"
    server.version = (f"weston {server.version or '?'}, "
                      f"Xwayland {toolset.version('Xwayland') or '?'}")
    answers = server.answers
    server.spec.ready_check = lambda: answers() and Path(server.x_socket or "").exists()
    return server


def extensions(path: str, names: Tuple[str, ...] = EXTENSIONS,
               timeout_s: float = 10.0) -> Dict[str, bool]:
    """Which of these extensions the X server at `path` offers: the connection setup, then
    QueryExtension for each (its reply's `present` byte). WireError where it does not answer."""
    deadline = time.monotonic() + timeout_s
    late = f"the X server did not answer within {timeout_s:g} s"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        client.connect(path)
        client.sendall(X_SETUP)
        head = x_received(client, 8, deadline, late)
        if head[0] != 1:
            raise WireError(f"the X server refused the connection (status {head[0]})")
        x_received(client, 4 * struct.unpack_from("<H", head, 6)[0], deadline, late)
        found = {}
        for name in names:
            encoded = name.encode()
            padded = encoded + b"\0" * (-len(encoded) % 4)
            client.sendall(struct.pack("<BxHHxx", QUERY_EXTENSION, 2 + len(padded) // 4,
                                       len(encoded)) + padded)
            reply = x_received(client, 32, deadline, late)
            if reply[0] != 1:
                raise WireError(f"QueryExtension {name}: no reply (got type {reply[0]})")
            found[name] = bool(reply[8])
    return found
