"""One shared virgl_test_server for N apps vs one per app, for real: real servers, N probes
rendering at once, each judged as a run judges it; nothing left running, no socket left."""
import glob
import shutil
import tempfile
from pathlib import Path

from harness.studies import serverbench
from tests.leftovers import processes_in

from .conftest import skip_unless_required

APPS = 3


def need(toolset, path_id):
    reason = serverbench.why_not(toolset, path_id)
    if reason:
        skip_unless_required(path_id, f"{path_id} apps sharing a server", reason)


def test_apps_render_with_their_own_servers_and_with_one_shared_server(toolset, tmp_path,
                                                                       monkeypatch):
    need(toolset, "vtest-virgl")
    # The runs' scratch folders (sockets, sentinels) go here: short, as a run's temp folder is (a
    # socket's path takes 107 bytes at most, and a worker's tmp_path is long).
    scratch = Path(tempfile.mkdtemp(prefix="gh-sb-"))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    try:
        rows = {row.mode: row for row in serverbench.compare(toolset, APPS, tmp_path, "vtest-virgl",
                                                             rounds=1)}
        assert list(scratch.iterdir()) == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    own, shared, single = (rows[serverbench.PER_INSTANCE], rows[serverbench.SHARED],
                           rows[serverbench.MULTI_CLIENTS])
    assert own.passed == f"{APPS}/{APPS}", own.reason
    assert shared.passed == f"{APPS}/{APPS}", shared.reason
    assert own.servers == APPS and shared.servers == 1 and len(own.runs[0].start_s) == APPS
    assert all(start > 0 for start in own.runs[0].start_s + shared.runs[0].start_s)
    # Each server forks a process per client: N servers and their N forks, or one and N forks (all
    # seen; how many at once depends on how the apps overlap, which a loaded machine changes).
    assert own.runs[0].processes_seen >= 2 * APPS and shared.runs[0].processes_seen >= APPS + 1
    assert shared.peak_processes < 2 * APPS
    assert own.peak_pss_kb > 0 and shared.peak_rss_kb > shared.largest_rss_kb > 0
    # One process for every client: Mesa's virgl speaks vtest protocol 2, which that server refuses.
    assert single.peak_processes == 1 and single.passed == f"0/{APPS}"
    assert "protocol version too low" in single.reason
    assert not [path for path in glob.glob(str(tmp_path / "**" / "*.sock"), recursive=True)]
    assert not processes_in(str(tmp_path))


def test_flatpak_apps_share_one_server_too(toolset, tmp_path):
    need(toolset, "flatpak-vtest")
    (shared,) = [row for row in serverbench.compare(toolset, 2, tmp_path, "flatpak-vtest", rounds=1)
                 if row.mode == serverbench.SHARED]
    assert shared.passed == "2/2", shared.reason
    assert shared.servers == 1 and shared.peak_processes >= 3
