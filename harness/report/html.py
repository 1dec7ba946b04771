"""report.html: one page a person reads: the grids (runtimes x paths, one per probe), the answers
computed from the run, then every scenario's detail (images, checks, subtests: counted, the failing
ones listed, the rest folded; logs, rerun.sh), collapsed."""
from collections import Counter
from typing import List, Sequence, Tuple

from ..core.templating import render as render_template
from ..scenario.outcomes import Subtest
from . import answers, display, grid, text
from .records import Run


def render(run: Run) -> str:
    # Computed from the scenarios, not read from the file's own `grid`/`answers`: a results.json
    # of an older version has none, and `report DIR` must still open on the grid.
    scenarios = list(run.scenarios)
    try:
        grids, found, problem = grid.build(scenarios), answers.build(scenarios), ""
    except Exception as exc:  # as in document.derived: the summary must not cost the run its report
        grids, found, problem = [], [], f"{type(exc).__name__}: {exc}"
    return render_template("report.html.j2", strict=False, run=run,
                           classes=display.classes_by_word(),
                           grids=grids, answers=found, derived_error=problem,
                           references=run.references,
                           grid_colours=display.GRID_COLOURS, cell_em=grid.LINE_EM,
                           cell_font_em=grid.CELL_FONT_EM,
                           as_written=text.as_written, subtest_counts=subtest_counts,
                           failing_shown=FAILING_SHOWN)


FAILING_SHOWN = 300  # failing subtests listed per scenario; results.csv has them all


def subtest_counts(subtests: Sequence[Subtest]) -> List[Tuple[str, int]]:
    """(outcome, how many) for a scenario's subtests, the most common first."""
    return Counter(str(s.outcome) for s in subtests).most_common()
