"""The GPU tier, tested where there is no GPU, as a lent machine gets it: the working tree as it
travels (tracked files and untracked ones git does not ignore, no virtual environment) with the
pack carried into it, run by a bare Python with no package registry. `pack` gathers what such a
machine lacks (under the size that may travel); `run` unpacks it into a scratch prefix and runs the
GPU matrix for real: the GPU paths Skip with their reasons, the rest pass, and it writes nowhere
but its prefix and output folder, leaving a few files small enough to bring back."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Tuple

import pytest

from harness.cli import gputier, gputier_pack
from harness import matrix as matrix_mod

from .conftest import descendants

SYSTEM_PYTHON = Path("/usr/bin/python3")


def travelling_copy(into: Path) -> None:
    """The working tree as it travels to a lent machine: what git tracks or would (not what it
    ignores)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=gputier_pack.ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = gputier_pack.ROOT / name
        if source.is_file() or source.is_symlink():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name, follow_symlinks=False)


def machine_python(into: Path) -> Tuple[Path, str]:
    """A Python like the lent machine's: the system's, in a virtual environment of its own (not its
    site-packages, none of the project's) with numpy and Pillow only, which the pack leaves to
    it."""
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(into)], check=True)
    version = subprocess.run([str(SYSTEM_PYTHON), "-c",
                              "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    fetched = into / "fetched"
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                           "--no-deps",
                           "--python-version", version, "-d", str(fetched), "numpy", "Pillow"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("no numpy and Pillow wheels to fetch for the machine's Python: "
                    f"{done.stderr.strip()[-200:]}")
    gputier.install_wheels(sorted(fetched.glob("*.whl")),
                           into / "lib" / f"python{version}" / "site-packages")
    shutil.rmtree(fetched)
    return into / "bin" / "python3", version


def without_network(argv):
    """`argv` in a network namespace of its own (loopback only) where the machine allows one."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return argv
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh", *argv]


@pytest.mark.full("gpu-tier")
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no system Python at /usr/bin/python3")
def test_pack_then_run_from_a_bare_checkout_with_the_machines_python(tmp_path):
    tree, prefix, out, home = (tmp_path / "tree", tmp_path / "prefix", tmp_path / "out",
                               tmp_path / "home")
    for made in (tree, home):
        made.mkdir()
    travelling_copy(tree)
    assert not (tree / ".venv").exists() and (tree / "scripts" / "gpu-tier").exists()
    try:
        packed = gputier.pack(tree / ".gpu-tier")
    # no apt archive or PyPI to fetch from: the tier cannot be packed here
    except gputier.InputError as exc:
        pytest.skip(f"gpu-tier pack: {exc}")
    assert (packed.size < gputier_pack.LIMIT_BYTES
            and len(packed.debs) == len(gputier_pack.PACKAGES))
    # Every dependency of the harness and what it needs in turn, for each Python, but what is left
    # to the machine's.
    assert set(packed.pythons) == set(gputier.PYTHONS) and set(packed.from_target) == {"numpy",
                                                                                       "Pillow"}
    for python, names in packed.pythons.items():
        projects = {gputier.normalized(name.split("-")[0]) for name in names}
        assert {"jinja2", "markupsafe", "rich", "qemu-qmp", "jsonschema", "referencing", "rpds-py",
                "attrs",
                "jsonschema-specifications", "pyyaml"} <= projects, python
        assert all("-none-any" in name or f"-cp{python.replace('.', '')}-" in name
                   for name in names), python
    python, version = machine_python(tmp_path / "machine-python")

    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": str(home),
           "PYTHON": str(python), "PYTHONNOUSERSITE": "1", "PIP_NO_INDEX": "1", "LANG": "C.UTF-8"}
    argv = without_network([str(tree / "scripts" / "gpu-tier"), "run", "--out", str(out),
                            "--prefix", str(prefix),
                            "-j", "2"])
    before, started = descendants(), time.time()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=540)
    # nothing left running
    assert not {pid: cmd for pid, cmd in descendants().items() if pid not in before}
    log = (out / "run.log").read_text() if (out / "run.log").exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + log[-3000:]
    said = done.stdout.splitlines()[0]
    assert (f"wheels for it (packed for Python {', '.join(gputier.PYTHONS)})" in said
            and f"Python {version}" in said)
    document = json.loads((out / "results.json").read_text())
    expected = {s.id for s in matrix_mod.load(gputier.MATRIX).scenarios}
    outcomes = {s["id"]: (s["outcome"], s["reason"]) for s in document["scenarios"]}
    assert set(outcomes) == expected
    for scenario_id, (outcome, reason) in outcomes.items():
        assert outcome in ("Pass", "Skip"), (scenario_id, reason)
    assert outcomes["native/host/gl"][0] == "Pass" and outcomes["vtest-virgl/host/gl"][0] == "Pass"
    # What comes back: a few files, each small enough; the scenarios' folders in one archive.
    brought = sorted(p.name for p in out.iterdir())
    assert all(p.is_file() and p.stat().st_size <= gputier.RETURN_LIMIT
               for p in out.iterdir()) and len(brought) <= 8
    assert "scenarios.tar.gz" in brought and "report.html" in brought
    # Its cache and temp folders were the prefix's: the home folder was not written, nor the working
    # tree.
    assert (prefix / "cache" / "gpu-harness").is_dir() and not any(home.iterdir())
    assert not [p for p in tree.rglob("*") if p.is_file() and p.stat().st_mtime > started
                and "__pycache__" not in p.parts]
    assert os.listdir(prefix / "site")  # the wheels went into the prefix
