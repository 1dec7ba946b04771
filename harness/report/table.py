"""An answer's table (report.html) and records (results.json), and the helpers every answer uses to
group a run's scenario entries (harness.report.records) and say a cell's values."""
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, TypeVar

from ..scenario.model import HOST_RUNTIME
from ..scenario.outcomes import Outcome
from .records import ScenarioEntry

EXAMPLES = 3  # paths, sockets, ... named in a cell before "and N more"
T = TypeVar("T")


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""  # an outcome's colour class, where the cell is a verdict
    title: str = ""  # shown on hover: what the cell stands for


@dataclass
class Answer:
    key: str
    title: str
    question: str
    columns: List[str]
    rows: List[List[Cell]] = field(default_factory=list)
    records: List[dict] = field(default_factory=list)  # the same facts, typed, for results.json
    note: str = ""

    def add(self, record: dict, row: List[Cell]) -> None:
        self.records.append(record)
        self.rows.append(row)

    def or_say(self, note: str) -> "Answer":
        """The answer, with `note` where the run gave it no row."""
        if not self.rows:
            self.note = note
        return self

    def to_json(self) -> dict:
        return {"key": self.key, "title": self.title, "question": self.question,
                "columns": self.columns,
                "rows": [[cell.text for cell in row] for row in self.rows], "records": self.records,
                "note": self.note}


def ran(scenarios: Iterable[ScenarioEntry]) -> List[ScenarioEntry]:
    """The scenarios that were attempted (not Skips)."""
    return [s for s in scenarios if s.outcome is not Outcome.SKIP]


def by_path(scenarios: Iterable[ScenarioEntry]) -> Dict[str, List[ScenarioEntry]]:
    grouped: Dict[str, List[ScenarioEntry]] = {}
    for scenario in scenarios:
        grouped.setdefault(scenario.path, []).append(scenario)
    return grouped


def on_host_runtime(scenario: ScenarioEntry) -> bool:
    """Whether the scenario ran on the host runtime: its userspace is the host's own root (its
    /usr, its Mesa), where any other runtime is a tree of its own."""
    return scenario.runtime == HOST_RUNTIME


def listed(items: Sequence[str], limit: int = EXAMPLES) -> str:
    if not items:
        return "none"
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def distinct(values: Iterable[object]) -> List[str]:
    """The values as text, each once, in first-seen order (None left out)."""
    seen: List[str] = []
    for value in values:
        if value is not None and str(value) not in seen:
            seen.append(str(value))
    return seen


def unique(values: Iterable[T]) -> List[T]:
    """Each value once, in first-seen order, None left out."""
    seen: List[T] = []
    for value in values:
        if value is not None and value not in seen:
            seen.append(value)
    return seen


def span(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """'5' or '5 – 9': the range a path's scenarios cover."""
    if not values:
        return "-"
    low, high = min(values), max(values)
    return fmt(low) if fmt(low) == fmt(high) else f"{fmt(low)} – {fmt(high)}"


def whole(value: Optional[float]) -> Optional[int]:
    """A count or mode read from JSON (where 2 may come as 2.0), as the whole number it is."""
    return int(value) if value is not None and value.is_integer() else None


def joined(values: Iterable[object]) -> str:
    return " / ".join(str(v) for v in values) or "-"
