"""Fixtures for tests that launch real scenarios.

A test gets real launches: real bwrap, real virgl_test_server, real QEMU. When a path cannot
run on this machine the harness says Skip with the reason, and so does the test -- unless the
path is listed in GPU_HARNESS_REQUIRE (CI sets it for the paths it installs), where a Skip is
a failure: a CI that silently skipped its real paths would prove nothing.
"""
import os
from pathlib import Path

import pytest

from harness.launch.families import registry
from harness import matrix as matrix_mod
from harness.system import reaper
from harness.run import runner
from harness.runtimes import chosen_toolset
from harness.judging import verdict
from harness.launch.lifecycle import LaunchContext, Workload, Workspace

REQUIRED = {p.strip() for p in os.environ.get("GPU_HARNESS_REQUIRE", "").split(",") if p.strip()}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def launched_families(request, monkeypatch):
    """A test marked launches(FAMILY) must really launch that family in its process (not a Skip
    before the launch): the quick tier's coverage of the family table rests on these marks."""
    marker = request.node.get_closest_marker("launches")
    if marker is None:
        yield
        return
    seen = set()
    launch = runner.launch

    def recorded(ctx):
        result = launch(ctx)
        if not result.skipped:
            seen.add(ctx.scenario.spec.family)
        return result

    monkeypatch.setattr(runner, "launch", recorded)
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.passed:
        assert marker.args[0] in seen, (f"marked launches({marker.args[0]!r}) but launched "
                                        f"{sorted(seen) or 'nothing'}")


@pytest.fixture(scope="session")
def toolset():
    return chosen_toolset.load()


def scenarios_from(declaration: dict):
    return matrix_mod.expand(declaration, "<test>").scenarios


def on_runtimes(paths, runtimes, **settings):
    """The GL scenarios of `paths` on built runtimes, with `settings` as the matrix defaults."""
    declaration = {"matrix": {"paths": list(paths), "runtimes": list(runtimes), "probes": ["gl"]},
                   "runtimes": {name: {"kind": "debootstrap"} for name in runtimes}}
    if settings:
        declaration["defaults"] = settings
    return scenarios_from(declaration)


def descendants() -> dict:
    """pid -> command line of every living process below this one (zombies not counted: the
    kernel holds only their exit status)."""
    parents, commands = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                head, tail = handle.read().rsplit(")", 1)
                name, fields = head.partition("(")[2], tail.split()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            # A process in its exit has no command line left: its name, state and parent say who it
            # was.
            commands[int(pid)] = command or (f"[{name} state {fields[0]} parent {fields[1]} group "
                                             f"{fields[2]}]")
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parents[int(pid)] = int(fields[1])
    found, frontier = {}, {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier
                    and pid not in found}
        found.update({pid: commands.get(pid, "?") for pid in frontier})
    return found


def run_leaving_nothing(scenarios, toolset, options, hooks=None):
    """runner.run, then no process it started may still live (QEMU, Xvfb, servers, bwrap, podman).
    The reaper is the harness process's own companion, started once and kept: not a leftover.
    And every second of each scenario's wall is in one of its named phases."""
    reaper.get()
    before = descendants()
    results = runner.run(scenarios, toolset, options, hooks=hooks)
    left = {pid: command for pid, command in descendants().items() if pid not in before}
    assert not left, f"processes left behind by {[s.id for s in scenarios]}: {left}"
    for result in results:
        assert_accounted(result)
    return results


def assert_accounted(result) -> None:
    """The phases of a scenario add up to its wall within 5% (20 ms for one that barely ran)."""
    phases = sum(result.phases.values())
    assert abs(result.wall_s - phases) <= max(0.05 * result.wall_s, 0.02), \
        f"{result.scenario.id}: wall {result.wall_s:.3f} s, phases {phases:.3f} s: {result.phases}"


