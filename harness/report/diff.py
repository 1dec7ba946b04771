"""`gpu-harness diff OLD NEW`: what changed between two runs. Outcomes (regressions first),
renderers, component versions, images (compared pixel by pixel, both kept for the HTML) and fps
changes beyond noise; as text, JSON and an HTML page.

A regression is a scenario that fails now and did not (a Fail that was anything else, or a new
scenario that fails), or one that rendered and now does not (an ExpectedFail). A change of
failure class (Fail to Fail) is a change, not a regression: the run was already red."""
import enum
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..core.errors import PATH_LIMIT, InputError, cut
from ..scenario.model import Tolerance
from ..scenario.outcomes import Outcome, SubtestOutcome
from ..core.words import counted
from . import answers, display, records, results
from .jsonvalues import Spread, overlap
from .records import ScenarioEntry

# An fps change counts where both runs timed their rounds and the ranges of their rounds (slowest
# to fastest) stay apart even when each is widened by its own width: a change must be larger than
# twice the noise each run showed. Where a run has no spread (a results.json of an older version)
# the rule is a factor, either way (x10: three runs of the default matrix on one busy 2-core
# machine, 60 frames each, differed by up to x7.7, median x1.26). `diff --fps-factor` sets the
# factor and uses it for every scenario.
FPS_FACTOR = 10.0
EXACT = Tolerance(channel=0, fraction=0.0)  # any pixel that differs at all


class Kind(str, enum.Enum):
    REGRESSION = "regression"
    FIXED = "fixed"
    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"

    def __str__(self) -> str:
        return self.value


ORDER = list(Kind)


@dataclass(frozen=True)
class OutcomeChange:
    id: str
    kind: Kind
    old: Optional[str]  # the outcome; None: not in that run
    new: Optional[str]
    old_failure: Optional[str] = None
    new_failure: Optional[str] = None
    reason: str = ""  # the new run's reason (the old one's for a removed scenario)

    def describe(self) -> str:
        def said(outcome: Optional[str], failure: Optional[str]) -> str:
            return "absent" if outcome is None else outcome + (f" ({failure})" if failure else "")

        return f"{said(self.old, self.old_failure)} -> {said(self.new, self.new_failure)}"


@dataclass(frozen=True)
class ValueChange:
    """A renderer or a component version that changed, with the scenarios it changed for."""

    # "renderer", or the component: mesa, virgl_test_server, runtime Mesa, toolset:qemu, ...
    name: str
    old: Optional[str]
    new: Optional[str]
    scenarios: Tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageChange:
    id: str
    old_image: str  # as a path the reader of the text/JSON can open
    new_image: str
    detail: str
    differing_fraction: Optional[float] = None


@dataclass(frozen=True)
class FpsChange:
    id: str
    old: float
    new: float
    # what made it count: "spread" (the rounds' ranges apart) or the factor, "x10"
    rule: str = "spread"

    @property
    def change(self) -> float:
        return self.new / self.old - 1


@dataclass(frozen=True)
class SubtestChange:
    """A workload's subtest whose outcome changed between the runs (a regression: it fails now)."""

    id: str
    subtest: str
    kind: Kind
    old: Optional[str]  # its outcome; None: not in that run
    new: Optional[str]
    detail: str = ""  # the new run's words for it


@dataclass
class RunDiff:
    old: str
    new: str
    fps_factor: Optional[float] = None  # None: by the spread of both runs' rounds
    outcomes: List[OutcomeChange] = field(default_factory=list)
    renderers: List[ValueChange] = field(default_factory=list)
    versions: List[ValueChange] = field(default_factory=list)
    images: List[ImageChange] = field(default_factory=list)
    fps: List[FpsChange] = field(default_factory=list)
    compared: int = 0  # scenarios in both runs
    subtests: List[SubtestChange] = field(default_factory=list)

    @property
    def regressions(self) -> List[OutcomeChange]:
        return [c for c in self.outcomes if c.kind is Kind.REGRESSION]

    @property
    def subtest_regressions(self) -> List[SubtestChange]:
        return [c for c in self.subtests if c.kind is Kind.REGRESSION]

    def to_json(self) -> dict:
        data = asdict(self)
        data["regressions"] = len(self.regressions)
        data["subtest_regressions"] = len(self.subtest_regressions)
        for item, change in zip(data["fps"], self.fps, strict=True):
            item["change"] = round(change.change, 4)
        return data


@dataclass(frozen=True)
class Side:
    """One side of a diff: its run and the folder its relative paths start from."""

    source: str
    folder: Path
    run: records.Run

    @property
    def by_id(self) -> Dict[str, ScenarioEntry]:
        found: Dict[str, ScenarioEntry] = {}
        for scenario in self.run.scenarios:
            found.setdefault(scenario.key, scenario)
        return found


Common = List[Tuple[ScenarioEntry, ScenarioEntry]]  # the scenarios in both runs: (old, new)


