"""The display axis for real: the shipped display matrix (each family x wayland, x11 x gl,
vulkan x the host's and trixie's Mesa), each scenario presented on the display server the run
starts, captured and judged; what the report says of how its buffers travelled."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from harness import matrix
from harness.judging import bufferpath, verdict
from harness.report import document, records
from harness.report.presenting import presentation

from .conftest import describe, outcome_or_skip
from .test_machines import outcome_or_skip_entry

DISPLAY = matrix.load(matrix.DEFAULT_MATRIX.parent / "display.toml")


def display_param(scenario):
    """Each in the quick tier: the grid takes about 25 s on 2 cores (2 workers), warm."""
    return pytest.param(scenario, marks=pytest.mark.launches(scenario.spec.family),
                        id=scenario.id)


def entry_of(result, toolset) -> records.ScenarioEntry:
    return records.entry(document.scenario_entry(result, result.result_dir.parent.parent,
                                                 toolset))


@pytest.mark.parametrize("scenario", [display_param(s) for s in DISPLAY.scenarios])
def test_the_display_matrix_presents_or_fails_as_it_declares(scenario, run_scenarios, toolset):
    """Each scenario's frames are on the display server's screen (the capture, judged against
    the golden), or it fails with the class its matrix declares; in both the buffer path is
    measured."""
    (result,) = run_scenarios([scenario])
    outcome = outcome_or_skip(result)
    entry = entry_of(result, toolset)
    capture = result.launch.artifacts.get("screen")
    assert capture and Path(capture).is_file(), describe(result)
    assert Image.open(capture).size == (640, 480), describe(result)
    shown = entry.presentation
    assert shown is not None and shown.buffer_path, describe(result)
    if scenario.expect.outcome == "fail":
        assert outcome == verdict.EXPECTED_FAIL, describe(result)
        assert result.verdict.failure_kind.value == scenario.expect.failure, describe(result)
        return
    assert outcome == verdict.PASS, describe(result)
    assert shown.presented is None or shown.presented > 0, shown
    assert shown.fps and shown.fps_spread, shown
    (record,) = presentation([entry]).records
    assert record["presented"] == "presented" and record["buffer_path"] == shown.buffer_path


def test_a_wayland_clients_buffer_path_is_what_its_protocol_trace_shows(run_scenarios, toolset):
    """vtest-virgl on weston (pixman: no zwp_linux_dmabuf_v1 offered): the report's buffer path
    is shm, and the client's own WAYLAND_DEBUG lines show the pool and buffers it made and
    attached, and no dma-buf request."""
    (scenario,) = DISPLAY.select(["vtest-virgl"], "*/host/gl+wayland")
    (result,) = run_scenarios([scenario])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    shown = entry_of(result, toolset).presentation
    assert shown is not None and shown.buffer_path == "shm" and not shown.offered_dmabuf, shown
    trace = Path(result.launch.logs["probe"]).read_text(errors="replace")
    pools = re.findall(r"wl_shm@\d+\.create_pool\(|wl_shm#\d+\.create_pool\(", trace)
    made = re.findall(r"wl_shm_pool[@#]\d+\.create_buffer\(", trace)
    attached = re.findall(r"wl_surface[@#]\d+\.attach\(wl_buffer[@#]\d+", trace)
    assert pools and made and attached, trace[-2000:]
    assert "zwp_linux_buffer_params_v1" not in trace
    assert shown.buffers_created == len(made), (shown, len(made))
    # its frames were the surface's commits, each with a buffer attached
    measured = bufferpath.read_trace(Path(result.launch.logs["probe"]))
    assert measured.attaches == len(attached) and measured.commits >= len(attached)


DESKTOP = matrix.load(matrix.DEFAULT_MATRIX.parent / "desktop.toml")
# the apps on the host runtime in the quick tier; on trixie (a runtime derived with the apps'
# packages, built once) in the whole one
DESKTOP_QUICK = {"flatpak-vtest/host/gnome-clocks+wayland", "vtest-virgl/host/gtk4-gears+wayland",
                 "native/host/gnome-clocks-cairo+wayland"}


def desktop_param(scenario):
    marks = ([pytest.mark.launches(scenario.spec.family)] if scenario.id in DESKTOP_QUICK
             else [pytest.mark.full("every-runtime")])
    return pytest.param(scenario, marks=marks, id=scenario.id)


@pytest.mark.parametrize("scenario", [desktop_param(s) for s in DESKTOP.scenarios])
def test_a_real_desktop_app_shows_its_window_through_the_path(scenario, run_scenarios, toolset):
    """desktop.toml: the app's window is in the capture, and what its toolkit drew with is
    measured (GTK's GL renderer maps the GL driver; through a vtest path, virpipe's buffers)."""
    (result,) = run_scenarios([scenario])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    entry = entry_of(result, toolset)
    (subtest,) = result.verdict.subtests
    assert subtest.detail.startswith("shown for 6 s, captured, then ended"), subtest
    shown = entry.presentation
    assert shown is not None and shown.buffer_path == "shm", shown
    cairo = dict(scenario.declared.settings.get("env", {})).get("GSK_RENDERER") == "cairo"
    # GSK's GL renderer maps the GL driver (and may keep Vulkan ICDs it looked at); cairo, none
    assert (shown.toolkit_renderer == "cpu" if cairo
            else shown.toolkit_renderer.startswith("gl")), shown
    drivers = entry.raw["presentation"]["toolkit_drivers"]
    virpipe = dict(scenario.spec.env).get("GALLIUM_DRIVER") == "virpipe"
    assert ("vtest buffers (virpipe)" in drivers) == (virpipe and not cairo), drivers
    assert screen_judged(result).startswith("screen: a window is shown"), describe(result)
    if scenario.path_id == "flatpak-vtest-fallback":
        as_run = entry.raw["launcher"]["fallback_command"]
        assert_the_fallbacks_own_command(as_run, scenario.declared.settings["app_id"])


def assert_the_fallbacks_own_command(as_run, app_id):
    """`flatpak run --nodevice=dri --filesystem=SOCKET --env=VN_DEBUG=vtest
    --env=VTEST_SOCKET_NAME=SOCKET APP_ID` beside `virgl_test_server --venus --use-gles
    --socket-path=SOCKET`, as run: the app by its id alone (no --command), and each option the
    harness added said with its reason."""
    flatpak, server = as_run["flatpak"], as_run["server"]
    (socket,) = [arg.split("=", 1)[1] for arg in server if arg.startswith("--socket-path=")]
    assert flatpak[-1] == app_id and not any(arg.startswith("--command") for arg in flatpak)
    for written in ("--nodevice=dri", f"--filesystem={socket}", "--env=VN_DEBUG=vtest",
                    f"--env=VTEST_SOCKET_NAME={socket}"):
        assert written in flatpak, (written, flatpak)
    assert "--venus" in server and "--use-gles" in server, server
    said = {added.split(" (")[0] for added in as_run["flatpak_added"]}
    assert said == {arg for arg in flatpak[2:-1]} - {"--nodevice=dri", f"--filesystem={socket}",
                                                      "--env=VN_DEBUG=vtest",
                                                      f"--env=VTEST_SOCKET_NAME={socket}"}


def screen_judged(result) -> str:
    (check,) = [c for c in result.verdict.checks if c.name == "screen"]
    return check.detail


@pytest.mark.launches("sandbox")
def test_an_app_that_draws_nothing_is_a_blank_capture(run_scenarios):
    """A real weston, and an app that is up for duration_s without a window: the capture is the
    desktop alone, a blank-capture Fail, never a Pass."""
    loaded = matrix.expand({
        "matrix": {"paths": ["vtest-virgl"], "probes": ["idle"]},
        "probes": {"idle": {"kind": "command", "argv": ["sleep", "30"], "display": "wayland",
                            "duration_s": 1}}}, "<test>")
    (result,) = run_scenarios(loaded.scenarios)
    assert outcome_or_skip(result) == verdict.FAIL, describe(result)
    assert result.verdict.failure_kind.value == "blank-capture", describe(result)
    assert screen_judged(result).startswith("screen: the screen is one colour"), describe(result)


def run_in_virgl_guest(tmp_path, *selection: str):
    """`gpu-harness run --machine virgl-guest --paths sandbox-dri SELECTION` as a user runs it:
    the finished process and its one scenario's entry as the guest wrote it."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--machine", "virgl-guest",
                           "--paths", "sandbox-dri", *selection, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=900)
    [entry] = json.loads((tmp_path / "out" / "results.json").read_text())["scenarios"]
    return done, entry


