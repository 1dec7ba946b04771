"""The answers about what a path lets its workload see: what it exposes of the host (the leak
audit, harness.judging.exposure) and the isolation the probe measured inside.

Like is compared with like. The host runtime's root is the host's own (its /usr, its /etc), so
what a workload sees of the host there is no measure of the path: its numbers are said apart
from the built runtimes'. A workload that sees the whole host in the host's kernel (native,
software) sees all its files and sockets. And the host paths visible are counted over the same
paths for every path (the scenario's sentinel file and the host folders), whatever the family
passed its probe."""
import os
from typing import List, Optional, Tuple

from ..judging.exposure import Exposure
from ..scenario.outcomes import Outcome
from .display import css_class
from .entryparts import Isolation
from .records import ScenarioEntry
from .table import (Answer, Cell, by_path, distinct, joined, listed, on_host_runtime, span, unique,
                    whole)

Audit = Tuple[ScenarioEntry, Exposure]  # a scenario entry and its exposure
# lifecycle.Workspace.sentinel: a file only the host has; every family's probe checks it
SENTINEL = "host-sentinel"
SENTINEL_SAID = "the scenario's host-only sentinel file"

# --- exposure -----------------------------------------------------------------------------------


def exposure(scenarios: List[ScenarioEntry]) -> Answer:
    answer = Answer("exposure", "What each path exposes of the host",
                    "What of the host does a workload see through this path (the leak audit, "
                    "measured "
                    "from its own mount table)? On the host runtime the workload's own root is the "
                    "host's "
                    "(its /usr, its /etc): that is said apart from the built runtimes' numbers.",
                    ["path", "host paths", "host files", "host devices", "host sockets",
                     "shared namespaces",
                     "for example"])
    for path, group in by_path(scenarios).items():
        audits = [(s, s.exposure) for s in group if s.exposure]
        if not audits:
            continue
        record = exposure_record(path, audits)
        answer.add(record, exposure_row(record))
    return answer.or_say("No scenario in this run was audited.")


def host_process(audit: Exposure) -> bool:
    """The workload sees the host's whole filesystem in the host's kernel (a host process): every
    file, and every socket in it."""
    return audit.whole_host and not audit.separate_kernel


def audit_part(audits: List[Audit]) -> Optional[dict]:
    """What one part of a path's scenarios (the host runtime's, or the built runtimes') exposes."""
    if not audits:
        return None
    return {"scenarios": len(audits), "runtimes": distinct(s.runtime for s, _ in audits),
            "whole_host": any(a.whole_host for _, a in audits),
            "host_process": any(host_process(a) for _, a in audits),
            "host_paths": max(len(a.host_files) for _, a in audits),
            "host_files": [a.host_file_count for _, a in audits if a.host_file_count is not None],
            "host_sockets": max(len(a.host_sockets) for _, a in audits)}


def exposure_record(path: str, audits: List[Audit]) -> dict:
    per_runtime = {s.runtime: a.host_file_count for s, a in audits}
    return {
        "path": path, "scenarios": len(audits),
        "whole_host": any(a.whole_host for _, a in audits),
        "separate_kernel": all(a.separate_kernel for _, a in audits),
        "host_paths": max(len(a.host_files) for _, a in audits),
        "host_files": [a.host_file_count for _, a in audits if a.host_file_count is not None],
        "host_files_by_runtime": {k: v for k, v in per_runtime.items() if v is not None},
        "host_devices": distinct(d for _, a in audits for d in a.host_devices),
        "host_sockets": max(len(a.host_sockets) for _, a in audits),
        "shared_namespaces": distinct(n for _, a in audits for n in a.shared_namespaces),
        "examples": distinct(f for _, a in audits for f in a.host_files),
        # The same, apart: the built runtimes (comparable between paths) and the host runtime.
        "host_process": any(host_process(a) for _, a in audits),
        "built_runtimes": audit_part([(s, a) for s, a in audits if not on_host_runtime(s)]),
        "host_runtime": audit_part([(s, a) for s, a in audits if on_host_runtime(s)]),
    }


