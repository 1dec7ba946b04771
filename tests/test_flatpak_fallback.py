"""The vtest fallback's own command (flatpak-vtest-fallback): what the harness adds to the two
written commands is said with its reason, an app is named by a valid Flatpak id, and a device
that cannot present is its own class."""
import json
from pathlib import Path

import pytest

from harness.host import diagnosis
from harness.launch import vtest
from harness.launch.families import flatpak_fallback
from harness.scenario.outcomes import FailureKind
from harness.scenario.paths import PATHS
from harness.workloads.base import Problems
from harness.workloads.command import app_id

TRACES = Path(__file__).parent / "files" / "traces"
SOCKET = "/tmp/gh-1/2/virgl.sock"
OUT = "/tmp/out/scenarios/x/probe"
# the argv flatpak-vtest-fallback ran for GNOME Clocks (results.json's fallback_command.flatpak)
AS_RUN = ["/usr/bin/flatpak", "run", "--user", "--die-with-parent", "--no-session-bus",
          "--no-a11y-bus", "--no-documents-portal", "--nodevice=dri", f"--filesystem={SOCKET}",
          f"--filesystem={OUT}", "--socket=wayland", "--env=VN_DEBUG=vtest",
          f"--env=VTEST_SOCKET_NAME={SOCKET}", "--env=WAYLAND_DEBUG=1", "org.gnome.clocks"]


def test_the_options_added_to_flatpak_run_are_said_and_the_written_ones_are_not():
    added = flatpak_fallback.flatpak_differences(AS_RUN, SOCKET, "org.gnome.clocks")
    assert [item.split(" (")[0] for item in added] == [
        "--user", "--die-with-parent", "--no-session-bus", "--no-a11y-bus",
        "--no-documents-portal", f"--filesystem={OUT}", "--socket=wayland",
        "--env=WAYLAND_DEBUG=1"]
    assert all(item.endswith(")") for item in added), added


def test_the_server_as_run_against_the_written_one_without_a_render_node():
    argv = vtest.server_argv("/usr/bin/virgl_test_server", SOCKET, None, use_gles=True,
                             venus=True)
    found = flatpak_fallback.server_differences(argv, None)
    assert found["server_added"] == ["--use-egl-surfaceless (the server renders with no display "
                                     "(EGL surfaceless))"]
    assert found["server_left_out"] == ["--rendernode (this machine has no render node)"]
    with_node = vtest.server_argv("s", SOCKET, "/dev/dri/renderD128", use_gles=True, venus=True)
    assert flatpak_fallback.server_differences(with_node, "/dev/dri/renderD128")[
        "server_left_out"] == []


def test_the_path_asks_for_the_written_server_and_environment():
    spec = PATHS["flatpak-vtest-fallback"]
    assert spec.venus and spec.server_gles and dict(spec.env) == {"VN_DEBUG": "vtest"}
    assert "GALLIUM_DRIVER" not in dict(spec.env)  # the written command gives GL nothing


@pytest.mark.parametrize("value", ["org.gnome.clocks", "org.gtk.Demo4", "io.x_y.App-Name",
                                   "_a.b.c"])
def test_a_flatpak_app_id_is_taken(value):
    problems = Problems("probes.app")
    assert app_id(problems, "app_id", value) == value and not problems.found


@pytest.mark.parametrize("value", ["clocks", "org.gnome", "org.1gnome.clocks", "org.gn-ome.clocks",
                                   "org..clocks", "org.gnome.clocks.", 7, "a.b." + "c" * 260])
def test_a_bad_app_id_is_one_problem_named_by_its_key(value):
    problems = Problems("probes.app")
    assert app_id(problems, "app_id", value) is None
    (where, _), = problems.found
    assert where == "probes.app.app_id"


def test_a_device_with_no_swapchain_over_vtest_cannot_present():
    """The present probe's real report: Mesa 25's Venus over virglrenderer 1.1's vtest enumerates
    and offers no VK_KHR_swapchain."""
    report = json.loads((TRACES / "present-fallback-venus-vtest-1.1.json").read_text())
    found = diagnosis.classify(report, [], None, {})
    assert found is not None and found.kind is FailureKind.CANNOT_PRESENT
    assert found.subject == "no VK_KHR_swapchain"
    assert diagnosis.cannot_present({**report, "failed_step": "vkCreateDevice"}) is None