def load(path: Path) -> Side:
    """A run from its result folder or its results.json (InputError when it is neither)."""
    file = results.locate(path)
    if not Path(path).exists():
        raise InputError(f"{cut(path, PATH_LIMIT)}: no such result folder or results.json")
    if not file.is_file():
        raise InputError(f"{cut(path, PATH_LIMIT)}: not a result folder (no {file.name} in it)")
    return Side(str(path), file.parent, records.parse(results.read(file)))


def classify(old: Optional[ScenarioEntry], new: Optional[ScenarioEntry]) -> Optional[Kind]:
    """What kind of outcome change old -> new is; None when there is none."""
    if new is None:
        return Kind.REMOVED
    now = new.outcome
    if old is None:
        return Kind.REGRESSION if now is Outcome.FAIL else Kind.ADDED
    before = old.outcome
    if before is now:
        same_class = old.failure_kind == new.failure_kind
        return None if now is not Outcome.FAIL or same_class else Kind.CHANGED
    if now is Outcome.FAIL or (before.renders and now is Outcome.EXPECTED_FAIL):
        return Kind.REGRESSION
    if before in (Outcome.FAIL, Outcome.EXPECTED_FAIL) and now.renders:
        return Kind.FIXED
    return Kind.CHANGED


def failure_of(scenario: Optional[ScenarioEntry]) -> Optional[str]:
    """The failure class, where the outcome has one (a Flake's is its failed attempt's)."""
    if scenario is None or scenario.outcome not in (Outcome.FAIL, Outcome.EXPECTED_FAIL,
                                                    Outcome.FLAKE):
        return None
    return scenario.failure_kind


def outcome_changes(old: Dict[str, ScenarioEntry],
                    new: Dict[str, ScenarioEntry]) -> List[OutcomeChange]:
    found = []
    for scenario_id in [*new, *(i for i in old if i not in new)]:
        before, after = old.get(scenario_id), new.get(scenario_id)
        kind = classify(before, after)
        if kind is None:
            continue
        said = after or before
        found.append(OutcomeChange(
            scenario_id, kind, before.outcome.value if before else None, after.outcome.value
                                   if after else None,
            failure_of(before), failure_of(after), said.reason if said else ""))
    return sorted(found, key=lambda c: ORDER.index(c.kind))


def grouped(pairs: List[Tuple[str, Optional[str], Optional[str], str]]) -> List[ValueChange]:
    """(name, old, new, scenario) -> one change per (name, old, new) with its scenarios."""
    groups: Dict[Tuple[str, Optional[str], Optional[str]], List[str]] = {}
    for name, before, after, scenario_id in pairs:
        groups.setdefault((name, before, after), []).append(scenario_id)
    return [ValueChange(name, before, after, tuple(ids)) for (name, before, after),
            ids in groups.items()]


def renderer_changes(common: Common) -> List[ValueChange]:
    return grouped([("renderer", o.renderer, n.renderer, n.id) for o, n in common
                    if o.renderer and n.renderer and o.renderer != n.renderer])


def scenario_versions(scenario: ScenarioEntry) -> Dict[str, str]:
    mesa = scenario.runtime_mesa
    return {**scenario.versions, **({"runtime Mesa": mesa} if mesa else {})}


def version_changes(old: Side, new: Side, common: Common) -> List[ValueChange]:
    pairs = []
    for before, after in common:
        was, now = scenario_versions(before), scenario_versions(after)
        pairs += [(name, was.get(name), now.get(name), after.id) for name in sorted({*was, *now})
                  if was.get(name) and now.get(name) and was[name] != now[name]]
    was, now = old.run.toolset.versions(), new.run.toolset.versions()
    pairs += [(f"toolset:{name}", was.get(name), now.get(name), "toolset")
              for name in sorted({*was, *now}) if was.get(name) != now.get(name)]
    return grouped(pairs)


def image_file(side: Side, scenario: ScenarioEntry) -> Optional[Path]:
    if scenario.image is None:
        return None
    path = side.folder / scenario.image
    return path if path.is_file() else None


def image_changes(old: Side, new: Side, common: Common) -> List[ImageChange]:
    # numpy and Pillow: only for a diff that has images to compare
    from ..scenario import imagecompare as images

    found = []
    for before, after in common:
        was, now = image_file(old, before), image_file(new, after)
        if was is None or now is None:
            continue
        comparison = images.compare(now, was, EXACT)
        if comparison.matched:
            continue
        if comparison.differing_fraction is not None:
            detail = (f"{comparison.differing_fraction:.2%} of pixels differ "
                      f"(largest channel difference {comparison.max_channel_diff})")
        else:  # another size, or a file that is no image
            detail = comparison.reason.replace("golden", "the old image")
        found.append(ImageChange(after.id, str(was), str(now), detail,
                                 comparison.differing_fraction))
    return found


def apart(one: Spread, other: Spread) -> bool:
    """The two ranges do not meet even when each is widened by its own width on both sides."""
    widened = [(low - (high - low), high + (high - low)) for low, high in (one, other)]
    return not overlap(widened[0], widened[1])


