"""`gpu-harness bench`: the matrix run several times, phase times per scenario (median), probe
fps as a fraction of the native path's, peak RSS of the probe and of each service."""
import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

PHASES = ("image_build_s", "setup_s", "services_ready_s", "qemu_start_s", "boot_s", "probe_s", "shutdown_s",
          "verdict_s")


@dataclass
class BenchRow:
    scenario: str
    path: str
    outcome: str
    runs: int
    phases_s: Dict[str, Optional[float]]
    wall_s: float
    fps: Optional[float]
    fps_vs_native: Optional[float]
    probe_rss_kb: Optional[int]
    service_rss_kb: Dict[str, int] = field(default_factory=dict)


def median(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(rounds: List[List]) -> List[BenchRow]:
    """rounds: one list of ScenarioResult per repetition, in the same scenario order."""
    by_id: Dict[str, List] = {}
    for results in rounds:
        for result in results:
            by_id.setdefault(result.scenario.id, []).append(result)
    native_fps = {}
    for results in by_id.values():
        first = results[0].scenario
        if first.spec.baseline:
            native_fps[(first.runtime.name, first.probe)] = median(fps_of(r) for r in results)
    rows = []
    for scenario_id, results in by_id.items():
        scenario = results[0].scenario
        wall = median(r.wall_s for r in results)
        probe_rss = [value for value in (rss_of(r) for r in results) if value]
        fps = median(fps_of(r) for r in results)
        native = next((fps for (_, probe), fps in native_fps.items() if probe == scenario.probe), None)
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
            fps_vs_native=(fps / native) if fps and native else None,
            probe_rss_kb=max(probe_rss) if probe_rss else None,
            service_rss_kb=services,
        ))
    return rows


def fps_of(result) -> Optional[float]:
    return result.report.fps if result.report else None


def rss_of(result) -> Optional[int]:
    return result.report.peak_rss_kb if result.report else None


def fmt(value, pattern="{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def table(rows: List[BenchRow], title: str):
    from rich.table import Table

    out = Table(title=title)
    for column in ("scenario", "outcome", "runs", "image build s", "setup s", "service ready s", "qemu start s",
                   "boot s", "probe s", "shutdown s", "verdict s", "wall s", "fps", "% native", "probe RSS MiB", "service RSS MiB"):
        out.add_column(column, justify="left" if column in ("scenario", "outcome") else "right")
    for row in rows:
        out.add_row(row.scenario, row.outcome, str(row.runs),
                    *(fmt(row.phases_s.get(p)) for p in PHASES),
                    fmt(row.wall_s), fmt(row.fps, "{:.0f}"), fmt(row.fps_vs_native and row.fps_vs_native * 100, "{:.0f}%"),
                    fmt(row.probe_rss_kb and row.probe_rss_kb / 1024, "{:.0f}"),
                    ", ".join(f"{k} {v / 1024:.0f}" for k, v in row.service_rss_kb.items()) or "-")
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
    from . import runtimes

    rows = []
    for name in names:
        started = time.monotonic()
        built = runtimes.ensure(name)
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
        out.add_row(row.runtime, fmt(row.build_s, "{:.1f}"), fmt(row.lookup_s, "{:.4f}"), fmt(row.size_mb, "{:.0f}"),
                    fmt(row.packages, "{}"), str(row.drift))
    return out
