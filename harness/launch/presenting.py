"""A presenting scenario's display server in its launch: made before the family plans the launch
(so the family can hand its socket to the workload in its own way), started first among its
services, and its screen captured once the probe says its last frame is shown: the probe writes
READY into its output folder, the harness captures the screen into the scenario's folder and
writes CAPTURED, and the probe, which kept its window up till then, reports and exits."""
import time
from pathlib import Path
from typing import Dict, Optional

from ..host.toolset import Toolset
from ..scenario.model import Display, Scenario
from . import displayservers, xwayland
from .displayservers import DisplayServer, DisplayServerError
from .lifecycle import LaunchResult, Workspace

READY = "present-ready.json"  # in the probe's output folder: its last frame is on screen
CAPTURED = "present-captured"  # beside it, written by the harness: the screen is captured
SCREEN = "screen.png"  # in the scenario's folder: what the display server showed
TRACE_ENV = {"WAYLAND_DEBUG": "1"}  # a Wayland client's protocol trace, on its stderr (probe.log)
# in the probe's output folder on a machine's share: the guest's scanout shows the frame, capture
# it from outside (machine_boot's watch), and its answer
SCANOUT_ASKED, SCANOUT_DONE = "kms-ready", "kms-captured"
SCANOUT_WAIT_S = 15.0  # within the probe's hold (present.py --hold-s, 20 s)


def unavailable(scenario: Scenario, toolset: Toolset) -> Optional[str]:
    """Why this scenario's display server cannot run here (what to install), or None."""
    if scenario.display == Display.OFFSCREEN:
        return None
    missing = displayservers.missing_tools(scenario.display, toolset)
    return f"its {scenario.display} display needs {', '.join(missing)}" if missing else None


def server_for(scenario: Scenario, toolset: Toolset,
               workspace: Workspace) -> Optional[DisplayServer]:
    """The scenario's display server, drawing with the GPU where the machine has a render node
    (weston's GL renderer: it offers clients dma-bufs, without which Mesa's Wayland EGL falls
    back to software), else with pixman (recorded, with why)."""
    if scenario.display == Display.OFFSCREEN:
        return None
    if scenario.display == Display.XWAYLAND:
        return xwayland.xwayland(toolset, workspace, "gl", displayservers.SCREEN)
    return displayservers.display_server(scenario.display, toolset, workspace, renderer="gl")


def client_env(server: DisplayServer, runtime_dir: Optional[str] = None) -> Dict[str, str]:
    """The client's variables: the server's own where the client runs on the host (runtime_dir
    None), else those for the socket bound under `runtime_dir` inside; the protocol trace on."""
    reach = server.env if runtime_dir is None else server.reach(runtime_dir).env
    return {**reach, **(TRACE_ENV if server.display == Display.WAYLAND else {})}


class ScreenCapture:
    """The watch's look at the probe's output folder: capture the screen when the probe is ready.
    Where the server shows a machine guest's scanout, the machine's host is asked to capture it
    too (SCANOUT_ASKED on the share, which it answers with SCANOUT_DONE and scanout.png in the
    scenario's folder); the probe is let go once that came or SCANOUT_WAIT_S passed."""

    def __init__(self, server: DisplayServer, workspace: Workspace, result: LaunchResult):
        self.server, self.workspace, self.result = server, workspace, result
        self.done = False
        self.seconds = 0.0
        self.started: Optional[float] = None

    def tick(self) -> None:
        out = self.workspace.probe_out
        if self.done or not (out / READY).exists():
            return
        if self.started is None:
            self.started = time.monotonic()
            target = Path(self.workspace.result_dir) / SCREEN
            try:
                self.server.capture(target)
                self.result.artifacts["screen"] = str(target)
            except DisplayServerError as exc:
                self.result.facts["screen_capture_error"] = str(exc)
            if self.server.x_socket is not None:  # what its X server offered the client
                try:
                    self.result.facts["x_extensions"] = xwayland.extensions(
                        str(self.server.x_socket))
                except (OSError, DisplayServerError) as exc:
                    self.result.facts["x_extensions_error"] = str(exc)
            if self.server.scanout:
                (out / SCANOUT_ASKED).write_text("asked\n")
                return
        elif not (out / SCANOUT_DONE).exists():
            if time.monotonic() - self.started < SCANOUT_WAIT_S:
                return
            self.result.facts["scanout_capture_error"] = (
                f"the machine's host captured no scanout in {SCANOUT_WAIT_S:g} s")
        self.done = True
        (out / CAPTURED).write_text("captured\n")
        self.seconds = time.monotonic() - self.started
        self.result.phases["capture_s"] = self.seconds
