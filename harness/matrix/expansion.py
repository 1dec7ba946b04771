"""A matrix declaration expanded to Scenarios: paths x runtimes x probes, less the excludes and
what a family cannot run, with the defaults and overrides applied."""
import dataclasses
import fnmatch
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..core import places
from ..scenario import paths as path_registry
from ..core.errors import InputError, shown
from ..core.errors import shown_key as key_name
from ..launch.families import registry
from ..scenario import machine_specs
from ..scenario.model import (DEFAULT_TIMEOUT_S, HOST_RUNTIME, LOCAL, PRESENTING, WORKLOAD_PROBE,
                              Display, DeclaredProbe,
                              Expectation, Runtime, RuntimeKind, Scenario, Tolerance)
from ..scenario.probes import DEFAULT_PROBES, PROBES
from ..workloads import registry as workloads
from .checks import (SETTING_KEYS, Problems, check_keys, expect_type, nearest, parse_expectation,
                     parse_settings, string_list, type_name)
from .declared_probes import check_programs, parse_probes
from .declared_runtimes import parse_runtimes, shipped_runtime, unknown_runtime
from .files import read_declaration

DEFAULT_MATRIX = places.DATA / "default.toml"
TOP_KEYS = {"matrix", "defaults", "runtimes", "override", "probes"}
MATRIX_KEYS = {"paths", "runtimes", "probes", "machines", "displays", "exclude"}
OVERRIDE_KEYS = SETTING_KEYS | {"match", "expect", "reason", "failure"}
EXCLUDE_KEYS = {"path", "runtime", "probe", "machine", "display"}
DISPLAYS = tuple(str(display) for display in Display)


@dataclass
class Matrix:
    source: str
    scenarios: List[Scenario] = field(default_factory=list)

    def select(self, paths: Optional[List[str]] = None, pattern: Optional[str] = None,
               runtimes: Optional[List[str]] = None,
               probes: Optional[List[str]] = None) -> List[Scenario]:
        chosen = self.scenarios
        if paths:
            chosen = [s for s in chosen if s.path_id in paths]
        if runtimes:
            chosen = [s for s in chosen if s.runtime.name in runtimes]
        if probes:
            chosen = [s for s in chosen if s.probe in probes]
        if pattern:
            chosen = [s for s in chosen if fnmatch.fnmatchcase(s.id, pattern)]
        return chosen


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
            expect_type(problems, f"{key}.{key_name(field_name)}", pattern, (str,),
                        "a string (glob)")
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
        overrides.append((match, parse_settings(problems, key, entry), parse_expectation(problems,
                                                                                         key,
                                                                                         entry)))
    return overrides


def excluded(excludes: List[dict], path: str, runtime: str, probe: str,
             machine: str = LOCAL, display: str = Display.OFFSCREEN) -> bool:
    values = {"path": path, "runtime": runtime, "probe": probe, "machine": machine,
              "display": display}
    return any(
        all(isinstance(pattern, str) and fnmatch.fnmatchcase(values[name], pattern)
            for name, pattern in entry.items() if name in values)
        for entry in excludes if entry
    )


def unknown_path(path: object) -> str:
    """The problem of a path id that is not one, with the nearest ids and all of them."""
    return (f"unknown path {shown(path)} ({nearest(path, path_registry.PATHS)}known: "
            f"{path_registry.known_ids()})")


def unknown_machine(machine: object) -> str:
    names = [LOCAL, *machine_specs.MACHINES]
    return f"unknown machine {shown(machine)} ({nearest(machine, names)}known: {', '.join(names)})"


def pairing_rule(path_id: str) -> str:
    """Which runtimes a path's family runs in, in words."""
    family = registry.of_path(path_id)
    if family.runtime_kinds is None:
        return f"{path_id} ({family.name} family) runs in any runtime but an image"
    kinds = " or ".join(str(kind) for kind in family.runtime_kinds)
    return f"{path_id} ({family.name} family) runs in {kinds} runtimes only"


