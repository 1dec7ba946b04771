"""The machine shared between pytest-xdist workers: every test holds a shared lock on it, a test
marked `exclusive` the exclusive one, so that nothing runs beside it. For what stalls under
load: vm-venus's guest Venus ring under TCG stalled in three attempts in a row in a full
parallel run here, and renders every time alone."""
import fcntl
import os

import pytest

# the tiers, the shared runtimes built in the background, where the time went
pytest_plugins = ["tests.suiteplugin"]


@pytest.fixture(autouse=True)
def machine_share(request, tmp_path_factory):
    run_root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run_root = run_root.parent  # each worker's base is a folder of the run's
    with open(run_root / "machine-share.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if request.node.get_closest_marker("exclusive")
                    else fcntl.LOCK_SH)
        yield
