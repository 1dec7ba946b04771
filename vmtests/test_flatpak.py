"""Flatpak for real: `flatpak run` with a private installation, over the built runtimes' /usr,
seed 000's vtest command automated. Mesa 22.3 (bookworm) ignores VTEST_SOCKET_NAME: it renders
only because the app links /tmp/.virgl_test to the socket it was given."""
import os
import signal
import subprocess
import sys

from harness import reaper, verdict
from harness.retry import poll

from .conftest import (describe, harness_in_subprocess, on_runtimes, outcome_or_skip,
                       skip_unless_required)


def flatpak_matrix(paths, runtimes=("bookworm", "trixie"), **settings):
    return on_runtimes(paths, runtimes, **settings)


def need_flatpak(toolset):
    if toolset.missing(["flatpak"]):
        skip_unless_required("flatpak-vtest", "flatpak", "needs flatpak (apt-get install flatpak)")


def test_flatpak_vtest_is_seed_000s_command_and_renders_through_virgl(run_scenarios, toolset):
    need_flatpak(toolset)
    for result in run_scenarios(flatpak_matrix(["flatpak-vtest"])):
        assert outcome_or_skip(result) == verdict.PASS, describe(result)
        argv = result.launch.argv
        assert "--nodevice=dri" in argv and "--die-with-parent" in argv and "--no-session-bus" in argv
        assert any(arg.startswith("--env=VTEST_SOCKET_NAME=") for arg in argv)
        assert result.launch.facts["flatpak_mode"] == "usr-path"
        facts = result.report.raw["isolation"]
        # Flatpak's own sandbox as the app sees it: seccomp filter, no new privileges; as root it
        # keeps the host's user namespace and every capability.
        assert facts["seccomp_mode"] == 2 and facts["no_new_privs"] is True and facts["dri_nodes"] == []
        assert "user" in result.exposure.shared_namespaces and facts["capabilities"] > 30
        assert result.exposure.host_files, "Flatpak exposes host fonts, zoneinfo and /etc files: counted"


def test_the_runtime_exported_as_a_flatpak_runtime_renders_too(run_scenarios, toolset):
    need_flatpak(toolset)
    (result,) = run_scenarios(flatpak_matrix(["flatpak-vtest-exported"], ("trixie",)))
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    assert result.launch.facts["flatpak_mode"] == "export"
    assert not any(arg.startswith("--usr-path") for arg in result.launch.argv)
    assert result.report.raw["libc"] == "2.41", "the exported trixie runtime's own libc"


def test_exec_runs_a_command_inside_flatpak():
    done = subprocess.run([sys.executable, "-m", "harness.cli", "exec", "--path", "flatpak-vtest", "--",
                           "sh", "-c", "echo dri=$(ls /dev/dri 2>/dev/null | wc -l) app=$FLATPAK_ID"],
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
        return any("python3" in open(f"/proc/{pid}/comm").read() for pid in reaper.processes_in(str(scratch))
                   if os.path.exists(f"/proc/{pid}/comm"))

    assert poll(app_running, 60, 0.1), "the app never started"
    harness.send_signal(signal.SIGKILL)
    harness.wait()
    poll(lambda: not reaper.processes_in(str(scratch)) and not any(scratch.iterdir()), 20, 0.1)
    assert reaper.processes_in(str(scratch)) == []
    assert list(scratch.iterdir()) == []
