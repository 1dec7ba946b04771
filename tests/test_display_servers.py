"""The display servers for real: weston (headless, pixman, the desktop shell) and Xvfb started
through their ServiceSpecs by the harness's own services.start and stop, ready once they answer,
their screens captured and judged, real clients (weston-simple-shm, xlogo) reaching them from the
host and from a bwrap sandbox, weston killed mid-way seen as a dead service, and nothing left
behind: no process, no socket, no lock file.

Skips without weston, weston-screenshooter or Xvfb, unless GPU_HARNESS_REQUIRE names "display"
(CI), where that fails."""
import os
import shutil
import signal
import stat
import tempfile
from pathlib import Path
from typing import List

import numpy as np
import pytest
from PIL import Image

from harness.host import toolset as toolset_mod
from harness.judging import screen
from harness.launch import displayservers
from harness.launch.lifecycle import Workspace
from harness.scenario.model import Tolerance
from harness.system import services
from harness.system.process import Child
from harness.system.retry import poll
from tests import leftovers

REQUIRED = {p.strip() for p in os.environ.get("GPU_HARNESS_REQUIRE", "").split(",") if p.strip()}
GOLDEN = Path(__file__).parents[1] / "harness" / "goldens" / "gl.png"
CLIENTS = {"wayland": ("weston-simple-shm", "weston"), "x11": ("xlogo", "x11-apps")}
# xlogo's default is a black logo on white: on Xvfb's black root, a flat window (two colours)
CLIENT_ARGS = {"wayland": [], "x11": ["-fg", "#c03030", "-bg", "white"]}


@pytest.fixture(scope="module")
def toolset():
    found = toolset_mod.discover()
    missing = [found.why_missing(name) for name in found.missing(
        ("weston", "weston-screenshooter", "Xvfb", "bwrap"))]
    if missing:
        if "display" in REQUIRED:
            pytest.fail(f"the display servers are required here: missing {', '.join(missing)}")
        pytest.skip(f"missing {', '.join(missing)}")
    return found


@pytest.fixture
def workspace(tmp_path):
    """A short temp folder of its own (a unix socket's path is at most 107 bytes)."""
    short = Path(tempfile.mkdtemp(prefix="display-"))
    yield Workspace(tmp_path / "result", short / "tmp")
    shutil.rmtree(short, ignore_errors=True)


def client(name: str) -> str:
    program, package = CLIENTS[name]
    found = shutil.which(program)
    if found is None:
        if "display" in REQUIRED:
            pytest.fail(f"{program} is required here ({package})")
        pytest.skip(f"needs {program} ({package})")
    return found


def running(pid: int) -> bool:
    """Alive, not a zombie: weston's desktop shell, ended with weston's group, is reparented to
    PID 1 (or the harness, its subreaper) and waits there to be collected."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def left_behind(server: displayservers.DisplayServer, workspace: Workspace,
                members: List[int]) -> List[str]:
    """What a stopped server left: its processes (the desktop shell weston starts among them),
    its socket, its lock files."""
    alive = [f"pid {pid}" for pid in members if running(pid)]
    found = [f"pid {pid}" for pid in leftovers.processes_in(str(workspace.tmp_dir))
             + leftovers.processes_in(str(workspace.result_dir))]
    files = [path for path in (str(server.socket), *server.spec.leaves) if os.path.lexists(path)]
    return alive + found + files


def test_weston_is_ready_once_it_answers_and_leaves_nothing(toolset, workspace):
    server = displayservers.display_server("wayland", toolset, workspace)
    running = services.start(server.spec)
    try:
        assert running.ready_s < displayservers.READY_TIMEOUT_S
        offered = dict(server.offered)
        assert {"wl_compositor", "wl_shm", "xdg_wm_base", "weston_screenshooter",
                "wp_presentation"} <= set(offered)
        runtime = Path(server.env["XDG_RUNTIME_DIR"])
        assert stat.S_IMODE(runtime.stat().st_mode) == 0o700 and runtime.parent == workspace.tmp_dir
        assert server.socket == runtime / "wayland-0" and server.socket.is_socket()
        assert server.env == {"XDG_RUNTIME_DIR": str(runtime), "WAYLAND_DISPLAY": "wayland-0"}
        assert (server.renderer, server.version) == ("pixman", toolset.version("weston"))
        assert server.to_dict()["globals"][0] == {"name": "wl_compositor", "version": 4}
        members = running.child.group_members()
        assert len(members) == 2  # weston and its desktop shell; no on-screen keyboard
    finally:
        running.stop()
    assert running.exit_description == "exit code 0"
    assert left_behind(server, workspace, members) == []


def test_the_drawn_desktop_is_captured_and_judged_blank(toolset, workspace):
    """weston answers before its desktop shell painted the background: waited for, with a
    deadline; then the whole screen is the background's one colour."""
    server = displayservers.display_server("wayland", toolset, workspace)
    running = services.start(server.spec)
    try:
        assert server.wait_drawn(timeout_s=10) < 10
        shot = server.capture(workspace.result_dir / "desktop.png")
    finally:
        running.stop()
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (480, 640, 3) and (image == (0x20, 0x40, 0x60)).all()
    judged = screen.judge(shot, GOLDEN, Tolerance(), readback_path=GOLDEN)
    assert (judged.kind, judged.blank, judged.capture_size) == ("blank", "uniform", (640, 480))
    assert list(workspace.tmp_dir.glob("shot-*")) == []  # the screenshooter's folder went


