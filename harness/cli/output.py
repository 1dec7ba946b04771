"""What the command line prints while it works: progress and diagnostics on stderr (rich), the
live line of each scenario's verdict."""
from .. import runner


def console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def say(text: str) -> None:
    from rich.markup import escape

    console().print(f"[dim]{escape(text)}[/]", soft_wrap=True)


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
