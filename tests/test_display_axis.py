"""The display axis of a matrix: ids, what presents where, excludes and overrides on it,
`--displays` and its errors, and results read back with their display."""
import pytest

from harness import matrix
from harness.core.errors import InputError
from harness.report import grid, records

from .test_cli import run_cli


def ids(declaration: dict) -> list:
    return [s.id for s in matrix.expand(declaration, "<test>").scenarios]


def test_the_default_display_is_offscreen_and_keeps_every_id():
    assert ids({"matrix": {"paths": ["software"], "probes": ["gl"]}}) == ["software/host/gl"]
    assert ids({"matrix": {"paths": ["software"], "probes": ["gl"],
                           "displays": ["offscreen"]}}) == ["software/host/gl"]


def test_a_presenting_scenario_has_its_display_in_its_id_where_its_family_presents():
    found = ids({"matrix": {"paths": ["vtest-virgl", "vm-virgl"], "probes": ["gl"],
                            "displays": ["offscreen", "wayland", "x11"]}})
    # a guest's workload gets no display socket: only its offscreen scenario
    assert found == ["vtest-virgl/host/gl", "vtest-virgl/host/gl+wayland",
                     "vtest-virgl/host/gl+x11", "vm-virgl/host/gl"]


def test_excludes_and_overrides_match_the_display():
    loaded = matrix.expand({
        "matrix": {"paths": ["software"], "probes": ["gl", "vulkan"],
                   "displays": ["wayland", "x11"],
                   "exclude": [{"display": "x11", "probe": "vulkan"}]},
        "override": [{"match": "*/gl+x11", "expect": "fail", "reason": "measured",
                      "failure": "blank-capture"}]}, "<test>")
    by_id = {s.id: s for s in loaded.scenarios}
    assert list(by_id) == ["software/host/gl+wayland", "software/host/gl+x11",
                           "software/host/vulkan+wayland"]
    assert by_id["software/host/gl+x11"].expect.failure == "blank-capture"
    assert all(s.presents for s in loaded.scenarios)


def test_an_unknown_display_in_a_matrix_is_named_with_the_known_ones():
    with pytest.raises(InputError) as raised:
        matrix.expand({"matrix": {"paths": ["software"], "displays": ["waylnd"]}}, "<test>")
    assert "matrix.displays[0]: unknown display 'waylnd'" in str(raised.value)
    assert "wayland" in str(raised.value)


@pytest.mark.parametrize("args, message", [
    (["list", "--displays", "vga"], "--displays: unknown display 'vga'"),
    (["list", "--paths", "vm-headless", "--displays", "wayland"],
     "--displays wayland: the scenarios asked for cannot present on a display"),
])
def test_bad_displays_exit_2_with_one_line(args, message):
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert message in line and "Traceback" not in done.stderr


def test_displays_on_the_command_line_give_each_scenario_its_presenting_twin():
    done = run_cli("list", "--paths", "vtest-virgl,vm-virgl", "--displays", "x11")
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == [
        "vtest-virgl/host/gl+x11", "vtest-virgl/trixie/gl+x11"]


def test_results_read_back_carry_the_display_and_a_grid_of_its_own():
    read = records.entries([
        {"id": "software/host/gl", "path": "software", "outcome": "Pass"},
        {"id": "software/host/gl+wayland", "path": "software", "outcome": "Pass"},
        # written before the field: read from the id
        {"id": "vtest-virgl/trixie/vulkan+x11@virgl-guest", "path": "vtest-virgl",
         "outcome": "Fail"},
    ])
    assert [(e.probe, e.display, e.machine) for e in read] == [
        ("gl", "offscreen", "local"), ("gl", "wayland", "local"),
        ("vulkan", "x11", "virgl-guest")]
    assert [g.probe for g in grid.build(read)] == ["gl", "gl+wayland", "vulkan+x11"]


def test_a_matrix_whose_paths_cannot_present_says_why_it_is_empty():
    with pytest.raises(InputError) as raised:
        matrix.expand({"matrix": {"paths": ["vm-virgl"], "displays": ["wayland"]}}, "m.toml")
    assert str(raised.value) == ("m.toml: matrix: expands to no scenarios: vm-virgl (vm family) "
                                 "hands its workload no display server, not wayland")
