"""Every command line the README and the pages docs/*.md show goes through the CLI's own parser, so
a renamed
flag breaks a test, not a reader; the cheap ones (an explicit list: they launch nothing and end in
a second or two) also run for real.

What counts as a shown command: inside a code block, a line that starts with `gpu-harness `,
`$ gpu-harness ` or `./scripts/`; outside code blocks, inline code that starts with
`gpu-harness ` (it may wrap across lines). Output samples start otherwise and are never picked.
A shown line may use a synopsis: `[...]` marks what is optional (it is parsed as if given),
`RUN...` one or more, and an upper-case placeholder stands for a value (FILE, DIR, NAME, P, R ...
pass as they are; the numeric ones get a number: PLACEHOLDERS). Shell around a command is
understood: `# comment`, redirects (`< FILE`, `> FILE`), and `;`, `&&`, `|` between commands."""
import argparse
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence
from unittest import mock

import pytest

from harness.cli import build_parser
from harness.core.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Upper-case placeholders of options that take a number or a fixed word; any other placeholder
# is a string the parser takes as it is.
PLACEHOLDERS = {"N": "2", "K/N": "1/2", "X": "2", "S": "5", "SECONDS": "60", "DAYS": "7",
                "MODE": "forking",
                "COMMAND": "run"}
OPERATORS = {";", "&&", "||", "|", "&"}
REDIRECTS = {"<", ">", ">>", "<<"}
# The shown lines run for real, exactly as shown (comments and redirects aside), with the exit
# codes each may end with: they launch nothing, write nothing and take a second or two.
RUN_FOR_REAL = {
    "gpu-harness list": (0,),
    "gpu-harness doctor": (0,),
    "gpu-harness doctor --json": (0,),
    "gpu-harness runtimes list": (0,),
    "gpu-harness pins list": (0,),
    # reads sysfs only; 1 where no display controller can go to a guest
    "gpu-harness vfio check": (0, 1),
}


@dataclass(frozen=True)
class Shown:
    page: str  # relative to the repository
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def picked(text: str, page: str = "page.md") -> Iterator[Shown]:
    """The command lines a markdown text shows, in order."""
    lines = text.splitlines()
    fenced = False
    prose: List[str] = []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
            prose.append("")
            continue
        if not fenced:
            prose.append(line)
            continue
        prose.append("")
        command = stripped[2:] if stripped.startswith("$ gpu-harness ") else stripped
        if command.startswith("gpu-harness ") or command.startswith("./scripts/"):
            yield Shown(page, number, command)
    joined = "\n".join(prose)
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", joined):
        code = " ".join(match.group(1).replace("\\|", "|").split())
        if code.startswith("gpu-harness "):
            yield Shown(page, joined.count("\n", 0, match.start()) + 1, code)


def shown_lines() -> List[Shown]:
    return [shown for page in PAGES
            for shown in picked(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))]


def commands(line: str) -> List[List[str]]:
    """The commands of a shell line: its words, comments and redirects dropped, split at
    operators."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found: List[List[str]] = [[]]
    words = iter(lexer)
    for word in words:
        if word in OPERATORS:
            found.append([])
        elif word in REDIRECTS:
            next(words, None)  # its file
        else:
            found[-1].append(word)
    return [command for command in found if command]


def synopsis_argv(words: Sequence[str]) -> List[str]:
    """A synopsis's words as an argv: optional brackets dropped, `...` dropped, numeric placeholders
    given a value."""
    argv = []
    for word in words:
        word = word.lstrip("[").rstrip("]")
        if word.endswith("...") and len(word) > 3:
            word = word[:-3]
        if word:
            argv.append(PLACEHOLDERS.get(word, word))
    return argv


class Parsed(Exception):
    """Raised once a command's own argparse parser has accepted its arguments: nothing runs."""


