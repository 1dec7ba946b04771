"""The seeds' questions, answered from one run: each a short table computed from results.json's
scenario entries (never declared): vtest compatibility, what each path exposes of the host,
isolation per path, cost per path, driver matching. Each answer carries its records (for
results.json) and the table a person reads (report.html)."""
import re
import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, TypeVar

from ..outcomes import Outcome
from . import entries

SERVER_TOOL = "virgl_test_server"  # the toolset entry a vtest scenario's server version is under
SETUP_PHASES = ("setup_s", "image_build_s")  # rendering configs, building images
START_PHASES = ("services_ready_s", "qemu_start_s", "boot_s")  # until the workload can start
EXAMPLES = 3  # paths, sockets, ... named in a cell before "and N more"
T = TypeVar("T")


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""  # an outcome's colour class, where the cell is a verdict
    title: str = ""  # shown on hover: what the cell stands for


@dataclass
class Answer:
    key: str
    title: str
    question: str
    columns: List[str]
    rows: List[List[Cell]] = field(default_factory=list)
    records: List[dict] = field(default_factory=list)  # the same facts, typed, for results.json
    note: str = ""

    def add(self, record: dict, row: List[Cell]) -> None:
        self.records.append(record)
        self.rows.append(row)

    def or_say(self, note: str) -> "Answer":
        """The answer, with `note` where the run gave it no row."""
        if not self.rows:
            self.note = note
        return self

    def to_json(self) -> dict:
        return {"key": self.key, "title": self.title, "question": self.question, "columns": self.columns,
                "rows": [[cell.text for cell in row] for row in self.rows], "records": self.records,
                "note": self.note}


def ran(scenarios: Iterable[dict]) -> List[dict]:
    """The scenarios that were attempted (not Skips)."""
    return [s for s in scenarios if entries.outcome(s) is not Outcome.SKIP]


def by_path(scenarios: Iterable[dict]) -> Dict[str, List[dict]]:
    grouped: Dict[str, List[dict]] = {}
    for scenario in scenarios:
        grouped.setdefault(str(scenario.get("path", "?")), []).append(scenario)
    return grouped


def listed(items: Sequence[str], limit: int = EXAMPLES) -> str:
    if not items:
        return "none"
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def distinct(values: Iterable[object]) -> List[str]:
    """The values as text, each once, in first-seen order (None left out)."""
    seen: List[str] = []
    for value in values:
        if value is not None and str(value) not in seen:
            seen.append(str(value))
    return seen


