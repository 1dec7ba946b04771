"""report.html: one page a person reads: scenarios, outcomes, renderers, times, images."""
from ..templating import render as render_template

OUTCOME_CLASSES = {"Pass": "pass", "Fail": "fail", "ExpectedFail": "xfail", "Flake": "flake", "Skip": "skip"}


def render(document: dict) -> str:
    return render_template("report.html.j2", strict=False, doc=document, classes=OUTCOME_CLASSES)
