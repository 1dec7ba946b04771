"""The scenario matrix: declared once (TOML, JSON or Nix), validated, expanded to Scenarios.

Validation reports every problem as one line `SOURCE: KEY: what is wrong`; any problem is an
InputError (exit code 2). Unknown keys are errors so that typos never pass silently.
"""
import fnmatch
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import paths as path_registry
from .errors import InputError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

PROBES = ("gl",)
HOST_RUNTIME = "host"
DEFAULT_MATRIX = Path(__file__).parent / "data" / "default.toml"
DEFAULT_TIMEOUT_S = 60.0

TOP_KEYS = {"matrix", "defaults", "runtimes", "override"}
MATRIX_KEYS = {"paths", "runtimes", "probes", "exclude"}
SETTING_KEYS = {"timeout_s", "tolerance", "env", "probe_args", "golden", "kernel_args"}
OVERRIDE_KEYS = SETTING_KEYS | {"match", "expect", "reason"}
RUNTIME_KEYS = {"kind", "root", "description"}
RUNTIME_KINDS = ("host", "rootfs")
TOLERANCE_KEYS = {"channel", "fraction"}
EXCLUDE_KEYS = {"path", "runtime", "probe"}


@dataclass(frozen=True)
class Tolerance:
    """A pixel differs when any channel differs by more than `channel`; the image matches
    when at most `fraction` of its pixels differ."""

    channel: int = 32
    fraction: float = 0.01


@dataclass(frozen=True)
class Runtime:
    name: str
    kind: str  # host | rootfs
    root: str = "/"
    description: str = ""


@dataclass(frozen=True)
class Expectation:
    outcome: str = "pass"  # pass | fail
    reason: str = ""


@dataclass(frozen=True)
class Scenario:
    id: str
    path: str
    runtime: Runtime
    probe: str
    expect: Expectation = Expectation()
    timeout_s: float = DEFAULT_TIMEOUT_S
    tolerance: Tolerance = Tolerance()
    golden: str = ""
    env: Tuple[Tuple[str, str], ...] = ()
    probe_args: Tuple[str, ...] = ()
    kernel_args: Tuple[str, ...] = ()  # vm family: appended to the guest kernel's command line

    @property
    def slug(self) -> str:
        return self.id.replace("/", "__")

    @property
    def spec(self) -> path_registry.PathSpec:
        return path_registry.get(self.path)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["env"] = dict(self.env)
        data["probe_args"] = list(self.probe_args)
        data["kernel_args"] = list(self.kernel_args)
        return data


@dataclass
class Matrix:
    source: str
    scenarios: List[Scenario] = field(default_factory=list)

    def select(self, paths: Optional[List[str]] = None, pattern: Optional[str] = None) -> List[Scenario]:
        chosen = self.scenarios
        if paths:
            chosen = [s for s in chosen if s.path in paths]
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
            problems.add(f"{where}.{key}" if where else key,
                         f"unknown key (allowed: {', '.join(sorted(allowed))})")


def expect_type(problems: Problems, key: str, value, kinds, label: str) -> bool:
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        problems.add(key, f"must be {label}, not {type_name(value)} {value!r}")
    return ok


def string_list(problems: Problems, key: str, value) -> List[str]:
    if not expect_type(problems, key, value, (list,), "a list of strings"):
        return []
    good = []
    for index, item in enumerate(value):
        if expect_type(problems, f"{key}[{index}]", item, (str,), "a string"):
            good.append(item)
    return good


def parse_tolerance(problems: Problems, key: str, value) -> Optional[dict]:
    if not expect_type(problems, key, value, (dict,), "a table"):
        return None
    check_keys(problems, key, value, TOLERANCE_KEYS)
    out = {}
    if "channel" in value and expect_type(problems, f"{key}.channel", value["channel"], (int,), "an integer"):
        if not 0 <= value["channel"] <= 255:
            problems.add(f"{key}.channel", f"must be within 0..255, not {value['channel']}")
        out["channel"] = value["channel"]
    if "fraction" in value and expect_type(problems, f"{key}.fraction", value["fraction"], (int, float), "a number"):
        if not 0 <= value["fraction"] <= 1:
            problems.add(f"{key}.fraction", f"must be within 0..1, not {value['fraction']}")
        out["fraction"] = float(value["fraction"])
    return out


