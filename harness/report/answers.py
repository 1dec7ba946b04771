"""The questions a run answers, each a short table computed from results.json's scenario entries
(never declared): vtest compatibility, what each path exposes of the host, isolation per path
(those two in audits.py), cost per path, driver matching, what a hostile client did
(security.py) and what reached a display server (presenting.py). Each answer carries its
records (for results.json) and the table a person reads (report.html)."""
import re
import statistics
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..host.drivermatch import DriverMatch, DriverUsed
from ..scenario.outcomes import Outcome
from . import conformance, emulationcost
from .audits import exposure, isolation, own_namespaces
from .display import css_class
from .presenting import presentation
from .records import FpsShare, ScenarioEntry
from .security import security
from .table import (Answer, Cell, by_path, distinct, listed, on_host_runtime, ran, span, unique,
                    whole)

__all__ = ["Answer", "Cell", "build", "by_path", "distinct", "exposure", "isolation", "listed",
           "own_namespaces",
           "ran", "span", "unique", "whole"]

SERVER_TOOL = "virgl_test_server"  # the toolset entry a vtest scenario's server version is under
SETUP_PHASES = ("setup_s", "image_build_s")  # rendering configs, building images
START_PHASES = ("services_ready_s", "qemu_start_s", "boot_s")  # until the workload can start


