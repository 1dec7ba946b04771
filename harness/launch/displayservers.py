"""Display servers a scenario presents into: weston (Wayland) or Xvfb (X11) as sidecars of its
own, ready once they answer, what a workload needs to reach them, and their screen captured.

A `DisplayServer` is made per scenario (`display_server`), started and stopped through its
`spec` with the other sidecars (harness/system/services.py); a family hands the client the
socket and environment in its own way: the host's (`env`, what `flatpak run --socket=wayland`
or `--socket=x11` reads) or bound into a sandbox (`reach`)."""
import glob
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .lifecycle import Workspace
from .vm.display import free_display
from ..core import log
from ..core.errors import ComponentError, InputError, cut, joined_lines
from ..host.toolset import Toolset
from ..scenario.machine_specs import MACHINE_ENV
from ..scenario.model import LOCAL
from ..system import process
from ..system.retry import poll
from ..system.services import ServiceSpec

LOG = log.get(__name__)
DISPLAYS = ("wayland", "x11")
RENDERERS = ("pixman", "gl")  # weston's; Xvfb draws with its own software framebuffer
TOOLS = {"wayland": ("weston", "weston-screenshooter"), "x11": ("Xvfb",),
         "xwayland": ("weston", "weston-screenshooter", "Xwayland", "bwrap")}
SCREEN = (640, 480)
WESTON_BACKGROUND = (0x20, 0x40, 0x60)
XVFB_BACKGROUND = (0, 0, 0)  # -br: a black root, no window manager
WAYLAND_SOCKET = "wayland-0"
READY_TIMEOUT_S = 10.0
ROUNDTRIP_TIMEOUT_S = 2.0
# a DRM weston waits for the card's lock while another scenario's shows (under TCG, minutes)
DRM_READY_TIMEOUT_S = 300.0
DRM_TTY = 1  # the guest's console is its serial port: the first VT is free
CAPTURE_TIMEOUT_S = 30.0
# A deterministic desktop: a solid background, no panel, no animation, never idle or locked,
# no on-screen keyboard (an empty input-method path launches none).
WESTON_INI = """[core]
idle-time=0
require-input=false

[shell]
background-color=0xff{background}
panel-position=none
locking=false
animation=none
close-animation=none
startup-animation=none
focus-animation=none

[input-method]
path=
"""
DRM_OUTPUT = """
[output]
name={name}
mode={width}x{height}
"""


class DisplayServerError(ComponentError):
    """A display server could not be set up or its screen not captured; the message says why."""


class WireError(DisplayServerError):
    """A display server did not answer on its socket in time, closed it, or answered outside its
    protocol."""


@dataclass(frozen=True)
class Reach:
    """How a client in a sandbox reaches the server: host path -> path inside, and its env."""

    binds: Tuple[Tuple[str, str], ...]
    env: Dict[str, str]


