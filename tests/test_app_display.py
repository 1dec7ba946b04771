"""An app on a display (a command workload with display and duration_s): its declaration and
ids, the workload probe's hold-capture-end of a real process, the judging of its step and of its
capture (real weston captures in tests/files/screens)."""
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import matrix
from harness.core.errors import InputError
from harness.judging import presentation, screen
from harness.workloads import command
from harness.workloads.base import StepRun
from harness.scenario.outcomes import SubtestOutcome
from harness.scenario.probes import PROBE_DIR
from harness.system.retry import poll

sys.path.insert(0, str(PROBE_DIR))
import workload  # noqa: E402  (the probe's own module, as it runs inside a path)

SCREENS = Path(__file__).parent / "files" / "screens"


def declaration(**app) -> dict:
    return {"matrix": {"paths": ["native", "vtest-virgl", "vm-virgl"], "probes": ["app"]},
            "probes": {"app": {"kind": "command", "argv": ["gnome-clocks"], **app}}}


def test_an_app_with_a_display_is_a_presenting_scenario_where_its_family_presents():
    loaded = matrix.expand(declaration(display="wayland", duration_s=2), "m.toml")
    assert [s.id for s in loaded.scenarios] == ["native/host/app+wayland",
                                                "vtest-virgl/host/app+wayland"]
    assert all(s.presents and s.declared for s in loaded.scenarios)
    (step,) = command.KIND.steps(loaded.scenarios[0].declared.settings, "app")
    assert step.show_s == 2.0 and step.to_dict()["show_s"] == 2.0


def test_an_app_without_a_display_stays_offscreen_and_its_step_is_not_held():
    loaded = matrix.expand(declaration(), "m.toml")
    assert [s.id for s in loaded.scenarios] == ["native/host/app", "vtest-virgl/host/app",
                                                "vm-virgl/host/app"]
    (step,) = command.KIND.steps(loaded.scenarios[0].declared.settings, "app")
    assert step.show_s is None and "show_s" not in step.to_dict()


@pytest.mark.parametrize("app, message", [
    ({"display": "vga"}, "m.toml: probes.app.display: must be one of wayland, x11, xwayland"),
    ({"duration_s": 3}, "m.toml: probes.app.duration_s: goes with display (how long its window "
                        "is shown)"),
    ({"display": "x11", "duration_s": 0}, "m.toml: probes.app.duration_s: must be a positive "
                                          "number (seconds)"),
])
def test_bad_app_declarations_are_one_line_each(app, message):
    with pytest.raises(InputError) as raised:
        matrix.expand(declaration(**app), "m.toml")
    assert str(raised.value).splitlines() == [message]


def run_held(tmp_path: Path, argv: list, show_s: float, capture: bool = True) -> dict:
    """The workload probe's run_step of a real process, with a stand-in for the harness's capture
    (it writes present-captured once present-ready.json appears)."""
    out = tmp_path / "out"
    out.mkdir()
    seen = {}

    finished = threading.Event()

    def harness():
        deadline = time.monotonic() + 10
        while (time.monotonic() < deadline and not finished.is_set()
               and not (out / workload.READY).exists()):
            time.sleep(0.02)
        if (out / workload.READY).exists():
            seen["ready"] = json.loads((out / workload.READY).read_text())
            if capture:
                (out / workload.CAPTURED).write_text("captured\n")

    watcher = threading.Thread(target=harness)
    watcher.start()
    found = workload.run_step({"name": "app", "argv": argv, "timeout_s": 20, "show_s": show_s},
                              str(out))
    finished.set()
    watcher.join()
    return {**found, "seen": seen}


