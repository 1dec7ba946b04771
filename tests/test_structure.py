"""The house's shape: the modules live in domain packages layered one way (no import between
packages points up a layer, none between modules makes a cycle; lazy, type-only and by-path
links counted), each module does one job in under 450 lines and says which in its docstring's
first line, only the path and machine tables and the family modules name a concrete path or
family, and the interfaces are abstract so that a family that forgets a method fails when it is
made, not mid-run. And every line of the code and its tests fits ruff's line length."""
import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

import harness
from harness.host.toolset import Tool, Toolset
from harness.launch.families import registry
from harness.launch.families.base import Family, ProcessFamily
from harness.launch.lifecycle import Launch, LaunchContext, Workload, Workspace
from harness.launch.target import Target
from harness.scenario import paths
from harness.scenario.model import HOST, Scenario

HARNESS = Path(harness.__file__).parent
ROOT = HARNESS.parent
ALLOWED = {HARNESS / "scenario" / "paths.py", HARNESS / "scenario" / "machine_specs.py",
           *(HARNESS / "launch" / "families").glob("*.py")}  # the tables
# The packages from the bottom up: each imports only those before it. The probes (stdlib programs
# that run inside a path) take the system's stdlib-only modules beside them (vfio, reaper).
LAYERS = ("core", "system", "probe", "scenario", "workloads", "host", "runtimes", "launch",
          "matrix", "judging",
          "report", "run", "studies", "cli")
# the package's face: imports anything, imported by nothing
FACE = {"harness", "harness.pytest_plugin"}
PATH_IDS = set(paths.PATHS)
FAMILY_NAMES = set(registry.FAMILIES)
MAX_LINES = 450


def docstrings(tree: ast.AST) -> set:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)) and node.body:
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
    source = ('def f(spec):\n    """native is the baseline"""\n    return spec.family == "vm" or '
              'spec.id == "native"\n')
    assert literals_naming_paths_or_families(source) == [(3, "vm"), (3, "native")]


def test_every_path_names_a_registered_family():
    for spec in paths.PATHS.values():
        family = registry.of(spec)
        assert isinstance(family, Family) and family.name == spec.family, spec.id


# --- imports one way ------------------------------------------------------------------------------

