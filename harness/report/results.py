"""results.json: an object with the run's facts, the toolset used and a `scenarios` list.

The field names here are a contract: add fields, never rename or remove them.
"""
import datetime
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from .. import __version__
from ..errors import InputError
from ..process import tail
from ..outcomes import Outcome
from ..toolset import Toolset
from ..verdict import harness_error

if TYPE_CHECKING:
    from ..runner import ScenarioResult

SCHEMA = "gpu-harness/results/v1"


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


def artifact(result: "ScenarioResult", name: str) -> Optional[str]:
    """A file behind one of the verdict's checks (image, golden, diff, scanout, scanout_diff)."""
    for check in result.verdict.checks:
        if name in check.artifacts:
            return check.artifacts[name]
    return None


def scenario_entry(result: "ScenarioResult", out_dir: Path, toolset: Toolset) -> dict:
    scenario, launch, data = result.scenario, result.launch, (result.report.raw if result.report else {})
    timings = data.get("timings", {}) if isinstance(data.get("timings"), dict) else {}
    log_files = {("probe" if name == "probe" else f"service:{name}"): path for name, path in launch.logs.items()}
    failed = not result.verdict.outcome.is_success or result.verdict.outcome is Outcome.EXPECTED_FAIL
    return {
        "id": scenario.id,
        "path": scenario.path_id,
        "runtime": scenario.runtime.name,
        "probe": scenario.probe,
        "outcome": result.verdict.outcome.value,
        "reason": result.verdict.reason,
        "failure_kind": result.verdict.failure_kind.value if result.verdict.failure_kind else None,
        "expect": {"outcome": scenario.expect.outcome, "reason": scenario.expect.reason},
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail,
                    "artifacts": {k: relative(v, out_dir) for k, v in c.artifacts.items()}}
                   for c in result.verdict.checks],
        "renderer": data.get("renderer"),
        "gl_version": data.get("version"),
        "vendor": data.get("vendor"),
        "wall_s": round(result.wall_s, 4),
        "attempts": result.attempts,
        "phases_s": {k: round(v, 4) for k, v in launch.phases.items()},
        "fps": timings.get("fps"),
        "timings": timings,
        "peak_rss_kb": {"probe": data.get("peak_rss_kb"), **launch.rss_kb},
        "isolation": data.get("isolation"),
        "image": relative(launch.image_path, out_dir),
        "golden": relative(artifact(result, "golden"), out_dir),
        "diff": relative(artifact(result, "diff"), out_dir),
        "result_dir": relative(str(result.result_dir), out_dir),
        "logs": {k: relative(v, out_dir) for k, v in log_files.items() if v and os.path.exists(v)},
        "scanout": relative(launch.scanout_path, out_dir),
        "scanout_diff": relative(artifact(result, "scanout_diff"), out_dir),
        "launcher": dict(launch.facts),
        "qmp_events": launch.events,
        "exit": launch.exit.describe() if launch.exit else None,
        "command": launch.argv or None,
        "harness_error": launch.fault.describe() if launch.fault else None,
        "log_tail": failure_logs(result) if failed else None,
        "versions": {**{name: toolset.version(name) for name in scenario.spec.requires if toolset.found(name)},
                     "runtime_gl": data.get("version")},
        "probe_result": data or None,
    }


def broken_entry(result: "ScenarioResult", exc: Exception) -> dict:
    """The failure boundary of the report: a scenario whose entry cannot be written still appears."""
    scenario = result.scenario
    verdict = harness_error("report", exc)
    return {"id": scenario.id, "path": scenario.path_id, "runtime": scenario.runtime.name, "probe": scenario.probe,
            "outcome": verdict.outcome.value, "reason": verdict.reason, "failure_kind": verdict.failure_kind.value
            if verdict.failure_kind else None, "checks": [], "wall_s": round(result.wall_s, 4)}


def entry(result: "ScenarioResult", out_dir: Path, toolset: Toolset) -> dict:
    try:
        return scenario_entry(result, out_dir, toolset)
    except Exception as exc:  # one scenario's broken facts must not lose the others' results
        return broken_entry(result, exc)


def document(results: List["ScenarioResult"], out_dir: Path, toolset: Toolset, started: datetime.datetime,
             matrix_source: str) -> dict:
    finished = datetime.datetime.now(datetime.timezone.utc)
    entries = [entry(r, out_dir, toolset) for r in results]
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
        "host": {"kernel": platform.release(), "machine": platform.machine(),
                 "render_nodes": toolset.render_nodes},
        "toolset": toolset.to_dict(),
        "summary": summary,
        "scenarios": entries,
    }


def read(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read results: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        raise InputError(f"{path}: not a gpu-harness results file (no scenarios list)")
    return data
