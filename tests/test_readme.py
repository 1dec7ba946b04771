"""The README's and the docs' lists that the code defines stay true: the README's failure classes
are
exactly harness.scenario.outcomes.FailureKind's, its path table and docs/paths.md's have exactly the
paths of harness/scenario/paths.py, its commands table every command of the parser, its quick start
the default matrix's size, docs/layout.md's package graph the layers tests/test_structure.py holds;
and every link between the pages reaches a file and a heading that exist."""
import argparse
import re
from pathlib import Path
from typing import Dict, List

import pytest

from harness import matrix
from harness.scenario import paths
from harness.cli import parser as cli_parser
from harness.scenario.outcomes import FailureKind

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def section(title: str, page: Path = README) -> str:
    """The text under the heading that starts with `title`, up to the next heading of the same
    or a higher level."""
    lines = page.read_text(encoding="utf-8").splitlines()
    fenced, headings = False, {}  # line number -> level; a '#' line in a code block is no heading
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            headings[i] = len(line) - len(line.lstrip("#"))
    starts = [i for i in headings if lines[i].lstrip("#").strip().startswith(title)]
    assert len(starts) == 1, f"{page.name}: {len(starts)} headings start with {title!r}"
    start = starts[0]
    end = next((i for i in sorted(headings) if i > start and headings[i] <= headings[start]),
               len(lines))
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
    assert len(names) == len(set(names)), ("listed twice: "
                                           f"{sorted(n for n in names if names.count(n) > 1)}")
    assert all(meaning.strip() for _, meaning in listed), "a class without its meaning"
    enum = {kind.value for kind in FailureKind}
    assert not enum - set(names), ("FailureKind members the README does not list: "
                                   f"{sorted(enum - set(names))}")
    assert not set(names) - enum, ("README lists classes FailureKind lacks: "
                                   f"{sorted(set(names) - enum)}")


@pytest.mark.parametrize("page, title", [(README, "Paths"), (ROOT / "docs" / "paths.md",
                                                             "Every path in detail")],
                         ids=["README", "docs/paths.md"])
def test_the_path_tables_have_every_path_and_no_other(page, title):
    rows = first_table(section(title, page))
    ids = [path_id for row in rows for path_id in re.findall(r"`([a-z0-9-]+)`", row[0])]
    assert len(ids) == len(set(ids)), ("a path in two rows: "
                                       f"{sorted(i for i in ids if ids.count(i) > 1)}")
    assert not set(paths.PATHS) - set(ids), (f"paths missing from {page.name}'s table: "
                                             f"{sorted(set(paths.PATHS) - set(ids))}")
    assert not set(ids) - set(paths.PATHS), (f"{page.name}'s table names unknown paths: "
                                             f"{sorted(set(ids) - set(paths.PATHS))}")
    assert all(len(row) == 3 and row[1] and row[2]
               for row in rows), "a row without what it tries or its renderer"


def test_the_commands_table_has_every_command():
    top = cli_parser.build_parser()
    [commands] = [action for action in top._actions if isinstance(action,
                                                                  argparse._SubParsersAction)]
    documented = {word for row in first_table(section("Commands"))
                  for word in re.findall(r"gpu-harness ([a-z]+)", row[0])}
    assert not set(commands.choices) - documented, \
        f"commands missing from the README's table: {sorted(set(commands.choices) - documented)}"


def test_the_quick_start_counts_the_default_matrix():
    count = len(matrix.load().scenarios)
    assert f"**{count} scenarios**" in section("Quick start"), (f"the default matrix has {count} "
                                                                "scenarios")


def test_no_numbering_from_outside_the_repository():
    """Design documents outside the repository are cited by title, never by their numbers."""
    found = re.findall(r".*(?:\bseeds? \d{3}\b|\bthe seeds\b|attempt #\d|\(#\d\)).*",
                       README.read_text(encoding="utf-8"),
                       flags=re.I)  # a random generator's seed (--seed N) is no design document
    assert not found, found[:3]


def test_the_readme_stays_short():
    """What a newcomer needs on day one; the rest is in docs/ (the README links to every page)."""
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines < 350, (f"README.md has {lines} lines: move what is not day one into a page under "
                         "docs/")
    linked = set(re.findall(r"\]\((docs/[a-z-]+\.md)[#)]", README.read_text(encoding="utf-8")))
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert not pages - linked, f"pages the README does not link to: {sorted(pages - linked)}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores
    kept), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> List[str]:
    found: List[str] = []
    seen: Dict[str, int] = {}
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            base = slug(line.lstrip("#"))
            found.append(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return found


def test_the_slug_is_githubs():
    assert slug("Failure classes (`failure_kind`)") == "failure-classes-failure_kind"
    assert (slug("Is vtest a boundary? A hostile client, measured")
            == "is-vtest-a-boundary-a-hostile-client-measured")
    assert (slug("Exit codes and the output folder's manifest")
            == "exit-codes-and-the-output-folders-manifest")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_reaches_a_file_and_a_heading(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert broken == []


def test_the_layout_page_has_every_package_in_its_layer_and_no_import_up():
    """docs/layout.md's graph lists the packages in tests/test_structure.py's order, each importing
    only packages below it; the live graph is `package_graph()` there (the page says how to print
    it)."""
    from tests.test_structure import FACE, LAYERS

    rows = first_table(section("The package graph", ROOT / "docs" / "layout.md"))
    names = [row[0].strip("`") for row in rows]
    assert names == [*LAYERS, *sorted(face.replace("harness.", "") for face in FACE
                                      if face != "harness")], names
    for name, imports in ((row[0].strip("`"), row[1]) for row in rows[:len(LAYERS)]):
        listed = [] if imports == "nothing of the harness" else [p.strip()
                                                                 for p in imports.split(",")]
        assert set(listed) <= set(LAYERS[:LAYERS.index(name)]), (f"{name} is shown importing a "
                                                                 f"layer above it: {listed}")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_file_a_page_names_exists(page):
    """A module moved or renamed leaves no page pointing at its old place (a pattern such as
    `harness/probe/NAME.py` or `harness/data/*.toml` names no one file and is not checked)."""
    named = re.findall(r"`((?:harness|tests|vmtests|scripts|nix|docs|\.ci)/[^`\s]*)`",
                       page.read_text(encoding="utf-8"))
    missing = [name for name in named
               if not re.search(r"[<*{]|\b[A-Z]{2,}\b", name)
               and not (ROOT / re.sub(r"::.*$", "", name)).exists()]
    assert missing == []


def test_the_readme_matrix_example_expands(tmp_path):
    """The matrix a newcomer copies is one the harness takes (its own root folder put in place)."""
    [example] = re.findall(r"```toml\n(.*?)```", section("The matrix"), flags=re.S)
    assert '"/srv/rootfs/mine"' in example
    (tmp_path / "matrix.toml").write_text(example.replace('"/srv/rootfs/mine"', f'"{tmp_path}"'))
    scenarios = matrix.load(tmp_path / "matrix.toml").scenarios
    ids = {scenario.id for scenario in scenarios}
    assert {"vtest-virgl/trixie/my-app",
            "podman-vtest/trixie/gl"} <= ids and "podman-vtest/mine/gl" not in ids
