"""Choosing scenarios through the real command line: --runtimes and --probes narrow the matrix
for run, list and bench as --paths does, a name the matrix lacks is one line with the nearest
names, and a --filter on a virtual GPU machine that lacks the ids' @MACHINE is told the id that
matches."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .files import write

ROOT = Path(__file__).resolve().parent.parent
MATRIX = """
[matrix]
paths = ["software", "native", "vtest-virgl"]
runtimes = ["host", "mine"]
probes = ["gl", "vulkan"]

[runtimes.mine]
kind = "rootfs"
root = "/"
"""


def harness(*args: str, fake: Path = None) -> subprocess.CompletedProcess:
    """The real command line; with `fake` (a folder), every scenario's attempt scripted to pass
    (tests.fakerun) so that run and bench choose and report without launching."""
    if fake is not None:
        (fake / "script.json").write_text("{}")
        argv = [sys.executable, "-m", "tests.fakerun", str(fake / "script.json"), *args]
    else:
        argv = [sys.executable, "-m", "harness.cli", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "200"})


def listed_ids(*args: str) -> list:
    done = harness("list", "--json", *args)
    assert done.returncode == 0, done.stderr
    return [scenario["id"] for scenario in json.loads(done.stdout)]


def one_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("gpu-harness: error: ")
    return done.stderr.strip()


@pytest.fixture
def matrix(tmp_path) -> str:
    return str(write(tmp_path, "m.toml", MATRIX))


def test_list_narrows_by_runtimes_and_probes(matrix):
    assert listed_ids("--matrix", matrix, "--runtimes", "mine") == ["vtest-virgl/mine/gl"]
    assert listed_ids("--matrix", matrix, "--probes", "vulkan") == ["software/host/vulkan",
                                                                    "native/host/vulkan"]
    assert listed_ids("--matrix", matrix, "--runtimes", "host,mine", "--probes", "gl", "--paths",
                      "vtest-virgl") == \
        ["vtest-virgl/host/gl", "vtest-virgl/mine/gl"]


def test_run_takes_only_the_runtimes_asked_for(matrix, tmp_path):
    out = tmp_path / "out"
    done = harness("run", "--matrix", matrix, "--runtimes", "mine", "--out", str(out),
                   fake=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ([s["id"] for s in json.loads((out / "results.json").read_text())["scenarios"]]
            == ["vtest-virgl/mine/gl"])


def test_bench_takes_only_the_probes_asked_for(matrix, tmp_path):
    out = tmp_path / "bench"
    done = harness("bench", "--matrix", matrix, "--probes", "vulkan", "--repeat", "1", "--servers",
                   "0",
                   "--out", str(out), fake=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert sorted(row["scenario"] for row in rows) == ["native/host/vulkan", "software/host/vulkan"]


@pytest.mark.parametrize("command", [["list"], ["run", "--out", "OUT"], ["bench", "--out", "OUT"]])
def test_a_runtime_or_probe_the_matrix_lacks_is_one_line_with_the_nearest(matrix, tmp_path,
                                                                          command):
    argv = [str(tmp_path / "out") if arg == "OUT" else arg for arg in command]
    line = one_error(harness(*argv, "--matrix", matrix, "--runtimes", "mien"))
    assert line.endswith(f"--runtimes: {matrix} has no runtime 'mien' (did you mean mine? its "
                         "runtimes: host, mine; "
                         "--matrix FILE for another)")
    line = one_error(harness(*argv, "--matrix", matrix, "--probes", "vulkn"))
    assert "--probes: " in line and ("has no probe 'vulkn' (did you mean vulkan? its probes: gl, "
                                     "vulkan;") in line
    assert not (tmp_path / "out").exists()


def test_a_filter_without_the_machine_suffix_is_told_the_id_that_matches():
    """On --machine virgl-guest the ids end in @virgl-guest: a filter that names the id as it is on
    this host matches nothing, and the line says the one that would."""
    line = one_error(harness("list", "--filter", "sandbox-dri/trixie/gl", "--machine",
                             "virgl-guest"))
    assert line.endswith("no scenario matches --filter 'sandbox-dri/trixie/gl' --machine "
                         "'virgl-guest'; on "
                         "--machine virgl-guest the ids end in @virgl-guest: --filter "
                         "'sandbox-dri/trixie/gl@virgl-guest'")
    assert listed_ids("--filter", "sandbox-dri/trixie/gl@virgl-guest", "--machine",
                      "virgl-guest") == \
        ["sandbox-dri/trixie/gl@virgl-guest"]
    plain = one_error(harness("list", "--filter", "sandbox-dri/nothing/gl", "--machine",
                              "virgl-guest"))
    # no suffix where none would match
    assert "@virgl-guest" not in plain.split("--machine 'virgl-guest'", 1)[1]
