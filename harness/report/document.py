"""Writing results.json: an object with the run's facts, the toolset used, the grid and answers
derived from the scenarios, and a `scenarios` list with one entry per scenario.

The field names here are a contract: add fields, never rename or remove them."""
import datetime
import os
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from .. import __version__
from ..host import diagnosis, hostinfo
from ..launch.vtest import SERVICE as VTEST_SERVICE
from ..launch.lifecycle import Prepared
from ..system.process import tail
from ..scenario.model import Display
from ..scenario.outcomes import Outcome
from ..host.toolset import Toolset
from ..judging import presentation
from ..judging.verdict import harness_error
from . import answers, grid, records
from .fpsshare import with_fps_share, workload_fps
from .results import SCHEMA

if TYPE_CHECKING:
    from ..judging.scenario_result import ScenarioResult


def relative(path: Optional[str], out_dir: Path) -> Optional[str]:
    if not path:
        return None
    try:
        return os.path.relpath(path, out_dir)
    except ValueError:
        return path


def failure_logs(result: "ScenarioResult") -> str:
    """The last lines of every log of the scenario: what a person reads first when it fails."""
    parts = []
    for name, path in sorted(result.launch.logs.items(), key=lambda item: item[0] != "probe"):
        text = tail(path, 15) if path else ""
        if text:
            parts.append(f"--- {name} ---\n{text}")
    return "\n".join(parts)


def scenario_entry(result: "ScenarioResult", out_dir: Path, toolset: Toolset) -> dict:
    scenario, launch, data = result.scenario, result.launch, (result.report.raw
                                                              if result.report else {})
    timings = data.get("timings", {}) if isinstance(data.get("timings"), dict) else {}
    log_files = {("probe" if name == "probe" else f"service:{name}"): path for name,
                 path in launch.logs.items()}
    failed = (not result.verdict.outcome.is_success
              or result.verdict.outcome is Outcome.EXPECTED_FAIL)
    workload, workload_rounds = workload_fps(result.verdict.subtests)
    return {
        "id": scenario.id,
        "path": scenario.path_id,
        "runtime": scenario.runtime.name,
        "probe": scenario.probe,
        "machine": scenario.machine,
        "display": scenario.display,
        "outcome": result.verdict.outcome.value,
        "reason": result.verdict.reason,
        "failure_kind": result.verdict.failure_kind.value if result.verdict.failure_kind else None,
        "expect": {"outcome": scenario.expect.outcome, "reason": scenario.expect.reason},
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail,
                    "artifacts": {k: relative(v, out_dir) for k, v in c.artifacts.items()}}
                   for c in result.verdict.checks],
        "subtests": [subtest.to_dict() for subtest in result.verdict.subtests] or None,
        "renderer": data.get("renderer"),
        "gl_version": data.get("version"),
        "vendor": data.get("vendor"),
        "wall_s": round(result.wall_s, 4),
        "attempts": result.attempts,
        "phases_s": {k: round(v, 4) for k, v in launch.phases.items()},
        "fps": timings.get("fps"),
        # the slowest and fastest of the probe's timed rounds (fps is their median)
        "fps_spread": [timings["fps_min"], timings["fps_max"]] if "fps_min" in timings
            and "fps_max" in timings
        else None,
        "timings": timings,
        # the fps the declared workload itself reported (a command's fps_pattern), and its rounds'
        "workload_fps": workload,
        "workload_fps_spread": workload_rounds,
        "peak_rss_kb": {"probe": data.get("peak_rss_kb"), **launch.rss_kb},
        "isolation": data.get("isolation"),
        "presentation": presentation.facts(Display(scenario.display).protocol, data,
                                           launch.logs.get("probe"),
                                           Path(launch.artifacts["probe_out"])
                                           if launch.artifacts.get("probe_out") else None),
        "image": relative(launch.image_path, out_dir),
        "golden": relative(result.artifact("golden"), out_dir),
        "diff": relative(result.artifact("diff"), out_dir),
        "result_dir": relative(str(result.result_dir), out_dir),
        "logs": {k: relative(v, out_dir) for k, v in log_files.items() if v and os.path.exists(v)},
        "scanout": relative(launch.scanout_path, out_dir),
        "scanout_diff": relative(result.artifact("scanout_diff"), out_dir),
        "launcher": dict(launch.facts),
        "qmp_events": launch.events,
        "exit": launch.exit.describe() if launch.exit else None,
        "command": launch.argv or None,
        "harness_error": launch.fault.describe() if launch.fault else None,
        "log_tail": failure_logs(result) if failed else None,
        "versions": {**{name: toolset.version(name) for name in scenario.spec.requires
                        if toolset.found(name)},
                     "runtime_gl": data.get("version")},
        "probe_result": data or None,
        "runtime_facts": result.runtime_facts or None,
        # its vtest server's processes for a client that crashed (its log's SIGSEGV handler lines)
        "vtest_server_crashes": diagnosis.server_crashes(launch.service_logs.get(VTEST_SERVICE))
        if VTEST_SERVICE in launch.service_logs else None,
        # the commands a VM's virglrenderer refused (its lines in QEMU's log: the guest never hears)
        "renderer_refusals": diagnosis.renderer_refusals(launch.logs.get(diagnosis.QEMU_LOG))
        if diagnosis.QEMU_LOG in launch.logs else None,
        "diagnosis": diagnosis_of(result),
        "exposure": result.exposure.to_dict() if result.exposure else None,
        "driver_match": result.driver_match.to_dict() if result.driver_match else None,
        "baseline": result.known.to_dict() if result.known else None,
    }