def span(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """'5' or '5 – 9': the range a path's scenarios cover."""
    if not values:
        return "-"
    low, high = min(values), max(values)
    return fmt(low) if fmt(low) == fmt(high) else f"{fmt(low)} – {fmt(high)}"


def version_key(version: str) -> tuple:
    """'0.10.4' after '0.9.1': numbers compared as numbers, other words as text."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.\-+~ ]", version))


def median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


# --- vtest compatibility ------------------------------------------------------------------------

def vtest_compat(scenarios: List[dict]) -> Answer:
    """Client Mesa (the runtime's) against server virglrenderer (virgl_test_server's version),
    per probe: does it render?"""
    groups: Dict[tuple, List[dict]] = {}
    for scenario in scenarios:
        server = entries.versions(scenario).get(SERVER_TOOL)
        if server is None:
            continue
        client = entries.runtime_mesa(scenario) or "unknown"
        groups.setdefault((client, server, entries.probe(scenario)), []).append(scenario)
    columns_keys = sorted({(server, probe) for _, server, probe in groups},
                          key=lambda pair: (version_key(pair[0]), pair[1]))
    clients = sorted({client for client, _, _ in groups}, key=version_key)
    answer = Answer("vtest", "vtest compatibility",
                    "Which client Mesa renders through which virglrenderer over vtest?",
                    ["client Mesa (runtimes)"] + [f"virglrenderer {server} · {probe}" for server, probe in columns_keys])
    for client in clients:
        runtimes = distinct(entries.runtime(s) for (c, _, _), group in groups.items() if c == client for s in group)
        row = [Cell(f"{client} ({', '.join(runtimes)})")]
        for server, probe in columns_keys:
            group = groups.get((client, server, probe), [])
            record = vtest_record(client, server, probe, group)
            if group:
                answer.records.append(record)
            row.append(vtest_cell(record))
        answer.rows.append(row)
    return answer.or_say("No scenario in this run went through a vtest server.")


def vtest_record(client: str, server: str, probe: str, group: List[dict]) -> dict:
    attempted = ran(group)
    rendered = [s["id"] for s in attempted if entries.outcome(s).renders]
    failed = [{"id": s["id"], "failure": entries.failure_class(s) or "failed"}
              for s in attempted if not entries.outcome(s).renders]
    verdict = ("not run" if not attempted else "renders" if not failed else "fails" if not rendered else "partly")
    return {"client_mesa": client, "server_virglrenderer": server, "probe": probe, "renders": verdict,
            "rendered": rendered, "failed": failed, "skipped": len(group) - len(attempted)}


def vtest_cell(record: dict) -> Cell:
    verdict, failed = record["renders"], record["failed"]
    classes = distinct(f["failure"] for f in failed)
    ids = record["rendered"] + [f["id"] for f in failed]
    title = "; ".join(ids) or "no scenario"
    if verdict == "renders":
        return Cell(f"renders ({len(ids)})", Outcome.PASS.css_class, title)
    if verdict == "fails":
        return Cell(f"fails: {listed(classes)}", Outcome.FAIL.css_class, title)
    if verdict == "partly":
        return Cell(f"{len(record['rendered'])} of {len(ids)} render; fails: {listed(classes)}",
                    Outcome.FLAKE.css_class, title)
    return Cell("not run" if record["skipped"] else "-", Outcome.SKIP.css_class if record["skipped"] else "", title)


# --- exposure -----------------------------------------------------------------------------------

def exposure(scenarios: List[dict]) -> Answer:
    answer = Answer("exposure", "What each path exposes of the host",
                    "What of the host does a workload see through this path (the leak audit, measured "
                    "from its own mount table)?",
                    ["path", "host paths", "host files", "host devices", "host sockets", "shared namespaces",
                     "for example"])
    for path, group in by_path(scenarios).items():
        audits = [(s, entries.mapping(s, "exposure")) for s in group if entries.mapping(s, "exposure")]
        if not audits:
            continue
        record = exposure_record(path, audits)
        answer.add(record, exposure_row(record))
    return answer.or_say("No scenario in this run was audited.")


def exposure_record(path: str, audits: List[tuple]) -> dict:
    counts = [entries.number(a, "host_file_count") for _, a in audits]
    per_runtime = {entries.runtime(s): entries.number(a, "host_file_count") for s, a in audits}
    return {
        "path": path, "scenarios": len(audits),
        "whole_host": any(a.get("whole_host") is True for _, a in audits),
        "separate_kernel": all(a.get("separate_kernel") is True for _, a in audits),
        "host_paths": max(len(entries.texts(a, "host_files")) for _, a in audits),
        "host_files": [int(c) for c in counts if c is not None],
        "host_files_by_runtime": {k: int(v) for k, v in per_runtime.items() if v is not None},
        "host_devices": distinct(d for _, a in audits for d in entries.texts(a, "host_devices")),
        "host_sockets": max(len(entries.texts(a, "host_sockets")) for _, a in audits),
        "shared_namespaces": distinct(n for _, a in audits for n in entries.texts(a, "shared_namespaces")),
        "examples": distinct(f for _, a in audits for f in entries.texts(a, "host_files")),
    }


def exposure_row(record: dict) -> List[Cell]:
    files = record["host_files"]
    by_runtime = ", ".join(f"{k}: {v:,}" for k, v in record["host_files_by_runtime"].items())
    paths = Cell("whole host", Outcome.FAIL.css_class) if record["whole_host"] else Cell(str(record["host_paths"]))
    if record["separate_kernel"]:
        namespaces = Cell("none: a guest kernel")
    elif record["whole_host"] and not record["shared_namespaces"]:
        namespaces = Cell("all: runs on the host", Outcome.FAIL.css_class)
    else:
        namespaces = Cell(", ".join(record["shared_namespaces"]) or "none")
    return [Cell(record["path"]), paths, Cell(span(files, lambda v: f"{int(v):,}"), title=by_runtime),
            Cell(listed(record["host_devices"])), Cell(str(record["host_sockets"])), namespaces,
            Cell(listed(record["examples"]), title="\n".join(record["examples"]))]


# --- isolation ----------------------------------------------------------------------------------

def isolation(scenarios: List[dict]) -> Answer:
    answer = Answer("isolation", "Isolation per path",
                    "What does the workload get: its own namespaces, seccomp, capabilities, device nodes "
                    "(measured inside, by the probe)?",
                    ["path", "own namespaces", "seccomp", "NoNewPrivs", "capabilities", "uid", "/dev/dri nodes",
                     "host devices", "host paths visible"])
    for path, group in by_path(scenarios).items():
        measured = [s for s in group if entries.mapping(s, "isolation")]
        if not measured:
            continue
        record = isolation_record(path, measured)
        answer.add(record, isolation_row(record))
    return answer.or_say("No probe in this run reported its isolation facts.")


def own_namespaces(scenario: dict) -> List[str]:
    facts = entries.mapping(scenario, "isolation")
    audit = entries.mapping(scenario, "exposure")
    seen = [str(name) for name in entries.mapping(facts, "namespaces")]
    if audit.get("separate_kernel") is True:
        return ["guest kernel"]
    shared = set(entries.texts(audit, "shared_namespaces"))
    return [name for name in seen if name not in shared] if audit else []


def whole(value: Optional[float]) -> Optional[int]:
    """A count or mode read from JSON (where 2 may come as 2.0), as the whole number it is."""
    return int(value) if value is not None and value.is_integer() else None


def unique(values: Iterable[T]) -> List[T]:
    """Each value once, in first-seen order, None left out."""
    seen: List[T] = []
    for value in values:
        if value is not None and value not in seen:
            seen.append(value)
    return seen


def isolation_record(path: str, measured: List[dict]) -> dict:
    facts = [entries.mapping(s, "isolation") for s in measured]
    visible = [(whole(entries.number(f, "host_paths_visible")), whole(entries.number(f, "host_paths_checked")))
               for f in facts]
    return {
        "path": path, "scenarios": len(measured),
        "own_namespaces": unique(", ".join(own_namespaces(s)) or "none" for s in measured),
        "seccomp_mode": unique(whole(entries.number(f, "seccomp_mode")) for f in facts),
        "no_new_privs": unique(f["no_new_privs"] for f in facts if isinstance(f.get("no_new_privs"), bool)),
        "capabilities": unique(whole(entries.number(f, "capabilities")) for f in facts),
        "uid": unique(whole(entries.number(f, "uid")) for f in facts),
        "dri_nodes": distinct(n for f in facts for n in entries.texts(f, "dri_nodes")),
        "host_devices": distinct(d for s in measured for d in entries.texts(entries.mapping(s, "exposure"),
                                                                            "host_devices")),
        "host_paths_visible": unique(f"{v} of {c}" for v, c in visible if v is not None and c is not None),
    }


SECCOMP_MODES = {0: "off", 1: "strict", 2: "filter"}  # /proc/self/status Seccomp:


def joined(values: Iterable[object]) -> str:
    return " / ".join(str(v) for v in values) or "-"


def isolation_row(record: dict) -> List[Cell]:
    return [Cell(record["path"]), Cell(joined(record["own_namespaces"])),
            Cell(joined(SECCOMP_MODES.get(mode, mode) for mode in record["seccomp_mode"])),
            Cell(joined("yes" if value else "no" for value in record["no_new_privs"])),
            Cell(joined(record["capabilities"])), Cell(joined(record["uid"])),
            Cell(f"{len(record['dri_nodes'])}: {listed(record['dri_nodes'])}" if record["dri_nodes"] else "0"),
            Cell(listed(record["host_devices"])), Cell(joined(record["host_paths_visible"]))]


# --- cost ---------------------------------------------------------------------------------------

def cost(scenarios: List[dict]) -> Answer:
    baselines = distinct(entries.text(s, "fps_baseline") for s in scenarios)
    answer = Answer("cost", "Cost per path",
                    "What does the path cost: setup, service and machine start, memory, fps against "
                    f"{' / '.join(baselines) or 'the baseline path'}? (medians over the path's scenarios that ran)",
                    ["path", "ran", "setup s", "start s", "probe s", "wall s", "memory MB (probe + services)",
                     "fps % of baseline, per API"])
    for path, group in by_path(ran(scenarios)).items():
        record = cost_record(path, group)
        answer.add(record, cost_row(record))
    return answer.or_say("No scenario ran.")


def phase_sum(scenario: dict, names: Sequence[str]) -> Optional[float]:
    phases = entries.numbers(scenario, "phases_s")
    present = [phases[name] for name in names if name in phases]
    return sum(present) if present else None


def present(values: Iterable[Optional[float]]) -> List[float]:
    return [v for v in values if v is not None]


def cost_record(path: str, group: List[dict]) -> dict:
    def med(values: Iterable[Optional[float]]) -> Optional[float]:
        found = median(present(values))
        return round(found, 4) if found is not None else None

    memory = [entries.numbers(s, "peak_rss_kb") for s in group]
    return {
        "path": path, "scenarios": len(group),
        "setup_s": med(phase_sum(s, SETUP_PHASES) for s in group),
        "start_s": med(phase_sum(s, START_PHASES) for s in group),
        "probe_s": med(entries.numbers(s, "phases_s").get("probe_s") for s in group),
        "wall_s": med(entries.number(s, "wall_s") for s in group),
        "memory_mb": med(sum(m.values()) / 1024 if m else None for m in memory),
        "probe_memory_mb": med(m["probe"] / 1024 if "probe" in m else None for m in memory),
        # Per probe: GL and Vulkan have baselines of their own, a median over both means nothing.
        "fps_vs_baseline": {probe: med(entries.number(s, "fps_vs_baseline") for s in same)
                            for probe, same in by_probe(group).items()
                            if any(entries.number(s, "fps_vs_baseline") is not None for s in same)},
    }


def by_probe(group: List[dict]) -> Dict[str, List[dict]]:
    found: Dict[str, List[dict]] = {}
    for scenario in group:
        found.setdefault(entries.text(scenario, "probe") or "?", []).append(scenario)
    return dict(sorted(found.items()))


def cost_row(record: dict) -> List[Cell]:
    def fmt(value: Optional[float], pattern: str = "{:.2f}") -> str:
        return "-" if value is None else pattern.format(value)

    memory = fmt(record["memory_mb"], "{:.0f}")
    if record["probe_memory_mb"] is not None and record["memory_mb"] is not None:
        memory += f" ({record['probe_memory_mb']:.0f} + {record['memory_mb'] - record['probe_memory_mb']:.0f})"
    shares = " · ".join(f"{probe} {share * 100:.0f}%" for probe, share in record["fps_vs_baseline"].items())
    return [Cell(record["path"]), Cell(str(record["scenarios"])), Cell(fmt(record["setup_s"])),
            Cell(fmt(record["start_s"])), Cell(fmt(record["probe_s"])), Cell(fmt(record["wall_s"])), Cell(memory),
            Cell(shares or "-")]


# --- driver matching ----------------------------------------------------------------------------

def driver_matching(scenarios: List[dict]) -> Answer:
    answer = Answer("driver", "Driver matching",
                    "Whose userspace driver rendered (the host's, bound in, or the runtime's own), and does "
                    "it match the host's driver?",
                    ["runtime", "runtime Mesa", "host driver (kernel)", "host's driver rendered",
                     "runtime's driver rendered", "mismatch"])
    runtimes: Dict[str, List[dict]] = {}
    for scenario in scenarios:
        if entries.mapping(scenario, "driver_match"):
            runtimes.setdefault(entries.runtime(scenario), []).append(scenario)
    for runtime, group in runtimes.items():
        record = driver_record(runtime, group)
        answer.add(record, driver_row(record))
    return answer.or_say("No scenario in this run recorded driver facts.")


def driver_record(runtime: str, group: List[dict]) -> dict:
    facts = [(s, entries.mapping(s, "driver_match")) for s in group]

    def paths_using(used: str) -> List[str]:
        return distinct(s.get("path") for s, f in facts if f.get("used") == used)

    return {
        "runtime": runtime,
        "runtime_mesa": distinct(entries.text(f, "runtime_mesa") for _, f in facts),
        "host_driver": distinct(entries.text(f, "host_driver") for _, f in facts),
        "kernel_driver": distinct(" ".join(present_text(f, "kernel_driver", "kernel_driver_version"))
                                  or None for _, f in facts),
        "host_driver_rendered": paths_using("host-driver"),
        "runtime_driver_rendered": paths_using("runtime"),
        "mismatches": [{"id": s["id"], "note": entries.text(f, "note") or "mismatch"}
                       for s, f in facts if f.get("mismatch") is True],
    }


def present_text(facts: dict, *keys: str) -> List[str]:
    return [value for value in (entries.text(facts, key) for key in keys) if value]


def driver_row(record: dict) -> List[Cell]:
    kernel = f" ({', '.join(record['kernel_driver'])})" if record["kernel_driver"] else " (no kernel driver)"
    mismatches = record["mismatches"]
    notes = distinct(m["note"] for m in mismatches)
    return [Cell(record["runtime"]), Cell(", ".join(record["runtime_mesa"]) or "-"),
            Cell((", ".join(record["host_driver"]) or "-") + kernel),
            Cell(", ".join(record["host_driver_rendered"]) or "none"),
            Cell(f"{len(record['runtime_driver_rendered'])} paths", title="\n".join(record["runtime_driver_rendered"])),
            Cell(f"{len(mismatches)}: {listed(notes, 2)}", Outcome.FAIL.css_class,
                 "\n".join(m["id"] for m in mismatches)) if mismatches else Cell("none", Outcome.PASS.css_class)]


BUILDERS = (vtest_compat, exposure, isolation, cost, driver_matching)


def build(scenario_entries: List[dict]) -> List[Answer]:
    scenarios = [s for s in scenario_entries if isinstance(s, dict) and isinstance(s.get("id"), str)]
    return [builder(scenarios) for builder in BUILDERS]
