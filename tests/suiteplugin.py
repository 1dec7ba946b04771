"""The test suite's tiers and where its time goes: the quick tier is every test not marked
`full(why)` (a known why), the whole tier is all of them; the runtimes the launching tests share
are built once, in the background, while tests that need none of them run; and each run ends
with its slowest preparation steps (from the harness's preparation journal) beside pytest's
slowest tests."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from harness.runtimes import prepjournal

# Why a test is only in the whole tier (`./scripts/test --all`): each a kind of cost the quick tier
# leaves out.
FULL_REASONS: Dict[str, str] = {
    "other-architectures": "a runtime of another architecture, built and run under qemu-user",
    "every-runtime": "a runtime besides the native ones (host, trixie): bullseye, bookworm, sid, "
                     "i386, derived",
    "venus": "Vulkan through Venus (sid's and trixie's virglrenderer, vm-venus)",
    "security": "a hostile client's fuzzing runs",
    "nested-vfio": "an L2 guest booted inside an L1 guest (minutes under TCG)",
    "machine-grid": "a virtual GPU machine's scenarios beyond the first",
    "workload-grid": "the workload kinds (piglit, traces, benchmarks) through every family",
    "image-runtime": "a runtime made into a container image archive and loaded",
    "flatpak-export": "a runtime exported into a Flatpak repository and installed (a minute or "
                      "more)",
    "gpu-tier": "the GPU tier packed and run as a lent machine runs it",
    "installs": "a new virtual environment installed from the package index's cache",
}
# What the launching tests share, built in the background at the start of a run that has them.
PREWARM_VAR = "GPU_HARNESS_PREWARM"
QUICK_PREWARM = ("trixie",)
SHOWN_STEPS = 10


def full_reason(item: pytest.Item) -> Optional[str]:
    marker = item.get_closest_marker("full")
    if marker is None:
        return None
    why = marker.args[0] if marker.args else ""
    if why not in FULL_REASONS:
        raise pytest.UsageError(f"{item.nodeid}: full({why!r}): say why with one of "
                                f"{', '.join(FULL_REASONS)}")
    return why


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    for item in items:
        full_reason(item)


def is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def launches_anything(config: pytest.Config) -> bool:
    """Whether the run's selection has the launching tests (vmtests/), which share runtimes."""
    args = [str(arg) for arg in config.args] or list(config.getini("testpaths"))
    return not config.option.collectonly and any(Path(arg.split("::")[0]).parts[:1] == ("vmtests",
                                                                                        ) or
                                                 Path(arg).name == "vmtests" for arg in args)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers",
                            "full(why): only in the whole tier (./scripts/test --all); why: "
                            + ", ".join(FULL_REASONS))
    config.addinivalue_line("markers",
                            "launches(family): launches that family for real in the test's process")
    if not is_controller(config) or os.environ.get(prepjournal.JOURNAL_VAR):
        return
    folder = tempfile.mkdtemp(prefix="gpu-harness-suite-")
    config.stash[FOLDER] = folder
    # workers inherit it
    os.environ[prepjournal.JOURNAL_VAR] = os.path.join(folder, "preparation.jsonl")
    names = [n for n in os.environ.get(PREWARM_VAR, ",".join(QUICK_PREWARM)).split(",") if n]
    if names and launches_anything(config):
        with open(os.path.join(folder, "prewarm.log"), "wb") as log:
            config.stash[PREWARM] = subprocess.Popen(
                [sys.executable, "-m", "harness.cli", "runtimes", "build", *names], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


FOLDER = pytest.StashKey[str]()
PREWARM = pytest.StashKey["subprocess.Popen[bytes]"]()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if FOLDER not in config.stash or config.option.collectonly:
        return
    steps = prepjournal.read(os.path.join(config.stash[FOLDER], "preparation.jsonl"))
    write = terminalreporter.write_line
    terminalreporter.section("where the time went: preparation steps, slowest first")
    if not steps:
        write("none: every runtime, image, export and initramfs was in the cache")
    total = sum(float(step["seconds"]) for step in steps if step.get("how") == "built")
    for step in steps[:SHOWN_STEPS]:
        write(f"{float(step['seconds']):8.1f} s  {step['step']} {step['what']} ({step['how']})")
    if steps:
        write(f"{len(steps)} steps, {total:.0f} s of building in all (waits for another process's "
              "build not counted)")
    prewarm = config.stash.get(PREWARM, None)
    if prewarm is not None and prewarm.poll() not in (None, 0):
        write(f"the background build of the shared runtimes failed (exit {prewarm.returncode}): "
              f"{Path(config.stash[FOLDER]) / 'prewarm.log'}")


def pytest_unconfigure(config: pytest.Config) -> None:
    prewarm = config.stash.get(PREWARM, None)
    if prewarm is not None and prewarm.poll() is None:
        os.killpg(prewarm.pid, signal.SIGTERM)  # its reaper removes what its build had begun
        try:
            prewarm.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(prewarm.pid, signal.SIGKILL)
            prewarm.wait()
    if FOLDER in config.stash:
        shutil.rmtree(config.stash[FOLDER], ignore_errors=True)
        os.environ.pop(prepjournal.JOURNAL_VAR, None)
