"""results.json: an object with the run's facts, the toolset used and a `scenarios` list.

The field names here are a contract: add fields, never rename or remove them.
"""
import datetime
import json
import os
import platform
from pathlib import Path
from typing import List, Optional

from .. import __version__
from ..errors import InputError
from ..process import tail
from ..toolset import Toolset

SCHEMA = "gpu-harness/results/v1"


def relative(path: Optional[str], out_dir: Path) -> Optional[str]:
    if not path:
        return None
    try:
        return os.path.relpath(path, out_dir)
    except ValueError:
        return path


def failure_logs(result) -> str:
    """The last lines of every log of the scenario: what a person reads first when it fails."""
    parts = []
    for name, path in [("probe", result.probe.log_path), *sorted(result.probe.service_logs.items())]:
        text = tail(path, 15) if path else ""
        if text:
            parts.append(f"--- {name} ---\n{text}")
    return "\n".join(parts)


def scenario_entry(result, out_dir: Path, toolset: Toolset) -> dict:
    scenario, probe, data = result.scenario, result.probe, result.probe.data or {}
    timings = data.get("timings", {})
    log_files = {"probe": probe.log_path, **{f"service:{k}": v for k, v in probe.service_logs.items()}}
    return {
        "id": scenario.id,
        "path": scenario.path,
        "runtime": scenario.runtime.name,
        "probe": scenario.probe,
        "outcome": result.verdict.outcome,
        "reason": result.verdict.reason,
        "expect": {"outcome": scenario.expect.outcome, "reason": scenario.expect.reason},
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.verdict.checks],
        "renderer": data.get("renderer"),
        "gl_version": data.get("version"),
        "vendor": data.get("vendor"),
        "wall_s": round(result.wall_s, 4),
        "attempts": result.attempts,
        "phases_s": {k: round(v, 4) for k, v in result.phases.items()},
        "fps": timings.get("fps"),
        "timings": timings,
        "peak_rss_kb": {"probe": data.get("peak_rss_kb"), **probe.service_rss_kb},
        "isolation": data.get("isolation"),
        "image": relative(probe.image_path, out_dir),
        "golden": relative(result.golden_path, out_dir),
        "diff": relative(result.diff_path, out_dir),
        "result_dir": relative(str(result.result_dir), out_dir),
        "logs": {k: relative(v, out_dir) for k, v in log_files.items() if v and os.path.exists(v)},
        "scanout": relative(probe.scanout_path, out_dir),
        "scanout_diff": relative(str(result.result_dir / "scanout-diff.png"), out_dir)
        if probe.scanout_path and (result.result_dir / "scanout-diff.png").exists() else None,
        "launcher": {k: v for k, v in probe.facts.items()},
        "qmp_events": probe.events,
        "exit": probe.exit.describe() if probe.exit else None,
        "log_tail": failure_logs(result) if result.verdict.outcome in ("Fail", "ExpectedFail") else None,
        "versions": {**{name: toolset.version(name) for name in scenario.spec.requires if toolset.found(name)},
                     "runtime_gl": data.get("version")},
        "probe_result": data or None,
    }


def document(results: List, out_dir: Path, toolset: Toolset, started: datetime.datetime,
             matrix_source: str) -> dict:
    finished = datetime.datetime.now(datetime.timezone.utc)
    summary = {}
    for result in results:
        summary[result.verdict.outcome] = summary.get(result.verdict.outcome, 0) + 1
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
        "scenarios": [scenario_entry(r, out_dir, toolset) for r in results],
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
