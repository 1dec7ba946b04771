"""How the outcomes look: their CSS classes (report.html, the diff page), the grid's cell colours
and their styles on a terminal (rich). The domain's Outcome carries none of it."""
from typing import Dict

from ..scenario.outcomes import Outcome

CSS_CLASSES: Dict[Outcome, str] = {
    Outcome.PASS: "pass", Outcome.FAIL: "fail", Outcome.EXPECTED_FAIL: "xfail",
                                   Outcome.FLAKE: "flake",
    Outcome.SKIP: "skip", Outcome.UNEXPECTED_PASS: "upass"}
# The grid's cells: saturated, unlike the page's light row colours, so that the grid reads at a
# glance (and a screenshot test can find it).
GRID_COLOURS: Dict[str, str] = {
    CSS_CLASSES[Outcome.PASS]: "#5cb85c", CSS_CLASSES[Outcome.FAIL]: "#e05a4f",
    CSS_CLASSES[Outcome.EXPECTED_FAIL]: "#e8c547", CSS_CLASSES[Outcome.FLAKE]: "#f0964a",
    CSS_CLASSES[Outcome.SKIP]: "#b9b9b9", CSS_CLASSES[Outcome.UNEXPECTED_PASS]: "#5b9bd5"}
# rich's styles for the terminal's lines
STYLES: Dict[Outcome, str] = {
    Outcome.PASS: "green", Outcome.FAIL: "bold red", Outcome.EXPECTED_FAIL: "yellow",
                              Outcome.FLAKE: "magenta",
    Outcome.SKIP: "dim", Outcome.UNEXPECTED_PASS: "cyan"}


def css_class(outcome: Outcome) -> str:
    return CSS_CLASSES[outcome]


def style(outcome: Outcome) -> str:
    """rich's style for an outcome on the terminal."""
    return STYLES[outcome]


def classes_by_word() -> Dict[str, str]:
    """The CSS class of each outcome by its word in results.json (Pass: pass), for the templates."""
    return {outcome.value: css for outcome, css in CSS_CLASSES.items()}
