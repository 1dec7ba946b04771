"""results.json read into typed records, once: a Run of ScenarioEntry records, which every
report (junit.xml, report.html, the grid, the answers), diff, merge and `baseline update` work on.

The file's field names are a contract (harness.report.document writes them); a file written by
an older version has fewer of them, and one written by hand may have anything: each field is
read tolerantly (harness.report.jsonvalues), a missing or odd one being None or empty. Each
record keeps the object it was read from (raw): merge writes the entries on as they were."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from ..host.drivermatch import DriverMatch
from ..judging.baseline import Known
from ..judging.exposure import Exposure
from ..scenario.model import LOCAL
from ..scenario.outcomes import FailureKind, Outcome, Subtest
from . import entryparts as parts, jsonvalues as read, results
from .entryparts import Check, HostFacts, Isolation, Presentation, RuntimeFacts, ToolsetFacts
from .jsonvalues import Spread

FAILURE_WORDS = [kind.value for kind in FailureKind]


@dataclass(frozen=True)
class FpsShare:
    """A scenario's fps as a share of its reference path's for the same probe (harness.report.
    fpsshare), and whether the two are the same within their rounds' spread."""

    share: Optional[float] = None
    reference: Optional[str] = None  # the reference path's id
    same: bool = False
    workload: bool = False  # the workload's own fps (its fps_pattern), not the probe's


@dataclass(frozen=True)
class ScenarioEntry:
    """One scenario of a run, as results.json's `scenarios` holds it."""

    id: str
    path: str
    runtime: str
    probe: str
    machine: str  # local, or the virtual GPU machine it ran in
    outcome: Outcome
    display: str = "offscreen"  # where its frames went: offscreen, or a display server's window
    reason: str = ""
    # the failure class as written (a newer version may know more)
    failure_kind: Optional[str] = None
    # what the class is about (a soname, a glibc version): the diagnosis's
    subject: Optional[str] = None
    host: Optional[str] = None  # the host it ran on, in runs merged from several
    host_class: str = ""
    matrix_expects_failure: bool = False  # the matrix's expect = "fail"
    checks: Tuple[Check, ...] = ()
    subtests: Tuple[Subtest, ...] = ()
    renderer: Optional[str] = None
    gl_version: Optional[str] = None
    wall_s: Optional[float] = None
    attempts: Optional[int] = None
    phases: Dict[str, float] = field(default_factory=dict)
    peak_rss_kb: Dict[str, float] = field(default_factory=dict)
    fps: Optional[float] = None
    fps_spread: Optional[Spread] = None
    fps_share: FpsShare = FpsShare()
    # what a declared workload reported itself (a command's fps_pattern)
    workload_fps: Optional[float] = None
    workload_fps_spread: Optional[Spread] = None
    workload_fps_share: FpsShare = FpsShare(workload=True)
    isolation: Optional[Isolation] = None
    presentation: Optional[Presentation] = None  # a presenting scenario's frames on its display
    exposure: Optional[Exposure] = None
    driver_match: Optional[DriverMatch] = None
    known: Optional[Known] = None  # the baseline's entry that judged it
    runtime_facts: RuntimeFacts = RuntimeFacts()
    versions: Dict[str, str] = field(default_factory=dict)
    image: Optional[str] = None  # files, relative to the run's folder
    golden: Optional[str] = None
    diff: Optional[str] = None
    scanout: Optional[str] = None
    scanout_diff: Optional[str] = None
    result_dir: Optional[str] = None
    logs: Dict[str, str] = field(default_factory=dict)
    log_tail: Optional[str] = None
    accel: Optional[str] = None  # a VM's accelerator (kvm, tcg) and why
    accel_reason: str = ""
    # the output of each of its workload's steps (probe_result.steps)
    step_outputs: Tuple[str, ...] = ()
    vtest_server_crashes: Optional[float] = None
    renderer_refusals: Optional[float] = None
    raw: Mapping = field(default_factory=dict, compare=False, repr=False)

    @property
    def failure(self) -> Optional[FailureKind]:
        """The failure class, where this version knows it."""
        return FailureKind(self.failure_kind) if self.failure_kind in FAILURE_WORDS else None

    @property
    def key(self) -> str:
        """What the scenario is within a run: its id, and its host in runs merged from several."""
        return f"{self.id} on {self.host}" if self.host else self.id

    @property
    def row(self) -> str:
        """The grid's row: the runtime, @machine where it ran in one, and its host in merged
        runs."""
        name = self.runtime if self.machine == LOCAL else f"{self.runtime}@{self.machine}"
        return f"{name} on {self.host}" if self.host else name

    @property
    def shown_fps_share(self) -> FpsShare:
        """The share the grid shows: the workload's own fps where it has one (it reported an fps,
        and
        so did the reference path's workload for the same probe), else the probe's."""
        return (self.workload_fps_share if self.workload_fps_share.share is not None
                else self.fps_share)

    @property
    def runtime_mesa(self) -> Optional[str]:
        """The Mesa the workload's own userspace carries (the runtime's, or the host's for host)."""
        return (self.driver_match.runtime_mesa if self.driver_match
                else None) or self.runtime_facts.mesa


