"""Inputs the harness is trusted with, through the real command line: a toolset written by
`doctor --json` loads as `--toolset`, and bad input (a report folder in the way, JSON nested too
deeply, a misspelt piglit test) ends in one line and exit 2 or a classified failure."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.host import toolset

from . import runs
from .files import write


def run_cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_error_line(done) -> str:
    """The one stderr line of a command refused as bad input (exit 2), no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-harness: error: "), done.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def doctor_json(tmp_path_factory) -> Path:
    """What `gpu-harness doctor --json` prints on this machine, as a file."""
    done = run_cli("doctor", "--json")
    assert done.returncode == 0, done.stderr
    return write(tmp_path_factory.mktemp("doctor"), "t.json", done.stdout)


def test_every_key_doctor_prints_loads_as_a_toolset(doctor_json, tmp_path):
    data = json.loads(doctor_json.read_text())
    assert {"schema", "tools", "paths", "architectures"} <= set(data)
    for key in data:  # each key on its own: a key doctor gains later is covered as it appears
        alone = write(tmp_path, f"{key}.json", {"schema": data["schema"], "tools": data["tools"],
                                                key: data[key]})
        loaded = toolset.load_manifest(alone)
        assert loaded.source == f"manifest:{alone}"


def test_a_toolset_doctor_wrote_loads_with_the_same_tools(doctor_json):
    again = run_cli("doctor", "--json", "--toolset", str(doctor_json))
    assert again.returncode == 0, again.stderr
    first, second = json.loads(doctor_json.read_text()), json.loads(again.stdout)
    assert second["source"] == f"manifest:{doctor_json}"
    assert second["tools"] == first["tools"]
    assert second["paths"] == first["paths"]


@pytest.mark.parametrize("key", ["sytem", "tool", "renders_nodes"])
def test_a_misspelt_manifest_key_is_still_refused(doctor_json, tmp_path, key):
    data = json.loads(doctor_json.read_text())
    data[key] = data.get(key[:-1], [])
    line = one_error_line(run_cli("doctor", "--toolset", str(write(tmp_path, "t.json", data))))
    assert (f"t.json: {key}: unknown key (allowed: schema, source, system, render_nodes, tools"
            in line)


@pytest.fixture(scope="module")
def a_run(tmp_path_factory) -> Path:
    """A run's folder as `gpu-harness run` leaves it: results.json (generated), junit.xml,
    report.html."""
    out = runs.write(tmp_path_factory.mktemp("run") / "out", runs.document(count=6))
    done = run_cli("report", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_report_into_a_folder_where_report_html_is_a_folder_is_one_line(a_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(a_run, run)
    (run / "report.html").unlink()
    (run / "report.html").mkdir()
    line = one_error_line(run_cli("report", str(run)))
    assert line == f"gpu-harness: error: {run / 'report.html'}: is a folder, cannot write the " \
        "report file there (remove it, or choose another folder)"
    # no partial file
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in a_run.iterdir())
    (run / "report.html").rmdir()
    done = run_cli("report", str(run))
    assert done.returncode == 0 and (run / "report.html").is_file(), done.stderr


DEPTH = 100_000


@pytest.mark.parametrize("name, text, message", [
    ("deep.json", "[" * DEPTH + "]" * DEPTH, "deep.json: not JSON: nested too deeply"),
    ("deep-object.json", '{"a": ' * DEPTH + "1" + "}" * DEPTH,
     "deep-object.json: not JSON: nested too deeply"),
    ("deep.yaml", "[" * DEPTH + "]" * DEPTH, "deep.yaml: not YAML: nested too deeply"),
    ("deep-block.yaml", "a:\n" + "".join(" " * (i + 1) + "b:\n" for i in range(3000)),
     "deep-block.yaml: not YAML: nested too deeply"),
])
def test_cdi_check_of_a_spec_nested_too_deeply_is_one_line(tmp_path, name, text, message):
    spec = write(tmp_path, name, text)
    line = one_error_line(run_cli("cdi", "check", str(spec)))
    assert line == f"gpu-harness: error: {tmp_path}/{message}"


PIGLIT_BIN = Path("/usr/lib/x86_64-linux-gnu/piglit/bin")
needs_piglit = pytest.mark.skipif(not (PIGLIT_BIN / "fbo-blit").exists(),
                                  reason="the host has no piglit (scripts/setup)")


def piglit_matrix(folder: Path, tests, runtime: str = "host", table: str = "") -> Path:
    return write(folder, "m.toml",
                 f'[matrix]\npaths = ["vtest-virgl"]\nruntimes = ["{runtime}"]\nprobes = ["mine"]\n'
                                   f'{table}[probes.mine]\nkind = "piglit"\ntests = '
                                   f'{json.dumps(tests)}\n')


def scenarios_of(out: Path) -> list:
    return json.loads((out / "results.json").read_text())["scenarios"]


@needs_piglit
@pytest.mark.parametrize("command", ["list", "run"])
def test_a_misspelt_piglit_test_on_the_host_is_exit_2_naming_the_nearest(tmp_path, command):
    matrix = piglit_matrix(tmp_path, ["fbo-blitt", "fbo-alpha"])
    line = one_error_line(run_cli(command, "--matrix", str(matrix), "--out", str(tmp_path / "out"))
                          if command == "run" else run_cli(command, "--matrix", str(matrix)))
    assert line == (f"gpu-harness: error: {matrix}: probes.mine: runtime host: piglit has no "
                    f"'fbo-blitt' in {PIGLIT_BIN} "
                    "(nearest: fbo-blit, fbo-sys-blit, fbo-blit-stretch)")
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_a_misspelt_piglit_test_in_a_root_filesystem_with_piglit_is_exit_2(tmp_path):
    root = tmp_path / "root"
    folder = root / "usr/lib/aarch64-linux-gnu/piglit/bin"
    folder.mkdir(parents=True)
    for name in ("fbo-blit", "fbo-alpha", "glinfo"):
        (folder / name).write_text("")
    matrix = piglit_matrix(tmp_path, ["fbo-alpha", "glinf", "fbo-blitt"], "arm",
                           f'[runtimes.arm]\nkind = "rootfs"\nroot = "{root}"\n')
    done = run_cli("list", "--matrix", str(matrix))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"gpu-harness: error: {matrix}: probes.mine: runtime arm: piglit has no 'glinf' in "
        "/usr/lib/aarch64-linux-gnu/piglit/bin (nearest: glinfo)",
        f"gpu-harness: error: {matrix}: probes.mine: runtime arm: piglit has no 'fbo-blitt' in "
        "/usr/lib/aarch64-linux-gnu/piglit/bin (nearest: fbo-blit)"]


def test_a_runtime_without_piglit_stays_a_skip_naming_the_package(tmp_path):
    root = tmp_path / "bare"
    root.mkdir()
    matrix = piglit_matrix(tmp_path, ["fbo-blitt"], "bare",
                           f'[runtimes.bare]\nkind = "rootfs"\nroot = "{root}"\n')
    done = run_cli("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    (scenario,) = scenarios_of(tmp_path / "out")
    assert (scenario["outcome"], scenario["reason"]) == \
        ("Skip", "mine: runtime bare: the runtime has no fbo-blitt (Debian packages: piglit)")
