"""A guest's display: which QEMU display to use, the Xvfb it may need (with its own display
number), and capturing what the guest shows, from outside."""
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Tuple

from ..lifecycle import Workspace
from ...system.services import ServiceSpec
from ...host.toolset import Toolset
from .qemu import opt
from ...core.errors import ComponentError

if TYPE_CHECKING:
    from .qemu_process import QemuProcess

XVFB_SCREEN = "1920x1200x24"
GL_DEVICES = ("virtio-gpu-gl-pci",)  # guest GPUs whose rendering QEMU does on the host's GL
DISPLAYS = range(90, 400)
_display_lock = threading.Lock()
_next_display = DISPLAYS.start
_claims: Dict[int, socket.socket] = {}


class DisplayError(ComponentError):
    """No display could be set up; the message says why."""


def free_display() -> int:
    """An X display number no server uses, never handed out twice by this process, nor at the
    same time by another harness process: parallel scenarios and parallel runs each get their
    own."""
    global _next_display
    with _display_lock:
        for _ in range(len(DISPLAYS)):
            number = _next_display
            _next_display = DISPLAYS.start + (number + 1 - DISPLAYS.start) % len(DISPLAYS)
            if (os.path.exists(f"/tmp/.X{number}-lock")
                    or os.path.exists(f"/tmp/.X11-unix/X{number}")):
                continue
            if claim_display(number):
                return number
    raise DisplayError(f"no free X display number between :{DISPLAYS.start} and "
                       f":{DISPLAYS.stop - 1}")


def claim_display(number: int) -> bool:
    """Hold a display number against other harness processes until this one ends. Between the
    check for X's lock and Xvfb making it, two runs could pick the same number; an abstract
    socket is claimed atomically, leaves nothing on disk and is freed by the kernel when the
    process dies."""
    if number in _claims:
        return True
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0gpu-harness-display-{number}")
    except OSError:
        claim.close()
        return False
    _claims[number] = claim
    return True


def xvfb_service(toolset: Toolset, workspace: Workspace) -> Tuple[ServiceSpec, str]:
    fbdir = workspace.tmp_dir / "xvfb"
    fbdir.mkdir(exist_ok=True)
    number = free_display()
    argv = [toolset.path("Xvfb"), f":{number}", "-screen", "0", XVFB_SCREEN, "-nolisten", "tcp",
            "-noreset", "-wr",
            "-fbdir", str(fbdir)]
    socket_path = f"/tmp/.X11-unix/X{number}"
    spec = ServiceSpec("Xvfb", argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                      **toolset.host_gl_env()},
                       str(workspace.result_dir / "xvfb.log"), ready_socket=socket_path,
                       leaves=(f"/tmp/.X{number}-lock", socket_path))
    return spec, f":{number}"


def display_for(gpu: str, toolset: Toolset,
                workspace: Workspace) -> Tuple[str, List[ServiceSpec], Dict[str, str]]:
    """QEMU's -display, the services it needs and their environment. A GL device needs host GL:
    egl-headless on a render node where there is one, else SDL's GL on an Xvfb display."""
    if not is_gl(gpu):
        return "none", [], {}
    if toolset.render_nodes:
        return f"egl-headless,rendernode={opt(toolset.render_nodes[0])}", [], toolset.host_gl_env()
    spec, display = xvfb_service(toolset, workspace)
    return "sdl,gl=on", [spec], {"DISPLAY": display, "SDL_VIDEODRIVER": "x11",
                                 **toolset.host_gl_env()}


def is_gl(gpu: str) -> bool:
    """Whether a -device value (with its options) is a GPU that renders on the host's GL."""
    return gpu.split(",")[0] in GL_DEVICES


def needs_xvfb(gpu: str, toolset: Toolset) -> bool:
    return is_gl(gpu) and not toolset.render_nodes


def capture(machine: "QemuProcess", display: str, workspace: Workspace, target: Path) -> str:
    """The guest's display as seen from outside, as a PNG: QMP screendump where QEMU's display
    reads back, the Xvfb framebuffer (the SDL window's part of it) where it does not."""
    from PIL import Image  # imaging is needed only here: the CLI's other commands start faster

    from . import xcapture

    if display.startswith("sdl"):
        screen = xcapture.read_xwd(workspace.tmp_dir / "xvfb" / "Xvfb_screen0")
        Image.fromarray(xcapture.window_region(screen), "RGB").save(target)
    else:
        raw = workspace.tmp_dir / "screendump.ppm"
        machine.screendump(str(raw))
        with Image.open(raw) as image:
            image.convert("RGB").save(target)
    return str(target)
