"""Flatpak for real: `flatpak run` with a private installation, over the built runtimes' /usr,
seed 000's vtest command automated. Mesa 22.3 (bookworm) ignores VTEST_SOCKET_NAME: it renders
only because the app links /tmp/.virgl_test to the socket it was given."""
import json
import os
import signal
import subprocess
import sys

import pytest

from harness.launch.families import registry
from harness.host import drivermatch
from harness import matrix as matrix_mod
from harness.run import preparation, runner
from harness.judging import verdict
from harness.launch.families import flatpak
from harness.launch.lifecycle import LaunchContext, Workload, Workspace
from harness.scenario.outcomes import FailureKind
from harness.system.retry import poll
from tests.leftovers import processes_in

from .conftest import (describe, harness_in_subprocess, on_runtimes, outcome_or_skip,
                       skip_unless_required)


def flatpak_matrix(paths, runtimes=("trixie",), **settings):
    return on_runtimes(paths, runtimes, **settings)


def need_flatpak(toolset):
    if toolset.missing(["flatpak"]):
        skip_unless_required("flatpak-vtest", "flatpak", "needs flatpak (apt-get install flatpak)")


def test_flatpak_vtest_is_seed_000s_command_and_renders_through_virgl(run_scenarios, toolset):
    need_flatpak(toolset)
    for result in run_scenarios(flatpak_matrix(["flatpak-vtest"])):
        assert outcome_or_skip(result) == verdict.PASS, describe(result)
        argv = result.launch.argv
        assert ("--nodevice=dri" in argv and "--die-with-parent" in argv
                and "--no-session-bus" in argv)
        assert "--allow=multiarch" not in argv  # a 64-bit app needs no 32-bit syscalls
        assert any(arg.startswith("--env=VTEST_SOCKET_NAME=") for arg in argv)
        assert result.launch.facts["flatpak_mode"] == "usr-path"
        facts = result.report.raw["isolation"]
        # Flatpak's own sandbox as the app sees it: seccomp filter, no new privileges; as root it
        # keeps the host's user namespace and every capability.
        assert (facts["seccomp_mode"] == 2 and facts["no_new_privs"] is True
                and facts["dri_nodes"] == [])
        assert "user" in result.exposure.shared_namespaces and facts["capabilities"] > 30
        assert result.exposure.host_files, ("Flatpak exposes host fonts, zoneinfo and /etc files: "
                                            "counted")


@pytest.mark.full("flatpak-export")
def test_the_runtime_exported_as_a_flatpak_runtime_renders_too(run_scenarios, toolset):
    need_flatpak(toolset)
    (result,) = run_scenarios(flatpak_matrix(["flatpak-vtest-exported"], ("trixie",)))
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    assert result.launch.facts["flatpak_mode"] == "export"
    assert not any(arg.startswith("--usr-path") for arg in result.launch.argv)
    assert result.report.raw["libc"] == "2.41", "the exported trixie runtime's own libc"


@pytest.mark.full("other-architectures")
def test_a_32_bit_runtime_runs_as_a_multiarch_app(run_scenarios, toolset):
    """Flatpak's seccomp filter kills a 32-bit process's syscalls (SIGSYS) unless the app may
    run multiarch binaries: the harness says so for an i386 runtime, as a 32-bit app's metadata
    does."""
    need_flatpak(toolset)
    (result,) = run_scenarios(flatpak_matrix(["flatpak-vtest"], ("bookworm-i386",)))
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    assert "--allow=multiarch" in result.launch.argv
    assert result.report.raw["isolation"]["seccomp_mode"] == 2


def test_exec_runs_a_command_inside_flatpak():
    done = subprocess.run([sys.executable, "-m", "harness.cli", "exec", "--path", "flatpak-vtest",
                           "--",
                           "sh", "-c",
                           "echo dri=$(ls /dev/dri 2>/dev/null | wc -l) app=$FLATPAK_ID"],
                          capture_output=True, text=True, timeout=120)
    if "missing flatpak" in done.stderr:
        skip_unless_required("flatpak-vtest", "flatpak", done.stderr.strip())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "dri=0 app=org.gpuharness.Probe"


def test_harness_sigkilled_during_flatpak_leaves_nothing(tmp_path, toolset):
    need_flatpak(toolset)
    harness, scratch = harness_in_subprocess(tmp_path, """
        [matrix]
        paths = ["flatpak-vtest"]
        probes = ["gl"]
        [defaults]
        timeout_s = 60
        probe_args = ["--hold", "30"]
    """)

    def app_running():
        return any("python3" in open(f"/proc/{pid}/comm").read()
                   for pid in processes_in(str(scratch))
                   if os.path.exists(f"/proc/{pid}/comm"))

    assert poll(app_running, 60, 0.1), "the app never started"
    harness.send_signal(signal.SIGKILL)
    harness.wait()
    poll(lambda: not processes_in(str(scratch)) and not any(scratch.iterdir()), 20, 0.1)
    assert processes_in(str(scratch)) == []
    assert list(scratch.iterdir()) == []


GL_GRID = matrix_mod.DEFAULT_MATRIX.parent / "flatpak-gl.toml"
GL_LIB = "/usr/lib/x86_64-linux-gnu"


