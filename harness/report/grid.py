"""The grid at the top of the report: one per probe API, runtimes down, paths across; each cell
one scenario's outcome, its renderer in short, its fps as a share of the run's reference path's
(the workload's own fps where it reported one) and, for a failure, its class. Built from
results.json's scenario entries (harness.report.records) alone."""
import re
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

from ..scenario.outcomes import Outcome, SubtestOutcome
from . import display, text
from .records import ScenarioEntry

COLOURS = display.GRID_COLOURS  # the cells' colours, by their CSS class
RENDERER_WIDTH = 16  # characters of a renderer's short name shown in a cell
# A cell: CELL_LINES lines, each at most LINE_EM wide (in the cell's font, which report.html.j2
# sets at CELL_FONT_EM of the page's): its text, cut between words, then fps where it has one.
CELL_LINES, LINE_EM, CELL_FONT_EM = 4, 6.6, 0.6
VENDOR_WORDS = re.compile(r"^(Mesa|AMD|NVIDIA|Virtio-GPU)\s+")
FORWARDERS = ("virgl", "venus", "zink")  # drivers that name what they forward to in parentheses


@dataclass(frozen=True)
class Cell:
    scenario: str  # the scenario id
    anchor: str  # the id of its detail in report.html
    outcome: str
    css: str
    renderer: Optional[str]  # short
    fps_pct: Optional[int]  # fps as % of the run's reference path's (fps_reference)
    failure: Optional[str]  # the failure class, for Fail and ExpectedFail
    subject: Optional[str]  # what the class is about (a soname, a glibc version)
    reason: str
    # driver matching: why the driver that rendered is not the host's
    driver_mismatch: Optional[str] = None
    # a Skip's reason in a few words (text.short_cause); the whole on hover
    cause: Optional[str] = None
    subtests: Optional[str] = None  # a workload's subtests that passed, of all: "9/10 pass"
    # its timed rounds overlap the reference's: "same as native", not a percentage
    fps_same: bool = False
    fps_reference: str = ""  # the reference path's id
    fps_workload: bool = False  # the fps is the workload's own (its fps_pattern), not the probe's

    @property
    def label(self) -> str:
        """What the cell says first: the failure class for a failure, a Skip's short cause, else
        the renderer."""
        if self.failure:
            return self.failure
        if self.outcome == Outcome.SKIP.value:
            return self.cause or "skip"
        return self.renderer or self.outcome

    @property
    def fps_text(self) -> str:
        if self.fps_pct is None:
            return ""
        return (f"same as {self.fps_reference or 'reference'}" if self.fps_same
                else f"{self.fps_pct}%")

    @property
    def has_fps_line(self) -> bool:
        return self.fps_pct is not None or self.driver_mismatch is not None

    @property
    def lines(self) -> List[str]:
        """The cell's text, in lines that fit it, each cut between words (never inside one): the
        label, then for a failure the renderer it got or what its class is about."""
        room = CELL_LINES - self.has_fps_line - (self.subtests is not None)
        shown = text.wrap(self.label, room, LINE_EM)
        detail = (self.renderer or self.subject) if self.failure else None
        if detail and len(shown) < room:
            shown += text.wrap(detail, room - len(shown), LINE_EM)
        return shown + ([self.subtests] if self.subtests is not None else [])


@dataclass
class Grid:
    probe: str
    runtimes: List[str] = field(default_factory=list)
    paths: List[str] = field(default_factory=list)
    cells: Dict[str, Dict[str, Cell]] = field(default_factory=dict)  # runtime -> path -> cell
    # runtime -> "arm64, emulated": each row's architecture, where the run's rows have more than one
    architectures: Dict[str, str] = field(default_factory=dict)

    def cell(self, runtime: str, path: str) -> Optional[Cell]:
        return self.cells.get(runtime, {}).get(path)

    @property
    def counts(self) -> Dict[str, int]:
        found: Dict[str, int] = {}
        for row in self.cells.values():
            for cell in row.values():
                found[cell.outcome] = found.get(cell.outcome, 0) + 1
        return found

    def to_json(self) -> dict:
        return {"probe": self.probe, "runtimes": self.runtimes, "paths": self.paths,
                "architectures": self.architectures,
                "cells": [{"runtime": runtime, "path": path, **asdict(cell),
                           # its name in files before it was named reference
                           "fps_baseline": cell.fps_reference}
                          for runtime in self.runtimes for path in self.paths
                          if (cell := self.cell(runtime, path)) is not None]}


def cut(name: str, width: int = RENDERER_WIDTH) -> str:
    return text.cut(name, width)


