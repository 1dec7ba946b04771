"""results.json's presentation of a scenario and the report's presentation answer, from real
runs' probe reports and protocol traces (tests/files/traces: vtest-virgl on weston and Xvfb,
the host's Mesa 22.3 and trixie's 25.0)."""
import json
from pathlib import Path

from harness.judging import presentation
from harness.report import records
from harness.report.presenting import presentation as presentation_answer

TRACES = Path(__file__).parent / "files" / "traces"
REPORTS = json.loads((TRACES / "present-reports.json").read_text())
WAYLAND, X11 = "vtest-virgl/host/gl+wayland", "vtest-virgl/trixie/gl+x11"
TRACE = str(TRACES / "probe-gl-vtest-virgl.log")


def test_a_wayland_clients_frames_went_through_shm_as_its_trace_says():
    found = presentation.facts("wayland", REPORTS[WAYLAND], TRACE)
    assert found is not None
    assert (found["buffer_path"], found["buffer_paths"], found["buffer_source"]) == (
        "shm", ["shm"], "trace")
    assert found["buffers_created"] == 3 and found["buffer_size"] == [256, 256]
    assert found["offered_dmabuf"] is False  # weston's pixman renderer offers no dma-buf
    timings = REPORTS[WAYLAND]["timings"]
    assert found["fps"] == timings["fps"] and found["fps_spread"] == [timings["fps_min"],
                                                                      timings["fps_max"]]
    assert found["presented"] == REPORTS[WAYLAND]["presentation"]["presented"] > 0


def test_an_x11_clients_path_is_what_it_mapped_and_the_server_offered():
    """trixie's Mesa 25 attached a SysV segment (MIT-SHM); X11 counts no buffers it made."""
    found = presentation.facts("x11", REPORTS[X11], None)
    assert found is not None
    assert (found["buffer_path"], found["buffer_source"], found["buffers_created"]) == (
        "shm", "probe", None)
    assert found["mappings"]["sysv"] == 1


def test_offscreen_or_no_word_of_a_window_is_no_presentation():
    assert presentation.facts("offscreen", REPORTS[WAYLAND], TRACE) is None
    assert presentation.facts("wayland", {"renderer": "llvmpipe"}, TRACE) is None


def test_a_wayland_trace_without_buffers_names_no_path(tmp_path):
    log = tmp_path / "probe.log"
    log.write_text("libEGL warning: nothing else\n")
    found = presentation.facts("wayland", REPORTS[WAYLAND], str(log))
    assert found is not None and found["buffer_path"] is None and found["buffer_paths"] == []


def entry(scenario_id: str, outcome: str, **extra) -> dict:
    path, runtime, rest = scenario_id.split("/")
    probe, _, display = rest.partition("+")
    return {"id": scenario_id, "path": path, "runtime": runtime, "probe": probe,
            "display": display or "offscreen", "outcome": outcome, **extra}


def test_the_answer_says_presented_or_the_class_and_the_cost_against_offscreen():
    shown = presentation.facts("wayland", REPORTS[WAYLAND], TRACE)
    blank = presentation.facts("x11", REPORTS[X11], None)
    entries = records.entries([
        entry("vtest-virgl/host/gl", "Pass", fps=380.0),
        entry(WAYLAND, "Pass", presentation=shown),
        entry(X11, "ExpectedFail", failure_kind="blank-capture", presentation=blank),
    ])
    answer = presentation_answer(entries)
    first, second = answer.records
    assert (first["presented"], first["buffer_path"], first["buffers"]) == ("presented", "shm", 3)
    assert first["offscreen_fps"] == 380.0
    assert first["vs_offscreen"] == round(shown["fps"] / 380.0, 3)
    assert (second["presented"], second["buffer_path"]) == ("not presented: blank-capture", "shm")
    assert second["vs_offscreen"] is None  # no offscreen trixie scenario in the run
    assert [cell.text for cell in answer.rows[0]][:6] == [
        "vtest-virgl", "host", "gl", "wayland", "presented", "shm (3 buffers)"]


def test_a_run_with_no_display_says_how_to_add_one():
    answer = presentation_answer(records.entries([entry("vtest-virgl/host/gl", "Pass")]))
    assert answer.records == [] and "displays" in answer.note


class ShownServer:
    """A display server stand-in showing a machine guest's scanout: capture() writes a file."""

    scanout = True
    x_socket = None

    def capture(self, target):
        Path(target).write_text("png")
        return target


def test_a_guests_scanout_is_asked_of_the_machines_host_before_the_probe_is_let_go(tmp_path):
    from harness.launch import presenting
    from harness.launch.lifecycle import LaunchResult, Workspace

    workspace = Workspace(tmp_path / "result", tmp_path / "tmp")
    workspace.probe_out.mkdir(parents=True)
    result = LaunchResult()
    capture = presenting.ScreenCapture(ShownServer(), workspace, result)
    capture.tick()
    assert not (workspace.probe_out / presenting.SCANOUT_ASKED).exists()  # not ready yet
    (workspace.probe_out / presenting.READY).write_text("{}")
    capture.tick()
    assert result.artifacts["screen"] and (workspace.probe_out / presenting.SCANOUT_ASKED).exists()
    capture.tick()
    assert not (workspace.probe_out / presenting.CAPTURED).exists()  # the host has not answered
    (workspace.probe_out / presenting.SCANOUT_DONE).write_text("captured\n")
    capture.tick()
    assert capture.done and (workspace.probe_out / presenting.CAPTURED).exists()
    assert "scanout_capture_error" not in result.facts
