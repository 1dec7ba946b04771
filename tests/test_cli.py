from pathlib import Path
import subprocess
import sys

import pytest

from harness import cli, matrix, paths


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["run", "--paths", "nope"], "--paths: unknown path 'nope'"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "-j", "x"], "not a number"),
    (["list", "--matrix", "/nonexistent.toml"], "cannot read matrix file"),
    (["list", "--filter", "zzz*"], "no scenario matches"),
    (["exec", "--path", "vtest-virgl"], "no command given"),
    (["exec", "--path", "nope", "--", "true"], "unknown path 'nope'"),
    (["report", "/nonexistent"], "cannot read results"),
    (["doctor", "--toolset", "/nonexistent.json"], "cannot read toolset manifest"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("gpu-harness: error: "), done.stderr
    assert "Traceback" not in done.stderr


def test_bad_matrix_lists_every_problem(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text('[matrix]\npaths = ["warp", "software"]\ncolour = 1\n')
    done = run_cli("list", "--matrix", str(bad))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"gpu-harness: error: {bad}: matrix.colour: unknown key (allowed: exclude, machines, paths, probes, runtimes)",
        f"gpu-harness: error: {bad}: matrix.paths[0]: unknown path 'warp' "
        f"(known: {paths.known_ids()})",
    ]


def test_list_prints_expanded_scenarios():
    done = run_cli("list")
    assert done.returncode == 0
    # The default matrix's scenarios, in its order (test_matrix.py spells the order out).
    assert [line.split()[0] for line in done.stdout.splitlines()] == [s.id for s in matrix.load().scenarios]


def test_parser_knows_every_command():
    parser = cli.build_parser()
    for command in (["run"], ["list"], ["doctor"], ["exec", "--path", "software", "--", "true"],
                    ["goldens", "update"], ["report", "x"], ["bench"]):
        assert parser.parse_args(command).command == command[0]


@pytest.mark.parametrize("command", ["run", "bench"])
def test_bad_input_leaves_no_output_folder_behind(tmp_path, command):
    out = tmp_path / "new" / "out"
    done = run_cli(command, "--paths", "nope", "--out", str(out))
    assert done.returncode == 2 and "unknown path 'nope'" in done.stderr
    assert list(tmp_path.iterdir()) == []
    # A folder that was there is left as it was, the run's lock file gone with the refusal.
    out.mkdir(parents=True)
    (out / "mine.txt").write_text("kept")
    done = run_cli(command, "--paths", "nope", "--out", str(out))
    assert done.returncode == 2 and sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_a_run_into_an_earlier_runs_folder_keeps_only_its_own_and_lets_go_of_it(tmp_path):
    """Re-running into the same --out: the folder holds what the new results.json lists (the old
    run's scenario folders go), and no lock file stays once the run is over."""
    import json

    root = Path(__file__).parent.parent
    (tmp_path / "script.json").write_text("{}")

    def run(paths: str):
        matrix = tmp_path / f"{paths}.toml"
        matrix.write_text(f'[matrix]\npaths = ["{paths}"]\nruntimes = ["host"]\nprobes = ["gl"]\n')
        done = subprocess.run([sys.executable, "-m", "tests.fakerun", str(tmp_path / "script.json"), "run",
                               "--matrix", str(matrix), "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=120, cwd=root)
        assert done.returncode == 0, done.stderr
        listed = [s["result_dir"] for s in json.loads((tmp_path / "out" / "results.json").read_text())["scenarios"]]
        return listed, sorted(p.name for p in (tmp_path / "out" / "scenarios").iterdir())

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")  # not the harness's: stays
    assert run("native") == (["scenarios/native__host__gl"], ["native__host__gl"])
    assert run("software") == (["scenarios/software__host__gl"], ["software__host__gl"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["junit.xml", "notes.txt", "report.html",
                                                                     "results.json", "scenarios"]