@dataclass
class DisplayServer:
    display: str  # wayland | x11
    server: str  # weston | Xvfb
    spec: ServiceSpec
    renderer: str  # what the server draws with: pixman or gl (weston), fb (the X server's own)
    socket: Path  # the host path a client connects to
    env: Dict[str, str]  # the client's environment on the host
    size: Tuple[int, int]
    background: Tuple[int, int, int]  # the colour of the empty screen
    capture_program: str  # weston-screenshooter, or the Xvfb screen's file (-fbdir)
    scratch: Path  # where captures are taken (the scenario's temp folder)
    version: Optional[str] = None
    renderer_note: str = ""  # why it draws with another renderer than asked
    # Wayland: the globals the compositor offered at readiness (name, version)
    offered: List[Tuple[str, int]] = field(default_factory=list)
    # weston's backend: headless, or drm (a machine guest's card: its scanout is the screen)
    backend: str = "headless"
    # X11 on weston's Xwayland (launch/xwayland.py): its socket on the host, display :0 inside
    x_socket: Optional[Path] = None

    @property
    def scanout(self) -> bool:
        """Whether what it shows is a machine's scanout, which the machine's host can capture."""
        return self.backend == "drm"

    def answers(self) -> bool:
        """Ready: weston's socket takes a client and a wire-protocol roundtrip answers (weston
        sets up every global before it serves, so a client that connects now only waits)."""
        if not self.socket.exists():
            return False
        try:
            self.offered = wayland_globals(str(self.socket), ROUNDTRIP_TIMEOUT_S)
        except (OSError, WireError) as exc:
            LOG.debug("weston at %s does not answer yet: %s", self.socket, exc)
            return False
        return True

    def x_answers(self) -> bool:
        """Ready: Xvfb answers an X connection setup. Its socket takes clients before its screen
        exists (the X server listens first, then sets up its screens, then serves): a capture
        then finds no screen in the -fbdir file yet."""
        try:
            return x_connection_setup(str(self.socket), ROUNDTRIP_TIMEOUT_S)
        except (OSError, WireError) as exc:
            LOG.debug("Xvfb at %s does not answer yet: %s", self.socket, exc)
            return False

    def reach(self, runtime_dir: str) -> Reach:
        """The socket bound into a sandbox and the client's environment there: Wayland's under
        `runtime_dir` (the sandbox's XDG_RUNTIME_DIR, a folder it can make), X11's at its own
        path (/tmp/.X11-unix/X<n>, where X clients look)."""
        if self.display == "x11" and self.x_socket is not None:
            return Reach(((str(self.x_socket), "/tmp/.X11-unix/X0"),), {"DISPLAY": ":0"})
        if self.display == "x11":
            return Reach(((str(self.socket), str(self.socket)),), {"DISPLAY": self.env["DISPLAY"]})
        inside = f"{runtime_dir.rstrip('/')}/{WAYLAND_SOCKET}"
        return Reach(((str(self.socket), inside),),
                     {"WAYLAND_DISPLAY": WAYLAND_SOCKET, "XDG_RUNTIME_DIR": runtime_dir})

    def capture(self, target: Path, timeout_s: float = CAPTURE_TIMEOUT_S) -> Path:
        """What the server shows now, as a PNG at `target`."""
        started = time.monotonic()
        if self.display == "x11" and self.x_socket is None:
            self.capture_framebuffer(target)
        else:
            self.capture_screenshooter(target, timeout_s)
        LOG.debug("captured %s's screen into %s in %.3f s", self.server, target,
                  time.monotonic() - started)
        return target

    def capture_screenshooter(self, target: Path, timeout_s: float) -> None:
        """weston-screenshooter (weston --debug's screenshooter protocol) writes its PNG, named by
        the time, into its working folder: run in a fresh folder, its one PNG moved to target."""
        shots = Path(tempfile.mkdtemp(prefix="shot-", dir=self.scratch))
        try:
            try:
                done = process.run_program([self.capture_program], cwd=shots,
                                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                                **self.env},
                                           stdin=subprocess.DEVNULL, capture_output=True,
                                           text=True, timeout=timeout_s)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise DisplayServerError(f"weston-screenshooter did not capture the screen: "
                                         f"{exc}") from None
            made = sorted(shots.glob("*.png"))
            if done.returncode or len(made) != 1:
                raise DisplayServerError(
                    f"weston-screenshooter exited {done.returncode} with "
                    f"{len(made)} PNG files: "
                    f"{joined_lines(done.stderr[-600:], 'no output')}")
            shutil.move(str(made[0]), target)
        finally:
            shutil.rmtree(shots, ignore_errors=True)

    def capture_framebuffer(self, target: Path) -> None:
        """Xvfb keeps its screen as an XWD file (-fbdir): the file is the capture, no client."""
        from PIL import Image  # imaging is needed only here: the CLI's other commands start faster

        from .vm import xcapture

        try:
            screen = xcapture.read_xwd(self.capture_program)
        except (OSError, struct.error, ComponentError) as exc:
            raise DisplayServerError(f"Xvfb's screen {cut(self.capture_program)} cannot be read: "
                                     f"{exc}") from None
        Image.fromarray(screen, "RGB").save(target)

    def shows_background(self) -> bool:
        """Whether most of the screen shows the server's background colour."""
        import numpy as np
        from PIL import Image

        probe = self.scratch / "drawn.png"
        try:
            self.capture(probe)
            with Image.open(probe) as image:
                pixels = np.asarray(image.convert("RGB"))
        except DisplayServerError as exc:
            LOG.debug("no capture of %s yet: %s", self.server, exc)
            return False
        finally:
            probe.unlink(missing_ok=True)
        return bool((pixels == self.background).all(axis=2).mean() > 0.5)

    def wait_drawn(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Wait until the desktop is drawn, before any window is shown: weston answers before
        its desktop shell painted the background (its screen is black until then, 0.3 s here).
        The seconds it took; DisplayServerError after `timeout_s`."""
        started = time.monotonic()
        if not poll(self.shows_background, timeout_s, interval_s=0.02):
            raise DisplayServerError(f"{self.server} showed no background "
                                     f"{'#%02x%02x%02x' % self.background} after {timeout_s:g} s")
        return time.monotonic() - started

    def to_dict(self) -> dict:
        return {"display": self.display, "server": self.server, "version": self.version,
                "renderer": self.renderer, "renderer_note": self.renderer_note,
                "backend": self.backend,
                **({"xwayland": True} if self.x_socket is not None else {}),
                "size": list(self.size), "socket": str(self.socket), "env": dict(self.env),
                "globals": [{"name": name, "version": version} for name, version in self.offered]}


def missing_tools(display: str, toolset: Toolset) -> List[str]:
    """The tools this display needs that the toolset lacks, as `toolset.why_missing` says them."""
    return [toolset.why_missing(name) for name in toolset.missing(TOOLS[display])]


def display_server(display: str, toolset: Toolset, workspace: Workspace, renderer: str = "pixman",
                   size: Tuple[int, int] = SCREEN) -> DisplayServer:
    """The display server for one scenario, not started: start it with services.start(its spec)."""
    if display not in DISPLAYS:
        raise InputError(f"display {display!r}: must be one of {', '.join(DISPLAYS)}")
    if renderer not in RENDERERS:
        raise InputError(f"renderer {renderer!r}: must be one of {', '.join(RENDERERS)}")
    workspace.tmp_dir.mkdir(parents=True, exist_ok=True)
    workspace.result_dir.mkdir(parents=True, exist_ok=True)
    if display == "wayland":
        return weston(toolset, workspace, renderer, size)
    return xvfb(toolset, workspace, size)


def guest_card() -> Optional[Tuple[str, str]]:
    """Inside a machine's guest, run as root: its virtual GPU's card node and the connector that
    is connected (weston's output name), which weston's DRM backend drives. None elsewhere: a
    host's card is its user's desktop, never the harness's to take."""
    if os.environ.get(MACHINE_ENV, LOCAL) == LOCAL or os.geteuid() != 0:
        return None
    for card in sorted(glob.glob("/dev/dri/card[0-9]*")):
        name = os.path.basename(card)
        for status in sorted(glob.glob(f"/sys/class/drm/{name}-*/status")):
            try:
                connected = Path(status).read_text().strip() == "connected"
            except OSError:
                continue
            if connected:
                return card, os.path.basename(os.path.dirname(status))[len(name) + 1:]
    return None


def weston(toolset: Toolset, workspace: Workspace, renderer: str,
           size: Tuple[int, int]) -> DisplayServer:
    """weston with the desktop shell (kiosk-shell never maps a toplevel on weston 10's headless
    backend), --debug for the screenshooter, in a private XDG_RUNTIME_DIR: its DRM backend on a
    machine guest's card (its scanout, which the machine's host captures too), else headless."""
    note = ""
    if renderer == "gl" and not toolset.render_nodes:
        renderer, note = "pixman", "gl asked, but this machine has no render node"
    runtime = workspace.tmp_dir / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    os.chmod(runtime, 0o700)  # whatever the umask made of it: libwayland warns on another mode
    card = guest_card()
    config = workspace.result_dir / "weston.ini"
    config.write_text(WESTON_INI.format(background="%02x%02x%02x" % WESTON_BACKGROUND)
                      + (DRM_OUTPUT.format(name=card[1], width=size[0], height=size[1])
                         if card else ""))
    sock = runtime / WAYLAND_SOCKET
    if os.path.lexists(sock):  # a server there would answer the readiness check for this one
        raise DisplayServerError(f"a Wayland socket is already at {sock}: another server's")
    common = ["--debug", f"--socket={WAYLAND_SOCKET}", f"--config={config}",
              "--shell=desktop-shell.so", "--idle-time=0"]
    if card:
        # One weston at a time drives the card: flock holds its lock while weston (exec'd in its
        # place: the process the harness stops) runs; the direct launcher (root) takes a VT.
        lock = Path(tempfile.gettempdir(), f"gpu-harness-{Path(card[0]).name}.lock")
        argv = [toolset.path("flock"), "--no-fork", str(lock),
                toolset.path("weston"), "--backend=drm-backend.so", f"--tty={DRM_TTY}",
                "--continue-without-input", *(["--use-pixman"] if renderer == "pixman" else []),
                *common]
    else:
        argv = [toolset.path("weston"), "--backend=headless-backend.so", f"--use-{renderer}",
                f"--width={size[0]}", f"--height={size[1]}", *common]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "XDG_RUNTIME_DIR": str(runtime),
           **toolset.host_gl_env()}
    # Its socket and lock are in the workspace, and weston removes them when it stops; listed
    # anyway, so that a weston killed mid-run leaves neither behind either.
    spec = ServiceSpec("weston", argv, env, str(workspace.result_dir / "weston.log"),
                       ready_timeout_s=DRM_READY_TIMEOUT_S if card else READY_TIMEOUT_S,
                       leaves=(str(sock), f"{sock}.lock"), stop_leader_first=True,
                       rerun_dirs=(str(runtime),), rerun_socket=str(sock))
    server = DisplayServer("wayland", "weston", spec, renderer, sock,
                           {"XDG_RUNTIME_DIR": str(runtime), "WAYLAND_DISPLAY": WAYLAND_SOCKET},
                           size, WESTON_BACKGROUND, toolset.path("weston-screenshooter"),
                           workspace.tmp_dir, toolset.version("weston"), note,
                           backend="drm" if card else "headless")
    spec.ready_check = server.answers
    return server


def xvfb(toolset: Toolset, workspace: Workspace, size: Tuple[int, int]) -> DisplayServer:
    """Xvfb on a display number this process owns (launch/vm/display.py's), its screen kept as a
    file (-fbdir), ready once its socket takes a client."""
    fbdir = workspace.tmp_dir / "xvfb-screen"
    fbdir.mkdir(exist_ok=True)
    number = free_display()
    sock = f"/tmp/.X11-unix/X{number}"
    argv = [toolset.path("Xvfb"), f":{number}", "-screen", "0", f"{size[0]}x{size[1]}x24",
            "-nolisten", "tcp", "-noreset", "-br", "-fbdir", str(fbdir)]
    spec = ServiceSpec("Xvfb", argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                      **toolset.host_gl_env()},
                       str(workspace.result_dir / "xvfb.log"), ready_timeout_s=READY_TIMEOUT_S,
                       leaves=(f"/tmp/.X{number}-lock", sock), rerun_dirs=(str(fbdir),),
                       rerun_socket=sock)
    server = DisplayServer("x11", "Xvfb", spec, "fb", Path(sock), {"DISPLAY": f":{number}"},
                           size, XVFB_BACKGROUND, str(fbdir / "Xvfb_screen0"), workspace.tmp_dir,
                           toolset.version("Xvfb"))
    spec.ready_check = server.x_answers
    return server