def fps_changes(common: Common, factor: Optional[float] = None) -> List[FpsChange]:
    """fps that moved beyond the noise: by the spread of both runs' rounds, or by `factor` where
    one is given or a run has no spread."""
    found = []
    for before, after in common:
        was, now = before.fps, after.fps
        if was is None or now is None or was <= 0 or now <= 0:
            continue
        old_spread, new_spread = before.fps_spread, after.fps_spread
        if factor is None and old_spread and new_spread:
            changed = apart(old_spread, new_spread)
        else:
            changed = abs(math.log(now / was)) > math.log(factor or FPS_FACTOR)
        if changed:
            found.append(FpsChange(after.id, was, now, "spread" if factor is None
                                   and old_spread and new_spread
                                   else f"x{factor or FPS_FACTOR:g}"))
    return sorted(found, key=lambda c: c.change)


FAILING = tuple(str(outcome) for outcome in SubtestOutcome if outcome.failed)


def subtest_outcomes(scenario: ScenarioEntry) -> Dict[str, Tuple[str, str]]:
    return {s.name: (str(s.outcome), s.detail) for s in scenario.subtests}


def subtest_changes(common: Common) -> List[SubtestChange]:
    """Per subtest, in the scenarios of both runs: failing now and not before is a regression."""
    found = []
    for before, after in common:
        was, now = subtest_outcomes(before), subtest_outcomes(after)
        for name in [*now, *(n for n in was if n not in now)]:
            old, new = (was.get(name) or (None, ""))[0], (now.get(name) or (None, ""))[0]
            if old == new:
                continue
            if new in FAILING:
                kind = Kind.REGRESSION
            elif old in FAILING and new is not None:
                kind = Kind.FIXED
            else:
                kind = Kind.ADDED if old is None else Kind.REMOVED if new is None else Kind.CHANGED
            found.append(SubtestChange(after.id, name, kind, old, new, (now.get(name) or ("",
                                                                                          ""))[1]))
    return sorted(found, key=lambda c: ORDER.index(c.kind))


def compare(old: Side, new: Side, fps_factor: Optional[float] = None) -> RunDiff:
    before, after = old.by_id, new.by_id
    common = [(before[i], after[i]) for i in after if i in before]
    return RunDiff(old.source, new.source, fps_factor, outcome_changes(before, after),
                   renderer_changes(common),
                   version_changes(old, new, common), image_changes(old, new, common),
                   fps_changes(common, fps_factor), len(common), subtest_changes(common))


# --- output -------------------------------------------------------------------------------------

def text(diff: RunDiff) -> str:
    lines = [f"gpu-harness diff {diff.old} -> {diff.new}: {counted(diff.compared, 'scenario')} in "
             "both, "
             f"{len(diff.regressions)} regression{'' if len(diff.regressions) == 1 else 's'}"
             + (f", {counted(len(diff.subtest_regressions), 'subtest')} regressed"
                if diff.subtest_regressions else "")]
    sections: List[Tuple[str, List[str]]] = [
        ("outcomes", [f"{c.kind.value:<10} {c.id:<32} {c.describe()}: {c.reason}"
                      for c in diff.outcomes]),
        ("subtests",
         [f"{c.kind.value:<10} {c.id} {c.subtest}: {c.old or 'absent'} -> {c.new or 'absent'}"
                      + (f" ({c.detail})" if c.detail and c.kind is Kind.REGRESSION else "")
                      for c in diff.subtests]),
        ("renderers", [f"{answers.listed(c.scenarios, 4)}: {c.old} -> {c.new}"
                       for c in diff.renderers]),
        ("versions", [f"{c.name}: {c.old} -> {c.new} ({counted(len(c.scenarios), 'scenario')})"
                      if c.scenarios != ("toolset",) else f"{c.name}: {c.old} -> {c.new}"
                      for c in diff.versions]),
        ("images", [f"{c.id}: {c.detail}" for c in diff.images]),
        ("fps (" + (f"changed by more than x{diff.fps_factor:g}" if diff.fps_factor else
                    "changed beyond both runs' spread, or x10 where a run has none") + ")",
         [f"{c.id}: {c.old:g} -> {c.new:g} ({c.change:+.0%}, {c.rule})" for c in diff.fps]),
    ]
    for title, body in sections:
        lines += [f"{title}:", *(f"  {line}" for line in body)] if body else [f"{title}: no change"]
    return "\n".join(lines) + "\n"


def html(diff: RunDiff, page: Path) -> str:
    """The diff as an HTML page to be written at `page` (images linked relative to it)."""
    from ..core.templating import render as render_template

    def link(path: str) -> str:
        try:
            return os.path.relpath(os.path.abspath(path), os.path.abspath(page.parent))
        except ValueError:
            return os.path.abspath(path)

    return render_template("diff.html.j2", strict=False, diff=diff, link=link,
                           classes=display.classes_by_word())
