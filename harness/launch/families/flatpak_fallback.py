"""How the vtest fallback's own command, as written, compares with what flatpak-vtest-fallback ran.

The fallback was proposed as two commands:
    virgl_test_server --venus --use-gles --socket-path SOCKET --rendernode RENDER_NODE &
    flatpak run --nodevice=dri --filesystem=SOCKET --env=VN_DEBUG=vtest
        --env=VTEST_SOCKET_NAME=SOCKET APP_ID
The path runs them with the scenario's socket and app. What it had to add (a private Flatpak
installation, the display's socket, the probe's output folder, the `=` form of the server's
options) or leave out (a render node this machine lacks) is said per scenario, never silently."""
from typing import Dict, List, Optional

SERVER_AS_WRITTEN = ("--venus", "--use-gles", "--socket-path", "--rendernode")
# why the path adds what it adds (by the option's start)
WHY_ADDED = {
    "--use-egl-surfaceless": "the server renders with no display (EGL surfaceless)",
    "--user": "the scenario's private installation",
    "--die-with-parent": "the app goes with the harness",
    "--no-session-bus": "no session bus to hand over",
    "--no-a11y-bus": "no accessibility bus to hand over",
    "--no-documents-portal": "no documents portal",
    "--socket=": "the display server the scenario started",
    "--filesystem=": "the probe's output folder",
    "--env=": "the scenario's own environment (a trace, the workload's variables)",
}


def option_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def why(arg: str) -> str:
    reason = next((text for start, text in WHY_ADDED.items() if arg.startswith(start)), "")
    return f"{arg} ({reason})" if reason else arg


def server_differences(server_argv: List[str], render_node: Optional[str]) -> Dict[str, List[str]]:
    """The server's options beyond the written ones, and the written ones it ran without."""
    ran = {option_name(arg) for arg in server_argv[1:]}
    added = [why(arg) for arg in server_argv[1:] if option_name(arg) not in SERVER_AS_WRITTEN]
    left_out = [f"{flag} (this machine has no render node)" if flag == "--rendernode" and
                render_node is None else flag for flag in SERVER_AS_WRITTEN if flag not in ran]
    return {"server_added": added, "server_left_out": left_out}


def flatpak_differences(run_argv: List[str], socket: str, app_id: str) -> List[str]:
    """The options of `flatpak run` beyond the written ones (the socket's --filesystem, the two
    --env and --nodevice=dri are the written ones)."""
    written = {"--nodevice=dri", f"--filesystem={socket}", "--env=VN_DEBUG=vtest",
               f"--env=VTEST_SOCKET_NAME={socket}", app_id}
    options = run_argv[run_argv.index("run") + 1:] if "run" in run_argv else []
    return [why(arg) for arg in options if arg not in written]


def facts(run_argv: List[str], server_argv: List[str], socket: str, app_id: str,
          render_node: Optional[str]) -> Dict[str, object]:
    """results.json's `fallback_command`: both commands as run, and how they differ from the
    written ones."""
    return {"flatpak": list(run_argv), "server": list(server_argv),
            "flatpak_added": flatpak_differences(run_argv, socket, app_id),
            **server_differences(server_argv, render_node)}