def parse_only(main: Callable[[List[str]], object], argv: List[str]) -> None:
    """Parse argv with the parser `main` builds for itself (vfio's, the GPU tier's), running
    nothing:
    the parser is stopped right after parse_args."""
    real = argparse.ArgumentParser.parse_args

    def then_stop(self, args=None, namespace=None):
        real(self, args, namespace)
        raise Parsed

    messages = io.StringIO()
    with mock.patch.object(argparse.ArgumentParser, "parse_args", then_stop), \
            contextlib.redirect_stdout(messages), contextlib.redirect_stderr(messages):
        try:
            main(argv)
        except Parsed:
            return
        except SystemExit as exc:
            if exc.code in (0, None):  # --help
                return
            raise AssertionError(f"its parser refused it: {messages.getvalue().strip()}") from None
    raise AssertionError("it ran without parsing its arguments")


def parse(argv: List[str]) -> Optional[argparse.Namespace]:
    """argv (after `gpu-harness`) through the CLI's parser; None for a --help or --version."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code in (0, None):
                assert out.getvalue().strip(), "a --help that printed nothing"
                return None
            raise AssertionError(out.getvalue()) from None
    if args.command == "vfio":  # the top parser hands its words to vfio's own
        from harness.system import vfio

        parse_only(vfio.main, list(args.vfio_args))
    return args


def check_script(argv: List[str]) -> None:
    """A ./scripts/ line: the script is there and runnable, and its arguments are ones it takes."""
    script = ROOT / argv[0]
    assert script.is_file() and os.access(script, os.X_OK), f"{argv[0]}: no such runnable script"
    rest = argv[1:]
    if script.name == "run":  # arguments go to `gpu-harness run`
        parse(["run", *rest])
    elif script.name == "gpu-tier":
        from harness.cli import gputier

        parse_only(gputier.main, rest)
    elif script.name == "test":  # --all, then pytest's arguments: the tests it names must exist
        for word in rest[1:] if rest[:1] == ["--all"] else rest:
            if not word.startswith("-") and ("/" in word or word.endswith(".py")):
                assert (ROOT / word.split("::")[0]).exists(), f"{word}: no such test"
    else:
        assert not rest, f"{argv[0]} takes no arguments"


SHOWN = shown_lines()


@pytest.mark.parametrize("shown", SHOWN, ids=lambda shown: f"{shown.page}:{shown.line}")
def test_a_shown_command_line_parses(shown):
    found = commands(shown.text)
    assert found, f"{shown}: no command in it"
    misread = [words for words in found if words[0].endswith("]")]
    assert not misread, (f"{shown}: a synopsis's `a|b` reads as a shell pipe; show one value "
                         "(`--mode deps`)")
    for words in found:
        argv, problem = synopsis_argv(words), ""
        try:
            if argv[0] == "gpu-harness":
                parse(argv[1:])
            elif argv[0].startswith("./scripts/"):
                check_script(argv)
        except (InputError, AssertionError) as exc:
            problem = str(exc)
        if problem:  # outside the except: the failure is the line and why, with nothing chained
            pytest.fail(f"{shown}\n  as argv {argv}: {problem}", pytrace=False)


def test_the_docs_show_every_command():
    top = build_parser()
    [sub] = [action for action in top._actions if isinstance(action, argparse._SubParsersAction)]
    used = {words[1] for shown in SHOWN for words in commands(shown.text)
            if words[0] == "gpu-harness" and len(words) > 1}
    assert not set(sub.choices) - used, ("commands no page shows a line of: "
                                         f"{sorted(set(sub.choices) - used)}")


def as_shown(shown: Shown) -> List[str]:
    return [" ".join(words) for words in commands(shown.text)]


REAL = sorted({line for shown in SHOWN for line in as_shown(shown) if line in RUN_FOR_REAL})


def test_every_command_run_for_real_is_shown():
    assert sorted(RUN_FOR_REAL) == REAL, ("in RUN_FOR_REAL but no page shows it: "
                                          f"{sorted(set(RUN_FOR_REAL) - set(REAL))}")


@pytest.mark.parametrize("line", REAL)
def test_a_cheap_shown_command_runs(line):
    done = subprocess.run([sys.executable, "-m", "harness.cli", *shlex.split(line)[1:]], cwd=ROOT,
                          capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert done.returncode in RUN_FOR_REAL[line], (f"{line}: exit "
                                                   f"{done.returncode}\n{done.stderr[-2000:]}")
    assert done.stdout.strip(), f"{line}: printed nothing"
    if line.endswith("--json"):
        data = json.loads(done.stdout)
        assert {"tools", "paths"} <= set(data), f"{line}: {sorted(data)}"


def every_command(parser: argparse.ArgumentParser, prefix: List[str]) -> Iterator[List[str]]:
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_command(sub, [*prefix, name])


HELPED = [words for words in every_command(build_parser(), []) if words[:1] != ["vfio"]]


@pytest.mark.parametrize("words", HELPED, ids=lambda words: " ".join(words) or "gpu-harness")
def test_every_command_has_its_help(words):
    """`gpu-harness COMMAND --help`, as the README says, for every command and subcommand."""
    assert parse([*words, "--help"]) is None


@pytest.mark.parametrize("command", ["check", "bind", "restore"])
def test_every_vfio_command_has_its_help(command):
    """vfio's commands are parsed by vfio's own parser (harness/system/vfio.py runs standalone
    too)."""
    from harness.system import vfio

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        vfio.main([command, "--help"])
    assert exited.value.code == 0 and f"usage: gpu-harness vfio {command}" in out.getvalue()


def test_the_entry_point_answers_help():
    done = subprocess.run([sys.executable, "-m", "harness.cli", "--help"], cwd=ROOT,
                          capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "usage: gpu-harness" in done.stdout, done.stderr


# --- the picking itself
# -------------------------------------------------------------------------------

SAMPLE = """Run `gpu-harness list` first; `gpu-harness-out/report.html` and \
`gpu-harness: error: x` are no commands.
A wrapped one: `gpu-harness run --matrix
harness/data/compat.toml --paths native`.

