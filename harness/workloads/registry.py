"""The workload kinds by name, and a declared probe's table checked into a DeclaredProbe; its
steps and its subtests judged from the workload probe's report."""
import difflib
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..scenario.model import DeclaredProbe
from ..scenario.outcomes import Subtest
from .base import Declared, Problems, Step, StepRun, WorkloadKind, misnamed, optional_strings
from .benchmark import KIND as BENCHMARK
from .command import KIND as COMMAND
from .piglit import KIND as PIGLIT
from .trace import KIND as TRACE

KINDS: Dict[str, WorkloadKind] = {kind.name: kind for kind in (PIGLIT, TRACE, BENCHMARK, COMMAND)}
COMMON_KEYS = ("kind", "packages")


def of(declared: DeclaredProbe) -> WorkloadKind:
    return KINDS[declared.kind]


def parse(name: str, table: Any,
          base: Path = Path(".")) -> Tuple[DeclaredProbe, List[Tuple[str, str]]]:
    """[probes.NAME] checked: the probe, and its problems ((key, message); none: it is good); a
    file it names is read relative to `base` (the matrix file's folder)."""
    problems = Problems(f"probes.{name}", base)
    if not isinstance(table, dict):
        problems.found.append((f"probes.{name}",
                               "must be a table with kind = one of " + ", ".join(KINDS)))
        return DeclaredProbe(name, ""), problems.found
    kind = KINDS.get(table.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        problems.add("kind", f"must be one of {', '.join(KINDS)}, not {table.get('kind')!r}")
        return DeclaredProbe(name, ""), problems.found
    for key in sorted(set(table) - set(kind.keys) - set(COMMON_KEYS)):
        problems.add(key,
                     f"unknown key for kind {kind.name} (allowed: "
                     f"{', '.join([*COMMON_KEYS, *kind.keys])})")
    settings = kind.settings(table, problems)
    declared = Declared(settings, kind.default_packages(settings) if not problems.found
                        else kind.packages)
    if "packages" in table:
        declared.packages = tuple(optional_strings(problems, "packages", table["packages"]) or ())
    return DeclaredProbe.of(name, kind.name, declared.settings, declared.packages), problems.found


def shipped_in(declared: DeclaredProbe) -> Optional[Tuple[str, str]]:
    """("bundle", file) where the workload's program ships in a Flatpak bundle; else None."""
    return of(declared).shipped_in(declared.settings)


def steps(declared: DeclaredProbe) -> List[Step]:
    return of(declared).steps(declared.settings, declared.name)


def plan(declared: DeclaredProbe) -> Dict[str, Any]:
    """workload.json: what the workload probe runs inside the path."""
    return {"probe": declared.name, "kind": declared.kind, "steps": [step.to_dict()
                                                                     for step in steps(declared)],
            "inputs": of(declared).inputs(declared.settings)}


def judge(declared: DeclaredProbe, reported: Any, out_dir: Optional[Path] = None,
          path_renderer: str = "") -> List[Subtest]:
    """Each step the probe reported, judged by its kind (pictures read from `out_dir`, the probe's
    output folder; a program's renderer against `path_renderer`, the gl scene's); a step it never
    reached is not run (a fail)."""
    runs = {run.name: run for run in (StepRun.from_dict(d, out_dir, path_renderer) for d in reported
                                      if isinstance(d, dict))} if isinstance(reported, list) else {}
    return of(declared).judge_all(declared.settings, runs, declared.name)


def missing_in(declared: DeclaredProbe, root: Path) -> Optional[str]:
    """Why the runtime at `root` cannot run this workload (a program of its steps is not there,
    and where it would come from), or None. A step's program whose search folders are there (its
    package is installed) is not missing but misnamed: the probe then reports it, a failure."""
    absent = sorted({program for step in steps(declared) for program in step.programs
                     if not step_program(step, root, program)
                     and not (program == step.argv[0] and search_folders(step, root))})
    if not absent:
        return None
    packages = f" (Debian packages: {', '.join(declared.packages)})" if declared.packages else ""
    return ("the runtime has no "
            f"{', '.join(absent[:5])}{', ...' if len(absent) > 5 else ''}{packages}")


def skipping(declared: DeclaredProbe, patterns: List[str]) -> DeclaredProbe:
    """The workload that leaves out the tests `patterns` name before they run (a baseline's
    skips, as deqp-runner runs none of its skips), where its kind can."""
    settings = of(declared).skipping(declared.settings, patterns)
    return declared if settings == declared.settings else DeclaredProbe.of(
        declared.name, declared.kind, settings, declared.packages)


def runtime_problems(declared: DeclaredProbe, root: Path) -> List[Tuple[str, str]]:
    """(key, why) for the settings the runtime at `root` cannot take: a piglit profile it lacks, a
    test list naming none of its tests."""
    return of(declared).runtime_problems(declared.settings, root)


def misnamed_in(declared: DeclaredProbe, root: Path) -> List[Tuple[str, str]]:
    """(step, why) for each step whose program the runtime at `root` lacks although its search
    folders are there (piglit is installed, the test name is misspelt), the nearest names said."""
    found = []
    for step in steps(declared):
        folders = search_folders(step, root)
        if folders and not step_program(step, root):
            names = sorted({entry.name for folder in folders for entry in folder.iterdir()})
            near = difflib.get_close_matches(step.argv[0], names, n=3)
            shown_folders = ["/" + str(folder.relative_to(root)) for folder in folders]
            found.append((step.name, misnamed(of(declared).name, step.argv[0], shown_folders,
                                              near)))
    return found


def search_folders(step: Step, root: Path) -> List[Path]:
    """The step's search folders the runtime at `root` has (none for a program named by its
    path)."""
    if "/" in step.argv[0]:
        return []
    return [folder for pattern in step.search
            for folder in sorted(root.glob(pattern.lstrip("/"))) if folder.is_dir()]


def step_program(step: Step, root: Path, program: str = "") -> Optional[Path]:
    """A program of a step (argv[0] unless named) as the probe will find it in the runtime at
    `root`: a path as given, the search folders, then the usual bin folders."""
    program = program or step.argv[0]
    if program.startswith("/"):
        return root / program.lstrip("/") if (root / program.lstrip("/")).exists() else None
    folders = [folder for pattern in step.search
               for folder in sorted(root.glob(pattern.lstrip("/")))]
    folders += [root / folder for folder in ("usr/local/bin", "usr/bin", "bin", "usr/sbin", "sbin")]
    return next((folder / program for folder in folders if (folder / program).exists()), None)
