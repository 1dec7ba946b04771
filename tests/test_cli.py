from pathlib import Path
import os
import subprocess
import sys

import pytest

from harness import cli, matrix
from harness.scenario import paths


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=60)


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
    assert (len(lines) == 1 and message in lines[0]
            and lines[0].startswith("gpu-harness: error: ")), done.stderr
    assert "Traceback" not in done.stderr


def test_bad_matrix_lists_every_problem(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text('[matrix]\npaths = ["warp", "software"]\ncolour = 1\n')
    done = run_cli("list", "--matrix", str(bad))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"gpu-harness: error: {bad}: matrix.colour: unknown key (allowed: displays, exclude, "
        "machines, paths, probes, runtimes)",
        f"gpu-harness: error: {bad}: matrix.paths[0]: unknown path 'warp' "
        f"(known: {paths.known_ids()})",
    ]


def test_list_prints_expanded_scenarios():
    done = run_cli("list")
    assert done.returncode == 0
    # The default matrix's scenarios, in its order (test_matrix.py spells the order out).
    assert ([line.split()[0] for line in done.stdout.splitlines()]
            == [s.id for s in matrix.load().scenarios])


def test_parser_knows_every_command():
    parser = cli.build_parser()
    for command in (["run"], ["list"], ["doctor"], ["exec", "--path", "software", "--", "true"],
                    ["goldens", "update"], ["report", "x"], ["bench"]):
        assert parser.parse_args(command).command == command[0]


BAD_INPUT = {  # each command with its output folder (OUT), given input it refuses before it starts
    "run": (["run", "--paths", "nope", "--out", "OUT"], "unknown path 'nope'"),
    "bench": (["bench", "--paths", "nope", "--out", "OUT"], "unknown path 'nope'"),
    "merge": (["merge", "no-such-run", "no-such-run-2", "--out", "OUT"], "no-such-run"),
    "security": (["security", "fuzz", "--path", "nope", "--out", "OUT"], "'nope' is not a path"),
    "exec": (["exec", "--path", "nope", "--keep", "OUT", "--", "true"], "unknown path 'nope'"),
}


@pytest.mark.parametrize("command", sorted(BAD_INPUT))
def test_bad_input_leaves_no_output_folder_behind(tmp_path, command):
    template, said = BAD_INPUT[command]
    out = tmp_path / "new" / "out"
    argv = [str(out) if arg == "OUT" else arg for arg in template]
    done = run_cli(*argv)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []
    # A folder an earlier run made is left as it was, the new run's lock file gone with the refusal.
    out.mkdir(parents=True)
    (out / ".gpu-harness-made").write_text('{"found": ["mine.txt"], "made": {}}')
    (out / "mine.txt").write_text("kept")
    done = run_cli(*argv)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [".gpu-harness-made", "mine.txt"]


def fake_run(tmp_path: Path, paths: str, out: Path) -> subprocess.CompletedProcess:
    root = Path(__file__).parent.parent
    (tmp_path / "script.json").write_text("{}")
    matrix = tmp_path / f"{paths}.toml"
    matrix.write_text(f'[matrix]\npaths = ["{paths}"]\nruntimes = ["host"]\nprobes = ["gl"]\n')
    return subprocess.run([sys.executable, "-m", "tests.fakerun", str(tmp_path / "script.json"),
                           "run",
                           "--matrix", str(matrix), "--out", str(out)], capture_output=True,
                          text=True, timeout=120,
                          cwd=root)


def listing(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_run_into_an_earlier_runs_folder_keeps_only_its_own_and_lets_go_of_it(tmp_path):
    """Re-running into the same --out: the old run's products go (by the folder's manifest),
    what somebody else put there since stays, and no lock file stays once the run is over."""
    import json

    out = tmp_path / "out"

    def run(paths: str):
        done = fake_run(tmp_path, paths, out)
        assert done.returncode == 0, done.stderr
        listed = [s["result_dir"]
                  for s in json.loads((out / "results.json").read_text())["scenarios"]]
        return listed, sorted(p.name for p in (out / "scenarios").iterdir())

    assert run("native") == (["scenarios/native__host__gl"], ["native__host__gl"])
    (out / "notes.txt").write_text("mine")  # not the harness's: stays
    assert run("software") == (["scenarios/software__host__gl"], ["software__host__gl"])
    assert sorted(p.name for p in out.iterdir()) == [".gpu-harness-made", "harness.log",
                                                     "junit.xml", "notes.txt",
                                                     "report.html", "results.json", "scenarios"]
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("decoy", ["scenarios/mine/data.txt", "results.json/data.txt", "notes.txt"])
def test_a_folder_no_run_made_is_refused_and_left_as_it_was(tmp_path, decoy):
    """An --out that holds anything and has no manifest: one line naming what is there, exit 2,
    every file as it was (files named like the run's own are somebody else's until a manifest says
    not)."""
    out = tmp_path / "out"
    (out / decoy).parent.mkdir(parents=True)
    (out / decoy).write_text("mine")
    before = listing(out)
    done = fake_run(tmp_path, "native", out)
    assert done.returncode == 2
    assert (done.stderr.count("\n") == 1 and decoy.split("/")[0] in done.stderr
            and "no gpu-harness run made" in done.stderr)
    assert listing(out) == before and (out / decoy).read_text() == "mine"


def test_an_entry_that_took_a_runs_name_since_is_not_the_runs(tmp_path):
    """The manifest names each entry by its identity: a folder put where the run's results.json
    was is not removed by the next run, which refuses the name instead."""
    out = tmp_path / "out"
    assert fake_run(tmp_path, "native", out).returncode == 0
    (out / "results.json").unlink()
    (out / "results.json").mkdir()
    (out / "results.json" / "data.txt").write_text("mine")
    done = fake_run(tmp_path, "native", out)
    assert (done.returncode == 2
            and "results.json: no gpu-harness run made it" in done.stderr), done.stderr
    assert (out / "results.json" / "data.txt").read_text() == "mine"
    assert (out / "scenarios" / "native__host__gl").is_dir(), ("the refused run removed the "
                                                               "earlier "
                                                               "run's folders")


def test_exec_help_says_what_a_path_hides_and_how_to_give_it():
    """Near exec, the two things a path's command lacks: a display (piglit's programs need
    PIGLIT_PLATFORM) and the host's files (--file)."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "exec", "--help"],
                          capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "give piglit's programs --env PIGLIT_PLATFORM=surfaceless_egl" in text
    assert "--file HOST_PATH puts one at /run/gpu-harness/files/NAME" in text
    assert ("--env PIGLIT_PLATFORM=surfaceless_egl \\ -- "
            "/usr/lib/x86_64-linux-gnu/piglit/bin/glinfo" in text)


def test_vfio_help_is_its_own_parsers_whole_help():
    """`gpu-harness vfio --help`, as the command list says to ask: vfio's own usage, exit 0."""
    done = run_cli("vfio", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: gpu-harness vfio"), done.stderr
    assert "check" in done.stdout and "restore" in done.stdout
