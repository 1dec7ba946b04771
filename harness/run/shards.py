"""Shards of a matrix for CI engines (GitLab `parallel:`, GitHub Actions matrices): `run --shard
K/N` runs a deterministic part of the expanded matrix, every scenario in exactly one part, the
parts balanced by cost: the walls of an earlier run where one is given (`--durations
results.json`), else each family's typical cost. A machine's scenarios stay together (one boot).
Greedy longest-first (LPT): the dearest piece goes to the least loaded shard, ties to the lower
shard, so the same matrix and durations always give the same parts."""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..core.errors import InputError, shown
from ..launch.families import registry
from ..scenario.model import LOCAL, Scenario
from ..report import results as results_file

SHARD = re.compile(r"^(\d+)/(\d+)$")
# Typical wall of one scenario by family on a 2-core machine under TCG (measured here): a process
# or sandbox under a second, a container or a Flatpak app a few, a guest 10-20 s.
FAMILY_COST_S = {"host": 0.5, "sandbox": 1.0, "container": 3.0, "flatpak": 3.0, "vm": 15.0,
                 "vfio": 20.0}
MACHINE_BOOT_S = 30.0  # a machine's boot and the harness's start inside it
MACHINE_FACTOR = 40.0  # a scenario in a TCG guest against the same here


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as CI engines number their jobs
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse(text: str) -> Shard:
    """`K/N` with 1 <= K <= N, or a one-line InputError."""
    match = SHARD.match(text or "")
    if not match:
        raise InputError(f"--shard: {shown(text)} is not K/N (e.g. 2/4: the second of four parts)")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise InputError(f"--shard: {shown(text)}: K must be from 1 to N")
    return Shard(index, count)


def durations(path: Optional[Path]) -> Dict[str, float]:
    """Scenario id -> wall seconds, from an earlier run's results.json (or its folder)."""
    if path is None:
        return {}
    document = results_file.read(results_file.locate(path))
    return {str(s["id"]): float(s.get("wall_s") or 0.0) for s in document["scenarios"]
            if isinstance(s, dict) and results_file.is_number(s.get("wall_s"))}


def cost(scenario: Scenario, known: Dict[str, float]) -> float:
    if scenario.id in known:
        return max(known[scenario.id], 0.01)
    typical = FAMILY_COST_S.get(registry.of(scenario.spec).name, 1.0)
    return typical * (MACHINE_FACTOR if scenario.machine != LOCAL else 1.0)


def pieces(scenarios: List[Scenario],
           known: Dict[str, float]) -> List[Tuple[float, List[Scenario]]]:
    """What is placed whole: each local scenario, each machine's scenarios together (one boot)."""
    machines: Dict[str, List[Scenario]] = {}
    found: List[Tuple[float, List[Scenario]]] = []
    for scenario in scenarios:
        if scenario.machine == LOCAL:
            found.append((cost(scenario, known), [scenario]))
        else:
            machines.setdefault(scenario.machine, []).append(scenario)
    for group in machines.values():
        found.append((MACHINE_BOOT_S + sum(cost(s, known) for s in group), group))
    return found


def assign(scenarios: List[Scenario], count: int,
           known: Optional[Dict[str, float]] = None) -> List[List[Scenario]]:
    """The `count` parts, each in the matrix's own order."""
    order = {s.id: index for index, s in enumerate(scenarios)}
    loads = [0.0] * count
    parts: List[List[Scenario]] = [[] for _ in range(count)]
    ranked = sorted(pieces(scenarios, known or {}), key=lambda piece: (-piece[0],
                                                                       order[piece[1][0].id]))
    for weight, group in ranked:
        lightest = min(range(count), key=lambda i: (loads[i], i))
        loads[lightest] += weight
        parts[lightest].extend(group)
    return [sorted(part, key=lambda s: order[s.id]) for part in parts]


def select(scenarios: List[Scenario], shard: Shard,
           known: Optional[Dict[str, float]] = None) -> List[Scenario]:
    return assign(scenarios, shard.count, known)[shard.index - 1]


def balance(parts: List[List[Scenario]], known: Dict[str, float]) -> Tuple[List[float], float]:
    """Each part's expected cost, and the longest over the mean (1.0: perfectly even)."""
    loads = [sum(weight for weight, _ in pieces(part, known)) for part in parts]
    mean = sum(loads) / len(loads) if loads else 0.0
    return loads, (max(loads) / mean if mean else 1.0)
