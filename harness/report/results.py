"""Reading results.json back: found in its folder, checked for everything the reports read from
it (each problem one line). harness.report.document writes it; its field names are a contract:
add fields, never rename or remove them."""
from pathlib import Path
from typing import List, TypeGuard, Union

from ..core.errors import InputError, parse_json, read_text, shown, shown_key, unencodable
from ..scenario.outcomes import Outcome

SCHEMA = "gpu-harness/results/v1"
RESULTS_FILE = "results.json"
MAX_PROBLEMS = 20
SCENARIO_STRINGS = ("id", "path", "outcome", "reason")


def locate(path: Path) -> Path:
    """A run's results.json, given it or the folder it is in."""
    return Path(path) / RESULTS_FILE if Path(path).is_dir() else Path(path)


def read(path: Path) -> dict:
    """A results.json, checked for everything junit.xml and report.html read from it."""
    data = parse_json(read_text(path, "results"), str(path))
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        raise InputError(f"{path}: not a gpu-harness results file (no scenarios list)")
    problems = document_problems(data)
    if problems:
        hidden = len(problems) - MAX_PROBLEMS
        more = [f"{path}: ... and {hidden} more problems"] if hidden > 0 else []
        raise InputError([f"{path}: {problem}" for problem in problems[:MAX_PROBLEMS]] + more)
    return data


def is_number(value) -> TypeGuard[Union[int, float]]:
    """A JSON number the reports can format (%.3f): not a boolean, not beyond a float's range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def kind_problem(key: str, value, kind: str, optional: bool = False) -> List[str]:
    """[] when value is of `kind` (number, string, object, list; or null when optional), else one
    problem."""
    checks = {"number": is_number, "string": lambda v: isinstance(v, str),
              "object": lambda v: isinstance(v, dict), "list": lambda v: isinstance(v, list)}
    if (optional and value is None) or checks[kind](value):
        return []
    article = "an" if kind == "object" else "a"
    if value is None:
        return [f"{key}: is missing or null (must be {article} {kind})"]
    return [f"{key}: must be {article} {kind}{' or null' if optional else ''}, not {shown(value)}"]


def document_problems(data: dict) -> List[str]:
    problems = kind_problem("wall_s", data.get("wall_s"), "number")
    problems += kind_problem("summary", data.get("summary"), "object")
    toolset = data.get("toolset")
    problems += kind_problem("toolset", toolset, "object")
    if isinstance(toolset, dict):
        problems += kind_problem("toolset.tools", toolset.get("tools"), "object")
    host = data.get("host")
    problems += kind_problem("host", host, "object", optional=True)
    if isinstance(host, dict):
        problems += kind_problem("host.render_nodes", host.get("render_nodes"), "list",
                                 optional=True)
    for index, entry in enumerate(data["scenarios"]):
        problems += scenario_problems(f"scenarios[{index}]", entry)
    why = unencodable(strings(data))
    return problems + ([f"a string {why}"] if why else [])


def scenario_problems(key: str, entry) -> List[str]:
    if not isinstance(entry, dict):
        return [f"{key}: must be an object, not {shown(entry)}"]
    problems = [line for name in SCENARIO_STRINGS for line in kind_problem(f"{key}.{name}",
                                                                           entry.get(name),
                                                                           "string")]
    known = [outcome.value for outcome in Outcome]
    if isinstance(entry.get("outcome"), str) and entry["outcome"] not in known:
        problems.append(f"{key}.outcome: {shown(entry['outcome'])} is not one of "
                        f"{', '.join(known)}")
    for name in ("wall_s", "attempts"):
        problems += kind_problem(f"{key}.{name}", entry.get(name), "number", optional=True)
    problems += kind_problem(f"{key}.checks", entry.get("checks"), "list", optional=True)
    problems += kind_problem(f"{key}.logs", entry.get("logs"), "object", optional=True)
    phases = entry.get("phases_s")
    problems += kind_problem(f"{key}.phases_s", phases, "object", optional=True)
    for name, seconds in (phases.items() if isinstance(phases, dict) else []):
        problems += kind_problem(f"{key}.phases_s.{shown_key(name)}", seconds, "number")
    return problems


def strings(data) -> List[str]:
    """Every string in a JSON document, keys included (iteratively: the nesting may be deep)."""
    found, stack = [], [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            found.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found