def why_empty(path_ids: List[str], runtimes: List[Runtime], probe_ids: List[str],
              excludes: List[dict],
              machine_ids: Sequence[str] = (LOCAL,), declared: Sequence[str] = (),
              display_ids: Sequence[str] = (Display.OFFSCREEN,)) -> str:
    """Why no path, runtime and probe paired: what is empty, else each rule that left nothing."""
    empty = [name for name, items in (("matrix.paths", path_ids), ("matrix.runtimes", runtimes),
                                      ("matrix.probes", probe_ids)) if not items]
    if empty:
        return f"{' and '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty"
    reasons: List[str] = []
    for path in path_ids:
        spec = path_registry.get(path)
        if not any(registry.of(spec).accepts(runtime) for runtime in runtimes):
            names = ", ".join(f"{r.name} ({r.kind})" for r in runtimes)
            reasons.append(f"{pairing_rule(path)}, not {names}")
        elif not any(spec.runs(WORKLOAD_PROBE if probe in declared else probe)
                     for probe in probe_ids):
            runs = f"the {' and '.join(spec.probes)} probe{'s' if len(spec.probes) > 1 else ''}"
            reasons.append(f"{path} runs {runs}, not {', '.join(probe_ids)}")
        elif LOCAL not in machine_ids and not registry.of(spec).runs_in_guest:
            reasons.append(f"{path} ({spec.family} family) runs on this host only, not in a "
                           "machine's guest")
        elif Display.OFFSCREEN not in display_ids and not set(display_ids) & set(
                registry.of(spec).displays):
            reasons.append(f"{path} ({spec.family} family) hands its workload no display "
                           f"server, not {', '.join(display_ids)}")
    if not reasons and excludes:
        reasons.append("matrix.exclude leaves nothing")
    return "; ".join(reasons) or "no path pairs with a runtime and a probe"


def compatible(path_id: str, runtime: Runtime, program: str, machine: str = LOCAL,
               display: str = Display.OFFSCREEN, app: bool = False) -> bool:
    """Whether the path's family can run in that runtime (a host process: the host runtime only)
    and on that machine (a VM path runs on this host only), the path speaks the API of the
    probe program (probes.PROBES key: vtest-virgl has no Vulkan), and its family can hand a
    display server's socket to its workload (a presenting probe exists for the program, or it
    is an `app`: a workload that shows its own window)."""
    spec = path_registry.get(path_id)
    family = registry.of(spec)
    presentable = display == Display.OFFSCREEN or (display in family.displays
                                                   and (program in PRESENTING or app))
    return family.accepts(runtime) and spec.runs(program) and presentable and (
        machine == LOCAL or family.runs_in_guest)


def scenario_id(path: str, runtime: str, probe: str, machine: str = LOCAL,
                display: str = Display.OFFSCREEN) -> str:
    """`path/runtime/probe`, `+display` where its frames go to a display server, and `@machine`
    where it is not this host."""
    return (f"{path}/{runtime}/{probe}" + ("" if display == Display.OFFSCREEN else f"+{display}")
            + ("" if machine == LOCAL else f"@{machine}"))


