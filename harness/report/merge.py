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
from typing import Dict, List, Set, Tuple

from ..core.errors import InputError, cut
from . import document as report_document, results

PATH_KEYS = ("image", "golden", "diff", "result_dir", "scanout", "scanout_diff")


def host_of(document: dict, index: int) -> Tuple[str, str]:
    """A run's host name and class (an older run without them: its position)."""
    found = document.get("host")
    host: dict = found if isinstance(found, dict) else {}
    return str(host.get("name") or f"host-{index + 1}"), str(host.get("class") or "")


def toolset_of(document: dict) -> str:
    """Where a run's toolset came from (discovery, a manifest, runtime:NAME)."""
    found = document.get("toolset")
    return str(found.get("source") or "?") if isinstance(found, dict) else "?"


def moved(path: object, folder: Path, out: Path) -> object:
    """A run's relative path, relative to the merged folder instead."""
    if not isinstance(path, str) or os.path.isabs(path):
        return path
    return os.path.relpath(folder / path, out)


def rebased(entry: dict, folder: Path, out: Path) -> dict:
    entry = dict(entry)
    for key in PATH_KEYS:
        entry[key] = moved(entry.get(key), folder, out)
    if isinstance(entry.get("logs"), dict):
        entry["logs"] = {name: moved(path, folder, out) for name, path in entry["logs"].items()}
    if isinstance(entry.get("checks"), list):
        entry["checks"] = [{**check, "artifacts": {k: moved(v, folder, out) for k, v in check["artifacts"].items()}}
                           if isinstance(check, dict) and isinstance(check.get("artifacts"), dict) else check
                           for check in entry["checks"]]
    return entry


def load(sources: List[Path]) -> List[Tuple[Path, dict]]:
    if len(sources) < 2:
        raise InputError("merge: give two or more runs (result folders or results.json files)")
    loaded = []
    for source in sources:
        file = results.locate(source)
        if not file.is_file():
            raise InputError(f"merge: {cut(source)}: no results.json there")
        loaded.append((file.parent, results.read(file)))
    return loaded


def merge(sources: List[Path], out: Path) -> dict:
    """The merged document, its paths relative to `out`."""
    runs = load(sources)
    hosts = {host_of(document, index) for index, (_, document) in enumerate(runs)}
    toolsets = toolsets_of([document for _, document in runs])
    several = len({name for name, _ in hosts}) > 1 or len(toolsets) > 1
    seen: Dict[Tuple[str, str, str], str] = {}
    scenarios: List[dict] = []
    for index, ((folder, document), source) in enumerate(zip(runs, sources, strict=True)):
        name, host_class = host_of(document, index)
        toolset = toolset_of(document)
        for entry in document["scenarios"]:
            key = (name, toolset, str(entry["id"]))
            if key in seen:
                raise InputError(f"merge: {cut(source)}: scenario {entry['id']} is also in {cut(seen[key])}, from "
                                 f"the same host {name} and toolset {toolset} (shards that overlap, or a run given "
                                 "twice)")
            seen[key] = str(source)
            entry = rebased(entry, folder, out)
            if several:
                entry.update(host=name if len(toolsets) == 1 else f"{name} with {toolset}", host_class=host_class)
            scenarios.append(entry)
    return merged_document(runs, sources, scenarios)


def toolsets_of(documents: List[dict]) -> Set[str]:
    return {toolset_of(document) for document in documents}


def merged_document(runs: List[Tuple[Path, dict]], sources: List[Path], scenarios: List[dict]) -> dict:
    documents = [document for _, document in runs]
    summary: Dict[str, int] = {}
    for scenario in scenarios:
        summary[scenario["outcome"]] = summary.get(scenario["outcome"], 0) + 1
    started = min(str(d.get("started") or "") for d in documents)
    finished = max(str(d.get("finished") or "") for d in documents)
    hosts = {host_of(d, i)[0]: d.get("host") for i, d in enumerate(documents)}
    return {
        "schema": results.SCHEMA,
        "harness_version": documents[0].get("harness_version"),
        "matrix": sorted({str(d.get("matrix")) for d in documents}),
        "merged_from": [str(source) for source in sources],
        "merged": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "started": started, "finished": finished,
        "wall_s": max(float(d["wall_s"]) for d in documents),  # the makespan, had the runs run side by side
        "runs_wall_s": [d["wall_s"] for d in documents],
        "host": documents[0].get("host"), "hosts": hosts,
        "toolset": documents[0]["toolset"],
        "toolsets": sorted(toolsets_of(documents)),
        "summary": summary,
        "baseline": next((d.get("baseline") for d in documents if d.get("baseline")), None),
        "preparation": [step for d in documents for step in d.get("preparation") or []],
        "shards": [d.get("shard") for d in documents],
        **report_document.derived(scenarios),
        "scenarios": scenarios,
    }