```sh
$ gpu-harness doctor --json > t.json   # a comment
./scripts/test --all
nix run .
```

```
gpu-harness: error: an output sample
Pass           native/host/gl                 0.57s  all checks passed
```

| command | what |
|---|---|
| `gpu-harness cache list [--json]` | a cell |
"""


def test_only_commands_are_picked():
    assert [(shown.line, shown.text) for shown in picked(SAMPLE)] == [
        (6, "gpu-harness doctor --json > t.json   # a comment"),
        (7, "./scripts/test --all"),
        (1, "gpu-harness list"),
        (2, "gpu-harness run --matrix harness/data/compat.toml --paths native"),
        (18, "gpu-harness cache list [--json]"),
    ]


def test_shell_and_synopsis_are_understood():
    assert commands("gpu-harness doctor --json > t.json; gpu-harness run --toolset t.json  # same "
                    "tools") == [
        ["gpu-harness", "doctor", "--json"], ["gpu-harness", "run", "--toolset", "t.json"]]
    assert commands("gpu-harness exec --path vtest-virgl -- python3 - < prog.py") == [
        ["gpu-harness", "exec", "--path", "vtest-virgl", "--", "python3", "-"]]
    assert synopsis_argv(["gpu-harness", "merge", "RUN...", "[--shard", "K/N]", "[-j", "N]",
                          "[SPEC...]"]) == [
        "gpu-harness", "merge", "RUN", "--shard", "1/2", "-j", "2", "SPEC"]


def test_a_renamed_flag_is_caught():
    with pytest.raises(InputError, match="unrecognized arguments: --no-such-flag"):
        parse(["run", "--no-such-flag"])
    with pytest.raises(AssertionError, match="refused"):
        parse(["vfio", "check", "--no-such-flag"])
    from harness.cli import gputier

    with pytest.raises(AssertionError, match="refused"):
        parse_only(gputier.main, ["run", "--outt", "DIR"])
