"""The scenario matrix: declared once (TOML, JSON or Nix), validated, expanded to Scenarios.

Validation reports every problem as one line `SOURCE: KEY: what is wrong`; any problem is an
InputError (exit code 2). Unknown keys are errors so that typos never pass silently.
"""
import fnmatch
import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import imagearchive, paths as path_registry, runtimes as runtime_recipes
from .errors import InputError, bad_character, cut, decoded, parse_json, parser_message, read_text, shown
from .errors import shown_key as key_name
from .outcomes import FailureKind
from .model import (DEBOOTSTRAP_KIND, DEFAULT_TIMEOUT_S, HOST_KIND, HOST_RUNTIME, Expectation, Runtime,  # noqa: F401
                    Scenario,
                    Tolerance)
from .probes import DEFAULT_PROBES, PROBES
from .process import run_tracked

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

DEFAULT_MATRIX = Path(__file__).parent / "data" / "default.toml"

TOP_KEYS = {"matrix", "defaults", "runtimes", "override"}
MATRIX_KEYS = {"paths", "runtimes", "probes", "exclude"}
SETTING_KEYS = {"timeout_s", "tolerance", "env", "probe_args", "golden", "kernel_args", "gl_extension"}
OVERRIDE_KEYS = SETTING_KEYS | {"match", "expect", "reason", "failure"}
RUNTIME_KEYS = {"kind", "root", "description", "recipe", "archive"}
IMAGE_KIND = runtime_recipes.IMAGE_KIND
RUNTIME_KINDS = (HOST_KIND, "rootfs", DEBOOTSTRAP_KIND, IMAGE_KIND)
TOLERANCE_KEYS = {"channel", "fraction"}
EXCLUDE_KEYS = {"path", "runtime", "probe"}
MAX_TIMEOUT_S = 7 * 24 * 3600.0
NIX_TIMEOUT_S = 120.0
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RUNTIME_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # it becomes part of ids and folder names


@dataclass
class Matrix:
    source: str
    scenarios: List[Scenario] = field(default_factory=list)

    def select(self, paths: Optional[List[str]] = None, pattern: Optional[str] = None) -> List[Scenario]:
        chosen = self.scenarios
        if paths:
            chosen = [s for s in chosen if s.path_id in paths]
        if pattern:
            chosen = [s for s in chosen if fnmatch.fnmatchcase(s.id, pattern)]
        return chosen


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
    return [item for index, item in enumerate(value) if expect_text(problems, f"{key}[{index}]", item)]


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
    if "channel" in value and expect_type(problems, f"{key}.channel", value["channel"], (int,), "an integer"):
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
            problems.add(where, "an environment variable name is letters, digits and '_', not starting with a digit")
        elif expect_text(problems, where, value):
            env[name] = value
    return env


def kernel_arg_problem(arg: str) -> Optional[str]:
    """One list item is one kernel argument: whitespace would split it (unless inside double quotes)."""
    if not arg:
        return "is empty (one item is one kernel argument)"
    if arg.count('"') % 2:
        return f"{shown(arg)} has an unbalanced double quote"
    if any(char.isspace() for part in arg.split('"')[::2] for char in part):
        return f"{shown(arg)} contains whitespace outside double quotes (one item is one kernel argument)"
    return None


def parse_golden(problems: Problems, key: str, value) -> Optional[str]:
    if not expect_text(problems, key, value):
        return None
    if not value or "/" in value or value in (".", ".."):
        problems.add(key, f"must be a plain name (of a file in the goldens folder), not {shown(value)}")
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
    if "env" in table and expect_type(problems, f"{where}.env", table["env"], (dict,), "a table of strings"):
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
    if "gl_extension" in table and expect_text(problems, f"{where}.gl_extension", table["gl_extension"]):
        settings["gl_extension"] = table["gl_extension"]  # a runtime's name, checked once runtimes are known
    return settings


def parse_runtimes(problems: Problems, table) -> Dict[str, Runtime]:
    runtimes = {HOST_RUNTIME: Runtime(HOST_RUNTIME, HOST_KIND, "/", "the host's own root filesystem")}
    if not expect_type(problems, "runtimes", table, (dict,), "a table"):
        return runtimes
    for name, spec in table.items():
        key = f"runtimes.{key_name(name)}"
        if not (isinstance(name, str) and RUNTIME_NAME.match(name)):
            problems.add(key, "a runtime name is letters, digits, '.', '_' and '-' (it becomes part of scenario ids)")
        if not expect_type(problems, key, spec, (dict,), "a table"):
            continue
        check_keys(problems, key, spec, RUNTIME_KEYS)
        # A runtime with a problem stays declared (as a stand-in never expanded) so that its
        # uses in matrix.runtimes do not add "unknown runtime" lines to the real problem.
        runtimes[name] = parse_runtime(problems, key, name, spec) or Runtime(name, "rootfs")
    return runtimes


