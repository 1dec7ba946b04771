"""results.csv and failures.csv beside results.json, in deqp-runner's columns (test,Status,duration,
no header, sorted), so the tools Mesa CI keeps read a run's subtests: each subtest is
`SCENARIO_ID:SUBTEST`. failures.csv has the failing subtests of the scenarios that fail the run
(a scenario the baseline or the matrix expected to fail is not a failure of the run)."""
from typing import List, Tuple

from ..judging import deqprunner
from ..scenario.outcomes import Outcome
from .records import Run

Row = Tuple[str, str, str]


def rows(run: Run) -> List[Row]:
    found: List[Row] = []
    for scenario in run.scenarios:
        found += deqprunner.csv_rows(scenario.subtests, (), f"{scenario.id}:")
    return sorted(found)


def failing(run: Run) -> List[Row]:
    failed = {f"{s.id}:" for s in run.scenarios if s.outcome is Outcome.FAIL}
    return [row for row in deqprunner.failures(rows(run))
            if any(row[0].startswith(prefix) for prefix in failed)]


def texts(run: Run) -> Tuple[str, str]:
    """results.csv's and failures.csv's text."""
    return deqprunner.csv_text(rows(run)), deqprunner.csv_text(failing(run))
