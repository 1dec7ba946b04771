"""`gpu-harness merge RUN... --out DIR`: the results of shards of one matrix and of runs on several
hosts as one run: one results.json, junit.xml and report.html. The same scenario twice from one
host (overlapping shards, a run given twice) is refused; from two hosts it is two rows, each
scenario then naming its host, and the grid and answers gain a host axis. Runs of one host with
different toolsets (`--toolset runtime:trixie-host`: another virglrenderer and QEMU) are told
apart the same way: the host axis names the toolset too. Scenario folders stay where the runs
left them: the merged report points to them."""
import datetime
import os
from pathlib import Path
from typing import Dict, List, Mapping, Set, Tuple

from ..core.errors import InputError, cut
from . import document as report_document, records, results
from .records import Run

PATH_KEYS = ("image", "golden", "diff", "result_dir", "scanout", "scanout_diff")


def host_of(run: Run, index: int) -> Tuple[str, str]:
    """A run's host name and class (an older run without them: its position)."""
    return run.host.name or f"host-{index + 1}", run.host.host_class or ""


def toolset_of(run: Run) -> str:
    """Where a run's toolset came from (discovery, a manifest, runtime:NAME)."""
    return run.toolset.source or "?"


def moved(path: object, folder: Path, out: Path) -> object:
    """A run's relative path, relative to the merged folder instead."""
    if not isinstance(path, str) or os.path.isabs(path):
        return path
    return os.path.relpath(folder / path, out)


def rebased(entry: Mapping, folder: Path, out: Path) -> dict:
    """A scenario's entry as its run wrote it, its paths relative to the merged folder."""
    entry = dict(entry)
    for key in PATH_KEYS:
        entry[key] = moved(entry.get(key), folder, out)
    if isinstance(entry.get("logs"), dict):
        entry["logs"] = {name: moved(path, folder, out) for name, path in entry["logs"].items()}
    if isinstance(entry.get("checks"), list):
        entry["checks"] = [{**check, "artifacts": {k: moved(v, folder, out) for k,
                                                   v in check["artifacts"].items()}}
                           if isinstance(check, dict) and isinstance(check.get("artifacts"),
                                                                     dict) else check
                           for check in entry["checks"]]
    return entry


def load(sources: List[Path]) -> List[Tuple[Path, Run]]:
    if len(sources) < 2:
        raise InputError("merge: give two or more runs (result folders or results.json files)")
    loaded = []
    for source in sources:
        file = results.locate(source)
        if not file.is_file():
            raise InputError(f"merge: {cut(source)}: no results.json there")
        loaded.append((file.parent, records.parse(results.read(file))))
    return loaded


def merge(sources: List[Path], out: Path) -> dict:
    """The merged document, its paths relative to `out`."""
    runs = load(sources)
    hosts = {host_of(run, index) for index, (_, run) in enumerate(runs)}
    toolsets = toolsets_of([run for _, run in runs])
    several = len({name for name, _ in hosts}) > 1 or len(toolsets) > 1
    seen: Dict[Tuple[str, str, str], str] = {}
    scenarios: List[dict] = []
    for index, ((folder, run), source) in enumerate(zip(runs, sources, strict=True)):
        name, host_class = host_of(run, index)
        toolset = toolset_of(run)
        for scenario in run.scenarios:
            key = (name, toolset, scenario.id)
            if key in seen:
                raise InputError(f"merge: {cut(source)}: scenario {scenario.id} is also in "
                                 f"{cut(seen[key])}, from "
                                 f"the same host {name} and toolset {toolset} (shards that "
                                 "overlap, or a run given "
                                 "twice)")
            seen[key] = str(source)
            entry = rebased(scenario.raw, folder, out)
            if several:
                entry.update(host=name if len(toolsets) == 1 else f"{name} with {toolset}",
                             host_class=host_class)
            scenarios.append(entry)
    return merged_document([run for _, run in runs], sources, scenarios)


def toolsets_of(runs: List[Run]) -> Set[str]:
    return {toolset_of(run) for run in runs}


def merged_document(runs: List[Run], sources: List[Path], scenarios: List[dict]) -> dict:
    """The merged results.json: the runs' facts side by side, the first run's where one is kept,
    and the grid and answers of all their scenarios."""
    summary: Dict[str, int] = {}
    for scenario in scenarios:
        summary[scenario["outcome"]] = summary.get(scenario["outcome"], 0) + 1
    hosts = {host_of(run, i)[0]: run.raw.get("host") for i, run in enumerate(runs)}
    return {
        "schema": results.SCHEMA,
        "harness_version": runs[0].raw.get("harness_version"),
        "matrix": sorted({str(run.raw.get("matrix")) for run in runs}),
        "merged_from": [str(source) for source in sources],
        "merged": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "started": min(run.started for run in runs), "finished": max(run.finished for run in runs),
        "wall_s": max(run.wall_s for run in runs),  # the makespan, had the runs run side by side
        "runs_wall_s": [run.raw["wall_s"] for run in runs],
        "host": runs[0].raw.get("host"), "hosts": hosts,
        "toolset": runs[0].raw["toolset"],
        "toolsets": sorted(toolsets_of(runs)),
        "summary": summary,
        "baseline": next((run.baseline for run in runs if run.baseline), None),
        "preparation": [step for run in runs for step in run.raw.get("preparation") or []],
        "shards": [run.raw.get("shard") for run in runs],
        **report_document.derived(scenarios),
        "scenarios": scenarios,
    }
