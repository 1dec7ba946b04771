"""Seed 000's service lifecycle, for real: virgl_test_server under a supervisor that says it is
ready through one pipe and stops the server when bwrap, holding the other end as --sync-fd,
goes away. Each of the app, bwrap, the server and the harness is SIGKILLed in turn: nothing is
left running and no socket is left behind."""
import json
import os
import signal
import time

import pytest

from harness.system.retry import poll
from tests.leftovers import processes_in

from .conftest import harness_in_subprocess, skip_unless_required

STOPPED_BY_THE_PIPE = "the app's end of the sync pipe closed: server stopped"


def ours(scratch, marker, not_comm=None):
    """Our processes whose command line holds `marker` or whose name is `marker` (not
    `not_comm`)."""
    found = []
    for pid in processes_in(str(scratch)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().decode("utf-8", "replace")
            with open(f"/proc/{pid}/comm") as handle:
                comm = handle.read().strip()
        except OSError:
            continue
        if (marker in cmdline or marker == comm) and comm != not_comm:
            found.append(pid)
    return found


@pytest.mark.parametrize("victim", ["app", "bwrap", "server", "harness"])
def test_killing_any_part_leaves_nothing(victim, tmp_path, toolset):
    if toolset.missing(["bwrap", "virgl_test_server"]):
        skip_unless_required("vtest-virgl", "bwrap and virgl_test_server", "not installed")
    harness, scratch = harness_in_subprocess(tmp_path, """
        [matrix]
        paths = ["vtest-virgl-syncfd"]
        probes = ["gl"]
        [defaults]
        timeout_s = 60
        probe_args = ["--hold", "30"]
    """)
    out = tmp_path / "out"
    markers = {"app": "gles.py", "bwrap": "bwrap", "server": "virgl_test_serv"}
    assert poll(lambda: ours(scratch, "gles.py") and ours(scratch, "bwrap")
                and ours(scratch, "virgl_test_serv"), 30), "the scenario never got going"
    time.sleep(2)  # the app has its context and holds it (--hold): a kill now is one mid-run
    if victim == "harness":
        harness.send_signal(signal.SIGKILL)
    else:  # the app's command line is in bwrap's too: the app is the one that is not bwrap
        for pid in ours(scratch, markers[victim], not_comm="bwrap" if victim == "app" else None):
            os.kill(pid, signal.SIGKILL)
    harness.wait(timeout=60)
    assert poll(lambda: not processes_in(str(scratch)) and not list(scratch.iterdir()), 20), \
        f"left behind: {processes_in(str(scratch))} {list(scratch.iterdir())}"
    if victim in ("app", "bwrap"):
        # The server went because the sandbox's end of the pipe closed, before the harness's own
        # stop.
        (scenario,) = json.loads((out / "results.json").read_text())["scenarios"]
        log = (out / scenario["result_dir"] / "virgl_test_server.log").read_text()
        assert STOPPED_BY_THE_PIPE in log
        assert scenario["outcome"] == "Fail"
    if victim == "server":
        (scenario,) = json.loads((out / "results.json").read_text())["scenarios"]
        assert (scenario["outcome"] == "Fail"
                and "virgl_test_server" in scenario["reason"]), scenario["reason"]


def test_rerun_sh_replays_the_sync_pipe_and_leaves_nothing(run_scenarios, toolset, tmp_path):
    """By hand, the pipe is a FIFO: rerun.sh renders again, and the server stops because the
    pipe closed (the supervisor says so), not because the script killed it."""
    import subprocess

    from harness import matrix as matrix_mod

    (scenario,) = matrix_mod.expand({"matrix": {"paths": ["vtest-virgl-syncfd"]}},
                                    "<test>").scenarios
    (result,) = run_scenarios([scenario])
    if result.verdict.outcome.value == "Skip":
        skip_unless_required("vtest-virgl", "vtest-virgl-syncfd", result.verdict.reason)
    assert result.verdict.outcome.value == "Pass", result.verdict.reason
    script = result.result_dir / "rerun.sh"
    scratch = next(line.split()[-1] for line in script.read_text().splitlines()
                   if line.startswith("mkdir -p") and "$OUT" not in line)
    archived = {path.name: path.read_bytes() for path in (result.result_dir / "probe").iterdir()}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # The rerun writes into a folder of its own; the run's archived output stays as it was.
    (rerun,) = result.result_dir.glob("probe-rerun-*")
    assert f"rerun: the workload writes into {rerun}" in done.stderr
    assert (rerun / "probe.png").exists()
    assert {path.name: path.read_bytes()
            for path in (result.result_dir / "probe").iterdir()} == archived
    assert STOPPED_BY_THE_PIPE in done.stderr
    assert ours(scratch, "virgl_test_server") == [] and not os.path.exists(scratch)