def parse_settings(problems: Problems, where: str, table: dict) -> dict:
    """The per-scenario settings shared by [defaults] and [[override]]."""
    settings = {}
    if "timeout_s" in table:
        value = table["timeout_s"]
        if expect_type(problems, f"{where}.timeout_s", value, (int, float), "a number"):
            if value <= 0:
                problems.add(f"{where}.timeout_s", f"must be positive, not {value}")
            settings["timeout_s"] = float(value)
    if "tolerance" in table:
        tolerance = parse_tolerance(problems, f"{where}.tolerance", table["tolerance"])
        if tolerance is not None:
            settings["tolerance"] = tolerance
    if "env" in table and expect_type(problems, f"{where}.env", table["env"], (dict,), "a table of strings"):
        env = {}
        for name, value in table["env"].items():
            if expect_type(problems, f"{where}.env.{name}", value, (str,), "a string"):
                env[name] = value
        settings["env"] = env
    for key in ("probe_args", "kernel_args"):
        if key in table:
            settings[key] = string_list(problems, f"{where}.{key}", table[key])
    if "golden" in table and expect_type(problems, f"{where}.golden", table["golden"], (str,), "a string"):
        settings["golden"] = table["golden"]
    return settings


def parse_runtimes(problems: Problems, table) -> Dict[str, Runtime]:
    runtimes = {HOST_RUNTIME: Runtime(HOST_RUNTIME, "host", "/", "the host's own root filesystem")}
    if not expect_type(problems, "runtimes", table, (dict,), "a table"):
        return runtimes
    for name, spec in table.items():
        key = f"runtimes.{name}"
        if not expect_type(problems, key, spec, (dict,), "a table"):
            continue
        check_keys(problems, key, spec, RUNTIME_KEYS)
        kind = spec.get("kind", "rootfs")
        if kind not in RUNTIME_KINDS:
            problems.add(f"{key}.kind", f"unknown runtime kind {kind!r} (known: {', '.join(RUNTIME_KINDS)})")
            continue
        root = spec.get("root", "/")
        if not expect_type(problems, f"{key}.root", root, (str,), "a string"):
            continue
        if kind == "rootfs" and not os.path.isabs(root):
            problems.add(f"{key}.root", f"must be an absolute path, not {root!r}")
        runtimes[name] = Runtime(name, kind, root, str(spec.get("description", "")))
    return runtimes


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
            expect_type(problems, f"{key}.{field_name}", pattern, (str,), "a string (glob)")
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
        expectation = None
        if "expect" in entry:
            outcome = entry["expect"]
            reason = entry.get("reason", "")
            if outcome not in ("pass", "fail"):
                problems.add(f"{key}.expect", f"must be 'pass' or 'fail', not {outcome!r}")
            elif outcome == "fail" and not (isinstance(reason, str) and reason.strip()):
                problems.add(f"{key}.reason", "an expected failure needs a reason")
            else:
                expectation = Expectation(outcome, reason)
        elif "reason" in entry:
            problems.add(f"{key}.reason", "only meaningful together with expect")
        overrides.append((match, parse_settings(problems, key, entry), expectation))
    return overrides


def excluded(excludes: List[dict], path: str, runtime: str, probe: str) -> bool:
    values = {"path": path, "runtime": runtime, "probe": probe}
    return any(
        all(isinstance(pattern, str) and fnmatch.fnmatchcase(values[name], pattern)
            for name, pattern in entry.items() if name in values)
        for entry in excludes if entry
    )


def compatible(path: str, runtime: Runtime) -> bool:
    """Host-family paths run the host's own process: they pair with the host runtime only."""
    return path_registry.get(path).family != "host" or runtime.kind == "host"