def part_text(part: dict, column: str) -> str:
    """One part's value in the column: host paths or host files."""
    # a guest whose 9p root is the host's / sees its files, if none of its sockets
    if part["whole_host"]:
        return "whole host" if column == "host_paths" else "all"
    if column == "host_files":
        return span(part["host_files"], lambda v: f"{int(v):,}")
    return str(part[column])


def split_text(record: dict, column: str) -> str:
    """The built runtimes' value, then the host runtime's where it differs, said as what it is:
    '0 · host runtime: 130,100 (host's own root)'. A host process is the host's on any runtime."""
    built, host = record["built_runtimes"], record["host_runtime"]
    if host is None or (host["host_process"] and built is None):
        return part_text(host or built, column)
    said = part_text(host, column) + ("" if host["whole_host"] else " (host's own root)")
    if built is None:
        return f"host runtime: {said}"
    shown = part_text(built, column)
    return shown if shown == part_text(host, column) else f"{shown} · host runtime: {said}"


def sockets_text(record: dict) -> str:
    """Every socket for a host process (a socket is a file of the host's); else those bound in,
    on any runtime alike."""
    return "all" if record["host_process"] else str(record["host_sockets"])


def exposure_row(record: dict) -> List[Cell]:
    by_runtime = ", ".join(f"{k}: {v:,}" for k, v in record["host_files_by_runtime"].items())
    paths = Cell(split_text(record, "host_paths"), css_class(Outcome.FAIL)
                 if record["whole_host"] else "")
    if record["separate_kernel"]:
        namespaces = Cell("none: a guest kernel")
    elif record["whole_host"] and not record["shared_namespaces"]:
        namespaces = Cell("all: runs on the host", css_class(Outcome.FAIL))
    else:
        namespaces = Cell(", ".join(record["shared_namespaces"]) or "none")
    return [Cell(record["path"]), paths, Cell(split_text(record, "host_files"), title=by_runtime),
            Cell(listed(record["host_devices"])), Cell(sockets_text(record)), namespaces,
            Cell(listed(record["examples"]), title="\n".join(record["examples"]))]


# --- isolation ----------------------------------------------------------------------------------

def isolation(scenarios: List[ScenarioEntry]) -> Answer:
    answer = Answer("isolation", "Isolation per path",
                    "What does the workload get: its own namespaces, seccomp, capabilities, device "
                    "nodes "
                    "(measured inside, by the probe)? Host paths visible: of the same paths for "
                    "every path.",
                    ["path", "own namespaces", "seccomp", "NoNewPrivs", "capabilities", "uid",
                     "/dev/dri nodes",
                     "host devices", "host paths visible"])
    for path, group in by_path(scenarios).items():
        measured = [s for s in group if s.isolation]
        if not measured:
            continue
        record = isolation_record(path, measured)
        answer.add(record, isolation_row(record))
    return answer.or_say("No probe in this run reported its isolation facts.")


def own_namespaces(scenario: ScenarioEntry) -> List[str]:
    facts, audit = scenario.isolation, scenario.exposure
    seen = list(facts.namespaces) if facts else []
    if audit is None:
        return []
    if audit.separate_kernel:
        return ["guest kernel"]
    return [name for name in seen if name not in set(audit.shared_namespaces)]


def compared(scenario: ScenarioEntry) -> Optional[Tuple[List[str], List[str]]]:
    """(checked, visible) over the same host paths for every path: the scenario's sentinel file
    (every family's probe looks for it) and the host folders (/home, /root, ...: what the
    workload's mount table shows of them, harness.judging.exposure). Not what the family passed its
    probe: a container or Flatpak app has a root of its own, with a /home of its own, so the
    families pass them only the sentinel (and the result folder). None: not measured so."""
    facts, audit = scenario.isolation, scenario.exposure
    folders = audit.host_folders_checked if audit else []
    if not folders or facts is None or facts.host_paths_visible_list is None or (
            facts.host_paths_checked_list is not None
            and not any(os.path.basename(p) == SENTINEL for p in facts.host_paths_checked_list)):
        return None
    sentinel = any(os.path.basename(p) == SENTINEL for p in facts.host_paths_visible_list)
    return [SENTINEL_SAID, *folders], ([SENTINEL_SAID] if sentinel
                                       else []) + list(audit.host_folders_visible
                                                                                     if audit
                                                                                   else [])