def id_display(scenario_id: str) -> str:
    """The display a scenario id names (path/runtime/probe+display@machine), else offscreen."""
    probe = scenario_id.split("@")[0].rpartition("/")[2]
    return probe.partition("+")[2] or "offscreen"


def id_part(scenario_id: str, index: int) -> str:
    """runtime (1) or probe (2) from the scenario id (path/runtime/probe) when the field is
    absent."""
    found = scenario_id.split("/")
    return found[index] if len(found) == 3 else "?"


def outcome_of(data: Mapping) -> Outcome:
    try:
        return Outcome.parse(data.get("outcome"))  # type: ignore[arg-type]
    except ValueError:
        # results.read admits only known outcomes; hand-made entries may not have used it
        return Outcome.FAIL


def fps_share(data: Mapping, prefix: str = "fps") -> FpsShare:
    """The share under its names (PREFIX_vs_reference, PREFIX_reference, PREFIX_same_as_reference),
    or under the probe's older ones (fps_vs_baseline, fps_baseline, fps_same_as_baseline: files
    written before the reference path was named so)."""
    names = ("vs_reference", "reference", "same_as_reference")
    if f"{prefix}_vs_reference" not in data:
        names = ("vs_baseline", "baseline", "same_as_baseline")
    vs, path, same = (f"{prefix}_{name}" for name in names)
    return FpsShare(read.number(data, vs), read.text(data, path), data.get(same) is True,
                    workload=prefix != "fps")


