"""Validation of a matrix declaration's values: every problem one line `SOURCE: KEY: what is
wrong`, collected (Problems) so that all of them are reported at once; the per-scenario settings."""
import difflib
import math
import re
from typing import Any, Dict, Iterable, List, Optional

from ..core.errors import InputError, bad_character, shown
from ..core.errors import shown_key as key_name
from ..scenario.model import Expectation
from ..scenario.outcomes import FailureKind

SETTING_KEYS = {"timeout_s", "tolerance", "env", "probe_args", "golden", "kernel_args",
                "gl_extension"}
TOLERANCE_KEYS = {"channel", "fraction"}
MAX_TIMEOUT_S = 7 * 24 * 3600.0
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Problems:
    """Collects `SOURCE: KEY: message` lines."""

    def __init__(self, source: str):
        self.source = source
        self.lines: List[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(f"{self.source}: {key}: {message}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise InputError(self.lines)


def nearest(name: object, names: Iterable[str]) -> str:
    """`did you mean A or B? ` for a misspelt name: the known names closest to it (difflib), or ""
    where none is close. It goes first in the parentheses of an `unknown ...` message."""
    near = difflib.get_close_matches(name, list(names), n=3) if isinstance(name, str) else []
    if not near:
        return ""
    listed = near[0] if len(near) == 1 else f"{', '.join(near[:-1])} or {near[-1]}"
    return f"did you mean {listed}? "


def type_name(value) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean", list: "list",
            dict: "table"}.get(type(value), type(value).__name__)


def check_keys(problems: Problems, where: str, table: dict, allowed: set) -> None:
    for key in table:
        if key not in allowed:
            problems.add(f"{where}.{key_name(key)}" if where else key_name(key),
                         f"unknown key (allowed: {', '.join(sorted(allowed))})")


def expect_type(problems: Problems, key: str, value, kinds, label: str) -> bool:
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        problems.add(key, f"must be {label}, not {type_name(value)} {shown(value)}")
    return ok


def expect_text(problems: Problems, key: str, value) -> bool:
    """A string that can be one argument or value: no NUL, line break or other control character."""
    if not expect_type(problems, key, value, (str,), "a string"):
        return False
    why = bad_character(value)
    if why:
        problems.add(key, f"{shown(value)} {why}")
    return why is None


def string_list(problems: Problems, key: str, value) -> List[str]:
    if not expect_type(problems, key, value, (list,), "a list of strings"):
        return []
    return [item for index, item in enumerate(value) if expect_text(problems, f"{key}[{index}]",
                                                                    item)]


def expect_number(problems: Problems, key: str, value, low: float, high: float) -> bool:
    """A finite number within low..high (TOML and JSON allow nan, inf and huge integers)."""
    if not expect_type(problems, key, value, (int, float), "a number"):
        return False
    try:
        ok = math.isfinite(float(value)) and low <= value <= high
    except OverflowError:
        ok = False
    if not ok:
        problems.add(key, f"must be within {low:g}..{high:g}, not {shown(value)}")
    return ok


def parse_tolerance(problems: Problems, key: str, value) -> Optional[dict]:
    if not expect_type(problems, key, value, (dict,), "a table"):
        return None
    check_keys(problems, key, value, TOLERANCE_KEYS)
    out = {}
    if "channel" in value and expect_type(problems, f"{key}.channel", value["channel"], (int,),
                                          "an integer"):
        if expect_number(problems, f"{key}.channel", value["channel"], 0, 255):
            out["channel"] = value["channel"]
    if "fraction" in value and expect_number(problems, f"{key}.fraction", value["fraction"], 0, 1):
        out["fraction"] = float(value["fraction"])
    return out


def parse_timeout(problems: Problems, key: str, value) -> Optional[float]:
    if not expect_type(problems, key, value, (int, float), "a number"):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if math.isnan(seconds) or seconds <= 0:
        problems.add(key, f"must be positive, not {shown(value)}")
    elif seconds > MAX_TIMEOUT_S:
        problems.add(key, f"must be at most {MAX_TIMEOUT_S:g} (a week), not {shown(value)}")
    else:
        return seconds
    return None


def parse_env(problems: Problems, key: str, table: dict) -> dict:
    env = {}
    for name, value in table.items():
        where = f"{key}.{key_name(name)}"
        if not (isinstance(name, str) and ENV_NAME.match(name)):
            problems.add(where,
                         "an environment variable name is letters, digits and '_', not starting "
                         "with a digit")
        elif expect_text(problems, where, value):
            env[name] = value
    return env


def kernel_arg_problem(arg: str) -> Optional[str]:
    """One list item is one kernel argument: whitespace would split it (unless inside double
    quotes)."""
    if not arg:
        return "is empty (one item is one kernel argument)"
    if arg.count('"') % 2:
        return f"{shown(arg)} has an unbalanced double quote"
    if any(char.isspace() for part in arg.split('"')[::2] for char in part):
        return (f"{shown(arg)} contains whitespace outside double quotes (one item is one kernel "
                "argument)")
    return None


def parse_golden(problems: Problems, key: str, value) -> Optional[str]:
    if not expect_text(problems, key, value):
        return None
    if not value or "/" in value or value in (".", ".."):
        problems.add(key,
                     f"must be a plain name (of a file in the goldens folder), not {shown(value)}")
        return None
    return value


def parse_settings(problems: Problems, where: str, table: dict) -> dict:
    """The per-scenario settings shared by [defaults] and [[override]]."""
    settings: Dict[str, Any] = {}
    if "timeout_s" in table:
        timeout = parse_timeout(problems, f"{where}.timeout_s", table["timeout_s"])
        if timeout is not None:
            settings["timeout_s"] = timeout
    if "tolerance" in table:
        tolerance = parse_tolerance(problems, f"{where}.tolerance", table["tolerance"])
        if tolerance is not None:
            settings["tolerance"] = tolerance
    if "env" in table and expect_type(problems, f"{where}.env", table["env"], (dict,),
                                      "a table of strings"):
        settings["env"] = parse_env(problems, f"{where}.env", table["env"])
    for key in ("probe_args", "kernel_args"):
        if key in table:
            settings[key] = string_list(problems, f"{where}.{key}", table[key])
    kernel_args = table.get("kernel_args")
    for index, arg in enumerate(kernel_args if isinstance(kernel_args, list) else []):
        why = isinstance(arg, str) and not bad_character(arg) and kernel_arg_problem(arg)
        if why:
            problems.add(f"{where}.kernel_args[{index}]", why)
    if "golden" in table:
        golden = parse_golden(problems, f"{where}.golden", table["golden"])
        if golden is not None:
            settings["golden"] = golden
    if "gl_extension" in table and expect_text(problems, f"{where}.gl_extension",
                                               table["gl_extension"]):
        # a runtime's name, checked once runtimes are known
        settings["gl_extension"] = table["gl_extension"]
    return settings


def parse_expectation(problems: Problems, key: str, entry: dict) -> Optional[Expectation]:
    if "expect" not in entry:
        for name in ("reason", "failure"):
            if name in entry:
                problems.add(f"{key}.{name}", "only meaningful together with expect")
        return None
    outcome, reason, failure = entry["expect"], entry.get("reason", ""), entry.get("failure", "")
    kinds = [str(kind) for kind in FailureKind]
    if outcome not in ("pass", "fail"):
        problems.add(f"{key}.expect", f"must be 'pass' or 'fail', not {shown(outcome)}")
    elif not expect_text(problems, f"{key}.reason", reason):
        return None
    elif outcome == "fail" and not reason.strip():
        problems.add(f"{key}.reason", "an expected failure needs a reason")
    elif failure and (outcome != "fail" or failure not in kinds):
        problems.add(f"{key}.failure",
                     f"must be one of {', '.join(kinds)} with expect = 'fail', not "
                     f"{shown(failure)}")
    else:
        return Expectation(outcome, reason, failure)
    return None