def grid(*ids):
    """Scenarios of the shipped runtime x GL-extension grid, by id."""
    by_id = {s.id: s for s in matrix_mod.load(GL_GRID).scenarios}
    return [by_id[i] for i in ids]


def from_extension(result, name):
    """The driver libraries the probe mapped, and whether every one came from extension `name`."""
    mesa = [p for p in result.report.raw["libraries"] if drivermatch.MESA_FILES.search(p)]
    return mesa, bool(mesa) and all(p.startswith(f"{GL_LIB}/GL/{name}/lib/") for p in mesa)


@pytest.mark.full("every-runtime")
def test_a_runtime_without_mesa_renders_with_its_own_mesa_as_a_gl_extension(run_scenarios, toolset):
    need_flatpak(toolset)
    results = run_scenarios(grid("flatpak-ext/trixie/gl", "flatpak-ext/trixie/vulkan",
                                 "flatpak-ext-vtest/bookworm/gl"))
    for result in results:
        assert outcome_or_skip(result) == verdict.PASS, describe(result)
        name = result.scenario.runtime.name
        mesa, all_from_extension = from_extension(result, name)
        assert all_from_extension, f"the driver came from elsewhere: {mesa}"
        facts = result.launch.facts
        assert facts["flatpak_mode"] == "gl-extension" and facts["gl_extension_source"] == name
        assert facts["gl_extension"]["id"] == f"org.gpuharness.Platform.GL.{name}"
        assert "--nodevice=dri" in result.launch.argv
        assert result.report.raw["isolation"]["dri_nodes"] == []
    assert results[2].report.renderer.startswith("virgl")


@pytest.mark.full("every-runtime")
def test_an_older_runtime_with_a_newer_runtimes_extension_fails_for_its_glibc(run_scenarios,
                                                                              toolset):
    need_flatpak(toolset)
    for result in run_scenarios(grid("flatpak-ext/bookworm.gl-trixie/gl",
                                     "flatpak-ext/bookworm.gl-trixie/vulkan")):
        assert outcome_or_skip(result) == verdict.EXPECTED_FAIL, describe(result)
        assert result.verdict.failure_kind == FailureKind.GLIBC_TOO_OLD
        assert "GLIBC_2.38 needed, runtime has 2.36" in result.verdict.reason
        assert result.launch.facts["gl_extension_source"] == "trixie"
        # Driver matching names the extension's Mesa (trixie's 25.x), not the runtime's 22.3.
        assert str(result.driver_match.runtime_mesa).startswith("25."), result.driver_match


@pytest.mark.full("every-runtime")
def test_the_end_of_life_runtimes_extension_misses_its_platforms_libraries(run_scenarios, toolset):
    need_flatpak(toolset)
    (result,) = run_scenarios(grid("flatpak-ext-vtest/trixie.gl-bookworm/gl"))
    assert outcome_or_skip(result) == verdict.EXPECTED_FAIL, describe(result)
    assert result.verdict.failure_kind == FailureKind.MISSING_LIBRARY
    assert "libicuuc.so.72" in result.verdict.reason


@pytest.mark.full("every-runtime")
def test_inside_the_app_only_the_extension_has_a_driver(toolset, tmp_path):
    """What the app sees: the platform has no Mesa; the extension the host names active
    (FLATPAK_GL_DRIVERS) is mounted under GL/ with its folders merged; its lib is on the path."""
    need_flatpak(toolset)
    (scenario,) = grid("flatpak-ext/bookworm.gl-trixie/gl")
    ready = preparation.prepare_runtimes([scenario], runner.RunOptions(out_dir=tmp_path))
    scenario = preparation.with_runtime(scenario, ready)
    temp = runner.TempRoot()
    ctx = LaunchContext(scenario, toolset, Workspace(tmp_path / "target", temp.scenario_dir()),
                        Workload(probe="gl"))
    try:
        with registry.of(scenario.spec).target(ctx) as app:
            app.fail(f"ls {GL_LIB}/libEGL_mesa.so.0 {GL_LIB}/dri/*_dri.so "
                     "/usr/share/vulkan/icd.d/lvp_icd.json")
            assert app.succeed(f"ls {GL_LIB}/GL").split() == ["glvnd", "lib", "trixie", "vulkan"]
            assert app.succeed("echo $LD_LIBRARY_PATH").strip().endswith(f"{GL_LIB}/GL/trixie/lib")
            vendor = json.loads(app.succeed(f"cat {GL_LIB}/GL/glvnd/egl_vendor.d/50_mesa.json"))
            assert vendor["ICD"]["library_path"] == f"{GL_LIB}/GL/trixie/lib/libEGL_mesa.so.0"
            assert "libgallium" in app.succeed(f"ls {GL_LIB}/GL/trixie/lib")
            assert app.succeed("echo $LIBGL_DRIVERS_PATH").strip() == f"{GL_LIB}/GL/lib/dri"
    finally:
        temp.remove()
    assert not processes_in(str(temp.path)) and not temp.path.exists()
    assert not [line for line in open("/proc/self/mountinfo") if str(temp.path) in line]
    assert not list(flatpak.FLATPAK_CACHE.glob("*/build-*")), "a cache build folder was left behind"