def test_xvfb_is_ready_captured_blank_and_leaves_no_lock(toolset, workspace):
    server = displayservers.display_server("x11", toolset, workspace)
    number = server.env["DISPLAY"][1:]
    assert server.spec.leaves == (f"/tmp/.X{number}-lock", f"/tmp/.X11-unix/X{number}")
    running = services.start(server.spec)
    try:
        assert Path(f"/tmp/.X{number}-lock").read_text().strip() == str(running.child.pid)
        assert server.socket.is_socket()
        server.wait_drawn(timeout_s=10)
        shot = server.capture(workspace.result_dir / "screen.png")
        members = running.child.group_members()
    finally:
        running.stop()
    judged = screen.judge(shot, GOLDEN, Tolerance(), readback_path=GOLDEN)
    assert (judged.kind, judged.blank, judged.capture_size) == ("blank", "black", (640, 480))
    assert left_behind(server, workspace, members) == []


def sandboxed(command: List[str], reach: displayservers.Reach) -> List[str]:
    """The client in bwrap over the host's root with an empty /tmp and /run: the socket reaches
    it only by the bind the server says."""
    argv = [shutil.which("bwrap") or "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc",
            "/proc", "--tmpfs", "/tmp", "--tmpfs", "/run", "--unshare-all", "--die-with-parent"]
    for host, inside in reach.binds:
        argv += ["--bind", host, inside]
    for name, value in reach.env.items():
        argv += ["--setenv", name, value]
    return argv + command


@pytest.mark.parametrize("display", ["wayland", "x11"])
@pytest.mark.parametrize("where", ["host", "sandbox"])
def test_a_real_clients_window_is_captured_as_content(toolset, workspace, display, where):
    """weston-simple-shm (its own shm buffers) or xlogo, from the host with the server's
    environment, or from a sandbox through its reach: the window shows in the capture, and is
    judged content that is not the probe's frame."""
    program = client(display)
    server = displayservers.display_server(display, toolset, workspace)
    running = services.start(server.spec)
    app = None
    try:
        server.wait_drawn(timeout_s=10)
        reach = server.reach("/run/user/1000")
        argv, env = ((sandboxed([program, *CLIENT_ARGS[display]], reach),
                      {"PATH": os.environ["PATH"]}) if where == "sandbox"
                     else ([program, *CLIENT_ARGS[display]],
                           {"PATH": os.environ["PATH"], **server.env}))
        app = Child(argv, env, str(workspace.result_dir / "client.log"))
        shot = workspace.result_dir / "client.png"

        def shown() -> bool:
            return (app.poll() is None and screen.blank_class(
                screen.load(server.capture(shot))) is None)

        assert poll(shown, 20, interval_s=0.05), (app.poll(), Path(app.log_path).read_text())
        members = running.child.group_members()
    finally:
        if app:
            app.stop()
        running.stop()
    judged = screen.judge(shot, GOLDEN, Tolerance(), readback_path=GOLDEN)
    assert (judged.kind, judged.blank) == ("not-found", None)
    assert left_behind(server, workspace, members) == []


def test_weston_killed_mid_way_is_a_dead_service_and_its_files_go(toolset, workspace):
    server = displayservers.display_server("wayland", toolset, workspace)
    running = services.start(server.spec)
    members = running.child.group_members()
    try:
        assert running.failure() is None
        os.kill(running.child.pid, signal.SIGKILL)
        assert poll(lambda: running.child.poll() is not None, 10, interval_s=0.01)
        assert running.failure() == "service weston died during the run (killed by SIGKILL)"
        assert services.first_failure([running]) == running.failure()
        with pytest.raises(displayservers.DisplayServerError, match="weston-screenshooter"):
            server.capture(workspace.result_dir / "never.png")
    finally:
        running.stop()
    assert left_behind(server, workspace, members) == []  # its socket and lock among them


def test_weston_that_cannot_serve_fails_fast_with_its_words(toolset, workspace):
    """Its XDG_RUNTIME_DIR gone before it starts: weston refuses it and exits; the readiness
    wait gives up at once, with weston's last lines (its hint where to read about the folder)."""
    server = displayservers.display_server("wayland", toolset, workspace)
    shutil.rmtree(server.env["XDG_RUNTIME_DIR"])
    with pytest.raises(services.ServiceError, match="weston exited before it was ready") as raised:
        services.start(server.spec)
    assert "basedir-spec" in str(raised.value)
    assert left_behind(server, workspace, []) == []


