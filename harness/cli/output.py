"""What the command line prints: the log's progress and diagnostics on stderr (rich), the live
line of each scenario's verdict, and the tables a command is asked for on stdout, every cell
whole."""
import logging
from typing import TYPE_CHECKING

from ..report import display
from ..run import runner

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

UNBOUNDED = 1 << 20  # columns: wider than any table
# a folded column is no narrower than this; where even that does not fit, rich narrows them all
MIN_FOLDED = 4


def console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


class TerminalLines(logging.Handler):
    """The log's progress (INFO and above) as dim lines on stderr, where a person watches a run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        from rich.markup import escape

        try:
            style = "yellow" if record.levelno >= logging.WARNING else "dim"
            console().print(f"[{style}]{escape(record.getMessage())}[/]", soft_wrap=True)
        except Exception:  # a handler must not raise into the code that logged
            self.handleError(record)


def print_table(table: "Table") -> None:
    """A rich table on stdout with no cell cut. Off a terminal (a pipe, a file) it is as wide as
    it needs, whatever COLUMNS says: one line per row, for grep. On a terminal it wraps at words;
    too narrow for that, its widest columns fold their long words (see fit)."""
    from rich.console import Console

    out = Console(highlight=False)
    if out.is_terminal:
        fit(table, out)
    else:
        unbounded = out.options.update(max_width=UNBOUNDED)
        needed = [out.measure(part, options=unbounded).maximum for part in (table, table.title)
                  if part]
        out = Console(highlight=False, width=max(needed))
    out.print(table)


def fit(table: "Table", out: "Console") -> None:
    """Columns for a terminal narrower than the table's longest words (or unwrapped cells): the
    widest columns are capped at one width that fits and fold there, so the narrow ones stay
    whole; rich alone would narrow every column alike, cropping an unwrapped one."""
    from rich.measure import Measurement

    unbounded = out.options.update(max_width=UNBOUNDED)
    words, least = [], []  # each column's longest word; its width folding no word or unwrapped cell
    for column in table.columns:
        sizes = [Measurement.get(out, unbounded, cell) for cell in (column.header, *column.cells)]
        words.append(max(size.minimum for size in sizes))
        least.append(max(size.maximum for size in sizes) if column.no_wrap else words[-1])
        column.overflow = "fold"
    # less borders, padding
    room = out.width - (out.measure(table, options=unbounded).minimum - sum(words))
    cap = max(least, default=0)
    while cap > MIN_FOLDED and sum(min(width, cap) for width in least) > room:
        cap -= 1
    for column, width in zip(table.columns, least, strict=True):
        if width > cap:
            column.max_width, column.no_wrap = cap, False


def run_matrix(scenarios, toolset, options, title: str):
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = console()
    with Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out, transient=True) as progress:
        task = progress.add_task("", total=len(scenarios))

        def on_result(result):
            outcome = result.verdict.outcome
            out.print(f"[{display.style(outcome)}]{outcome.value:<14}[/] "
                      f"{escape(result.scenario.id):<28} "
                      f"{result.wall_s:6.2f}s  {escape(result.verdict.reason)}", soft_wrap=True)
            progress.advance(task)

        return runner.run(scenarios, toolset, options, on_result=on_result)
