"""Reading one value of a results.json object as the type a record wants, or None/empty.

results.read checks only what every report needs (id, path, outcome, reason, a few numbers);
any other field may be missing, null or of another type in a file written by an older version
or by hand, so harness.report.records reads each through these and never trusts a type."""
import math
from typing import Dict, List, Mapping, Optional, Tuple

from .results import is_number

Spread = Tuple[float, float]  # the slowest and fastest of a scenario's timed rounds (fps)


def overlap(one: Spread, other: Spread) -> bool:
    """Two spreads meet: the same within the noise of their rounds."""
    return one[0] <= other[1] and other[0] <= one[1]


def text(data: Mapping, key: str) -> Optional[str]:
    """A non-empty string, or None."""
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def shown(data: Mapping, key: str) -> str:
    """What a page shows of a scalar: a string as it is, a number or a boolean as Python writes it,
    "" for anything else (missing, null, a list, an object)."""
    value = data.get(key)
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, (bool, int, float)) else ""


def number(data: Mapping, key: str) -> Optional[float]:
    """A finite number (not a boolean), or None."""
    value = data.get(key)
    return float(value) if is_number(value) and math.isfinite(float(value)) else None


def whole(data: Mapping, key: str) -> Optional[int]:
    """A count written as a number (2, or 2.0), or None."""
    value = number(data, key)
    return int(value) if value is not None and value.is_integer() else None


def flag(data: Mapping, key: str) -> Optional[bool]:
    value = data.get(key)
    return value if isinstance(value, bool) else None


def spread(data: Mapping, key: str) -> Optional[Spread]:
    """A [low, high] pair of finite numbers, low <= high (the slowest and fastest of a
    scenario's timed rounds), or None."""
    value = data.get(key)
    if isinstance(value, list) and len(value) == 2 and all(is_number(v)
                                                           and math.isfinite(float(v))
                                                           for v in value):
        low, high = float(value[0]), float(value[1])
        return (low, high) if low <= high else None
    return None


def mapping(data: Mapping, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def texts(data: Mapping, key: str) -> List[str]:
    """A list's scalars as text (anything else in it left out); [] for what is no list."""
    value = data.get(key)
    return ([str(item) for item in value if isinstance(item, (str, int, float))]
            if isinstance(value, list) else [])


def numbers(data: Mapping, key: str) -> Dict[str, float]:
    """An object of numbers (phases_s, peak_rss_kb), without what is not one."""
    return {str(k): float(v) for k, v in mapping(data, key).items() if is_number(v)
            and math.isfinite(float(v))}


def strings(data: Mapping, key: str) -> Dict[str, str]:
    """An object's scalar values as text (versions, logs), without what is not one."""
    return {str(k): str(v) for k, v in mapping(data, key).items() if isinstance(v, (str, int,
                                                                                    float))}
