"""Faults of launched components end in a verdict with a reason, within the timeout, and
leave nothing behind -- also when the harness itself is killed."""
import json
import os
import signal
import subprocess
from pathlib import Path
import sys
import textwrap
import threading
import time

import pytest

from harness import matrix as matrix_mod
from harness.judging import verdict
from harness.launch.families import registry
from harness.scenario.outcomes import FailureKind
from harness.system.process import process_stats
from harness.system.retry import poll

from .conftest import describe, outcome_or_skip, skip_unless_required


def one(path, timeout_s=30, **settings):
    return matrix_mod.expand({"matrix": {"paths": [path]}, "defaults": {"timeout_s": timeout_s,
                                                                        **settings}},
                             "<test>").scenarios


def test_virgl_server_killed_mid_run_fails_fast(run_scenarios):
    killed = {}

    def kill_server_soon(services):
        server = services[0].child

        def kill():
            time.sleep(0.3)
            killed["at"] = time.monotonic()
            server.kill_group(signal.SIGKILL)

        threading.Thread(target=kill, daemon=True).start()

    scenarios = one("vtest-virgl", timeout_s=30, probe_args=["--hold", "2"])
    (result,) = run_scenarios(scenarios, hooks={"services_ready": kill_server_soon})
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL, describe(result)
    assert "virgl_test_server died during the run (killed by SIGKILL)" in result.verdict.reason
    assert result.wall_s < 10, f"took {result.wall_s:.1f} s for a 30 s timeout"


def server_children(server):
    """The processes virgl_test_server forked for its clients (their parent is a server too)."""
    members = dict(process_stats())
    servers = {pid for pid in members if comm(pid) == "virgl_test_serv"}
    return [pid for pid in servers if pid in members and members[pid].ppid in servers
            and members[pid].pgid == server.pgid]


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_the_servers_process_for_this_client_dying_is_named(run_scenarios, fault):
    """The forking server's process for this one client dies mid-frames while the server lives on.
    Mesa's vtest client need not abort: Mesa 22.3's says "Failed with Connection reset by peer" and
    draws on with no resources, exiting 0 with the pixels it read before. That is no Pass: the
    reason says the server's side went away and, where its SIGSEGV handler spoke, that it
    crashed."""
    killed = {}

    def kill_the_clients_server_soon(services):
        server = services[0].child

        def kill():
            if poll(lambda: server_children(server), 10):
                time.sleep(3)  # well into the probe's ten one-second rounds of frames
                killed["pids"] = server_children(server)
                for pid in killed["pids"]:
                    try:
                        os.kill(pid, fault)
                    except ProcessLookupError:
                        pass

        threading.Thread(target=kill, daemon=True).start()

    (result,) = run_scenarios(one("vtest-virgl", timeout_s=60, probe_args=["--rounds", "10",
                                                                           "--round-seconds", "1"]),
                              hooks={"services_ready": kill_the_clients_server_soon})
    outcome_or_skip(result)
    assert killed.get("pids"), "the server never forked a process for the client"
    assert result.verdict.outcome == verdict.FAIL, describe(result)
    assert result.verdict.failure_kind is FailureKind.SERVICE_DIED, describe(result)
    assert ("the vtest server's side of the socket went away"
            in result.verdict.reason), result.verdict.reason
    if fault == signal.SIGSEGV:
        assert ("its process for a client crashed (SIGSEGV!)"
                in result.verdict.reason), result.verdict.reason


def test_probe_crash_fails_with_its_log(run_scenarios):
    (result,) = run_scenarios(one("software", probe_args=["--fault", "segv"]))
    assert result.verdict.outcome == verdict.FAIL
    assert "killed by SIGSEGV" in result.verdict.reason
    assert "Fatal Python error: Segmentation fault" in result.launch.log_tail(40)


def test_probe_crash_inside_sandbox_fails(run_scenarios):
    (result,) = run_scenarios(one("vtest-virgl", probe_args=["--fault", "abort"]))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL
    # bwrap's pid 1 reports the child's death by signal as exit status 128+n.
    assert "without a result" in result.verdict.reason
    assert "Fatal Python error: Aborted" in result.launch.log_tail(40)


def test_hung_probe_times_out(run_scenarios):
    (result,) = run_scenarios(one("vtest-virgl", timeout_s=2, probe_args=["--fault", "hang"]))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL
    assert "timed out after 2 s" in result.verdict.reason
    assert result.wall_s < 6


def test_expected_failure_and_flake(run_scenarios):
    scenarios = matrix_mod.expand({
        "matrix": {"paths": ["software"]},
        "override": [{"match": "*", "expect": "fail", "reason": "probe told to exit 3",
                      "probe_args": ["--fault", "exit"]}],
    }, "<test>").scenarios
    (result,) = run_scenarios(scenarios)
    assert result.verdict.outcome == verdict.EXPECTED_FAIL
    assert "probe told to exit 3" in result.verdict.reason


def processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if text.encode() in handle.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_harness_sigkilled_during_vtest_leaves_nothing(tmp_path, toolset):
    if not toolset.found("virgl_test_server") or not toolset.found("bwrap"):
        pytest.skip("needs bwrap and virgl_test_server")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    matrix_file = tmp_path / "m.toml"
    matrix_file.write_text(textwrap.dedent("""
        [matrix]
        paths = ["vtest-virgl"]
        [defaults]
        timeout_s = 60
        probe_args = ["--hold", "30"]
    """))
    env = dict(os.environ, TMPDIR=str(scratch))
    harness = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--matrix",
                                str(matrix_file),
                                "--out", str(tmp_path / "out")], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(processes_mentioning(str(scratch))) < 2:
        time.sleep(0.05)
    launched = processes_mentioning(str(scratch))
    assert len(launched) >= 2, "virgl_test_server and bwrap never started"
    harness.kill()
    harness.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (processes_mentioning(str(scratch))
                                           or any(scratch.iterdir())):
        time.sleep(0.05)
    assert processes_mentioning(str(scratch)) == []
    assert list(scratch.iterdir()) == []


def test_exec_passes_exit_code_and_output_through(toolset):
    if not toolset.found("bwrap"):
        pytest.skip("needs bwrap")
    done = subprocess.run([sys.executable, "-m", "harness.cli", "exec", "--path", "vtest-virgl",
                           "--",
                           "sh", "-c",
                           "echo dri=$(ls /dev/dri 2>/dev/null | wc -l); echo oops >&2; exit 7"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 7, done.stderr
    assert done.stdout.strip() == "dri=0"
    assert "oops" in done.stderr


def test_exec_takes_the_matrix_settings_of_its_path_and_runtime(toolset, tmp_path):
    if not toolset.found("bwrap"):
        pytest.skip("needs bwrap")
    matrix_file = tmp_path / "m.toml"
    matrix_file.write_text('[matrix]\npaths = ["vtest-virgl"]\n[[override]]\nmatch = '
                           '"vtest-virgl/*"\n'
                           'env = { GPU_HARNESS_SAID = "from the matrix" }\n')
    done = subprocess.run([sys.executable, "-m", "harness.cli", "exec", "--path", "vtest-virgl",
                           "--matrix",
                           str(matrix_file), "--", "sh", "-c", "echo $GPU_HARNESS_SAID"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from the matrix"


def test_exec_runs_a_users_gl_program_through_virgl(toolset):
    if toolset.missing(["bwrap", "virgl_test_server"]):
        pytest.skip("needs bwrap and virgl_test_server")
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "gl-renderer.py"
    with open(example) as program:
        done = subprocess.run([sys.executable, "-m", "harness.cli", "exec", "--path", "vtest-virgl",
                               "--",
                               "python3", "-"], stdin=program, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("virgl (")


# One path of each family that exec can run a command through: stdin must reach the command on
# every one of them (the vfio paths boot the VM family's guest, whose stdin is the vm family's).
EXEC_STDIN_PATHS = [("software", "host"), ("vtest-virgl", "trixie"), ("podman-vtest", "trixie"),
                    ("flatpak-vtest", "trixie"), ("vm-headless", "trixie")]


@pytest.mark.parametrize("path, runtime", EXEC_STDIN_PATHS, ids=[path for path,
                                                                 _ in EXEC_STDIN_PATHS])
def test_exec_gives_stdin_to_the_command_on_every_family(toolset, path, runtime):
    """The README's idiom, `exec ... -- python3 - < program.py`: the program must arrive whole
    through each family (podman once dropped stdin and exited 0 having run nothing)."""
    scenario = matrix_mod.expand({"matrix": {"paths": [path], "runtimes": [runtime],
                                             "probes": ["gl"]}},
                                 "<test>").scenarios[0]
    reason = registry.of(scenario.spec).available(scenario.spec, toolset)
    if reason:
        skip_unless_required(path, f"exec through {path}", reason)
    program = ("import sys\nlines = sys.stdin.read().splitlines()\nprint('read', len(lines), "
               "'lines "
               "from stdin')\n")
    done = subprocess.run([sys.executable, "-m", "harness.cli", "exec", "--path", path, "--runtime",
                           runtime,
                           "--timeout", "240", "--", "python3", "-c", program],
                          input="one\ntwo\nthree\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "read 3 lines from stdin", (done.stdout,
                                                                               done.stderr)


SUBREAPER_PARENT = """
import ctypes, json, os, subprocess, sys
# PR_SET_CHILD_SUBREAPER: what the harness leaves comes to us
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
left = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        state, ppid = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[:2]
        comm = open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        continue
    if ppid == str(os.getpid()):
        left.append([comm, state])
print(json.dumps(left))
"""


def test_orphans_of_launched_programs_are_reaped_before_the_harness_exits(tmp_path, toolset):
    """bwrap's inner init and virgl_test_server's forked child outlive their parents; the harness
    adopts them (a child subreaper) and reaps them, so none is left to PID 1 as a zombie."""
    if toolset.missing(["bwrap", "virgl_test_server"]):
        pytest.skip("needs bwrap and virgl_test_server")
    done = subprocess.run([sys.executable, "-c", SUBREAPER_PARENT, sys.executable, "-m",
                           "harness.cli", "run",
                           "--paths", "vtest-virgl", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert json.loads(done.stdout) == [], done.stderr