def build_scenario(path: str, runtime: Runtime, probe: str, settings: dict, expectation: Expectation) -> Scenario:
    tolerance = Tolerance(**settings.get("tolerance", {}))
    return Scenario(
        id=f"{path}/{runtime.name}/{probe}",
        path=path,
        runtime=runtime,
        probe=probe,
        expect=expectation,
        timeout_s=settings.get("timeout_s", DEFAULT_TIMEOUT_S),
        tolerance=tolerance,
        golden=settings.get("golden", probe),
        env=tuple(sorted(settings.get("env", {}).items())),
        probe_args=tuple(settings.get("probe_args", ())),
        kernel_args=tuple(settings.get("kernel_args", ())),
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
    probe_ids = string_list(problems, "matrix.probes", matrix.get("probes", list(PROBES)))
    for index, path in enumerate(path_ids):
        if path not in path_registry.PATHS:
            problems.add(f"matrix.paths[{index}]", f"unknown path {path!r} (known: {', '.join(path_registry.PATHS)})")
    for index, name in enumerate(runtime_ids):
        if name not in runtimes:
            problems.add(f"matrix.runtimes[{index}]", f"unknown runtime {name!r} (declared: {', '.join(runtimes)})")
    for index, probe in enumerate(probe_ids):
        if probe not in PROBES:
            problems.add(f"matrix.probes[{index}]", f"unknown probe {probe!r} (known: {', '.join(PROBES)})")
    excludes = parse_excludes(problems, matrix.get("exclude", []))
    defaults = {}
    if "defaults" in data and expect_type(problems, "defaults", data["defaults"], (dict,), "a table"):
        check_keys(problems, "defaults", data["defaults"], SETTING_KEYS)
        defaults = parse_settings(problems, "defaults", data["defaults"])
    overrides = parse_overrides(problems, data.get("override", []))
    problems.raise_if_any()

    scenarios: List[Scenario] = []
    seen = set()
    for path in path_ids:
        for runtime_name in runtime_ids:
            runtime = runtimes[runtime_name]
            for probe in probe_ids:
                if excluded(excludes, path, runtime_name, probe) or not compatible(path, runtime):
                    continue
                scenario_id = f"{path}/{runtime_name}/{probe}"
                if scenario_id in seen:
                    problems.add("matrix", f"duplicate scenario id {scenario_id!r}")
                    continue
                seen.add(scenario_id)
                settings, expectation = dict(defaults), Expectation()
                for pattern, extra, override_expectation in overrides:
                    if fnmatch.fnmatchcase(scenario_id, pattern):
                        settings = merge_settings(settings, extra)
                        expectation = override_expectation or expectation
                scenarios.append(build_scenario(path, runtime, probe, settings, expectation))
    if not scenarios and not problems.lines:
        problems.add("matrix", "expands to no scenarios (empty lists, or everything excluded)")
    for index, (pattern, _, _) in enumerate(overrides):
        if not any(fnmatch.fnmatchcase(s.id, pattern) for s in scenarios):
            problems.add(f"override[{index}].match", f"{pattern!r} matches no scenario")
    problems.raise_if_any()
    return Matrix(source=source, scenarios=scenarios)


def read_declaration(path: Path):
    """Parse a matrix file by its suffix: .toml, .json, or .nix (evaluated with nix-instantiate)."""
    source = str(path)
    if not path.is_file():
        raise InputError(f"{source}: cannot read matrix file: no such file")
    suffix = path.suffix
    try:
        if suffix == ".toml":
            return tomllib.loads(path.read_text())
        if suffix == ".json":
            return json.loads(path.read_text())
        if suffix == ".nix":
            return evaluate_nix(path)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{source}: not a text file") from None
    raise InputError(f"{source}: unknown matrix format {suffix!r} (use .toml, .json or .nix)")


def evaluate_nix(path: Path):
    try:
        done = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", str(path)],
                              capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise InputError(f"{path}: evaluating a .nix matrix needs nix-instantiate (apt-get install nix-bin)") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"{path}: nix-instantiate failed: {last}")
    return json.loads(done.stdout)


def load(path: Optional[Path] = None) -> Matrix:
    path = Path(path) if path else DEFAULT_MATRIX
    return expand(read_declaration(path), str(path))