def version_key(version: str) -> tuple:
    """'0.10.4' after '0.9.1': numbers compared as numbers, other words as text."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"[.\-+~ ]", version))


def median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


# --- vtest compatibility ------------------------------------------------------------------------

def vtest_compat(scenarios: List[ScenarioEntry]) -> Answer:
    """Client Mesa (the runtime's) against server virglrenderer (virgl_test_server's version),
    per probe: does it render?"""
    groups: Dict[tuple, List[ScenarioEntry]] = {}
    for scenario in scenarios:
        server = scenario.versions.get(SERVER_TOOL)
        if server is None:
            continue
        client = scenario.runtime_mesa or "unknown"
        groups.setdefault((client, server, scenario.probe), []).append(scenario)
    columns_keys = sorted({(server, probe) for _, server, probe in groups},
                          key=lambda pair: (version_key(pair[0]), pair[1]))
    clients = sorted({client for client, _, _ in groups}, key=version_key)
    answer = Answer("vtest", "vtest compatibility",
                    "Which client Mesa renders through which virglrenderer over vtest?",
                    ["client Mesa (runtimes)"] + [f"virglrenderer {server} · {probe}" for server,
                                                  probe in columns_keys])
    for client in clients:
        runtimes = distinct(s.runtime for (c, _, _), group in groups.items() if c == client
                            for s in group)
        row = [Cell(f"{client} ({', '.join(runtimes)})")]
        for server, probe in columns_keys:
            group = groups.get((client, server, probe), [])
            record = vtest_record(client, server, probe, group)
            record.update(conformance.figures(group, scenarios))
            if group:
                answer.records.append(record)
            row.append(vtest_cell(record))
        answer.rows.append(row)
    return answer.or_say("No scenario in this run went through a vtest server.")


def vtest_record(client: str, server: str, probe: str, group: List[ScenarioEntry]) -> dict:
    attempted = ran(group)
    rendered = [s.id for s in attempted if s.outcome.renders]
    failed = [{"id": s.id, "failure": s.failure_kind or "failed"} for s in attempted
              if not s.outcome.renders]
    verdict = ("not run" if not attempted else "renders" if not failed else "fails"
               if not rendered else "partly")
    return {"client_mesa": client, "server_virglrenderer": server, "probe": probe,
            "renders": verdict,
            "rendered": rendered, "failed": failed, "skipped": len(group) - len(attempted)}


def vtest_cell(record: dict) -> Cell:
    verdict, failed = record["renders"], record["failed"]
    classes = distinct(f["failure"] for f in failed)
    ids = record["rendered"] + [f["id"] for f in failed]
    title = "; ".join(ids) or "no scenario"
    measured = conformance.cell_text(record)
    if measured is not None:  # a conformance run: its tests say more than renders or not
        gaps = record.get("gaps") or []
        return Cell(measured, css_class(Outcome.PASS if not gaps and verdict == "renders"
                                        else Outcome.FLAKE),
                    title + ("; gaps: " + ", ".join(gaps[:10]) if gaps else ""))
    if verdict == "renders":
        return Cell(f"renders ({len(ids)})", css_class(Outcome.PASS), title)
    if verdict == "fails":
        return Cell(f"fails: {listed(classes)}", css_class(Outcome.FAIL), title)
    if verdict == "partly":
        return Cell(f"{len(record['rendered'])} of {len(ids)} render; fails: {listed(classes)}",
                    css_class(Outcome.FLAKE), title)
    return Cell("not run" if record["skipped"] else "-", css_class(Outcome.SKIP)
                if record["skipped"] else "", title)


# --- cost ---------------------------------------------------------------------------------------

def cost(scenarios: List[ScenarioEntry]) -> Answer:
    references = distinct(found for s in scenarios for found in (s.fps_share.reference,
                                                                 s.workload_fps_share.reference))
    answer = Answer("cost", "Cost per path",
                    "What does the path cost: setup, service and machine start, memory, fps "
                    "against "
                    f"{' / '.join(references) or 'the reference path'}? (medians over the path's "
                    "scenarios that "
                    "ran; a workload's own fps where it reports one)",
                    ["path", "ran", "setup s", "start s", "probe s", "wall s",
                     "memory MB (probe + services)",
                     "fps % of reference, per API (same: within the spread)",
                     "emulated against native (same suite)"])
    for path, group in by_path(ran(scenarios)).items():
        record = cost_record(path, group)
        answer.add(record, cost_row(record))
    return answer.or_say("No scenario ran.")


def phase_sum(scenario: ScenarioEntry, names: Sequence[str]) -> Optional[float]:
    phases = scenario.phases
    present = [phases[name] for name in names if name in phases]
    return sum(present) if present else None


def present(values: Iterable[Optional[float]]) -> List[float]:
    return [v for v in values if v is not None]


def cost_record(path: str, group: List[ScenarioEntry]) -> dict:
    def med(values: Iterable[Optional[float]]) -> Optional[float]:
        found = median(present(values))
        return round(found, 4) if found is not None else None

    def per_probe(share: Callable[[ScenarioEntry], FpsShare]) -> Tuple[Dict[str, Optional[float]],
                                                                       Dict[str, bool]]:
        """Per probe (GL and Vulkan have references of their own, a median over both means nothing):
        the median share, and whether every scenario's timed rounds overlap the reference's (a
        share would be noise)."""
        probes = {probe: [share(s) for s in same] for probe, same in by_probe(group).items()}
        shares = {probe: med(f.share for f in found) for probe, found in probes.items()
                  if any(f.share is not None for f in found)}
        return shares, {probe: all(f.same for f in probes[probe]) for probe in shares}

    memory = [s.peak_rss_kb for s in group]
    shares, same = per_probe(lambda s: s.fps_share)
    workload_shares, workload_same = per_probe(lambda s: s.workload_fps_share)
    return {
        "path": path, "scenarios": len(group),
        "setup_s": med(phase_sum(s, SETUP_PHASES) for s in group),
        "start_s": med(phase_sum(s, START_PHASES) for s in group),
        "probe_s": med(s.phases.get("probe_s") for s in group),
        "wall_s": med(s.wall_s for s in group),
        "memory_mb": med(sum(m.values()) / 1024 if m else None for m in memory),
        "probe_memory_mb": med(m["probe"] / 1024 if "probe" in m else None for m in memory),
        "fps_vs_reference": shares, "fps_same_as_reference": same,
        # their names in older files
        "fps_vs_baseline": dict(shares), "fps_same_as_baseline": dict(same),
        # a declared workload's own fps (a command's fps_pattern) against the reference path's
        # workload
        "workload_fps_vs_reference": workload_shares,
            "workload_fps_same_as_reference": workload_same,
        "emulation": [cost.to_dict() for cost in emulation_costs(group)],
    }


def emulation_costs(group: List[ScenarioEntry]) -> List[emulationcost.EmulationCost]:
    """A path's scenarios on emulated runtimes against the same probe on the native runtime of
    their suite (only rendered ones: a failure's time is not the path's cost)."""
    measured = (emulationcost.Measured.from_runtime(s.path, s.probe, s.runtime, s.runtime_facts,
                                                    s.phases.get("probe_s"), s.fps, s.fps_spread)
                for s in group if s.outcome is Outcome.PASS)
    return emulationcost.pairs(found for found in measured if found is not None)


def by_probe(group: List[ScenarioEntry]) -> Dict[str, List[ScenarioEntry]]:
    found: Dict[str, List[ScenarioEntry]] = {}
    for scenario in group:
        found.setdefault(scenario.probe, []).append(scenario)
    return dict(sorted(found.items()))


def fps_said(record: dict, probe: str) -> str:
    """A probe's fps share in a cost row: its workload's own where it has one, else the probe's."""
    workload = probe in record["workload_fps_vs_reference"]
    prefix = "workload_fps" if workload else "fps"
    share, same = (record[f"{prefix}_vs_reference"][probe],
                   record[f"{prefix}_same_as_reference"][probe])
    return f"{probe}{' workload' if workload else ''} " + ("same as reference" if same
                                                           else f"{share * 100:.0f}%")


