"""What a new user tries first, through the real command line and real launches: a workload of
their own named as they named it."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def harness(*args: str, timeout: float = 300, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **options)


def test_a_command_workload_s_subtest_is_named_after_its_probe(tmp_path):
    """[probes.hello] runs `sh -c ...`: its subtest is hello (the matrix's name), not sh."""
    matrix = tmp_path / "m.toml"
    matrix.write_text('[matrix]\npaths = ["software"]\nprobes = ["hello"]\n\n[probes.hello]\nkind = "command"\n'
                      'argv = ["sh", "-c", "echo hello from the path"]\npass_pattern = "^hello from the path$"\n')
    done = harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    [scenario] = json.loads((tmp_path / "out" / "results.json").read_text())["scenarios"]
    assert [(s["name"], s["outcome"]) for s in scenario["subtests"]] == [("hello", "pass")], scenario
    assert (tmp_path / "out" / scenario["result_dir"] / "probe" / "steps" / "hello.log").is_file()