def entry(data: Mapping) -> ScenarioEntry:
    """One scenario entry (an object with a string id: results.read's, or any)."""
    scenario_id = str(data.get("id"))
    machine = read.text(data, "machine") or (scenario_id.rpartition("@")[2]
                                             if "@" in scenario_id else LOCAL)
    expect, launcher = read.mapping(data, "expect"), read.mapping(data, "launcher")
    accel = launcher.get("accel")
    steps = read.mapping(data, "probe_result").get("steps")
    attempts = read.number(data, "attempts")
    return ScenarioEntry(
        id=scenario_id, path=read.text(data, "path") or "?",
        runtime=read.text(data, "runtime") or id_part(scenario_id, 1),
        probe=read.text(data, "probe") or id_part(scenario_id, 2).split("@")[0].split("+")[0],
        machine=machine, display=read.text(data, "display") or id_display(scenario_id),
        outcome=outcome_of(data), reason=read.shown(data, "reason"),
        failure_kind=read.text(data, "failure_kind"),
        subject=read.text(read.mapping(data, "diagnosis"), "subject"), host=read.text(data, "host"),
        host_class=read.shown(data, "host_class"),
        matrix_expects_failure=expect.get("outcome") == "fail",
        checks=(tuple(parts.check(c) for c in data["checks"])
                if isinstance(data.get("checks"), list) else ()),
        subtests=tuple(s for s in map(parts.subtest, data.get("subtests") or []) if s is not None)
        if isinstance(data.get("subtests"), list) else (),
        renderer=read.text(data, "renderer"), gl_version=read.text(data, "gl_version"),
        wall_s=read.number(data, "wall_s"),
        attempts=int(attempts) if attempts is not None else None,
        phases=read.numbers(data, "phases_s"), peak_rss_kb=read.numbers(data, "peak_rss_kb"),
        fps=read.number(data, "fps"), fps_spread=read.spread(data, "fps_spread"),
        fps_share=fps_share(data), workload_fps=read.number(data, "workload_fps"),
        workload_fps_spread=read.spread(data, "workload_fps_spread"),
        workload_fps_share=fps_share(data, "workload_fps"),
        isolation=parts.isolation(read.mapping(data, "isolation")),
        presentation=parts.presentation(read.mapping(data, "presentation")),
        exposure=parts.exposure(read.mapping(data, "exposure")),
        driver_match=parts.driver_match(data.get("driver_match")),
        known=parts.known(data.get("baseline")),
        runtime_facts=parts.runtime_facts(read.mapping(data, "runtime_facts")),
        versions=read.strings(data, "versions"),
        **{name: read.text(data, name) for name in ("image", "golden", "diff", "scanout",
                                                    "scanout_diff", "result_dir", "log_tail")},
        logs=read.strings(data, "logs"), accel=str(accel) if accel else None,
        accel_reason=read.shown(launcher, "accel_reason"),
        step_outputs=tuple(s["output"] for s in steps if isinstance(s, dict)
                           and isinstance(s.get("output"), str))
        if isinstance(steps, list) else (),
        vtest_server_crashes=read.number(data, "vtest_server_crashes"),
        renderer_refusals=read.number(data, "renderer_refusals"), raw=data)


def entries(listed: object) -> List[ScenarioEntry]:
    """The scenario entries of a list: its objects with a string id, each read."""
    return [entry(s) for s in listed if isinstance(s, dict) and isinstance(s.get("id"), str)] \
        if isinstance(listed, list) else []


@dataclass(frozen=True)
class Run:
    """A run's results.json: its facts and its scenarios."""

    scenarios: Tuple[ScenarioEntry, ...]
    wall_s: float = 0.0
    matrix: str = ""  # the matrix's source (merged runs: their sources, as a list's text)
    started: str = ""
    finished: str = ""
    harness_version: Optional[str] = None
    host: HostFacts = HostFacts()
    toolset: ToolsetFacts = ToolsetFacts()
    summary: Dict[str, int] = field(default_factory=dict)  # outcome -> scenarios
    baseline: Optional[str] = None  # the known-failures file it ran with (run --baseline)
    raw: Mapping = field(default_factory=dict, compare=False, repr=False)

    @property
    def references(self) -> List[str]:
        """The reference paths of the fps shares its grid shows, sorted."""
        return sorted({found for s in self.scenarios if (found := s.shown_fps_share.reference)})


def parse(document: Mapping) -> Run:
    """A results.json document (as results.read returns it, or as written) as a Run."""
    matrix = document.get("matrix")
    return Run(tuple(entries(document.get("scenarios"))), read.number(document, "wall_s") or 0.0,
               "" if matrix is None else str(matrix), read.shown(document, "started"),
               read.shown(document, "finished"), read.text(document, "harness_version"),
               parts.host(read.mapping(document, "host")), parts.toolset(read.mapping(document,
                                                                                      "toolset")),
               {str(k): int(v) for k, v in read.numbers(document, "summary").items()},
               read.text(document, "baseline"), document)


def read_file(path: Path) -> Run:
    """A run's results.json (or the folder it is in), checked (results.read), as a Run."""
    return parse(results.read(results.locate(path)))