def test_a_socket_already_in_the_runtime_folder_is_refused(toolset, workspace):
    """Another server's socket would answer this one's readiness check."""
    first = displayservers.display_server("wayland", toolset, workspace)
    running = services.start(first.spec)
    try:
        with pytest.raises(displayservers.DisplayServerError, match="already at"):
            displayservers.display_server("wayland", toolset,
                                          Workspace(workspace.result_dir / "again",
                                                    workspace.tmp_dir))
    finally:
        running.stop()


def test_two_xvfbs_get_two_displays(toolset, workspace):
    one = displayservers.display_server("x11", toolset, workspace)
    two = displayservers.display_server("x11", toolset, Workspace(workspace.result_dir / "two",
                                                                  workspace.tmp_dir / "two"))
    assert one.env["DISPLAY"] != two.env["DISPLAY"]
    running = services.start_all([one.spec, two.spec])
    services.stop_all(running)
    assert not any(os.path.lexists(path) for path in one.spec.leaves + two.spec.leaves)


def test_gl_without_a_render_node_draws_with_pixman_and_says_why(toolset, workspace):
    bare = toolset_mod.Toolset(toolset.source, toolset.tools, render_nodes=[])
    server = displayservers.display_server("wayland", bare, workspace, renderer="gl")
    assert "--use-pixman" in server.spec.argv
    assert (server.renderer, server.renderer_note) == (
        "pixman", "gl asked, but this machine has no render node")
    assert displayservers.missing_tools("wayland", bare) == []


def test_on_a_machine_guests_card_weston_drives_it_one_at_a_time(toolset, workspace, monkeypatch):
    """Inside a machine's guest (its card and connected connector found), weston takes the DRM
    backend on that card, its output at the screen size, under the card's lock; its scanout is
    what the machine's host captures. The real run is vmtests/test_display.py's guest test."""
    monkeypatch.setattr(displayservers, "guest_card", lambda: ("/dev/dri/card0", "Virtual-1"))
    server = displayservers.display_server("wayland", toolset, workspace)
    argv = server.spec.argv
    assert argv[:3] == [toolset.path("flock"), "--no-fork",
                        str(Path(tempfile.gettempdir(), "gpu-harness-card0.lock"))]
    assert argv[3] == toolset.path("weston") and "--backend=drm-backend.so" in argv
    assert "--tty=1" in argv and not any(arg.startswith("--width") for arg in argv)
    assert "[output]\nname=Virtual-1\nmode=640x480\n" in (workspace.result_dir / "weston.ini"
                                                          ).read_text()
    assert server.scanout and server.to_dict()["backend"] == "drm"
    assert server.spec.ready_timeout_s == displayservers.DRM_READY_TIMEOUT_S


def test_on_a_host_weston_is_headless_whatever_cards_it_has(toolset, workspace, monkeypatch):
    """A host's card is its user's desktop: outside a machine's guest there is no card to take."""
    monkeypatch.delenv("GPU_HARNESS_MACHINE", raising=False)
    assert displayservers.guest_card() is None
    server = displayservers.display_server("wayland", toolset, workspace)
    assert "--backend=headless-backend.so" in server.spec.argv and not server.scanout


def test_xwayland_is_display_0_in_westons_own_namespaces_and_leaves_nothing(toolset, workspace):
    """weston under bwrap with a private /tmp and network namespace: its X display is :0 whatever
    the host runs, its X socket in the scenario's temp folder; a sandboxed client reaches it there
    (reach), the X server answers which extensions it offers, and nothing stays."""
    from harness.launch import xwayland

    if toolset.missing(("Xwayland",)):
        pytest.skip(toolset.why_missing("Xwayland"))
    server = xwayland.xwayland(toolset, workspace, "gl", displayservers.SCREEN)
    assert server.x_socket == workspace.tmp_dir / xwayland.PRIVATE_TMP / ".X11-unix" / "X0"
    assert server.reach("/run/user/0") == displayservers.Reach(
        ((str(server.x_socket), "/tmp/.X11-unix/X0"),), {"DISPLAY": ":0"})
    assert "--unshare-net" in server.spec.argv and server.spec.argv[-1] == "--xwayland"
    running = services.start(server.spec)
    try:
        assert server.x_socket.is_socket()
        offered = xwayland.extensions(str(server.x_socket))  # Xwayland starts on this client
        # no render node here: no glamor, so no DRI3; the shared-memory path is there
        assert offered["MIT-SHM"] and offered["Present"] and offered["DRI3"] is bool(
            toolset.render_nodes), offered
        members = running.child.group_members()
    finally:
        running.stop()
    assert left_behind(server, workspace, members) == []


def test_the_extension_query_against_a_real_xvfb(toolset, workspace):
    """X11's QueryExtension over the wire, answered by a real Xvfb (no DRI3: no GPU behind it)."""
    from harness.launch import xwayland

    server = displayservers.display_server("x11", toolset, workspace)
    running = services.start(server.spec)
    try:
        offered = xwayland.extensions(str(server.socket), ("MIT-SHM", "DRI3", "NO-SUCH-EXT"))
    finally:
        running.stop()
    assert offered == {"MIT-SHM": True, "DRI3": False, "NO-SUCH-EXT": False}