@pytest.fixture
def run_scenarios(toolset, tmp_path):
    """Run scenarios for real; returns their ScenarioResults. Every run is checked to leave no
    process behind."""

    def run(scenarios, hooks=None, retries=0, **options):
        opts = runner.RunOptions(out_dir=tmp_path / "out", retries=retries, **options)
        return run_leaving_nothing(scenarios, toolset, opts, hooks=hooks)

    return run


def skip_unless_required(path: str, what: str, reason: str):
    if path in REQUIRED:
        pytest.fail(f"{what} is required here but skipped: {reason}")
    pytest.skip(f"{what}: {reason}")


def outcome_or_skip(result):
    """Turn a harness Skip into a pytest skip (or a failure where the path is required: by its id,
    or as path@machine for a machine's scenario)."""
    if result.verdict.outcome == verdict.SKIP:
        scenario = result.scenario
        key = (scenario.path_id if scenario.machine == "local"
               else f"{scenario.path_id}@{scenario.machine}")
        if scenario.presents and "display" in REQUIRED:
            key = "display"  # its display server is required: a Skip of any presenting one fails
        skip_unless_required(key, scenario.id, result.verdict.reason)
    return result.verdict.outcome


@pytest.fixture
def machine(request, toolset, tmp_path):
    """A running instance of any path, for tests that drive it themselves.

    For a VM path it is the guest the matrix boots (same kernel, initramfs recipe, QEMU argv,
    display service, runtime root) with a command agent in place of the probe: a
    harness.guest.Guest, which also has ``screenshot()``, ``wait_for_event("SHUTDOWN")``,
    ``wait_for_console(text)`` and ``qmp(...)``. For a host or sandbox path it is a
    harness.launch.target.ProcessTarget: the path's services stay up, and each command runs as that
    path runs a probe (in a fresh sandbox for sandbox paths). Pick the path with
    ``@pytest.mark.guest("vm-virgl")`` (default vm-headless) or by indirect parametrization;
    matrix settings go in the marker's keywords, e.g.
    ``@pytest.mark.guest("vm-headless", kernel_args=["quiet"])``. ``run``/``succeed``/``fail``
    a shell command. Everything is stopped when the test ends, however it ends.
    """
    marker = request.node.get_closest_marker("guest")
    path = getattr(request, "param", None) or (marker.args[0] if marker and marker.args
                                               else "vm-headless")
    settings = dict(marker.kwargs) if marker else {}
    (scenario,) = matrix_mod.expand({"matrix": {"paths": [path]}, "defaults": settings},
                                    "<machine fixture>").scenarios
    reason = registry.of(scenario.spec).available(scenario.spec, toolset)
    if reason:
        skip_unless_required(path, f"{path} machine", reason)
    temp = runner.TempRoot()
    ctx = LaunchContext(scenario, toolset, Workspace(tmp_path / "machine", temp.scenario_dir()),
                        Workload(probe=scenario.probe))
    target = registry.of(scenario.spec).target(ctx)
    try:
        yield target.start()
    finally:
        target.close()
        temp.remove()


def describe(result) -> str:
    lines = [f"{result.scenario.id}: {result.verdict.outcome}: {result.verdict.reason}"]
    for path in result.launch.logs.values():
        if path and Path(path).exists():
            lines.append(f"--- {path}\n{Path(path).read_text(errors='replace')[-2000:]}")
    return "\n".join(lines)


def harness_in_subprocess(tmp_path: Path, matrix_toml: str):
    """`gpu-harness run` of a matrix in its own process (a test may SIGKILL it), its temp files
    under tmp_path/scratch: returns (process, scratch)."""
    import subprocess
    import sys
    import textwrap

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    matrix_file = tmp_path / "m.toml"
    matrix_file.write_text(textwrap.dedent(matrix_toml))
    harness = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--matrix",
                                str(matrix_file),
                                "--out", str(tmp_path / "out")], env=dict(os.environ,
                                                                          TMPDIR=str(scratch)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return harness, scratch
