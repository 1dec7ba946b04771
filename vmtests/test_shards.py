"""Shards and merges for real: a matrix run as 3 shards and merged is the same matrix run whole;
runs of two hosts merge into a grid with a host axis; the shipped CI definitions' commands run
here as their engines would run them."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
MATRIX = """[matrix]
paths = ["software", "sandbox-hostlibs", "vtest-virgl"]
runtimes = ["host"]
probes = ["gl", "vulkan"]
"""


def harness(*args, cwd=None, env=None):
    done = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=600,
                          cwd=cwd or ROOT, env={**os.environ, **(env or {})})
    return done


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def outcomes(document: dict) -> dict:
    return {s["id"]: s["outcome"] for s in document["scenarios"]}


def comparable(answers: dict) -> dict:
    """The answers without what varies from run to run: seconds and fps, and the count and
    examples of the host's files a path shows (the host's own files change between runs: a
    runtime the suite builds in the background has a partial folder in the cache)."""
    varying = {"exposure": ("host_files", "examples")}
    return {key: [{field: value for field, value in record.items()
                   if field not in varying.get(key, ())} for record in answer.get("records")]
            for key, answer in answers.items() if key != "cost"}


def test_three_shards_merged_are_the_whole_run(tmp_path):
    (tmp_path / "m.toml").write_text(MATRIX)
    whole = harness("run", "--matrix", str(tmp_path / "m.toml"), "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    for k in (1, 2, 3):
        shard = harness("run", "--matrix", str(tmp_path / "m.toml"), "--shard", f"{k}/3", "--out",
                        str(tmp_path / f"s{k}"))
        assert shard.returncode == 0, shard.stderr
        assert results(tmp_path / f"s{k}")["shard"] == f"{k}/3"
    merged = harness("merge", *(str(tmp_path / f"s{k}") for k in (1, 2, 3)), "--out",
                     str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stderr
    one, parts = results(tmp_path / "whole"), results(tmp_path / "merged")
    assert sorted(outcomes(parts).items()) == sorted(outcomes(one).items())
    assert comparable(parts["answers"]) == comparable(one["answers"])
    assert ((tmp_path / "merged" / "report.html").exists()
            and (tmp_path / "merged" / "junit.xml").exists())


def test_runs_of_two_hosts_merge_into_a_host_axis(tmp_path):
    (tmp_path / "m.toml").write_text(MATRIX)
    for name, host_class in (("alpha", "no-gpu"), ("beta", "no-gpu-either")):
        done = harness("run", "--matrix", str(tmp_path / "m.toml"), "--filter", "*/gl",
                       "--host-name", name,
                       "--host-class", host_class, "--out", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        assert results(tmp_path / name)["host"]["name"] == name
    merged = harness("merge", str(tmp_path / "alpha"), str(tmp_path / "beta"), "--out",
                     str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stderr
    document = results(tmp_path / "merged")
    assert len(document["scenarios"]) == 6 and set(document["hosts"]) == {"alpha", "beta"}
    assert document["grid"][0]["runtimes"] == ["host on alpha", "host on beta"]
    diff = harness("diff", str(tmp_path / "merged"), str(tmp_path / "merged"))
    assert diff.returncode == 0 and "6 scenarios in both" in diff.stdout


def shard_commands(text: str, index: int, total: int, matrix: Path, out: Path) -> list:
    """The CI definition's gpu-harness command lines, its variables set as its engine would."""
    values = {"CI_NODE_INDEX": str(index), "CI_NODE_TOTAL": str(total),
              "GPU_HARNESS_MATRIX": str(matrix),
              "GPU_HARNESS_HOST_CLASS": "no-gpu", "{{ matrix.shard }}": str(index),
              "{{ matrix.total }}": str(total)}
    lines = []
    for line in text:
        for name, value in values.items():
            line = line.replace(f"${name}", value).replace("$" + name,
                                                           value).replace("${" + name + "}", value)
        lines.append(line.replace(".venv/bin/gpu-harness", "").replace('"', "").split())
    return lines


def commands(definition: dict):
    """(shard job's gpu-harness lines, merge job's, N) of a GitLab CI file or a GitHub workflow."""
    if "jobs" in definition:  # GitHub Actions
        shard, merge = definition["jobs"]["shard"], definition["jobs"]["merge"]
        total = len(shard["strategy"]["matrix"]["shard"])
        runs = [step["run"] for step in shard["steps"] if "gpu-harness" in step.get("run", "")]
        merges = [step["run"] for step in merge["steps"] if "gpu-harness" in step.get("run", "")]
        return runs, merges, total
    shard, merge = definition["matrix-shard"], definition["merged-report"]
    return ([line for line in shard["script"] if "gpu-harness" in line],
            [line for line in merge["script"] if "gpu-harness" in line], shard["parallel"])


@pytest.mark.parametrize("name", ["gitlab-ci.yml", "github-actions.yml"])
def test_the_shipped_ci_definitions_run_here(tmp_path, name):
    definition = yaml.safe_load((ROOT / "docs" / "ci" / name).read_text())
    runs, merges, total = commands(definition)
    assert runs and merges and total >= 2
    (tmp_path / "m.toml").write_text(MATRIX)
    for index in range(1, total + 1):
        for argv in shard_commands(runs, index, total, tmp_path / "m.toml", tmp_path):
            done = harness(*argv, cwd=tmp_path)
            assert done.returncode == 0, (argv, done.stderr)
    for argv in shard_commands(merges, 0, total, tmp_path / "m.toml", tmp_path):
        argv = [arg for pattern in argv for arg in (sorted(str(p) for p in tmp_path.glob(pattern))
                                                    if re.search(r"[*?]", pattern) else [pattern])]
        done = harness(*argv, cwd=tmp_path)
        assert done.returncode == 0, (argv, done.stderr)
    merged = results(tmp_path / "merged")
    assert (len(merged["scenarios"]) == 5
            and merged["shards"] == [f"{k}/{total}" for k in range(1, total + 1)])