def test_an_app_still_up_after_show_s_is_captured_then_ended_and_its_group_with_it(tmp_path):
    child = tmp_path / "child.pid"
    script = (f"import os, subprocess, time; p = subprocess.Popen(['sleep', '60']); "
              f"open({str(child)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    started = time.monotonic()
    found = run_held(tmp_path, [sys.executable, "-c", script], 0.5)
    assert time.monotonic() - started < 10
    assert found["shown"] is True and found["captured"] is True, found
    assert found["exit_code"] == 0 and found["signal"] is None and not found["timed_out"]
    assert found["seen"]["ready"]["app"] == "app" and found["seen"]["ready"]["drivers"] == []
    pid = int(child.read_text())
    assert poll(lambda: not running(pid), 5), f"its child {pid} outlived it"


def running(pid: int) -> bool:
    """Alive and not a zombie (one ended with its group waits for its new parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_an_app_that_ends_before_show_s_is_judged_by_its_exit_and_never_captured(tmp_path):
    found = run_held(tmp_path, [sys.executable, "-c", "raise SystemExit(3)"], 5)
    assert "shown" not in found and found["exit_code"] == 3 and found["seen"] == {}
    run = StepRun.from_dict(found)
    settings = {"argv": ["x"], "expect_exit": 0, "display": "wayland", "timeout_s": 20.0}
    judged = command.KIND.judge(settings, run)
    assert judged.outcome is SubtestOutcome.FAIL
    assert judged.detail == "it ended (exit 3) before its window was captured"


def test_a_shown_app_passes_saying_what_it_drew_with():
    settings = {"argv": ["x"], "expect_exit": 0, "display": "wayland", "duration_s": 6.0,
                "timeout_s": 20.0}
    run = StepRun.from_dict({"name": "app", "exit_code": 0, "shown": True,
                             "drivers": ["swrast_dri.so", "vtest buffers (virpipe)"]})
    judged = command.KIND.judge(settings, run)
    assert judged.outcome is SubtestOutcome.PASS
    assert judged.detail == ("shown for 6 s, captured, then ended; drew with swrast_dri.so, "
                             "vtest buffers (virpipe)")
    software = command.KIND.judge(settings, StepRun.from_dict({"name": "app", "exit_code": 0,
                                                                "shown": True}))
    assert software.detail.endswith("no GL or Vulkan driver mapped (software drawing)")


@pytest.mark.parametrize("name, kind", [
    ("app-gnome-clocks.png", "match"),  # GNOME Clocks through flatpak-vtest on weston
    ("x11-gl.png", "match"),
    ("wayland-desktop.png", "blank"),  # weston's desktop with nothing on it
    ("wayland-black.png", "blank"),
    ("x11-black.png", "blank"),
])
def test_an_apps_capture_shows_a_window_or_is_blank(name, kind):
    judged = screen.judge_shown(SCREENS / name)
    assert judged.kind == kind, judged.reason


APPS = Path(__file__).parent / "files" / "apps"  # GNOME Clocks (GTK 4.18) via flatpak-vtest


def test_an_apps_facts_are_its_drivers_its_buffer_path_and_its_own_messages(tmp_path):
    """From a real run's step report and log: GTK's GL renderer on trixie's Mesa through virpipe,
    its frames through wl_shm, and what GLib and fontconfig said."""
    step = json.loads((APPS / "gnome-clocks-trixie-step.json").read_text())
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "gnome-clocks.log").write_bytes(
        (APPS / "gnome-clocks-trixie-flatpak-vtest.log").read_bytes())
    found = presentation.facts("wayland", {"steps": [step]}, None, tmp_path)
    assert found is not None
    assert (found["toolkit_renderer"], found["buffer_path"], found["captured"]) == (
        "gl", "shm", True)
    assert "vtest buffers (virpipe)" in found["toolkit_drivers"]
    assert ("Gtk-WARNING: Unable to acquire session bus: Cannot autolaunch D-Bus without X11 "
            "$DISPLAY") in found["app_messages"]
    assert all("**" not in message for message in found["app_messages"])
    assert presentation.toolkit_renderer([]) == "cpu"
    assert presentation.toolkit_renderer(["libvulkan_lvp.so"]) == "vulkan"
    # gtk4-demo's gears in a virgl guest (GTK 4.18): GL's driver and the Vulkan ICDs it looked at
    assert presentation.toolkit_renderer(["libgallium-25.0.7-2+deb13u1.so",
                                          "libvulkan_gfxstream.so", "libvulkan_lvp.so",
                                          "libvulkan_nouveau.so"]) == "gl+vulkan"


def test_an_apps_first_frame_is_its_first_buffer_attached_in_either_trace_format(tmp_path):
    traces = Path(__file__).parent / "files" / "traces"
    assert workload.first_frame_in(APPS / "gnome-clocks-trixie-flatpak-vtest.log")  # 1.23
    assert workload.first_frame_in(traces / "probe-gl.txt")  # libwayland 1.21
    registry_only = tmp_path / "app.log"
    registry_only.write_text("".join(line for line in (traces / "probe-gl.txt").read_text()
                                     .splitlines(keepends=True) if ".attach(" not in line))
    assert not workload.first_frame_in(registry_only)
    assert not workload.first_frame_in(tmp_path / "absent.log")


def test_a_trace_is_read_as_it_grows_and_a_line_half_written_waits_for_its_end(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("[1.000]  -> wl_compositor@4.create_surface(new id wl_surface@7)\n"
                   "[1.100]  -> wl_surface@7.atta")
    watch = workload.TraceWatch(log)
    assert not watch.frame_attached()
    with open(log, "a") as handle:
        handle.write("ch(wl_buffer@21, 0, 0)\n")
    assert watch.frame_attached() and watch.offset == log.stat().st_size