def build_scenario(path: str, runtime: Runtime, probe: str, settings: dict,
                   expectation: Expectation,
                   runtimes: Optional[Dict[str, Runtime]] = None, machine: str = LOCAL,
                   declared: Optional[DeclaredProbe] = None,
                   workload_packages: Tuple[str, ...] = (),
                   display: str = Display.OFFSCREEN) -> Scenario:
    """One scenario; a workload's runtime built from a recipe gains `workload_packages` (those of
    every workload the matrix runs: one derived runtime per runtime, not one per workload)."""
    tolerance = Tolerance(**settings.get("tolerance", {}))
    gl_extension = (runtimes or {}).get(settings.get("gl_extension", ""))
    program = WORKLOAD_PROBE if declared else (probe if display == Display.OFFSCREEN
                                               else PRESENTING[probe])
    timeout_s = workloads.of(declared).timeout_s(declared.settings,
                                                 declared.name) if declared else DEFAULT_TIMEOUT_S
    packages = workload_packages or (declared.packages if declared else ())
    if declared and packages and (runtime.kind is RuntimeKind.DEBOOTSTRAP
                                  or runtime.image_from_recipe):
        runtime = dataclasses.replace(runtime, extra_packages=packages)  # a derived runtime
    return Scenario(
        id=scenario_id(path, runtime.name, probe, machine, display),
        path_id=path,
        runtime=runtime,
        probe=probe,
        expect=expectation,
        timeout_s=settings.get("timeout_s", timeout_s),
        tolerance=tolerance,
        golden=settings.get("golden", PROBES[program].golden_name),
        env=tuple(sorted(settings.get("env", {}).items())),
        probe_args=tuple(settings.get("probe_args", ())),
        kernel_args=tuple(settings.get("kernel_args", ())),
        gl_extension=gl_extension,
        machine=machine,
        declared=declared,
        display=display,
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
    machine_ids = string_list(problems, "matrix.machines", matrix.get("machines", [LOCAL]))
    display_ids = string_list(problems, "matrix.displays", matrix.get("displays",
                                                                      [Display.OFFSCREEN]))
    for index, display in enumerate(display_ids):
        if display not in DISPLAYS:
            problems.add(f"matrix.displays[{index}]", f"unknown display {shown(display)} "
                         f"({nearest(display, DISPLAYS)}known: {', '.join(DISPLAYS)})")
    for index, machine in enumerate(machine_ids):
        if not machine_specs.known(machine):
            problems.add(f"matrix.machines[{index}]", unknown_machine(machine))
    for index, path in enumerate(path_ids):
        if path not in path_registry.PATHS:
            problems.add(f"matrix.paths[{index}]", unknown_path(path))
    for index, name in enumerate(runtime_ids):
        if name not in runtimes:
            shipped = shipped_runtime(name)
            if shipped is None:
                problems.add(f"matrix.runtimes[{index}]", unknown_runtime(name, runtimes))
            else:
                runtimes[name] = shipped
    declared = parse_probes(problems, data.get("probes", {}), source_folder(source))
    # a bad one has its own line
    tables = data["probes"] if isinstance(data.get("probes"), dict) else {}
    for index, probe in enumerate(probe_ids):
        if probe not in tables and (probe not in PROBES or PROBES[probe].declared_only):
            usable = [name for name, spec in PROBES.items()
                      if not spec.declared_only] + list(declared)
            problems.add(f"matrix.probes[{index}]",
                         f"unknown probe {shown(probe)} ({nearest(probe, usable)}known: "
                                                    f"{', '.join(usable)}; a workload is declared "
                                                    "as [probes.NAME] "
                                                    "with its kind)")
    excludes = parse_excludes(problems, matrix.get("exclude", []))
    defaults = {}
    if "defaults" in data and expect_type(problems, "defaults", data["defaults"], (dict,),
                                          "a table"):
        check_keys(problems, "defaults", data["defaults"], SETTING_KEYS)
        defaults = parse_settings(problems, "defaults", data["defaults"])
    overrides = parse_overrides(problems, data.get("override", []))
    for where, table in [("defaults", defaults)] + [(f"override[{i}]", o[1]) for i,
                                                    o in enumerate(overrides)]:
        if "gl_extension" in table and table["gl_extension"] not in runtimes:
            shipped = shipped_runtime(table["gl_extension"])
            if shipped is None:
                problems.add(f"{where}.gl_extension", unknown_runtime(table["gl_extension"],
                                                                      runtimes))
                continue
            runtimes[shipped.name] = shipped
        if "gl_extension" in table and runtimes[table["gl_extension"]].kind is RuntimeKind.IMAGE:
            problems.add(f"{where}.gl_extension",
                         f"{shown(table['gl_extension'])} is an image; a GL extension is made "
                                                  "from a runtime's tree")
    problems.raise_if_any()

    scenarios: List[Scenario] = []
    seen = set()
    workload_packages = tuple(sorted({package for name in probe_ids if name in declared
                                      for package in declared[name].packages}))
    for path, runtime_name, probe, display, machine in itertools.product(
            path_ids, runtime_ids, probe_ids, display_ids, machine_ids):
        runtime = runtimes[runtime_name]
        program = WORKLOAD_PROBE if probe in declared else probe
        shows_on = declared[probe].settings.get("display") if probe in declared else None
        if shows_on is not None:  # an app shows its window on its own display, whatever the axis
            if display != Display.OFFSCREEN:
                continue
            display = shows_on
        if excluded(excludes, path, runtime_name, probe, machine, display) or not compatible(
                path, runtime, program, machine, display, app=shows_on is not None):
            continue
        this_id = scenario_id(path, runtime_name, probe, machine, display)
        if this_id in seen:
            problems.add("matrix", f"duplicate scenario id {shown(this_id)}")
            continue
        seen.add(this_id)
        settings, expectation = dict(defaults), Expectation()
        for pattern, extra, override_expectation in overrides:
            if fnmatch.fnmatchcase(this_id, pattern):
                settings = merge_settings(settings, extra)
                expectation = override_expectation or expectation
        scenarios.append(build_scenario(path, runtime, probe, settings, expectation, runtimes,
                                        machine, declared.get(probe), workload_packages, display))
    if not scenarios and not problems.lines:
        why = why_empty(path_ids, [runtimes[name] for name in runtime_ids], probe_ids, excludes,
                        machine_ids, list(declared), display_ids)
        problems.add("matrix", f"expands to no scenarios: {why}")
    for index, (pattern, _, _) in enumerate(overrides):
        if not any(fnmatch.fnmatchcase(s.id, pattern) for s in scenarios):
            problems.add(f"override[{index}].match", f"{shown(pattern)} matches no scenario")
    check_programs(problems, scenarios)
    problems.raise_if_any()
    return Matrix(source=source, scenarios=scenarios)


def on_machine(matrix: Matrix, machine: str) -> Matrix:
    """The matrix's scenarios moved to `machine` (run --machine): each one's id says where it runs;
    those whose family runs on this host only stay out. One line, exit 2, for an unknown machine
    or a matrix with nothing that can run there."""
    if not machine_specs.known(machine):
        raise InputError(f"--machine: {unknown_machine(machine)}")
    moved: Dict[str, Scenario] = {}
    for scenario in matrix.scenarios:
        program = scenario.probe if not scenario.declared else scenario.probe_program
        if compatible(scenario.path_id, scenario.runtime, program, machine, scenario.display):
            this_id = scenario_id(scenario.path_id, scenario.runtime.name, scenario.probe, machine,
                                  scenario.display)
            moved.setdefault(this_id, dataclasses.replace(scenario, id=this_id, machine=machine))
    if not moved:
        raise InputError(f"{matrix.source}: --machine {machine}: none of its scenarios can run "
                         "there "
                         "(the VM paths run on this host only)")
    return Matrix(matrix.source, list(moved.values()))


def on_displays(matrix: Matrix, displays: List[str]) -> Matrix:
    """The matrix's scenarios on these displays (run --displays): each offscreen scenario also
    presents on each display its path can take; a scenario the matrix declares on a display
    stays where that display is asked for. One line, exit 2, for an unknown display or where
    nothing can present there."""
    unknown = [display for display in displays if display not in DISPLAYS]
    if unknown:
        raise InputError(f"--displays: unknown display {shown(unknown[0])} "
                         f"({nearest(unknown[0], DISPLAYS)}known: {', '.join(DISPLAYS)})")
    chosen: Dict[str, Scenario] = {}
    for scenario in matrix.scenarios:
        for display in displays:
            if scenario.display == display:
                chosen.setdefault(scenario.id, scenario)
            elif scenario.display == Display.OFFSCREEN and not scenario.declared and compatible(
                    scenario.path_id, scenario.runtime, scenario.probe, scenario.machine, display):
                this_id = scenario_id(scenario.path_id, scenario.runtime.name, scenario.probe,
                                      scenario.machine, display)
                golden = PROBES[PRESENTING[scenario.probe]].golden_name if not scenario.golden \
                    else scenario.golden
                chosen.setdefault(this_id, dataclasses.replace(scenario, id=this_id,
                                                               display=display, golden=golden))
    if not chosen:
        raise InputError(f"{matrix.source}: --displays {','.join(displays)}: none of its "
                         "scenarios can present there (the host, sandbox, container and flatpak "
                         "paths' gl and vulkan probes can)")
    return Matrix(matrix.source, list(chosen.values()))


def source_folder(source: str) -> Path:
    """The folder a matrix's relative file names are read from: its file's, else the current one."""
    path = Path(source)
    return path.parent if path.is_file() else Path(".")


def shipped_matrices() -> List[Path]:
    """The shipped matrices (a *.baseline.toml beside one is its baseline, not a matrix)."""
    return sorted(p for p in DEFAULT_MATRIX.parent.glob("*.toml")
                  if not p.name.endswith(".baseline.toml"))


def shipped_with(path_ids: List[str]) -> List[Matrix]:
    """The shipped matrices that have a scenario of one of these paths, the smallest first."""
    found = [matrix for matrix in map(load, shipped_matrices()) if any(s.path_id in path_ids
                                                                       for s in matrix.scenarios)]
    return sorted(found, key=lambda matrix: len(matrix.scenarios))


def load(path: Optional[Path] = None) -> Matrix:
    path = Path(path) if path else DEFAULT_MATRIX
    return expand(read_declaration(path), str(path))