def diagnosis_of(result: "ScenarioResult") -> Optional[dict]:
    """The failure class and what it is about (harness.host.diagnosis), for a failed scenario."""
    kind = result.verdict.failure_kind
    return {"class": str(kind), "subject": result.verdict.subject} if kind is not None else None


def broken_entry(result: "ScenarioResult", exc: Exception) -> dict:
    """The failure boundary of the report: a scenario whose entry cannot be written still
    appears."""
    scenario = result.scenario
    verdict = harness_error("report", exc)
    return {"id": scenario.id, "path": scenario.path_id, "runtime": scenario.runtime.name,
            "probe": scenario.probe, "display": scenario.display,
            "machine": scenario.machine, "outcome": verdict.outcome.value, "reason": verdict.reason,
            "failure_kind": verdict.failure_kind.value if verdict.failure_kind else None,
            "checks": [],
            "wall_s": round(result.wall_s, 4)}


def entry(result: "ScenarioResult", out_dir: Path, toolset: Toolset) -> dict:
    # written where it ran (a machine's guest), its paths relative to out_dir
    if result.entry is not None:
        return result.entry
    try:
        return scenario_entry(result, out_dir, toolset)
    except Exception as exc:  # one scenario's broken facts must not lose the others' results
        return broken_entry(result, exc)


def document(results: List["ScenarioResult"], out_dir: Path, toolset: Toolset,
             started: datetime.datetime,
             matrix_source: str, baseline: Optional[str] = None,
             preparation: Sequence[Prepared] = (),
             machines: Optional[Dict[str, dict]] = None, host_class: str = "",
             shard: Optional[str] = None,
             host_name: Optional[str] = None) -> dict:
    finished = datetime.datetime.now(datetime.timezone.utc)
    entries = with_fps_share([entry(r, out_dir, toolset) for r in results])
    summary: Dict[str, int] = {}
    for scenario in entries:
        summary[scenario["outcome"]] = summary.get(scenario["outcome"], 0) + 1
    return {
        "schema": SCHEMA,
        "harness_version": __version__,
        "matrix": matrix_source,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "wall_s": round((finished - started).total_seconds(), 3),
        "host": hostinfo.describe_host(toolset, host_class, host_name),
        "toolset": toolset.to_dict(),
        "summary": summary,
        "baseline": baseline,  # the known-failures file it ran with (run --baseline)
        # run-level steps, before any scenario
        "preparation": [step.to_dict() for step in preparation],
        "preparation_s": round(sum(step.seconds for step in preparation), 3),
        # each virtual GPU machine booted: boot_s, inside_s, scenarios_s, ids
        "machines": machines or {},
        "shard": shard,  # "K/N" for a part of the matrix (run --shard), else None
        **derived(entries),
        "scenarios": entries,
    }


def derived(entries: List[dict]) -> dict:
    """The grid and the answers, computed from the entries (report.html computes them the same
    way)."""
    try:
        scenarios = records.entries(entries)
        return {"grid": [g.to_json() for g in grid.build(scenarios)],
                "answers": {a.key: a.to_json() for a in answers.build(scenarios)}}
    except Exception as exc:  # a summary that cannot be made must not cost the run its results
        return {"grid": None, "answers": None, "derived_error": f"{type(exc).__name__}: {exc}"}
