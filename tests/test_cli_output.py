"""What the command line prints, through the real command line with stdout a pipe: the tables a
command is asked for on stdout with every cell whole (whatever COLUMNS says; doctor's and cache
list's long cells folded within their columns, so that those tables stay narrow), their --json forms
saying the same, and a help text for every option of every command."""
import re
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.host import toolset
from harness.cli import build_parser

from .files import write

NARROW = {"COLUMNS": "40"}  # what a narrow terminal, or a pipe off one, says
LONG_PATH = "/nonexistent/" + "d" * 40 + "/bwrap"  # wider than COLUMNS, shorter than a message cuts


def run_cli(*args, env=None):
    done = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, **NARROW, **(env or {})})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def row(text: str, first: str) -> str:
    """The one line of a table whose first cell is `first`."""
    found = [line for line in text.splitlines() if line.startswith("│") and cells(line)[0] == first]
    assert len(found) == 1, f"{first!r} is not on exactly one row:\n{text}"
    return found[0]


def cells(line: str) -> list:
    return [cell.strip() for cell in line.strip().strip("│").split("│")]


def folded_row(text: str, first: str) -> list:
    """The cells of the row whose first cell is `first`, each with its folded lines (the next lines
    whose first cell is empty) joined by a newline."""
    lines = text.splitlines()
    start = lines.index(row(text, first))
    parts = [cells(lines[start])]
    for line in lines[start + 1:]:
        if not line.startswith("│") or cells(line)[0]:
            break
        parts.append(cells(line))
    return ["\n".join(part for part in column if part) for column in zip(*parts, strict=True)]


def unfolded(cell: str) -> str:
    """A folded cell as it was, but for where it was folded (at a space, or inside a word)."""
    return re.sub(r"\s+", "", cell)


def widest_table_line(text: str) -> int:
    return max(len(line) for line in text.splitlines() if line[:1] in "┏┃┡│└")


def test_a_long_cell_is_printed_whole_on_one_line_into_a_pipe():
    long_cell = "/a/very/long/path/" + "x" * 150 + "/end"
    program = ("from rich.table import Table\nfrom harness.cli.output import print_table\n"
               "t = Table(title='t')\nt.add_column('name')\nt.add_column('why', "
               "no_wrap=True)\nt.add_column('where')\n"
               "t.add_row('one', 'a reason of several words that would wrap', "
               f"{long_cell!r})\nprint_table(t)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60,
                          env={**os.environ, **NARROW})
    assert done.returncode == 0, done.stderr
    assert cells(row(done.stdout, "one")) == ["one", "a reason of several words that would wrap",
                                              long_cell]
    assert "…" not in done.stdout and done.stderr == ""


def broken_manifest(tmp_path: Path) -> Path:
    """The discovered toolset, with a tool at a long path that does not exist and QEMU missing."""
    data = toolset.discover().to_dict()
    data["tools"]["bwrap"] = {"path": LONG_PATH, "version": "0.8.0", "extra": {}}
    data["tools"]["qemu-system-x86_64"] = {"path": None, "version": None, "extra": {}}
    return write(tmp_path, "toolset.json", data)


@pytest.mark.parametrize("manifest", [False, True], ids=["discovered", "manifest"])
def test_doctor_prints_its_tables_whole_on_stdout_as_its_json_says(tmp_path, manifest):
    args = ["--toolset", str(broken_manifest(tmp_path))] if manifest else []
    text = run_cli("doctor", *args)
    data = json.loads(run_cli("doctor", "--json", *args).stdout)
    assert text.stderr == ""  # nothing asked for goes to stderr
    assert "…" not in text.stdout
    for path in data["paths"]:
        assert list(map(unfolded, folded_row(text.stdout, path["id"]))) == list(map(unfolded, [
            path["id"], path["family"], "yes" if path["runs_here"] else "no",
            path["why_not"] or ""]))
    for name, tool in data["tools"].items():
        assert unfolded(folded_row(text.stdout, name)[3]) == (tool["path"] or "-")
    # its long cells folded: not a line of every path's id
    assert widest_table_line(text.stdout) <= 140
    assert f"render nodes: {', '.join(data['render_nodes']) or 'none'}" in text.stdout.splitlines()
    accel = data["vm_acceleration"]
    assert (f"VM acceleration: {accel['name'] or 'not tried'} ({accel['reason']})"
            in text.stdout.splitlines())
    if manifest:
        assert data["tools"]["bwrap"]["problem"].endswith("does not exist")
        why = unfolded(folded_row(text.stdout, "vtest-virgl")[3])
        assert unfolded(f"missing bwrap (manifest path {LONG_PATH} does not exist)") in why
        assert accel == {"name": None, "reason": "missing qemu-system-x86_64"}
    else:
        found = all(data["tools"].get(name, {}).get("path") for name in ("qemu-system-x86_64",
                                                                         "kernel", "busybox"))
        assert (accel["name"] in ("kvm", "tcg")) if found else accel["name"] is None, accel