@pytest.mark.full("machine-grid")
def test_in_a_virgl_guest_gl_frames_reach_weston_as_dma_bufs(tmp_path):
    """The default matrix's sandbox-dri/trixie/gl+wayland@virgl-guest, run as a user runs it
    (its entry as the guest wrote it): inside the guest, weston draws with its GL renderer on the
    virtio-gpu render node and offers zwp_linux_dmabuf_v1; the client renders through virgl and
    hands its frames over as dma-bufs (measured from its protocol trace), and the capture shows
    the probe's own frame."""
    done, entry = run_in_virgl_guest(tmp_path, "--filter", "*/trixie/gl+wayland@*")
    if entry["outcome"] == "Skip":
        return outcome_or_skip_entry(entry)
    assert done.returncode == 0 and entry["outcome"] == "Pass", (entry["reason"], done.stderr)
    assert entry["id"] == "sandbox-dri/trixie/gl+wayland@virgl-guest"
    assert entry["renderer"].startswith("virgl ("), entry["renderer"]
    assert entry["launcher"]["display_server"]["renderer"] == "gl", entry["launcher"]
    shown = entry["presentation"]
    assert shown["offered_dmabuf"] and shown["buffer_path"] == "dmabuf", shown
    (screen_check,) = [c for c in entry["checks"] if c["name"] == "screen"]
    assert screen_check["ok"] and "found by its readback" in screen_check["detail"], screen_check
    # weston drove the guest's card (its DRM backend): the machine's host captured the scanout
    # over QMP and found the same frame there
    assert entry["launcher"]["display_server"]["backend"] == "drm", entry["launcher"]
    (scanout_check,) = [c for c in entry["checks"] if c["name"] == "scanout"]
    assert scanout_check["ok"] and "found by its readback" in scanout_check["detail"], (
        scanout_check)


