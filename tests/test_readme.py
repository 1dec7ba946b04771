"""The README's lists that the code defines stay true: its failure classes are exactly
harness.scenario.outcomes.FailureKind's, its path table has exactly the paths of harness/scenario/paths.py, its
commands table every command of the parser, and its quick start the default matrix's size."""
import argparse
import re
from pathlib import Path
from typing import List

from harness import matrix
from harness.scenario import paths
from harness.cli import parser as cli_parser
from harness.scenario.outcomes import FailureKind

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    """The text under the heading that starts with `title`, up to the next heading of the same
    or a higher level."""
    lines = README.read_text(encoding="utf-8").splitlines()
    fenced, headings = False, {}  # line number -> level; a '#' line in a code block is no heading
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            headings[i] = len(line) - len(line.lstrip("#"))
    starts = [i for i in headings if lines[i].lstrip("#").strip().startswith(title)]
    assert len(starts) == 1, f"README.md: {len(starts)} headings start with {title!r}"
    start = starts[0]
    end = next((i for i in sorted(headings) if i > start and headings[i] <= headings[start]), len(lines))
    return "\n".join(lines[start + 1:end])


def first_table(text: str) -> List[List[str]]:
    """The rows (cells) of the first markdown table in `text`, without its header and rule."""
    rows, seen = [], False
    for line in text.splitlines():
        if line.startswith("|"):
            seen = True
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif seen:
            break
    return rows[2:]


def test_the_failure_classes_are_the_enums_both_ways():
    listed = re.findall(r"^- `([a-z-]+)`: (.*)$", section("Failure classes"), flags=re.M)
    names = [name for name, _ in listed]
    assert len(names) == len(set(names)), f"listed twice: {sorted(n for n in names if names.count(n) > 1)}"
    assert all(meaning.strip() for _, meaning in listed), "a class without its meaning"
    enum = {kind.value for kind in FailureKind}
    assert not enum - set(names), f"FailureKind members the README does not list: {sorted(enum - set(names))}"
    assert not set(names) - enum, f"README lists classes FailureKind lacks: {sorted(set(names) - enum)}"


def test_the_path_table_has_every_path_and_no_other():
    rows = first_table(section("Paths"))
    ids = [path_id for row in rows for path_id in re.findall(r"`([a-z0-9-]+)`", row[0])]
    assert len(ids) == len(set(ids)), f"a path in two rows: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert not set(paths.PATHS) - set(ids), f"paths missing from the README's table: {sorted(set(paths.PATHS) - set(ids))}"
    assert not set(ids) - set(paths.PATHS), f"the README's table names unknown paths: {sorted(set(ids) - set(paths.PATHS))}"
    assert all(len(row) == 3 and row[1] and row[2] for row in rows), "a row without what it tries or its renderer"


def test_the_commands_table_has_every_command():
    top = cli_parser.build_parser()
    [commands] = [action for action in top._actions if isinstance(action, argparse._SubParsersAction)]
    documented = {word for row in first_table(section("Commands"))
                  for word in re.findall(r"gpu-harness ([a-z]+)", row[0])}
    assert not set(commands.choices) - documented, \
        f"commands missing from the README's table: {sorted(set(commands.choices) - documented)}"


def test_the_quick_start_counts_the_default_matrix():
    count = len(matrix.load().scenarios)
    assert f"**{count} scenarios**" in section("Quick start"), f"the default matrix has {count} scenarios"


def test_no_numbering_from_outside_the_repository():
    """Design documents outside the repository are cited by title, never by their numbers."""
    found = re.findall(r".*(?:\bseeds? \d{3}\b|\bthe seeds\b|attempt #\d|\(#\d\)).*", README.read_text(encoding="utf-8"),
                       flags=re.I)  # a random generator's seed (--seed N) is no design document
    assert not found, found[:3]
