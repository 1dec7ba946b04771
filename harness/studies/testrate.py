"""`gpu-harness bench`'s conformance table: for each scenario with subtests (a piglit profile), its
tests, the seconds its probe ran them in, tests per second (the median of the runs, with the
slowest and fastest), and what the harness adds around them (the scenario's wall less its probe's),
per test."""
from dataclasses import dataclass
from typing import Dict, List, Tuple

from .bench import fmt, median


@dataclass
class RateRow:
    scenario: str
    tests: int
    probe_s: float
    rate: float  # tests per second, median of the runs
    spread: Tuple[float, float]
    overhead_s: float  # wall less the probe's seconds: setup, services, teardown

    @property
    def overhead_per_test_ms(self) -> float:
        return 1000 * self.overhead_s / self.tests


def rows(rounds: List[List]) -> List[RateRow]:
    """rounds: one list of ScenarioResult per repetition."""
    by_id: Dict[str, List] = {}
    for results in rounds:
        for result in results:
            if result.verdict.subtests and result.phases.get("probe_s"):
                by_id.setdefault(result.scenario.id, []).append(result)
    found = []
    for scenario_id, results in by_id.items():
        rates = [len(r.verdict.subtests) / r.phases["probe_s"] for r in results]
        probe = median(r.phases["probe_s"] for r in results) or 0.0
        wall = median(r.wall_s for r in results) or 0.0
        found.append(RateRow(scenario_id, len(results[0].verdict.subtests), probe,
                             median(rates) or 0.0, (min(rates), max(rates)),
                             max(wall - probe, 0.0)))
    return found


def table(found: List[RateRow], title: str = "conformance: tests per second"):
    from rich.table import Table

    out = Table(title=title)
    for column in ("scenario", "tests", "probe s", "tests/s (runs)", "harness s",
                   "harness ms/test"):
        out.add_column(column, justify="left" if column == "scenario" else "right",
                       no_wrap=column == "scenario")
    for row in found:
        out.add_row(row.scenario, str(row.tests), fmt(row.probe_s, "{:.1f}"),
                    f"{row.rate:.1f} ({row.spread[0]:.1f}-{row.spread[1]:.1f})",
                    fmt(row.overhead_s, "{:.1f}"), fmt(row.overhead_per_test_ms, "{:.0f}"))
    return out