@pytest.mark.full("machine-grid")
def test_gtk_apps_in_a_virgl_guest_hand_their_windows_over_as_dma_bufs(tmp_path):
    """desktop-guest.toml as a user runs it: GNOME Clocks and the gears through sandbox-dri and
    flatpak-dri in virgl-guest, each window shown (the capture, and the scanout from outside),
    drawn with the guest's GL driver, its buffers handed to the guest's weston as dma-bufs."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--matrix",
                           str(matrix.DEFAULT_MATRIX.parent / "desktop-guest.toml"), "-j", "2",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=1200)
    entries = json.loads((tmp_path / "out" / "results.json").read_text())["scenarios"]
    assert len(entries) == 4 and done.returncode == 0, (done.stderr[-2000:], [
        (e["id"], e["outcome"], e["reason"]) for e in entries])
    for entry in entries:
        shown = entry["presentation"]
        assert entry["outcome"] == "Pass" and shown["buffer_path"] == "dmabuf", (entry["id"],
                                                                                  shown)
        assert shown["toolkit_renderer"].startswith("gl"), (entry["id"], shown)
        # one weston at a time drove the guest's card; the host saw each window on the scanout
        assert entry["launcher"]["display_server"]["backend"] == "drm", entry["launcher"]
        (scanout,) = [c for c in entry["checks"] if c["name"] == "scanout"]
        assert scanout["ok"] and "a window is shown" in scanout["detail"], (entry["id"], scanout)


# Kills the compositor it is a client of: the peer of its Wayland socket (SO_PEERCRED), the
# scenario's own weston, found by its socket, never by a name.
KILL_MY_COMPOSITOR = (
    "import os, signal, socket, struct, time\n"
    "path = os.path.join(os.environ['XDG_RUNTIME_DIR'], os.environ['WAYLAND_DISPLAY'])\n"
    "client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "client.connect(path)\n"
    "pid, _, _ = struct.unpack('3i', client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,"
    " 12))\n"
    "os.kill(pid, signal.SIGKILL)\n"
    "time.sleep(20)\n")


@pytest.mark.launches("host")
def test_a_display_server_killed_mid_scenario_is_a_dead_service_and_nothing_is_left(
        run_scenarios):
    """A real weston that dies while its app runs: the scenario is a service-died Fail naming
    weston, whose log is attached, and no weston of the run is left."""
    loaded = matrix.expand({
        "matrix": {"paths": ["native"], "probes": ["killer"]},
        "probes": {"killer": {"kind": "command", "argv": ["python3", "-c", KILL_MY_COMPOSITOR],
                              "display": "wayland", "duration_s": 5, "timeout_s": 40}}},
        "<test>")
    (result,) = run_scenarios(loaded.scenarios)
    assert outcome_or_skip(result) == verdict.FAIL, describe(result)
    assert result.verdict.failure_kind.value == "service-died", describe(result)
    assert "weston" in result.verdict.reason, describe(result)
    assert Path(result.launch.logs["weston"]).is_file()


@pytest.mark.full("machine-grid")
def test_in_a_virgl_guest_an_x11_client_presents_through_xwaylands_dri3(tmp_path):
    """sandbox-dri/trixie/gl+xwayland@virgl-guest as a user runs it: the guest's weston (its card,
    GL on its render node) runs Xwayland, whose glamor offers DRI3; the client renders through
    virgl and hands its frames to the X server by DRI3 (its fences, no buffer mapped); the window
    is in the capture and on the scanout the host captured."""
    done, entry = run_in_virgl_guest(tmp_path, "--runtimes", "trixie", "--probes", "gl",
                                     "--displays", "xwayland", "--filter", "*@virgl-guest")
    if entry["outcome"] == "Skip":
        return outcome_or_skip_entry(entry)
    assert done.returncode == 0 and entry["outcome"] == "Pass", (entry["reason"], done.stderr)
    assert entry["launcher"]["x_extensions"]["DRI3"], entry["launcher"]
    assert entry["presentation"]["buffer_path"] == "dri3", entry["presentation"]
    checks = {c["name"]: c for c in entry["checks"]}
    assert checks["screen"]["ok"] and checks["scanout"]["ok"], checks