def split_trailing(name: str) -> Tuple[str, Optional[str]]:
    """'virgl (LLVMPIPE (LLVM 15))' -> ('virgl', 'LLVMPIPE (LLVM 15)'): the name and its last
    parenthesised part, the parentheses balanced ('Intel(R) UHD 620 (KBL)' keeps its '(R)')."""
    name = name.strip()
    if not name.endswith(")"):
        return name, None
    depth = 0
    for index in range(len(name) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(name[index], 0)
        if depth == 0:
            return name[:index].strip(), name[index + 1:-1].strip()
    return name, None


def own_name(name: str) -> str:
    """A renderer's name without its details and without a vendor word that says nothing in a
    cell: 'llvmpipe (LLVM 15.0.6, 256 bits)' -> 'llvmpipe', 'LLVMPIPE' -> 'llvmpipe'."""
    base = split_trailing(name)[0] or name.strip()
    base = VENDOR_WORDS.sub("", base).strip() or base
    return base.lower() if base.isupper() else base


def short_renderer(renderer: Optional[str]) -> Optional[str]:
    """'virgl (LLVMPIPE (LLVM 15.0.6, 256 bits))' -> 'virgl/llvmpipe': a forwarding driver with
    the renderer it forwards to (named in its parentheses), anything else by its own name."""
    if not renderer or not renderer.strip():
        return None
    base, inner = split_trailing(renderer)
    outer = own_name(renderer)
    forwarded = inner is not None and (split_trailing(inner)[1] is not None
                                       or outer.lower() in FORWARDERS)
    return cut(f"{outer}/{own_name(inner)}" if forwarded and inner else outer)


def fps_pct(share: Optional[float]) -> Optional[int]:
    return round(100 * share) if share is not None and share < 1e6 else None


def anchor(index: int) -> str:
    return f"scenario-{index}"


def cell_of(entry: ScenarioEntry, index: int) -> Cell:
    outcome = entry.outcome
    failed = outcome in (Outcome.FAIL, Outcome.EXPECTED_FAIL)
    fps = entry.shown_fps_share
    return Cell(scenario=entry.id, anchor=anchor(index), outcome=outcome.value,
                css=display.css_class(outcome),
                renderer=short_renderer(entry.renderer), fps_pct=fps_pct(fps.share),
                fps_same=fps.same, fps_reference=fps.reference or "", fps_workload=fps.workload,
                failure=(entry.failure_kind or "failed") if failed else None,
                subject=entry.subject if failed else None, reason=entry.reason,
                driver_mismatch=mismatch_of(entry),
                cause=text.short_cause(entry.reason) if outcome is Outcome.SKIP else None,
                subtests=subtest_count(entry))


def subtest_count(entry: ScenarioEntry) -> Optional[str]:
    """'9/10 pass' for a workload's entry (a warning passes, a skip does not count), else None."""
    if not entry.subtests:
        return None
    ran = [s for s in entry.subtests if s.outcome is not SubtestOutcome.SKIP]
    return (f"{sum(s.outcome in (SubtestOutcome.PASS, SubtestOutcome.WARN) for s in ran)}/"
            f"{len(ran)} pass")


def mismatch_of(entry: ScenarioEntry) -> Optional[str]:
    match = entry.driver_match
    if match is None or not match.mismatch:
        return None
    return match.note or "driver mismatch"


def build(scenario_entries: List[ScenarioEntry]) -> List[Grid]:
    """One grid per probe (and per display it presented on), in the order the probes, runtimes
    and paths first appear in the run
    (the matrix's order). A second scenario for the same cell (a hand-made file) is left out
    of the grid; the scenario list still has it."""
    grids: Dict[str, Grid] = {}
    for index, entry in enumerate(scenario_entries):
        # a display's grid of its own: gl, gl+wayland, vulkan+x11
        probe = entry.probe if entry.display == "offscreen" else f"{entry.probe}+{entry.display}"
        runtime, path = entry.row, entry.path
        grid = grids.setdefault(probe, Grid(probe))
        if runtime not in grid.runtimes:
            grid.runtimes.append(runtime)
        if path not in grid.paths:
            grid.paths.append(path)
        grid.cells.setdefault(runtime, {}).setdefault(path, cell_of(entry, index))
        architecture = architecture_of(entry)
        if architecture:
            grid.architectures.setdefault(runtime, architecture)
    for found in grids.values():
        if len({said.split(",")[0] for said in found.architectures.values()}) < 2:
            found.architectures = {}  # one architecture: nothing to tell the rows apart by
    return list(grids.values())


def architecture_of(entry: ScenarioEntry) -> str:
    """`arm64, emulated` (or `i386`) from the runtime's execution facts; "" where they say none."""
    execution = entry.runtime_facts.execution
    if execution is None or not execution.architecture:
        return ""
    return (f"{execution.architecture}, emulated" if execution.runs == "emulated"
            else execution.architecture)
