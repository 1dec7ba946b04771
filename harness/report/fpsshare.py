"""Each scenario's fps as a share of its reference path's, written into its results.json entry:
the probe's own fps and the workload's (the figure a declared workload reported: a command's
fps_pattern, a benchmark's one scene), each against the same figure of the reference path for the
same probe in the run, and whether the two are the same within their rounds' spread.

The reference path is native (a host process on the host's driver), or software where native did
not render. (A "baseline" is the known-failures file, harness.judging.baseline: another thing.)"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..scenario.outcomes import Subtest
from ..scenario.paths import FPS_REFERENCE as NATIVE, GOLDEN_RENDERER as SOFTWARE
from .jsonvalues import Spread, overlap, spread
from .results import is_number

# the first that rendered the probe with a figure is its reference
REFERENCE_PATHS = (NATIVE, SOFTWARE)
# a subtest's figure that is frames per second (and fps_min, fps_max: its rounds' spread)
FPS = "fps"


@dataclass(frozen=True)
class Figure:
    """An fps figure of an entry and the fields its share goes in."""

    value: str  # the entry's field: fps, workload_fps
    spread: str  # its rounds' spread: fps_spread, workload_fps_spread
    # of the share's fields: PREFIX_vs_reference, PREFIX_reference, PREFIX_same_as_reference
    prefix: str
    # also under the names of files before the reference path was named so (_baseline)
    old_names: bool = False


PROBE = Figure("fps", "fps_spread", "fps", old_names=True)
WORKLOAD = Figure("workload_fps", "workload_fps_spread", "workload_fps")


def workload_fps(subtests: Sequence[Subtest]) -> Tuple[Optional[float], Optional[List[float]]]:
    """The fps the workload itself reported and its rounds' spread: the figure of its one subtest
    that has one; (None, None) where none does, or several do (a benchmark's scenes: each one's is
    in its subtest's figures)."""
    with_fps = [s for s in subtests if FPS in s.figures]
    if len(with_fps) != 1:
        return None, None
    figures = with_fps[0].figures
    rounds = [figures["fps_min"],
              figures["fps_max"]] if "fps_min" in figures and "fps_max" in figures else None
    return figures[FPS], rounds


def references(entries: List[dict],
               figure: Figure) -> Dict[str, Tuple[str, float, Optional[Spread]]]:
    """probe -> (reference path, its figure, its spread)."""
    found: Dict[str, Tuple[str, float, Optional[Spread]]] = {}
    for spec in reversed(REFERENCE_PATHS):  # the first wins where it has a number
        for scenario in entries:
            value = scenario.get(figure.value)
            if scenario.get("path") == spec.id and is_number(value) and value > 0:
                found[scenario["probe"]] = (spec.id, value, spread(scenario, figure.spread))
    return found


def share(entries: List[dict], figure: Figure) -> None:
    found = references(entries, figure)
    for scenario in entries:
        reference = found.get(str(scenario.get("probe")))
        value, rounds = scenario.get(figure.value), spread(scenario, figure.spread)
        vs = round(value / reference[1], 4) if reference and is_number(value) else None
        same = overlap(rounds,
                       reference[2]) if reference and reference[2] and rounds and vs is not None \
            and scenario.get("path") != reference[0] else None
        names = [(f"{figure.prefix}_vs_reference", f"{figure.prefix}_reference",
                  f"{figure.prefix}_same_as_reference")]
        if figure.old_names:
            names.append((f"{figure.prefix}_vs_baseline", f"{figure.prefix}_baseline",
                          f"{figure.prefix}_same_as_baseline"))
        for vs_name, path_name, same_name in names:
            (scenario[vs_name], scenario[path_name],
             scenario[same_name]) = vs, reference[0] if reference else None, same


def with_fps_share(entries: List[dict]) -> List[dict]:
    """The entries, each with its probe's and its workload's fps share of the reference path's."""
    for figure in (PROBE, WORKLOAD):
        share(entries, figure)
    return entries
