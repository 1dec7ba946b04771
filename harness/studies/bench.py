"""`gpu-harness bench`: the matrix run several times, phase times per scenario (median), probe
fps (the median of its timed rounds, with the slowest and fastest round of all runs) as a
fraction of the fps reference path's for the same probe (native; software where native did not
render,
as in the report) or "same" where the spreads overlap, peak RSS of the probe and of each service."""
import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..report import emulationcost
from ..launch.lifecycle import PHASE_NAMES

PHASES = PHASE_NAMES


@dataclass
class BenchRow:
    scenario: str
    path: str
    outcome: str
    runs: int
    phases_s: Dict[str, Optional[float]]
    wall_s: float
    fps: Optional[float]
    fps_vs_reference: Optional[float]
    probe_rss_kb: Optional[int]
    service_rss_kb: Dict[str, int] = field(default_factory=dict)
    reference_path: Optional[str] = None  # whose fps fps_vs_reference divides by
    # the slowest and fastest timed round of all runs
    fps_spread: Optional[Tuple[float, float]] = None
    same_as_reference: bool = False  # its spread overlaps the reference's: the share is noise


def median(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(rounds: List[List]) -> List[BenchRow]:
    """rounds: one list of ScenarioResult per repetition, in the same scenario order."""
    by_id: Dict[str, List] = {}
    for results in rounds:
        for result in results:
            by_id.setdefault(result.scenario.id, []).append(result)
    references = reference_fps(by_id)
    rows = []
    for scenario_id, results in by_id.items():
        scenario = results[0].scenario
        wall = median(r.wall_s for r in results)
        probe_rss = [value for value in (rss_of(r) for r in results) if value]
        fps = median(fps_of(r) for r in results)
        base_path, base_fps, base_spread = references.get(scenario.probe, (None, None, None))
        spread = spread_of(results)
        services: Dict[str, int] = {}
        for result in results:
            for name, rss in result.launch.rss_kb.items():
                services[name] = max(services.get(name, 0), rss)
        rows.append(BenchRow(
            scenario=scenario_id,
            path=scenario.path_id,
            outcome="/".join(sorted({r.verdict.outcome.value for r in results})),
            runs=len(results),
            phases_s={p: median(r.phases.get(p) for r in results) for p in PHASES},
            wall_s=wall or 0.0,
            fps=fps,
            fps_vs_reference=(fps / base_fps) if fps and base_fps else None,
            probe_rss_kb=max(probe_rss) if probe_rss else None,
            service_rss_kb=services,
            reference_path=base_path if fps and base_fps else None,
            fps_spread=spread,
            same_as_reference=bool(fps and base_fps and spread and base_spread
                                   and scenario.path_id != base_path
                                  and spread[0] <= base_spread[1] and base_spread[0] <= spread[1]),
        ))
    return rows


def reference_fps(by_id: Dict[str, List]) -> Dict[str, tuple]:
    """probe -> (path, median fps, spread) of the fps reference path (native), or of the path that
    renders the goldens (software) where native has no number for that probe: the report's rule."""
    found: Dict[str, tuple] = {}
    for flag in ("golden_renderer", "fps_reference"):  # native wins where it has a number
        for results in by_id.values():
            scenario = results[0].scenario
            fps = median(fps_of(r) for r in results)
            if getattr(scenario.spec, flag) and fps:
                found[scenario.probe] = (scenario.path_id, fps, spread_of(results))
    return found


def spread_of(results: List) -> Optional[Tuple[float, float]]:
    spreads = [r.report.fps_spread for r in results if r.report and r.report.fps_spread]
    return (min(s[0] for s in spreads), max(s[1] for s in spreads)) if spreads else None


def fps_of(result) -> Optional[float]:
    return result.report.fps if result.report else None


def rss_of(result) -> Optional[int]:
    return result.report.peak_rss_kb if result.report else None


def fmt(value, pattern="{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def table(rows: List[BenchRow], title: str):
    from rich.table import Table

    out = Table(title=title)
    # the phases these scenarios have
    phases = [p for p in PHASES if any(row.phases_s.get(p) for row in rows)]
    for column in ("scenario", "outcome", "runs", *(phase_header(p) for p in phases), "wall s",
                   "fps (rounds)",
                   "% of reference", "probe RSS MiB", "service RSS MiB"):
        # A scenario id is the row's name: never cut short, whatever the width.
        out.add_column(column, justify="left" if column in ("scenario", "outcome") else "right",
                       no_wrap=column == "scenario",
                       min_width=max((len(row.scenario) for row in rows), default=8)
                       if column == "scenario" else None)
    for row in rows:
        out.add_row(row.scenario, row.outcome, str(row.runs),
                    *(fmt(row.phases_s.get(p)) for p in phases),
                    fmt(row.wall_s), fps_text(row), share_text(row),
                    fmt(row.probe_rss_kb and row.probe_rss_kb / 1024, "{:.0f}"),
                    ", ".join(f"{k} {v / 1024:.0f}" for k, v in row.service_rss_kb.items()) or "-")
    return out


def fps_text(row: BenchRow) -> str:
    return spread_text(row.fps, row.fps_spread)


def share_text(row: BenchRow) -> str:
    if row.fps_vs_reference is None:
        return "-"
    if row.same_as_reference:
        return f"same as {row.reference_path}"
    return f"{row.fps_vs_reference * 100:.0f}%" + (f" {row.reference_path}"
                                                   if row.reference_path else "")


def phase_header(phase: str) -> str:
    """services_ready_s -> services ready s"""
    return phase.removesuffix("_s").replace("_", " ") + " s"


def emulation_costs(rounds: List[List], rows: List[BenchRow]) -> List[emulationcost.EmulationCost]:
    """Each scenario that passed on an emulated runtime against the same path and probe on the
    native runtime of its suite, both over all rounds (medians, the rounds' spread)."""
    first = {result.scenario.id: result for results in rounds for result in results}
    measured = []
    for row in rows:
        result = first[row.scenario]
        if row.outcome != "Pass":
            continue
        found = emulationcost.Measured.from_facts(row.path, result.scenario.probe,
                                                  result.scenario.runtime.name,
                                                  result.runtime_facts or {},
                                                  row.phases_s.get("probe_s"), row.fps,
                                                  row.fps_spread)
        if found is not None:
            measured.append(found)
    return emulationcost.pairs(measured)


def emulation_table(costs: List[emulationcost.EmulationCost]):
    from rich.table import Table

    out = Table(title="what emulation costs: an emulated runtime against the native one of its "
                      "suite, same path")
    names = ("path", "probe", "emulated", "against")
    for column in (*names, "probe s", "x its probe s", "fps (rounds)", "its fps (rounds)",
                   "% of its fps"):
        out.add_column(column, justify="left" if column in names else "right")
    for cost in costs:
        emulated, native = cost.emulated, cost.native
        share = "-" if cost.fps_share is None else (
            "same (within the spread)" if cost.fps_same else f"{cost.fps_share * 100:.0f}%")
        out.add_row(emulated.path, emulated.probe, f"{emulated.runtime} ({emulated.architecture})",
                    native.runtime,
                    f"{fmt(emulated.probe_s, '{:.2f}')} / {fmt(native.probe_s, '{:.2f}')}",
                    fmt(cost.probe_factor, "{:.1f}"), spread_text(emulated.fps,
                                                                  emulated.fps_spread),
                    spread_text(native.fps, native.fps_spread), share)
    return out


def spread_text(fps: Optional[float], spread: Optional[Tuple[float, float]]) -> str:
    if fps is None:
        return "-"
    return f"{fps:.0f}" + (f" ({spread[0]:.0f}-{spread[1]:.0f})" if spread else "")


@dataclass
class MachineRow:
    """A machine over the rounds: its boot, the harness's start inside, and a scenario's wall in it
    against the same scenario's here (where it ran here: a device path Skips without a GPU)."""

    machine: str
    rounds: int
    boot_s: Optional[float]
    # in the guest, outside its scenarios: python's start, run-level preparation
    harness_s: Optional[float]
    scenarios: int
    in_guest_s: Optional[float]  # median wall of one scenario in the guest
    here_s: Optional[float]  # median wall of the same scenarios here, where they passed


def machine_rows(rounds: List[dict], rows: List[BenchRow]) -> List[MachineRow]:
    """rounds: each round's RunOptions.machines (name -> boot_s, inside_s, scenarios_s, ids)."""
    names = sorted({name for machines in rounds for name in machines})
    by_id = {row.scenario: row for row in rows}
    found = []
    for name in names:
        runs = [machines[name] for machines in rounds if name in machines]
        ids = runs[0]["ids"]
        local = [by_id[i.rsplit("@", 1)[0]] for i in ids if i.rsplit("@", 1)[0] in by_id]
        found.append(MachineRow(
            name, len(runs), median(r["boot_s"] for r in runs),
            median(r["inside_s"] - r["scenarios_s"] for r in runs), len(ids),
            median(by_id[i].wall_s for i in ids if i in by_id),
            median(row.wall_s for row in local if row.outcome == "Pass")))
    return found


def machine_table(rows: List[MachineRow]):
    from rich.table import Table

    out = Table(title="virtual GPU machines: one boot per run, median over the rounds")
    for column in ("machine", "rounds", "boot s", "harness in guest s", "scenarios",
                   "scenario in guest s",
                   "same scenario here s"):
        out.add_column(column, justify="left" if column == "machine" else "right")
    for row in rows:
        out.add_row(row.machine, str(row.rounds), fmt(row.boot_s, "{:.1f}"), fmt(row.harness_s,
                                                                                 "{:.1f}"),
                    str(row.scenarios), fmt(row.in_guest_s, "{:.1f}"),
                    fmt(row.here_s, "{:.2f}") if row.here_s is not None
                    else "- (did not pass here)")
    return out


@dataclass
class RuntimeRow:
    runtime: str
    build_s: Optional[float]  # the cold build, as measured when it was built
    lookup_s: float  # finding it in the cache now
    size_mb: Optional[float]
    packages: Optional[int]
    drift: int


def runtime_rows(names: List[str]) -> List[RuntimeRow]:
    """Cost of each runtime: its build (from its facts) and a cached lookup, timed now."""
    from ..runtimes import builds

    rows = []
    for name in names:
        started = time.monotonic()
        built = builds.ensure(name)
        lookup = time.monotonic() - started
        rows.append(RuntimeRow(name, built.facts.get("build_s"), lookup, built.facts.get("size_mb"),
                               built.facts.get("packages"), len(built.drift)))
    return rows


def runtime_table(rows: List[RuntimeRow]):
    from rich.table import Table

    out = Table(title="runtimes: cold build (when built), cached lookup (now), size")
    for column in ("runtime", "build s", "lookup s", "size MB", "packages", "drifted"):
        out.add_column(column, justify="left" if column == "runtime" else "right")
    for row in rows:
        out.add_row(row.runtime, fmt(row.build_s, "{:.1f}"), fmt(row.lookup_s, "{:.4f}"),
                    fmt(row.size_mb, "{:.0f}"),
                    fmt(row.packages, "{}"), str(row.drift))
    return out
