"""What a new user tries first, through the real command line and real launches: a workload of
their own named as they named it; a file of theirs and a variable given to exec's command on every
family that hides the host, and the hints where a command names a host file it cannot see or is a
piglit program that wants a display."""
import glob
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import matrix as matrix_mod
from harness.launch.families import registry

from .conftest import skip_unless_required

ROOT = Path(__file__).resolve().parent.parent


def harness(*args: str, timeout: float = 300, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True,
                          timeout=timeout, cwd=ROOT, **options)


def test_a_command_workload_s_subtest_is_named_after_its_probe(tmp_path):
    """[probes.hello] runs `sh -c ...`: its subtest is hello (the matrix's name), not sh."""
    matrix = tmp_path / "m.toml"
    matrix.write_text('[matrix]\npaths = ["software"]\nprobes = ["hello"]\n\n[probes.hello]\nkind '
                      '= "command"\n'
                      'argv = ["sh", "-c", "echo hello from the path"]\npass_pattern = "^hello '
                      'from the path$"\n')
    done = harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    [scenario] = json.loads((tmp_path / "out" / "results.json").read_text())["scenarios"]
    assert [(s["name"], s["outcome"]) for s in scenario["subtests"]] == [("hello",
                                                                          "pass")], scenario
    assert (tmp_path / "out" / scenario["result_dir"] / "probe" / "steps" / "hello.log").is_file()


# One path of each family that hides the host's files, over a built runtime (the vfio paths boot
# the vm family's guest).
HIDING_PATHS = [("vtest-virgl", "trixie"), ("podman-vtest", "trixie"), ("flatpak-vtest", "trixie"),
                ("vm-headless", "trixie")]
READ_BOTH = ('cat /run/gpu-harness/files/data.txt; /tmp/tools/hello.sh; echo "greeting=$GREETING"; '
             'echo more >> /run/gpu-harness/files/data.txt 2>/dev/null || echo read-only')


def need(path: str, runtime: str, toolset) -> None:
    scenario = matrix_mod.expand({"matrix": {"paths": [path], "runtimes": [runtime],
                                             "probes": ["gl"]}},
                                 "<test>").scenarios[0]
    reason = registry.of(scenario.spec).available(scenario.spec, toolset)
    if reason:
        skip_unless_required(path, f"exec through {path}", reason)


def users_files(folder: Path):
    data, script = folder / "data.txt", folder / "hello.sh"
    data.write_text("from the host\n")
    script.write_text("#!/bin/sh\necho the script ran\n")
    script.chmod(0o755)
    return data, script


@pytest.mark.parametrize("path, runtime", HIDING_PATHS, ids=[path for path, _ in HIDING_PATHS])
def test_exec_gives_the_command_files_and_variables_on_every_family(toolset, tmp_path, path,
                                                                    runtime):
    """--file puts a host file at /run/gpu-harness/files/NAME (or where asked), read-only (a guest
    gets a copy: what it writes stays there), and --env sets a variable, on each family whose
    command cannot see the host's /tmp."""
    need(path, runtime, toolset)
    data, script = users_files(tmp_path)
    done = harness("exec", "--path", path, "--runtime", runtime, "--timeout", "240", "--file",
                   str(data),
                   "--file", f"{script}:/tmp/tools/hello.sh", "--env", "GREETING=hi there", "--",
                   "sh", "-c", READ_BOTH)
    assert done.returncode == 0, done.stderr
    said = ["from the host", "the script ran", "greeting=hi there"]
    if registry.of_path(path).name != "vm":  # bound read-only; a guest's is a copy on its share
        said.append("read-only")
    assert done.stdout.splitlines()[-len(said):] == said
    assert data.read_text() == "from the host\n"


def test_a_command_that_names_a_hidden_host_file_is_pointed_to_file(toolset, tmp_path):
    need("vtest-virgl", "host", toolset)
    data, _ = users_files(tmp_path)  # under /tmp, which the sandbox has its own of
    done = harness("exec", "--path", "vtest-virgl", "--", "cat", str(data))
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"gpu-harness: hint: {data} is on this host, whose /home, /root, /tmp, ... vtest-virgl "
        "hides: "
        f"--file {data} puts it at /run/gpu-harness/files/data.txt (--file HOST_PATH:INSIDE_PATH "
        "elsewhere)")
    given = harness("exec", "--path", "vtest-virgl", "--file", str(data), "--", "cat",
                    "/run/gpu-harness/files/data.txt")
    assert (given.returncode, given.stdout) == (0, "from the host\n"), given.stderr


def test_a_file_asked_for_in_a_read_only_folder_stops_the_command_saying_so(toolset, tmp_path):
    """A guest's or a Flatpak app's tree is the runtime's, read-only: the file is linked into place
    from inside, and where it cannot be the command does not run (exit 126, one line)."""
    need("flatpak-vtest", "trixie", toolset)
    data, _ = users_files(tmp_path)
    done = harness("exec", "--path", "flatpak-vtest", "--runtime", "trixie", "--file",
                   f"{data}:/usr/share/data.txt",
                   "--", "echo", "ran")
    assert done.returncode == 126 and "ran" not in done.stdout, (done.stdout, done.stderr)
    assert done.stderr.splitlines()[-1] == ("gpu-harness: --file: cannot put a file at "
                                            "/usr/share/data.txt in this "
                                            "path (its runtime's tree is read-only; /run and /tmp "
                                            "are writable)")


def test_a_piglit_program_without_its_platform_is_told_the_one_a_path_has(toolset):
    """piglit's glinfo opens X11's display unless PIGLIT_PLATFORM says otherwise, and no path gives
    one: exec says which to set; set, glinfo renders through the path."""
    found = sorted(glob.glob("/usr/lib/*/piglit/bin/glinfo"))
    if not found:
        pytest.skip("needs the host's piglit (apt-get install piglit)")
    need("vtest-virgl", "host", toolset)
    done = harness("exec", "--path", "vtest-virgl", "--", found[0])
    assert done.returncode != 0, done.stdout
    assert done.stderr.splitlines()[-1] == ("gpu-harness: hint: piglit's programs open the display "
                                            "PIGLIT_PLATFORM "
                                            "names (unset: X11's, which no path gives): "
                                            "--env PIGLIT_PLATFORM=surfaceless_egl")
    done = harness("exec", "--path", "vtest-virgl", "--env", "PIGLIT_PLATFORM=surfaceless_egl",
                   "--", found[0])
    assert done.returncode == 0, done.stderr
    assert "GL_RENDERER = virgl" in done.stdout and "hint" not in done.stderr
