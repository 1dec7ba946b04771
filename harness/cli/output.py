"""What the command line prints: progress and diagnostics on stderr (rich), the live line of each
scenario's verdict, and the tables a command is asked for on stdout, every cell whole."""
from typing import TYPE_CHECKING

from .. import runner

if TYPE_CHECKING:
    from rich.table import Table

UNBOUNDED = 1 << 20  # columns: wider than any table


def console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def say(text: str) -> None:
    from rich.markup import escape

    console().print(f"[dim]{escape(text)}[/]", soft_wrap=True)


def print_table(table: "Table") -> None:
    """A rich table on stdout with no cell cut or squeezed. Off a terminal (a pipe, a file) it is
    as wide as it needs, whatever COLUMNS says: one line per row, for grep. On a terminal too
    narrow for it, a long cell folds within its column instead of ending in an ellipsis."""
    from rich.console import Console

    out = Console(highlight=False)
    unbounded = out.options.update(max_width=UNBOUNDED)
    measured = out.measure(table, options=unbounded)
    if not out.is_terminal:
        title = out.measure(table.title, options=unbounded).maximum if table.title else 0
        out = Console(highlight=False, width=max(measured.maximum, title, 1))
    else:
        # Unwrapped columns stay unwrapped only while the table fits: squeezed, rich would crop them.
        fits = measured.minimum <= out.width
        for column in table.columns:
            column.overflow = "fold"
            column.no_wrap = column.no_wrap and fits
    out.print(table)


def run_matrix(scenarios, toolset, options, title: str):
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = console()
    with Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out, transient=True) as progress:
        task = progress.add_task("", total=len(scenarios))

        def on_result(result):
            outcome = result.verdict.outcome
            out.print(f"[{outcome.style}]{outcome.value:<14}[/] {escape(result.scenario.id):<28} "
                      f"{result.wall_s:6.2f}s  {escape(result.verdict.reason)}", soft_wrap=True)
            progress.advance(task)

        return runner.run(scenarios, toolset, options, on_result=on_result)
