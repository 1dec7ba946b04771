"""The GPU tier, tested where there is no GPU: `pack` gathers what a lent machine lacks (under the
size that may travel), `run` unpacks it into a scratch prefix and runs the GPU matrix for real; the
GPU paths Skip with their reasons, the rest pass, and it writes nowhere but its prefix and output
folder, leaving a few files small enough to bring back."""
import json
import os
import time

import pytest

from harness import gputier, matrix as matrix_mod

from .conftest import descendants


def test_pack_then_run_into_a_scratch_prefix(tmp_path):
    folder, prefix, out = tmp_path / "pack", tmp_path / "prefix", tmp_path / "out"
    try:
        packed = gputier.pack(folder)
    except gputier.InputError as exc:  # no apt archive or PyPI to fetch from: the tier cannot be packed here
        pytest.skip(f"gpu-tier pack: {exc}")
    assert packed.size < gputier.LIMIT_BYTES and len(packed.debs) == len(gputier.PACKAGES)
    assert any(name.startswith("qemu_qmp-") for name in packed.wheels)
    before, started = descendants(), time.time()
    code = gputier.run(out, prefix, folder, jobs=2)
    assert not {pid: cmd for pid, cmd in descendants().items() if pid not in before}  # nothing left running
    document = json.loads((out / "results.json").read_text())
    expected = {s.id for s in matrix_mod.load(gputier.MATRIX).scenarios}
    outcomes = {s["id"]: (s["outcome"], s["reason"]) for s in document["scenarios"]}
    assert set(outcomes) == expected
    assert code == 0, (out / "run.log").read_text()
    for scenario_id, (outcome, reason) in outcomes.items():
        assert outcome in ("Pass", "Skip"), (scenario_id, reason)
    assert outcomes["native/host/gl"][0] == "Pass" and outcomes["vtest-virgl/host/gl"][0] == "Pass"
    # What comes back: a few files, each small enough; the scenarios' folders in one archive.
    brought = sorted(p.name for p in out.iterdir())
    assert all(p.is_file() and p.stat().st_size <= gputier.RETURN_LIMIT for p in out.iterdir()) and len(brought) <= 8
    assert "scenarios.tar.gz" in brought and "report.html" in brought
    # Its cache and temp folders were the prefix's: the machine's own cache was not written.
    assert (prefix / "cache" / "gpu-harness").is_dir()
    cache = os.path.expanduser("~/.cache/gpu-harness")
    if os.path.isdir(cache):
        assert os.stat(cache).st_mtime <= started or not any(
            os.stat(os.path.join(cache, name)).st_mtime > started for name in os.listdir(cache)
            if not name.startswith(".")), "the run wrote to the machine's own cache"