def test_runtimes_list_prints_each_runtime_whole_on_stdout_as_its_json_says(tmp_path):
    # A cache of the test's own: a runtime another test builds meanwhile cannot change it between
    # the two listings.
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    text = run_cli("runtimes", "list", env=env)
    runtimes = json.loads(run_cli("runtimes", "list", "--json", env=env).stdout)
    assert text.stderr == "" and "…" not in text.stdout
    assert {"bookworm", "trixie", "sid"} <= {one["name"] for one in runtimes}
    for one in runtimes:
        line = cells(row(text.stdout, one["name"]))
        assert line[1] == f"{one['suite']}/{one['architecture']}"
        assert line[2] == (f"{one['lock']['packages']} packages, {one['lock']['archive_date']}"
                           if one["lock"] else "none")
        assert line[3:7] == [str(one[key] or "-") for key in ("mesa", "libc", "python", "size_mb")]
        assert line[7:] == (["yes", str(len(one["drift"]))] if one["built"] else ["no", "-"])
        assert Path(one["recipe"]).is_file() and (one["root"] is not None) == one["built"]


def test_cache_list_prints_each_entry_whole_on_stdout(tmp_path):
    kernel = "vmlinux-" + "0123456789abcdef" * 5
    write(tmp_path / "gpu-harness" / "kernel", kernel, "x" * 4096)
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    text = run_cli("cache", "list", env=env)
    entries = json.loads(run_cli("cache", "list", "--json", env=env).stdout)["entries"]
    assert [(e["kind"], e["name"]) for e in entries] == [("kernel", kernel)]
    assert "…" not in text.stdout and text.stderr == ""
    line = folded_row(text.stdout, "kernel")
    # what it holds, and the entry's whole name
    assert (unfolded(line[1]), unfolded(line[-1])) == (kernel, kernel)
    assert widest_table_line(text.stdout) <= 140


def test_pins_and_list_print_whole_lines_on_stdout():
    pins = run_cli("pins", "list")
    assert pins.stderr == "" and pins.stdout.strip()
    assert all(len(line) > 40 for line in pins.stdout.splitlines())  # not cut to COLUMNS
    listed = run_cli("list", "--json")
    ids = [one["id"] for one in json.loads(listed.stdout)]
    assert [line.split()[0] for line in run_cli("list").stdout.splitlines()] == ids


def parsers(parser: argparse.ArgumentParser, prog: str = "gpu-harness"):
    """Every parser of the grammar with its command line: the top one, its commands, theirs."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            for name, sub in action.choices.items():
                assert name in helped, f"{prog} {name}: no help in {prog} --help"
                yield from parsers(sub, f"{prog} {name}")


def test_every_option_and_positional_of_every_command_has_a_help_text():
    missing = []
    for prog, parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue  # a command's help is its entry in the list its parent prints
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
        parser.format_help()  # a bad %(...)s in a help text raises here
    assert not missing, f"no help text: {missing}"


def test_help_says_the_defaults_and_units():
    wide = {"COLUMNS": "200"}  # argparse breaks a long line at a hyphen
    run_help = run_cli("run", "--help", env=wide).stdout
    assert "(default: gpu-harness-out)" in " ".join(run_help.split())
    exec_help = " ".join(run_cli("exec", "--help", env=wide).stdout.split())
    assert "--timeout SECONDS" in exec_help and "(default: 3600, at most a week)" in exec_help
