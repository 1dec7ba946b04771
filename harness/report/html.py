"""report.html: one page a person reads: scenarios, outcomes, renderers, times, images."""
from ..outcomes import Outcome
from ..templating import render as render_template

OUTCOME_CLASSES = {outcome.value: outcome.css_class for outcome in Outcome}


def render(document: dict) -> str:
    return render_template("report.html.j2", strict=False, doc=document, classes=OUTCOME_CLASSES)
