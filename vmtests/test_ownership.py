"""Only what is ours, through real paths: `exec --keep` and `run` beside decoy processes whose
command lines name the run's folders (as a user's own programs may), and a parent that names
them too. The decoys live on; the run's own processes are gone when it ends."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import skip_unless_required


def decoys(*words: str) -> list:
    """A user's processes, one per word, each naming it on its command line."""
    return [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                              f"sleeper-{word}-x"],
                             start_new_session=True) for word in words]


def harness(*args: str, timeout: str = "240") -> subprocess.CompletedProcess:
    # timeout(1) is the parent whose command line names the --keep folder, as a user's wrapper
    # would.
    return subprocess.run(["timeout", timeout, sys.executable, "-m", "harness.cli", *args],
                          capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("path", ["software", "vtest-virgl"])
def test_exec_keep_kills_nothing_that_only_names_its_folder(tmp_path, path):
    """Its folder as a bare name and as an absolute path: neither a decoy naming it nor the
    parent process (timeout, whose argv holds it) is signalled."""
    os.chdir(tmp_path)
    others = decoys("keepzz2", str(tmp_path / "keep1"))
    try:
        for keep in ("keepzz2", str(tmp_path / "keep1")):
            done = harness("exec", "--path", path, "--keep", keep, "--", "true")
            if done.returncode == 2 and "cannot run here" in done.stderr:
                skip_unless_required(path, f"exec --path {path}", done.stderr.strip())
            assert done.returncode == 0, f"{keep}: rc {done.returncode}: {done.stderr[-2000:]}"
            assert all(other.poll() is None
                       for other in others), f"a decoy naming {keep} was killed"
            assert (Path(keep) / "probe.log").exists()
    finally:
        for other in others:
            other.kill()
            other.wait()


def test_a_run_kills_nothing_that_only_names_its_folders(tmp_path):
    """A run of a sandbox path (bwrap, a vtest server) with decoys naming its --out and its
    scenario folder: they live on; the run passes."""
    os.chdir(tmp_path)
    others = decoys("gpu-harness-out",
                    str(tmp_path / "out" / "scenarios" / "vtest-virgl__host__gl"))
    try:
        done = harness("run", "--paths", "vtest-virgl", "--filter", "vtest-virgl/host/gl", "--out",
                       "out")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "Pass" in done.stdout
        assert all(other.poll() is None
                   for other in others), "a decoy naming the run's folders was killed"
    finally:
        for other in others:
            other.kill()
            other.wait()
