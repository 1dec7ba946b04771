"""Real launches the harness is trusted with: a run on a toolset `doctor --json` wrote, a
misspelt piglit test only the runtime knows of (a classified failure, not a skip), and a
scenario's rerun.sh that stops what it started and removes what it made, however it ends."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from harness.system.retry import poll

from .conftest import skip_unless_required

PIGLIT_BIN = Path("/usr/lib/x86_64-linux-gnu/piglit/bin")


def run_cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def the_scenario(out: Path) -> dict:
    (scenario,) = json.loads((out / "results.json").read_text())["scenarios"]
    if scenario["outcome"] == "Skip":
        skip_unless_required(scenario["path"], scenario["id"], scenario["reason"])
    return scenario


def test_a_run_on_the_toolset_doctor_wrote_uses_its_tools(tmp_path):
    doctor = run_cli("doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    manifest = tmp_path / "t.json"
    manifest.write_text(doctor.stdout)
    out = tmp_path / "out"
    done = run_cli("run", "--toolset", str(manifest), "--paths", "vtest-virgl", "--filter",
                   "vtest-virgl/host/gl",
                   "--out", str(out))
    scenario = the_scenario(out)
    assert done.returncode == 0 and scenario["outcome"] == "Pass", done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["toolset"]["source"] == f"manifest:{manifest}"
    assert {name: tool["path"] for name, tool in results["toolset"]["tools"].items()} == \
        {name: tool["path"] for name, tool in json.loads(doctor.stdout)["tools"].items()}


@pytest.mark.skipif(not (PIGLIT_BIN / "fbo-blit").exists(),
                    reason="the host has no piglit (scripts/setup)")
def test_a_misspelt_piglit_test_only_the_runtime_knows_is_a_classified_fail(tmp_path):
    """A runtime built in the run (here given its root at run time: the host's, with piglit) is
    seen by the probe inside it: the step fails naming the nearest tests; the others run."""
    matrix = tmp_path / "m.toml"
    matrix.write_text('[matrix]\npaths = ["vtest-virgl"]\nruntimes = ["bookworm"]\nprobes = '
                      '["mine"]\n'
                      '[probes.mine]\nkind = "piglit"\ntests = ["fbo-blitt", "fbo-alpha"]\n')
    out = tmp_path / "out"
    done = run_cli("run", "--matrix", str(matrix), "--runtime-root", "bookworm+piglit=/", "--out",
                   str(out))
    scenario = the_scenario(out)
    assert done.returncode == 1, done.stderr
    typo = (f"piglit has no 'fbo-blitt' in {PIGLIT_BIN} (nearest: fbo-blit, fbo-sys-blit, "
            "fbo-blit-stretch)")
    assert (scenario["outcome"], scenario["failure_kind"]) == ("Fail", "subtest-failed")
    assert scenario["reason"] == f"1/2 subtests pass, 1 fail: fbo-blitt (fail: {typo})"
    assert [(s["name"], s["outcome"], s["detail"]) for s in scenario["subtests"]] == \
        [("fbo-blitt", "fail", typo), ("fbo-alpha", "pass", "pass")]


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    """A temp folder of the test's own (TMPDIR for the harness): what is left in it is the run's
    or the rerun's, whatever else runs on the machine. Short: a unix socket's path is at most 108
    bytes."""
    folder = Path(tempfile.mkdtemp(prefix="gh-trust-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def processes_naming(text: str) -> List[str]:
    """Processes (but zombies) whose command line holds `text`: pid and command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8",
                                                                                   "replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline}")
    return found


def vtest_rerun(private_tmp: Path, tmp_path: Path) -> Path:
    """A vtest-virgl scenario's rerun.sh, from a real run whose temp folders are in
    `private_tmp`."""
    out = tmp_path / "out"
    done = run_cli("run", "--paths", "vtest-virgl", "--filter", "vtest-virgl/host/gl", "--out",
                   str(out),
                   env={"TMPDIR": str(private_tmp)})
    scenario = the_scenario(out)
    assert done.returncode == 0 and scenario["outcome"] == "Pass", done.stderr
    assert list(private_tmp.iterdir()) == []  # the run removed its own
    script = out / scenario["result_dir"] / "rerun.sh"
    assert str(private_tmp) in script.read_text()
    return script


def test_rerun_sh_stops_its_server_and_removes_its_temp_folder(private_tmp, tmp_path):
    script = vtest_rerun(private_tmp, tmp_path)
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (rerun,) = script.parent.glob("probe-rerun-*")
    assert (rerun / "probe.png").exists()  # it rendered through its own server
    assert list(private_tmp.iterdir()) == []  # the scenario's temp folder, the socket in it: gone
    assert processes_naming(str(private_tmp)) == []


def test_rerun_sh_interrupted_stops_its_server_and_removes_its_temp_folder(private_tmp, tmp_path):
    """Ctrl-C in a terminal: SIGINT to the script's process group while the workload runs."""
    script = vtest_rerun(private_tmp, tmp_path)
    socket = Path(re.search(r"--socket-path=(\S+)", script.read_text()).group(1))
    rerun = subprocess.Popen(["bash", str(script)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        assert poll(socket.exists, 30), "the server's socket never appeared"
        time.sleep(0.3)
        os.killpg(rerun.pid, signal.SIGINT)
        _, stderr = rerun.communicate(timeout=60)
    finally:
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)
            rerun.wait()
    assert rerun.returncode != 0, stderr
    assert poll(lambda: not processes_naming(str(private_tmp)),
                5), processes_naming(str(private_tmp))
    assert list(private_tmp.iterdir()) == []


def install_marker(checkout: Path) -> tuple:
    """What pip rewrites when it installs the package: its dist-info folder (inode, mtime)."""
    (dist_info,) = checkout.glob(".venv/lib/python3*/site-packages/gpu_harness-*.dist-info")
    info = dist_info.stat()
    return info.st_ino, info.st_mtime_ns


def setup(checkout: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([str(checkout / "scripts/setup")], capture_output=True, text=True,
                          timeout=600, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.full("installs")
def test_setup_installs_the_package_only_when_the_venv_is_new_or_pyproject_changed(tmp_path):
    """A checkout of its own (what an editable install needs) with a new venv: setup installs,
    again it does not (the apt check still runs), after a pyproject.toml change it installs
    again."""
    root = Path(__file__).resolve().parent.parent
    checkout = tmp_path / "checkout"
    shutil.copytree(root / "harness", checkout / "harness",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "scripts/setup"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, checkout / name)
    setup(checkout)
    stamp = checkout / ".venv/.gpu-harness-install"
    first, said = install_marker(checkout), stamp.read_text()
    assert said.split() == [subprocess.run(["sha256sum", str(checkout / "pyproject.toml")],
                                           capture_output=True,
                                           text=True).stdout.split()[0], str(checkout)]
    origin = subprocess.run([str(checkout / ".venv/bin/python"), "-I", "-c",
                             "import harness; print(harness.__file__)"],
                            capture_output=True, text=True, cwd="/").stdout.strip()
    assert origin == str(checkout / "harness/__init__.py")
    started = time.monotonic()
    setup(checkout)
    assert install_marker(checkout) == first and stamp.read_text() == said, ("pip ran with nothing "
                                                                             "changed")
    print(f"setup with the package installed: {time.monotonic() - started:.1f} s")
    with open(checkout / "pyproject.toml", "a") as handle:
        handle.write("# changed\n")
    setup(checkout)
    assert install_marker(checkout) != first and stamp.read_text() != said, ("pip did not run for "
                                                                             "a "
                                                                             "new pyproject.toml")