def parse_runtime(problems: Problems, key: str, name: str, spec: dict) -> Optional[Runtime]:
    kind, root, description = spec.get("kind", "rootfs"), spec.get("root", "/"), spec.get("description", "")
    ok = all([expect_text(problems, f"{key}.kind", kind), expect_text(problems, f"{key}.root", root),
              expect_type(problems, f"{key}.description", description, (str,), "a string")])
    if not ok:
        return None
    if kind not in RUNTIME_KINDS:
        problems.add(f"{key}.kind", f"unknown runtime kind {shown(kind)} (known: {', '.join(RUNTIME_KINDS)})")
        return None
    if kind == IMAGE_KIND:
        return parse_image_runtime(problems, key, name, spec, description)
    if "archive" in spec:
        problems.add(f"{key}.archive", f"only an image runtime (kind = {IMAGE_KIND!r}) has an archive")
        return None
    why = root_problem(root) if kind == "rootfs" else None
    if why:
        problems.add(f"{key}.root", why)
        return None
    if kind == DEBOOTSTRAP_KIND:
        recipe = spec.get("recipe", name)
        if not known_recipe(problems, f"{key}.recipe", recipe):
            return None
        return Runtime(name, kind, "", description, recipe)
    return Runtime(name, kind, root, description)


def known_recipe(problems: Problems, key: str, recipe) -> bool:
    if not expect_text(problems, key, recipe):
        return False
    if recipe not in runtime_recipes.recipe_names():
        problems.add(key, f"no shipped recipe {shown(recipe)} (known: {', '.join(runtime_recipes.recipe_names())})")
        return False
    return True


def parse_image_runtime(problems: Problems, key: str, name: str, spec: dict, description: str) -> Optional[Runtime]:
    """An image: its archive file (docker-archive or OCI archive, plain or gzip), or the runtime
    it is made from (recipe; made and cached on first use). The runtime's root is the archive."""
    if "root" in spec:
        problems.add(f"{key}.root", "an image runtime has no root: name its archive (archive = FILE) or the "
                                    "runtime it is made from (recipe = NAME)")
        return None
    if ("archive" in spec) == ("recipe" in spec):
        problems.add(key, "an image runtime needs exactly one of archive (a docker-archive or OCI archive file) "
                          "and recipe (a shipped runtime to make the image from)")
        return None
    if "recipe" in spec:
        recipe = spec["recipe"]
        if not known_recipe(problems, f"{key}.recipe", recipe):
            return None
        return Runtime(name, IMAGE_KIND, str(runtime_recipes.image_archive_path(recipe)), description, recipe)
    archive = spec["archive"]
    if not expect_text(problems, f"{key}.archive", archive):
        return None
    why = imagearchive.problem(archive)
    if why:
        problems.add(f"{key}.archive", why)
        return None
    return Runtime(name, IMAGE_KIND, archive, description)


def root_problem(root: str) -> Optional[str]:
    if not os.path.isabs(root):
        return f"must be an absolute path, not {shown(root)}"
    if not os.path.exists(root):
        return f"{cut(root)} does not exist"
    if not os.path.isdir(root):
        return f"{cut(root)} is not a directory"
    return None


def parse_excludes(problems: Problems, value) -> List[dict]:
    if not expect_type(problems, "matrix.exclude", value, (list,), "a list of tables"):
        return []
    excludes = []
    for index, entry in enumerate(value):
        key = f"matrix.exclude[{index}]"
        if not expect_type(problems, key, entry, (dict,), "a table"):
            continue
        check_keys(problems, key, entry, EXCLUDE_KEYS)
        if not entry:
            problems.add(key, "is empty and would exclude everything")
        for field_name, pattern in entry.items():
            expect_type(problems, f"{key}.{key_name(field_name)}", pattern, (str,), "a string (glob)")
        excludes.append(entry)
    return excludes


def parse_overrides(problems: Problems, value) -> List[Tuple[str, dict, Optional[Expectation]]]:
    if not expect_type(problems, "override", value, (list,), "a list of tables ([[override]])"):
        return []
    overrides = []
    for index, entry in enumerate(value):
        key = f"override[{index}]"
        if not expect_type(problems, key, entry, (dict,), "a table"):
            continue
        check_keys(problems, key, entry, OVERRIDE_KEYS)
        match = entry.get("match")
        if match is None:
            problems.add(f"{key}.match", "is required (a glob over scenario ids)")
            continue
        if not expect_type(problems, f"{key}.match", match, (str,), "a string"):
            continue
        overrides.append((match, parse_settings(problems, key, entry), parse_expectation(problems, key, entry)))
    return overrides


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
        problems.add(f"{key}.failure", f"must be one of {', '.join(kinds)} with expect = 'fail', not {shown(failure)}")
    else:
        return Expectation(outcome, reason, failure)
    return None