def cost_row(record: dict) -> List[Cell]:
    def fmt(value: Optional[float], pattern: str = "{:.2f}") -> str:
        return "-" if value is None else pattern.format(value)

    memory = fmt(record["memory_mb"], "{:.0f}")
    if record["probe_memory_mb"] is not None and record["memory_mb"] is not None:
        memory += (f" ({record['probe_memory_mb']:.0f} + "
                   f"{record['memory_mb'] - record['probe_memory_mb']:.0f})")
    probes = sorted({*record["fps_vs_reference"], *record["workload_fps_vs_reference"]})
    shares = " · ".join(fps_said(record, probe) for probe in probes)
    return [Cell(record["path"]), Cell(str(record["scenarios"])), Cell(fmt(record["setup_s"])),
            Cell(fmt(record["start_s"])), Cell(fmt(record["probe_s"])), Cell(fmt(record["wall_s"])),
            Cell(memory),
            Cell(shares or "-"), Cell(" · ".join(emulationcost.describe(item)
                                                 for item in record.get("emulation") or []) or "-")]


# --- driver matching ----------------------------------------------------------------------------

def driver_matching(scenarios: List[ScenarioEntry]) -> Answer:
    answer = Answer("driver", "Driver matching",
                    "Whose userspace driver rendered (the host's, bound in, or the runtime's own), "
                    "and does "
                    "it match the host's driver?",
                    ["runtime", "runtime Mesa", "host driver (kernel)", "host's driver rendered",
                     "runtime's driver rendered", "mismatch"])
    runtimes: Dict[str, List[ScenarioEntry]] = {}
    for scenario in scenarios:
        if scenario.driver_match:
            runtimes.setdefault(scenario.row, []).append(scenario)
    for runtime, group in runtimes.items():
        record = driver_record(runtime, group)
        answer.add(record, driver_row(record))
    return answer.or_say("No scenario in this run recorded driver facts.")


def driver_record(runtime: str, group: List[ScenarioEntry]) -> dict:
    facts: List[Tuple[ScenarioEntry, DriverMatch]] = [(s, s.driver_match) for s in group
                                                      if s.driver_match]

    def paths_using(used: DriverUsed) -> List[str]:
        return distinct(s.path for s, f in facts if f.used is used)

    return {
        "runtime": runtime,
        "runtime_mesa": distinct(f.runtime_mesa for _, f in facts),
        "host_driver": distinct(f.host_driver for _, f in facts),
        "kernel_driver": distinct(" ".join(v for v in (f.kernel_driver,
                                                       f.kernel_driver_version) if v) or None
                                  for _, f in facts),
        "host_driver_rendered": paths_using(DriverUsed.HOST_DRIVER),
        "runtime_driver_rendered": paths_using(DriverUsed.RUNTIME),
        "mismatches": [{"id": s.id, "note": f.note or "mismatch"} for s, f in facts if f.mismatch],
        # On the host runtime the runtime's driver is the host's: every path that rendered, once.
        "runtime_is_host": all(on_host_runtime(s) for s in group),
        "rendered_with_host_driver": distinct(s.path for s, f in facts
                                              if f.used is DriverUsed.HOST_DRIVER
                                              or (f.used is DriverUsed.RUNTIME
                                                  and on_host_runtime(s))),
    }


def paths_said(paths: List[str]) -> str:
    return f"{len(paths)} path{'' if len(paths) == 1 else 's'}"


def rendered_cells(record: dict) -> List[Cell]:
    """Whose driver rendered: the host's (bound in) and the runtime's own; on the host runtime
    those are one driver, said once."""
    if record.get("runtime_is_host"):
        every = record["rendered_with_host_driver"]
        return [Cell(f"all {paths_said(every)}: the runtime is the host", title="\n".join(every)),
                Cell("none of its own: the host's",
                     title="the host runtime's driver is the host's")]
    return [Cell(", ".join(record["host_driver_rendered"]) or "none"),
            Cell(paths_said(record["runtime_driver_rendered"]),
                 title="\n".join(record["runtime_driver_rendered"]))]


def driver_row(record: dict) -> List[Cell]:
    kernel = (f" ({', '.join(record['kernel_driver'])})" if record["kernel_driver"]
              else " (no kernel driver)")
    mismatches = record["mismatches"]
    notes = distinct(m["note"] for m in mismatches)
    return [Cell(record["runtime"]), Cell(", ".join(record["runtime_mesa"]) or "-"),
            Cell((", ".join(record["host_driver"]) or "-") + kernel), *rendered_cells(record),
            Cell(f"{len(mismatches)}: {listed(notes, 2)}", css_class(Outcome.FAIL),
                 "\n".join(m["id"] for m in mismatches))
            if mismatches else Cell("none", css_class(Outcome.PASS))]


BUILDERS = (vtest_compat, exposure, isolation, cost, driver_matching, security)


def build(scenarios: Sequence[ScenarioEntry]) -> List[Answer]:
    """Every answer; the presentation answer where a scenario presented on a display (a run
    without one, and every run written before the display axis, reads as it did)."""
    listed = list(scenarios)
    presented = any(entry.display != "offscreen" for entry in listed)
    return [builder(listed) for builder in BUILDERS] + ([presentation(listed)] if presented
                                                        else [])
