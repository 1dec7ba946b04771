"""results.csv and failures.csv beside results.json, in deqp-runner's columns (test,Status,duration,
no header, sorted), so the tools Mesa CI keeps read a run's subtests: each subtest is
`SCENARIO_ID:SUBTEST`. failures.csv has the failing subtests of the scenarios that fail the run
(a scenario the baseline or the matrix expected to fail is not a failure of the run)."""
from typing import List, Tuple

from ..judging import deqprunner
from ..scenario.outcomes import Outcome
from .records import Run

Row = Tuple[str, str, str]


def texts(run: Run) -> Tuple[str, str]:
    """results.csv's and failures.csv's text: each scenario's rows made once, its failing ones
    kept where the scenario fails the run."""
    every: List[Row] = []
    failing: List[Row] = []
    for scenario in run.scenarios:
        rows = deqprunner.csv_rows(scenario.subtests, (), f"{scenario.id}:")
        every += rows
        if scenario.outcome is Outcome.FAIL:
            failing += deqprunner.failures(rows)
    return deqprunner.csv_text(sorted(every)), deqprunner.csv_text(sorted(failing))