def isolation_record(path: str, measured: List[ScenarioEntry]) -> dict:
    facts: List[Isolation] = [s.isolation for s in measured if s.isolation]
    visible = [(whole(f.host_paths_visible), whole(f.host_paths_checked)) for f in facts]
    same = [found for found in (compared(s) for s in measured) if found is not None]

    def counted(host: bool) -> List[str]:
        found = [compared(s) for s in measured if on_host_runtime(s) == host]
        return unique(f"{len(seen)} of {len(checked)}" for checked, seen in (f for f in found
                                                                             if f is not None))
    return {
        "path": path, "scenarios": len(measured),
        "own_namespaces": unique(", ".join(own_namespaces(s)) or "none" for s in measured),
        "seccomp_mode": unique(whole(f.seccomp_mode) for f in facts),
        "no_new_privs": unique(f.no_new_privs for f in facts),
        "capabilities": unique(whole(f.capabilities) for f in facts),
        "uid": unique(whole(f.uid) for f in facts),
        "dri_nodes": distinct(n for f in facts for n in f.dri_nodes),
        "host_devices": distinct(d for s in measured for d in (s.exposure.host_devices
                                                               if s.exposure else [])),
        "host_paths_visible": unique(f"{v} of {c}" for v, c in visible if v is not None
                                     and c is not None),
        # Over the same paths for every path (compared): comparable between rows.
        "host_paths_compared": unique(f"{len(seen)} of {len(checked)}" for checked, seen in same)
        if len(same) == len(measured) else [],
        "host_paths_compared_checked": distinct(p for checked, _ in same for p in checked),
        "host_paths_compared_visible": distinct(p for _, seen in same for p in seen),
        "host_paths_compared_built_runtimes": counted(False),
        "host_paths_compared_host_runtime": counted(True),
    }


SECCOMP_MODES = {0: "off", 1: "strict", 2: "filter"}  # /proc/self/status Seccomp:


def visible_cell(record: dict) -> Cell:
    probe = ("the probe's own check (of the paths the family passed it): "
             f"{joined(record['host_paths_visible'])}")
    if not record["host_paths_compared"]:
        return Cell(joined(record["host_paths_visible"]), title=probe)
    checked, seen = record["host_paths_compared_checked"], record["host_paths_compared_visible"]
    built, host = (record["host_paths_compared_built_runtimes"],
                   record["host_paths_compared_host_runtime"])
    said = joined(built) + (f" · host runtime: {joined(host)}" if host and built
                            and host != built else "")
    return Cell(said if built else joined(host),
                title=f"the same {len(checked)} for every path: {SENTINEL_SAID} (the probe looks "
                      "for it) and "
                      f"{', '.join(checked[1:])} (what the workload's mount table shows of them)\n"
                      f"visible: {', '.join(seen) or 'none'}\n{probe}")


def isolation_row(record: dict) -> List[Cell]:
    return [Cell(record["path"]), Cell(joined(record["own_namespaces"])),
            Cell(joined(SECCOMP_MODES.get(mode, mode) for mode in record["seccomp_mode"])),
            Cell(joined("yes" if value else "no" for value in record["no_new_privs"])),
            Cell(joined(record["capabilities"])), Cell(joined(record["uid"])),
            Cell(f"{len(record['dri_nodes'])}: {listed(record['dri_nodes'])}"
                 if record["dri_nodes"] else "0"),
            Cell(listed(record["host_devices"])), visible_cell(record)]
