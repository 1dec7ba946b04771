"""The probes a matrix declares ([probes.NAME] kind = "piglit" | "command" ...), checked by their
kind (harness.workloads) into DeclaredProbes the expansion pairs with paths like any probe."""
import re
from pathlib import Path
from typing import Dict, Iterable, Set, Tuple

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
    """A declared probe's program misnamed for a runtime whose tree is here before the run (the
    host's, a root filesystem): piglit is installed there, the test name is not one of its tests.
    A runtime without the package at all stays a Skip that names it; one built in the run, or an
    image, is judged when it runs (a failure naming the nearest names)."""
    seen: Set[Tuple[str, str]] = set()
    for scenario in scenarios:
        declared, runtime = scenario.declared, scenario.runtime
        if declared is None or (declared.name, runtime.name) in seen:
            continue
        seen.add((declared.name, runtime.name))
        root = Path(runtime.root)
        if runtime.kind not in (RuntimeKind.HOST, RuntimeKind.ROOTFS) or not root.is_dir():
            continue
        for _, why in workloads.misnamed_in(declared, root):
            problems.add(f"probes.{declared.name}", f"runtime {runtime.name}: {why}")
