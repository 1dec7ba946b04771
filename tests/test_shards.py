"""Shards and merges: every scenario is in exactly one shard for any K/N and matrix, the same
parts every time, balanced on a recorded run's walls; merged runs refuse a scenario twice from one
host and keep it twice, as two rows, from two hosts."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from harness import matrix
from harness.report import merge
from harness.run import shards
from harness.core.errors import InputError
from harness.matrix.expansion import shipped_matrices
from harness.scenario.model import LOCAL
from harness.report import records

from . import runs

ROOT = Path(__file__).parent.parent
DURATIONS = Path(__file__).parent / "files" / "default-durations.json"
SHIPPED = {source.stem: matrix.load(source).scenarios for source in shipped_matrices()}


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(SHIPPED)), count=st.integers(1, 9), data=st.data())
def test_the_shards_are_a_partition_the_same_every_time(name, count, data):
    scenarios = SHIPPED[name]
    chosen = data.draw(st.lists(st.sampled_from(scenarios),
                                unique_by=lambda s: s.id)) if data.draw(st.booleans()) \
        else scenarios
    parts = shards.assign(chosen, count)
    ids = [s.id for part in parts for s in part]
    assert sorted(ids) == sorted(s.id for s in chosen) and len(ids) == len(set(ids))
    assert shards.assign(chosen, count) == parts
    for part in parts:  # in the matrix's order, and a machine's scenarios in one part
        assert [s.id for s in part] == [s.id for s in chosen if s in part]
    for machine in {s.machine for s in chosen if s.machine != LOCAL}:
        assert sum(1 for part in parts if any(s.machine == machine for s in part)) == 1
    picked = [shards.select(chosen, shards.Shard(k, count)) for k in range(1, count + 1)]
    assert picked == parts


def test_shards_are_balanced_on_a_recorded_run():
    """On the default matrix's real walls, 2, 3 and 4 shards: the longest within 1.5x the mean,
    far better than splitting in order."""
    known = shards.durations(DURATIONS)
    scenarios = matrix.load().scenarios
    assert set(known) == {s.id for s in scenarios}
    for count in (2, 3, 4):
        loads, factor = shards.balance(shards.assign(scenarios, count, known), known)
        biggest = max(weight for weight, _ in shards.pieces(scenarios, known))
        # one piece can outweigh the rest
        assert factor <= 1.5 or max(loads) <= biggest * 1.01, (count, loads)
        naive = [scenarios[i::count] for i in range(count)]
        naive_loads, naive_factor = shards.balance(naive, known)
        # where one piece (a machine's scenarios, kept together) is the longest part by itself, no
        # split does better; else far better than splitting in order
        assert (max(loads) <= biggest * 1.01 or max(loads) <= max(naive_loads) * 2
                or factor < naive_factor), (count, loads, naive_loads)


@pytest.mark.parametrize("text, message", [("0/3", "K must be from 1 to N"), ("4/3",
                                                                              "K must be from 1 to "
                                                                              "N"),
                                           ("x", "is not K/N"), ("1/0", "K must be from 1 to N"),
                                           ("", "is not K/N")])
def test_a_bad_shard_is_one_line_and_exit_2(text, message):
    with pytest.raises(InputError, match=message):
        shards.parse(text)
    done = subprocess.run([sys.executable, "-m", "harness.cli", "list", "--shard", text],
                          capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr


def test_durations_need_a_shard():
    done = subprocess.run([sys.executable, "-m", "harness.cli", "list", "--durations",
                           str(DURATIONS)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "--durations: only with --shard" in done.stderr


# --- merge --------------------------------------------------------------------------------------

def run_folder(tmp_path: Path, name: str, document: dict) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(document))
    return folder


def with_host(document: dict, name: str, host_class: str = "") -> dict:
    return {**document, "host": {**(document.get("host") or {}), "name": name, "class": host_class}}


def test_shards_of_one_host_merge_into_one_run(tmp_path):
    document = with_host(runs.document(seed=11, count=30), "ci-1")
    first, second = dict(document), dict(document)
    first["scenarios"], second["scenarios"] = document["scenarios"][:12], document["scenarios"][12:]
    merged = merge.merge([run_folder(tmp_path, "a", first), run_folder(tmp_path, "b", second)],
                         tmp_path / "m")
    assert [s["id"] for s in merged["scenarios"]] == [s["id"] for s in document["scenarios"]]
    assert all("host" not in s for s in merged["scenarios"]) and list(merged["hosts"]) == ["ci-1"]
    assert merged["summary"] == {k: v for k, v in document["summary"].items() if v}
    folder = merged["scenarios"][0]["result_dir"]
    # its run's folder, seen from the merged one
    assert folder.startswith("../a/") or folder is None


def test_the_same_scenario_from_one_host_twice_is_refused(tmp_path):
    document = with_host(runs.document(seed=12, count=6), "ci-1")
    a, b = run_folder(tmp_path, "a", document), run_folder(tmp_path, "b", document)
    with pytest.raises(InputError, match="is also in .*from the same host ci-1 and toolset"):
        merge.merge([a, b], tmp_path / "m")
    done = subprocess.run([sys.executable, "-m", "harness.cli", "merge", str(a), str(b), "--out",
                           str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1


def test_runs_of_two_hosts_are_two_rows_of_a_host_axis(tmp_path):
    document = runs.document(seed=13, count=20)
    a = run_folder(tmp_path, "a", with_host(document, "amd-box", "amd"))
    b = run_folder(tmp_path, "b", with_host(document, "nv-box", "nvidia"))
    merged = merge.merge([a, b], tmp_path / "m")
    assert len(merged["scenarios"]) == 40 and set(merged["hosts"]) == {"amd-box", "nv-box"}
    keys = {s.key for s in records.entries(merged["scenarios"])}
    assert len(keys) == 40 and {s["host_class"] for s in merged["scenarios"]} == {"amd", "nvidia"}
    rows = {row for grid in merged["grid"] for row in grid["runtimes"]}
    assert rows and all(row.endswith((" on amd-box", " on nv-box")) for row in rows)


def test_runs_of_one_host_with_two_toolsets_are_two_rows_naming_the_toolset(tmp_path):
    """security.toml once with the host's virglrenderer and once with a runtime toolset's: one
    report."""
    document = with_host(runs.document(seed=15, count=10), "vm")
    a = run_folder(tmp_path, "a", {**document, "toolset": {**document["toolset"],
                                                           "source": "discovery"}})
    b = run_folder(tmp_path, "b", {**document, "toolset": {**document["toolset"],
                                                           "source": "runtime:trixie-host"}})
    merged = merge.merge([a, b], tmp_path / "m")
    assert len(merged["scenarios"]) == 20 and merged["toolsets"] == ["discovery",
                                                                     "runtime:trixie-host"]
    assert {s["host"] for s in merged["scenarios"]} == {"vm with discovery",
                                                        "vm with runtime:trixie-host"}
    assert len({s.key for s in records.entries(merged["scenarios"])}) == 20


def test_bad_merge_inputs_are_one_line_and_exit_2(tmp_path):
    one = run_folder(tmp_path, "a", runs.document(seed=14, count=3))
    for args, said in ((["merge", str(one), "--out", str(tmp_path / "m")], "give two or more runs"),
                       (["merge", str(one), str(tmp_path / "nothing"), "--out",
                         str(tmp_path / "m")], "no results.json")):
        done = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                              text=True, timeout=60,
                              cwd=ROOT)
        assert (done.returncode == 2 and done.stderr.count("\n") == 1
                and said in done.stderr), done.stderr
