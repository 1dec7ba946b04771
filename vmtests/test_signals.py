"""Ctrl-C and SIGTERM during a run: running scenarios stop within seconds and are recorded as
interrupted, scenarios not yet started are Skips saying so, the reports are written, the exit
code is 128+signal, and nothing is left behind. A second signal exits at once."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.launch.families import registry
from harness import matrix as matrix_mod
from harness.scenario import paths

from .conftest import skip_unless_required
from .test_faults import processes_mentioning

MATRIX = """
[matrix]
paths = ["{path}", "software"]
[defaults]
timeout_s = 120
[[override]]
match = "{path}/*"
probe_args = ["--hold", "60"]
"""


def start_run(tmp_path, path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    matrix_file = tmp_path / "m.toml"
    matrix_file.write_text(MATRIX.format(path=path))
    out = tmp_path / "out"
    harness = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--matrix",
                                str(matrix_file), "--out",
                                str(out), "-j", "1"], env=dict(os.environ, TMPDIR=str(scratch)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return harness, scratch, out


def wait_until_probe_holds(path, out, scratch):
    slug = f"{path}__host__gl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if paths.get(path).family == "vm":
            console = out / "scenarios" / slug / "console.log"
            if console.exists() and "probe starting" in console.read_text():
                time.sleep(1.0)  # the probe is past its GL context and holding
                return
        elif len(processes_mentioning(str(scratch))) >= 2:
            time.sleep(0.5)
            return
        time.sleep(0.05)
    pytest.fail(f"{path}: the probe never started")


def assert_nothing_left(scratch):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (processes_mentioning(str(scratch))
                                           or any(scratch.iterdir())):
        time.sleep(0.05)
    assert processes_mentioning(str(scratch)) == []
    assert list(scratch.iterdir()) == []


def available_or_skip(toolset, path):
    (scenario,) = matrix_mod.expand({"matrix": {"paths": [path]}}, "<t>").scenarios
    reason = registry.of(scenario.spec).available(scenario.spec, toolset)
    if reason:
        skip_unless_required(path, path, reason)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("path", ["vtest-virgl", "vm-headless"])
def test_a_signal_stops_the_run_promptly_and_writes_what_finished(tmp_path, toolset, path, signum):
    available_or_skip(toolset, path)
    harness, scratch, out = start_run(tmp_path, path)
    wait_until_probe_holds(path, out, scratch)
    sent = time.monotonic()
    harness.send_signal(signum)
    _, stderr = harness.communicate(timeout=30)
    took = time.monotonic() - sent
    assert harness.returncode == 128 + signum, stderr
    assert took < 5, f"exited {took:.1f} s after {signal.Signals(signum).name}"
    name = signal.Signals(signum).name
    assert f"interrupted by {name}: reports written for what finished" in stderr
    document = json.loads((out / "results.json").read_text())
    outcomes = {s["id"]: (s["outcome"], s["failure_kind"], s["reason"])
                for s in document["scenarios"]}
    assert outcomes[f"{path}/host/gl"][:2] == ("Fail", "interrupted")
    assert outcomes[f"{path}/host/gl"][2].startswith(f"interrupted by {name}")
    assert outcomes["software/host/gl"] == ("Skip", None,
                                            f"not run: the run was interrupted by {name}")
    assert (out / "junit.xml").exists() and (out / "report.html").exists()
    assert_nothing_left(scratch)


def test_a_second_signal_exits_at_once(tmp_path, toolset):
    available_or_skip(toolset, "vtest-virgl")
    harness, scratch, out = start_run(tmp_path, "vtest-virgl")
    wait_until_probe_holds("vtest-virgl", out, scratch)
    harness.send_signal(signal.SIGTERM)
    harness.send_signal(signal.SIGTERM)
    harness.communicate(timeout=30)
    assert harness.returncode == 128 + signal.SIGTERM
    assert_nothing_left(scratch)
