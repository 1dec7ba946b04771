"""Reading one scenario entry of a results.json for the generated sections (grid, answers, diff).

results.read checks only what every report needs (id, path, outcome, reason, a few numbers);
any other field may be missing, null or of another type in a file written by an older version
or by hand, so each is read here as the type the caller wants, or None/empty."""
import math
from typing import Dict, List, Optional, Tuple

from ..scenario.model import LOCAL
from ..scenario.outcomes import Outcome
from .results import is_number


def text(entry: dict, key: str) -> Optional[str]:
    value = entry.get(key)
    return value if isinstance(value, str) and value else None


def number(entry: dict, key: str) -> Optional[float]:
    """A finite number (not a boolean), or None."""
    value = entry.get(key)
    return float(value) if is_number(value) and math.isfinite(float(value)) else None


def spread(entry: dict, key: str = "fps_spread") -> Optional[Tuple[float, float]]:
    """A [low, high] pair of numbers (the slowest and fastest of a scenario's timed rounds), or None."""
    value = entry.get(key)
    if isinstance(value, list) and len(value) == 2 and all(is_number(v) and math.isfinite(float(v)) for v in value):
        low, high = float(value[0]), float(value[1])
        return (low, high) if low <= high else None
    return None


def overlap(one: Tuple[float, float], other: Tuple[float, float]) -> bool:
    return one[0] <= other[1] and other[0] <= one[1]


def mapping(entry: dict, key: str) -> dict:
    value = entry.get(key)
    return value if isinstance(value, dict) else {}


def texts(entry: dict, key: str) -> List[str]:
    value = entry.get(key)
    return [str(item) for item in value if isinstance(item, (str, int, float))] if isinstance(value, list) else []


def numbers(entry: dict, key: str) -> Dict[str, float]:
    """An object of numbers (phases_s, peak_rss_kb), without what is not one."""
    return {str(k): float(v) for k, v in mapping(entry, key).items() if is_number(v) and math.isfinite(float(v))}


def outcome(entry: dict) -> Outcome:
    try:
        return Outcome.parse(entry.get("outcome"))  # type: ignore[arg-type]
    except ValueError:
        return Outcome.FAIL  # results.read admits only known outcomes; a caller may not have used it


def id_part(entry: dict, index: int) -> str:
    """runtime (1) or probe (2) from the scenario id (path/runtime/probe) when the field is absent."""
    parts = str(entry.get("id", "")).split("/")
    return parts[index] if len(parts) == 3 else "?"


def runtime(entry: dict) -> str:
    return text(entry, "runtime") or id_part(entry, 1)


def probe(entry: dict) -> str:
    return text(entry, "probe") or id_part(entry, 2).split("@")[0]


def machine(entry: dict) -> str:
    """Where the scenario ran: local, or a virtual GPU machine (the id's @machine)."""
    return text(entry, "machine") or (str(entry.get("id", "")).rpartition("@")[2] if "@" in str(entry.get("id", ""))
                                      else LOCAL)


def row(entry: dict) -> str:
    """The grid's row: the runtime, @machine where it ran in one, and its host in merged runs."""
    where = machine(entry)
    name = runtime(entry) if where == LOCAL else f"{runtime(entry)}@{where}"
    host = text(entry, "host")
    return f"{name} on {host}" if host else name


def key(entry: dict) -> str:
    """What a scenario is within a run: its id, and its host in runs merged from several."""
    host = text(entry, "host")
    return f"{entry.get('id')} on {host}" if host else str(entry.get("id"))


def failure_class(entry: dict) -> Optional[str]:
    return text(entry, "failure_kind")


def subject(entry: dict) -> Optional[str]:
    """What the failure class is about (a soname, a glibc version), from the diagnosis."""
    return text(mapping(entry, "diagnosis"), "subject")


def runtime_mesa(entry: dict) -> Optional[str]:
    """The Mesa the workload's own userspace carries (the runtime's, or the host's for host)."""
    return (text(mapping(entry, "driver_match"), "runtime_mesa")
            or text(mapping(entry, "runtime_facts"), "mesa"))


def versions(entry: dict) -> Dict[str, str]:
    return {str(k): str(v) for k, v in mapping(entry, "versions").items() if isinstance(v, (str, int, float))}


def scenarios(document: dict) -> List[dict]:
    """The document's scenario entries that are objects with a string id."""
    listed = document.get("scenarios")
    return [s for s in listed if isinstance(s, dict) and isinstance(s.get("id"), str)] if isinstance(listed, list) \
        else []
