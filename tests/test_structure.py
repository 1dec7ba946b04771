"""The house's shape: only the path table and the family modules name a concrete path or
family, so a new path is one table entry and a new family one module."""
import ast
from pathlib import Path

from harness import paths

HARNESS = Path(paths.__file__).parent
ALLOWED = {HARNESS / "paths.py", *(HARNESS / "families").glob("*.py")}
PATH_IDS = set(paths.PATHS)
FAMILY_NAMES = set(paths.FAMILIES)


def docstrings(tree: ast.AST) -> set:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def literals_naming_paths_or_families(source: str) -> list:
    """String literals equal to a path id anywhere, and family names in comparisons."""
    tree = ast.parse(source)
    skip = docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip \
                and node.value in PATH_IDS:
            hits.append((node.lineno, node.value))
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                if isinstance(operand, ast.Constant) and operand.value in FAMILY_NAMES:
                    hits.append((node.lineno, operand.value))
    return hits


def test_only_the_path_table_and_families_name_paths_and_families():
    offenders = []
    for module in sorted(HARNESS.rglob("*.py")):
        if module in ALLOWED:
            continue
        for line, value in literals_naming_paths_or_families(module.read_text()):
            offenders.append(f"{module.relative_to(HARNESS.parent)}:{line}: {value!r}")
    assert offenders == []


def test_the_scan_finds_what_it_looks_for():
    source = 'def f(spec):\n    """native is the baseline"""\n    return spec.family == "vm" or spec.id == "native"\n'
    assert literals_naming_paths_or_families(source) == [(3, "vm"), (3, "native")]


def test_every_path_names_a_registered_family_object():
    for spec in paths.PATHS.values():
        assert paths.FAMILIES[spec.family.name] is spec.family
        assert spec.family.launch_class is not None