def module_name(path: Path, root: Path = HARNESS) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: Set[str], root: Path = HARNESS) -> Set[str]:
    """Every module of the package that `path` imports: at the top, in a function, under
    TYPE_CHECKING alike (a name imported from a module is that module; the package a module is
    in is not counted)."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me and not me.startswith(name + "."):
                found.add(name)
    return found


def import_graph(root: Path = HARNESS) -> Dict[str, Set[str]]:
    """Module -> the modules it imports; the package's data (a workload's program) is no module of
    it."""
    files = {module_name(path, root): path for path in root.rglob("*.py")
             if "data" not in path.relative_to(root).parts}
    return {name: imported(path, set(files), root) for name, path in files.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_harness_has_no_import_cycle():
    graph = import_graph()
    # the whole package was read
    assert len(graph) > 50 and sum(len(edges) for edges in graph.values()) > 200
    assert cycles(graph) == []


def package_of(module: str) -> str:
    return module if module in FACE else module.split(".")[1]


def flat_imports(path: Path) -> Set[str]:
    """What a probe file imports by a bare name that is a module of the system package (copied
    beside the probe where it runs): a by-path link."""
    system = {p.stem for p in (HARNESS / "system").glob("*.py")}
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {f"harness.system.{alias.name}" for alias in node.names
                      if alias.name in system}
    return found


def package_graph() -> Dict[str, Set[str]]:
    """Package -> the packages its modules import (each import counted, lazy ones too)."""
    graph: Dict[str, Set[str]] = {}
    modules = import_graph()
    for path in (HARNESS / "probe").glob("*.py"):
        modules[module_name(path)] = modules.get(module_name(path), set()) | flat_imports(path)
    for module, imports in modules.items():
        source = package_of(module)
        graph.setdefault(source, set()).update(package_of(target) for target in imports
                                               if package_of(target) != source)
    return graph


def test_packages_import_only_the_layers_below_them():
    graph = package_graph()
    assert set(graph) == set(LAYERS) | FACE, "a package outside the layers, or a layer that is gone"
    upward = sorted(f"{source} -> {target}" for source, targets in graph.items()
                    for target in targets
                    if source not in FACE and (target in FACE
                                               or LAYERS.index(target) > LAYERS.index(source)))
    assert upward == []
    assert cycles(graph) == []
    assert graph["probe"] <= {"system"} and "core" not in graph["core"]


def test_only_the_face_is_at_the_top_and_every_package_says_what_it_owns_and_imports():
    assert sorted(p.name for p in HARNESS.glob("*.py")) == ["__init__.py", "pytest_plugin.py"]
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((HARNESS / layer / "__init__.py").read_text())) or ""
        assert doc and ("Imports" in doc or "imports" in doc or layer == "probe"), layer


def test_the_cycle_finder_counts_lazy_and_type_only_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from "
                                  ".b import B\n")
    (package / "b.py").write_text("def f():\n    from . import c\n")
    (package / "c.py").write_text("from .a import x\n")
    (package / "d.py").write_text("from . import a\n")
    graph = import_graph(package)
    assert (graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"}
            and graph["pkg.d"] == {"pkg.a"})
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


# --- one room, one job
# ------------------------------------------------------------------------------

def test_every_module_is_small_and_says_its_job():
    too_big, undocumented = [], []
    for module in sorted(HARNESS.rglob("*.py")):
        lines = len(module.read_text().splitlines())
        if lines > MAX_LINES:
            too_big.append(f"{module.relative_to(HARNESS.parent)}: {lines} lines")
        doc = ast.get_docstring(ast.parse(module.read_text()))
        if not doc or not doc.splitlines()[0].strip():
            undocumented.append(str(module.relative_to(HARNESS.parent)))
    assert too_big == [] and undocumented == []


# --- lines at most ruff's line length
# ------------------------------------------------------------------------------

def line_length() -> int:
    """ruff's line length, as pyproject.toml's [tool.ruff] sets it."""
    with open(ROOT / "pyproject.toml", "rb") as pyproject:
        return tomllib.load(pyproject)["tool"]["ruff"]["line-length"]


def test_every_line_of_the_code_and_its_tests_fits_ruffs_line_length():
    """The package's, the tests' and the VM tests' Python files and conftest.py (what ruff
    reads): a wider line is named by file and line."""
    width = line_length()
    sources = [*sorted(HARNESS.rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py")),
               *sorted((ROOT / "vmtests").rglob("*.py")), ROOT / "conftest.py"]
    too_wide = [f"{source.relative_to(ROOT)}:{number}: {len(line)} > {width}"
                for source in sources
                for number, line in enumerate(source.read_text().split("\n"), 1)
                if len(line) > width]
    assert too_wide == [], "\n".join(too_wide)


# --- interfaces as abstract classes
# -----------------------------------------------------------------

def test_a_family_that_forgets_a_method_cannot_be_made():
    class Forgetful(Family):  # no launch(), no target()
        name = "forgetful"

    class PlanLess(ProcessFamily):  # a process family with no plan()
        name = "plan-less"

    class Nameless(ProcessFamily):
        def plan(self, ctx):
            raise AssertionError("never called")

    for forgetful in (Forgetful, PlanLess):
        with pytest.raises(TypeError, match="abstract"):
            forgetful()
    with pytest.raises(TypeError, match="names no family"):
        Nameless()


def test_a_launch_or_target_that_forgets_a_method_cannot_be_made(tmp_path):
    class HalfLaunch(Launch):
        def prepare(self):
            return []

    class HalfTarget(Target):
        def start(self):
            return self

    scenario = Scenario(id="software/host/gl", path_id="software", runtime=HOST, probe="gl")
    ctx = LaunchContext(scenario, Toolset("test", {}), Workspace(tmp_path / "r", tmp_path / "t"),
                        Workload(probe="gl"))
    for half in (HalfLaunch, HalfTarget):
        with pytest.raises(TypeError, match="abstract"):
            half(ctx)


def test_a_vfio_guest_target_launches_the_vfio_way(tmp_path):
    """A test's guest of a vfio path boots as the matrix boots it: with the vfio family's launch
    (its IOMMU, devices and kernel arguments), not a plain VM launch."""
    from harness.launch.families.vfio import VfioLaunch
    from harness.launch.families.vm_launch import VmLaunch

    qemu = Tool("qemu-system-x86_64", "/usr/bin/qemu-system-x86_64")
    for path_id, launch_class in (("vm-vfio-nested", VfioLaunch), ("vm-virgl", VmLaunch)):
        scenario = Scenario(id=f"{path_id}/host/gl", path_id=path_id, runtime=HOST, probe="gl")
        ctx = LaunchContext(scenario, Toolset("test", {qemu.name: qemu}),
                            Workspace(tmp_path / path_id, tmp_path / "t"),
                            Workload(probe="gl"))
        guest = registry.of(scenario.spec).target(ctx)
        assert type(guest.launch) is launch_class, path_id
        assert guest.launch.ctx.interactive  # booted with the command agent
        # the vfio family's probe arguments go to its guest's probe; a plain VM path adds none
        assert guest.launch.family_args[:1] == (["--size"] if launch_class is VfioLaunch
                                                else []), path_id