def wayland_globals(path: str, timeout_s: float) -> List[Tuple[str, int]]:
    """The globals a compositor offers, by the wire protocol over a plain unix socket:
    wl_display.get_registry (new id 2) and wl_display.sync (new id 3); the registry's globals
    come before the callback's done. WireError when it does not answer within `timeout_s` or
    answers outside the protocol."""
    deadline = time.monotonic() + timeout_s
    offered: List[Tuple[str, int]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        client.connect(path)
        client.sendall(struct.pack("=6I", 1, 12 << 16 | 1, 2, 1, 12 << 16 | 0, 3))
        pending = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireError(f"no wl_callback.done within {timeout_s:g} s")
            client.settimeout(left)
            chunk = client.recv(65536)
            if not chunk:
                raise WireError("the compositor closed the connection")
            pending += chunk
            while len(pending) >= 8:
                target, word = struct.unpack_from("=II", pending)
                size, opcode = word >> 16, word & 0xFFFF
                if size < 8 or size % 4:
                    raise WireError(f"a message of {size} bytes on object {target}")
                if len(pending) < size:
                    break
                body, pending = pending[8:size], pending[size:]
                if target == 2 and opcode == 0:
                    offered.append(registry_global(body))
                elif target == 3 and opcode == 0:
                    return offered
                elif target == 1 and opcode == 0:
                    raise WireError(f"wl_display.error: {body[8:].rstrip(bytes(1))!r}")


# the X connection setup request: little-endian, protocol 11.0, no authorization
X_SETUP = struct.pack("<BxHHHHxx", ord("l"), 11, 0, 0, 0)


def x_received(client: socket.socket, size: int, deadline: float, late: str) -> bytes:
    """`size` bytes of an X server's answer, by `deadline` (time.monotonic()); WireError where
    they do not come in time (saying `late`) or the server closes the connection."""
    data = b""
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise WireError(late)
        client.settimeout(left)
        chunk = client.recv(size - len(data))
        if not chunk:
            raise WireError("the X server closed the connection")
        data += chunk
    return data


def x_connection_setup(path: str, timeout_s: float) -> bool:
    """Whether the X server at `path` accepts a connection: the setup request (little-endian,
    protocol 11.0, no authorization) and the first 8 bytes of its answer, Success (1); False for
    Failed (0) or Authenticate (2). WireError when it does not answer within `timeout_s` or
    answers outside the protocol."""
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        client.connect(path)
        client.sendall(X_SETUP)
        answer = x_received(client, 8, deadline,
                            f"no X connection setup answer within {timeout_s:g} s")
    if answer[0] != 1:
        LOG.debug("the X server at %s refused the connection setup (status %d)", path, answer[0])
    return answer[0] == 1


def registry_global(body: bytes) -> Tuple[str, int]:
    """wl_registry.global(name: uint, interface: string, version: uint) -> (interface, version)."""
    length = struct.unpack_from("=I", body, 4)[0]
    padded = (length + 3) // 4 * 4
    if length < 1 or len(body) < 12 + padded:
        raise WireError(f"a wl_registry.global of {len(body)} bytes")
    return body[8:8 + length - 1].decode(), struct.unpack_from("=I", body, 8 + padded)[0]