def excluded(excludes: List[dict], path: str, runtime: str, probe: str) -> bool:
    values = {"path": path, "runtime": runtime, "probe": probe}
    return any(
        all(isinstance(pattern, str) and fnmatch.fnmatchcase(values[name], pattern)
            for name, pattern in entry.items() if name in values)
        for entry in excludes if entry
    )


def compatible(path_id: str, runtime: Runtime, probe: str) -> bool:
    """Whether the path's family can run in that runtime (a host process: the host runtime only)
    and the path speaks the probe's API (vtest-virgl has no Vulkan)."""
    spec = path_registry.get(path_id)
    return spec.family.accepts(runtime) and probe in spec.probes


def build_scenario(path: str, runtime: Runtime, probe: str, settings: dict, expectation: Expectation,
                   runtimes: Optional[Dict[str, Runtime]] = None) -> Scenario:
    tolerance = Tolerance(**settings.get("tolerance", {}))
    gl_extension = (runtimes or {}).get(settings.get("gl_extension", ""))
    return Scenario(
        id=f"{path}/{runtime.name}/{probe}",
        path_id=path,
        runtime=runtime,
        probe=probe,
        expect=expectation,
        timeout_s=settings.get("timeout_s", DEFAULT_TIMEOUT_S),
        tolerance=tolerance,
        golden=settings.get("golden", probe),
        env=tuple(sorted(settings.get("env", {}).items())),
        probe_args=tuple(settings.get("probe_args", ())),
        kernel_args=tuple(settings.get("kernel_args", ())),
        gl_extension=gl_extension,
    )


