"""The probes a matrix declares ([probes.NAME] kind = "piglit" | "command" ...), checked by their
kind (harness.workloads) into DeclaredProbes the expansion pairs with paths like any probe."""
import re
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

from ..core.errors import shown
from ..scenario.model import DeclaredProbe, RuntimeKind, Scenario
from ..scenario.probes import PROBES
from ..workloads import registry as workloads
from .checks import Problems, expect_type

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def parse_probes(problems: Problems, value, base: Path = Path(".")) -> Dict[str, DeclaredProbe]:
    """The declared probes; a file one names is read relative to `base` (the matrix file's
    folder)."""
    if not expect_type(problems, "probes", value, (dict,), "a table of [probes.NAME] tables"):
        return {}
    declared: Dict[str, DeclaredProbe] = {}
    for name, table in value.items():
        if name in PROBES:
            problems.add(f"probes.{name}",
                         f"{shown(name)} is a shipped probe's name; declare yours by another")
            continue
        if not NAME.match(name):
            problems.add(f"probes.{name}",
                         "a probe's name is lower-case letters, digits, '.', '_' and '-'")
            continue
        probe, found = workloads.parse(name, table, base)
        for key, message in found:
            problems.add(key, message)
        if not found:
            declared[name] = probe
    return declared


def check_programs(problems: Problems, scenarios: Iterable[Scenario]) -> None:
    """A declared probe's program misnamed, or settings it cannot take (a piglit profile it lacks),
    for a runtime whose tree is here before the run (the host's, a root filesystem): piglit is
    installed there, the test name is not one of its tests. A runtime without the package at all
    stays a Skip that names it; one built in the run is checked once built (check_built), an
    image when it runs (a failure naming the nearest names)."""
    trees = {s.runtime.build_name: s.runtime.root for s in scenarios
             if s.runtime.kind in (RuntimeKind.HOST, RuntimeKind.ROOTFS)}
    for declared, runtime, root in declared_on(scenarios, trees):
        for _, why in workloads.misnamed_in(declared, root):
            problems.add(f"probes.{declared.name}", f"runtime {runtime}: {why}")
    check_settings(problems, scenarios, trees)


def check_built(source: str, scenarios: Iterable[Scenario], roots: Dict[str, str]) -> None:
    """The declared probes' settings against the runtimes the run built (`roots`: a runtime's
    build name -> its root), before any scenario runs: InputError, one line a problem."""
    problems = Problems(source)
    check_settings(problems, scenarios, roots)
    problems.raise_if_any()


def check_settings(problems: Problems, scenarios: Iterable[Scenario],
                   trees: Dict[str, str]) -> None:
    for declared, runtime, root in declared_on(scenarios, trees):
        for key, why in workloads.runtime_problems(declared, root):
            problems.add(f"probes.{declared.name}.{key}", f"runtime {runtime}: {why}")


def declared_on(scenarios: Iterable[Scenario],
                trees: Dict[str, str]) -> List[Tuple[DeclaredProbe, str, Path]]:
    """Each declared probe once per runtime that has a tree here (`trees`: a runtime's build name
    -> its root), with the runtime's name."""
    seen: Set[Tuple[str, str]] = set()
    found = []
    for scenario in scenarios:
        declared, built = scenario.declared, scenario.runtime.build_name
        if declared is None or (declared.name, built) in seen or built not in trees:
            continue
        seen.add((declared.name, built))
        if Path(trees[built]).is_dir():
            found.append((declared, scenario.runtime.name, Path(trees[built])))
    return found
