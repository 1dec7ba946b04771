"""report.html: one page a person reads: the grids (runtimes x paths, one per probe), the answers
computed from the run, then every scenario's detail (images, checks, logs, rerun.sh), collapsed."""
from ..scenario.outcomes import Outcome
from ..core.templating import render as render_template
from . import answers, entries, grid, text

OUTCOME_CLASSES = {outcome.value: outcome.css_class for outcome in Outcome}


def render(document: dict) -> str:
    # Computed from the scenarios, not read from the file's own `grid`/`answers`: a results.json
    # of an older version has none, and `report DIR` must still open on the grid.
    scenario_entries = document["scenarios"]
    baselines = sorted({b for s in entries.scenarios(document) if (b := entries.text(s, "fps_baseline"))})
    try:
        grids, found, problem = grid.build(scenario_entries), answers.build(scenario_entries), ""
    except Exception as exc:  # as in results.derived: the summary must not cost the run its report
        grids, found, problem = [], [], f"{type(exc).__name__}: {exc}"
    return render_template("report.html.j2", strict=False, doc=document, classes=OUTCOME_CLASSES,
                           grids=grids, answers=found, derived_error=problem, baselines=baselines,
                           grid_colours=grid.COLOURS, cell_em=grid.LINE_EM, cell_font_em=grid.CELL_FONT_EM,
                           as_written=text.as_written)