def merge_settings(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if key in ("tolerance", "env") and key in merged:
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def expand(data, source: str) -> Matrix:
    """Validate a parsed matrix declaration and expand it to scenarios."""
    problems = Problems(source)
    if not isinstance(data, dict):
        problems.add("(top)", f"must be a table, not {type_name(data)}")
        problems.raise_if_any()
    check_keys(problems, "", data, TOP_KEYS)
    matrix = data.get("matrix")
    if matrix is None:
        problems.add("matrix", "is required ([matrix] with paths, runtimes, probes)")
        problems.raise_if_any()
    if not expect_type(problems, "matrix", matrix, (dict,), "a table"):
        problems.raise_if_any()
    check_keys(problems, "matrix", matrix, MATRIX_KEYS)

    runtimes = parse_runtimes(problems, data.get("runtimes", {}))
    path_ids = string_list(problems, "matrix.paths", matrix.get("paths", []))
    runtime_ids = string_list(problems, "matrix.runtimes", matrix.get("runtimes", [HOST_RUNTIME]))
    probe_ids = string_list(problems, "matrix.probes", matrix.get("probes", list(DEFAULT_PROBES)))
    for index, path in enumerate(path_ids):
        if path not in path_registry.PATHS:
            known = ", ".join(path_registry.PATHS)
            problems.add(f"matrix.paths[{index}]", f"unknown path {shown(path)} (known: {known})")
    for index, name in enumerate(runtime_ids):
        if name not in runtimes:
            declared = ", ".join(key_name(declared_name) for declared_name in runtimes)
            problems.add(f"matrix.runtimes[{index}]", f"unknown runtime {shown(name)} (declared: {cut(declared, 300)})")
    for index, probe in enumerate(probe_ids):
        if probe not in PROBES:
            problems.add(f"matrix.probes[{index}]", f"unknown probe {shown(probe)} (known: {', '.join(PROBES)})")
    excludes = parse_excludes(problems, matrix.get("exclude", []))
    defaults = {}
    if "defaults" in data and expect_type(problems, "defaults", data["defaults"], (dict,), "a table"):
        check_keys(problems, "defaults", data["defaults"], SETTING_KEYS)
        defaults = parse_settings(problems, "defaults", data["defaults"])
    overrides = parse_overrides(problems, data.get("override", []))
    for where, table in [("defaults", defaults)] + [(f"override[{i}]", o[1]) for i, o in enumerate(overrides)]:
        if "gl_extension" in table and table["gl_extension"] not in runtimes:
            declared = ", ".join(key_name(name) for name in runtimes)
            problems.add(f"{where}.gl_extension", f"unknown runtime {shown(table['gl_extension'])} (declared: {cut(declared, 300)})")
        elif "gl_extension" in table and runtimes[table["gl_extension"]].kind == IMAGE_KIND:
            problems.add(f"{where}.gl_extension", f"{shown(table['gl_extension'])} is an image; a GL extension is made "
                                                  "from a runtime's tree")
    problems.raise_if_any()

    scenarios: List[Scenario] = []
    seen = set()
    for path in path_ids:
        for runtime_name in runtime_ids:
            runtime = runtimes[runtime_name]
            for probe in probe_ids:
                if excluded(excludes, path, runtime_name, probe) or not compatible(path, runtime, probe):
                    continue
                scenario_id = f"{path}/{runtime_name}/{probe}"
                if scenario_id in seen:
                    problems.add("matrix", f"duplicate scenario id {shown(scenario_id)}")
                    continue
                seen.add(scenario_id)
                settings, expectation = dict(defaults), Expectation()
                for pattern, extra, override_expectation in overrides:
                    if fnmatch.fnmatchcase(scenario_id, pattern):
                        settings = merge_settings(settings, extra)
                        expectation = override_expectation or expectation
                scenarios.append(build_scenario(path, runtime, probe, settings, expectation, runtimes))
    if not scenarios and not problems.lines:
        problems.add("matrix", "expands to no scenarios (empty lists, or everything excluded)")
    for index, (pattern, _, _) in enumerate(overrides):
        if not any(fnmatch.fnmatchcase(s.id, pattern) for s in scenarios):
            problems.add(f"override[{index}].match", f"{shown(pattern)} matches no scenario")
    problems.raise_if_any()
    return Matrix(source=source, scenarios=scenarios)


def read_declaration(path: Path):
    """Parse a matrix file by its suffix: .toml, .json, or .nix (evaluated with nix-instantiate)."""
    source = str(path)
    if not path.is_file():
        why = "is a directory" if path.is_dir() else "no such file"
        raise InputError(f"{source}: cannot read matrix file: {why}")
    suffix = path.suffix
    if suffix == ".nix":
        return evaluate_nix(path)
    if suffix == ".json":
        return parse_json(read_text(path, "matrix file"), source)
    if suffix == ".toml":
        return parse_toml(read_text(path, "matrix file"), source)
    raise InputError(f"{source}: unknown matrix format {shown(suffix)} (use .toml, .json or .nix)")


def parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: not valid TOML: {cut(exc, 200)}") from None
    except RecursionError:
        raise InputError(f"{source}: not valid TOML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise InputError(f"{source}: not valid TOML: {parser_message(exc)}") from None


def evaluate_nix(path: Path):
    """`nix-instantiate --eval --strict --json`, killed (with anything it started) after NIX_TIMEOUT_S."""
    argv = ["nix-instantiate", "--eval", "--strict", "--json", str(path)]
    try:
        done = run_tracked(argv, NIX_TIMEOUT_S)
    except FileNotFoundError:
        raise InputError(f"{path}: evaluating a .nix matrix needs nix-instantiate (apt-get install nix-bin)") from None
    except subprocess.TimeoutExpired:
        raise InputError(f"{path}: Nix evaluation did not finish within {NIX_TIMEOUT_S:g} s "
                         "(an endless loop?)") from None
    if done.returncode != 0:
        raise InputError(f"{path}: nix-instantiate failed: {nix_error(done.stderr.decode('utf-8', 'replace'))}")
    output = f"{path} (nix-instantiate output)"
    return parse_json(decoded(done.stdout, output), output)



NIX_NOISE = re.compile(r"^(…|at .*:\d+:\d+:$|\d*\s*\||\(use '?--show-trace)")


def meaningful(line: str) -> bool:
    return bool(line.strip()) and not NIX_NOISE.match(line.strip())


def without_prefix(line: str) -> str:
    text = line.strip()
    return text[len("error:"):].strip() if text.startswith("error:") else text


def nix_error(stderr: str) -> str:
    """The message of nix-instantiate's `error:` line (when that line is bare, the first line of
    the message after it), not the source excerpt, caret or trace that nix prints after it."""
    lines = stderr.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("error:"):
            message = without_prefix(line) or next(
                (without_prefix(later) for later in lines[index + 1:] if meaningful(later)), "")
            return cut(message, 300) or "error (no message)"
    rest = [line.strip() for line in lines if meaningful(line) and not line.startswith("warning:")]
    return cut(rest[-1], 300) if rest else "no output"


def load(path: Optional[Path] = None) -> Matrix:
    path = Path(path) if path else DEFAULT_MATRIX
    return expand(read_declaration(path), str(path))
