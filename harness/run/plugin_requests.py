"""What a test of the pytest plugin asks the harness to run: one command, declared as a
one-scenario matrix, or the matrix file a gpu_harness_matrix marker names, read and checked by the
harness's own parser (harness/pytest_plugin.py runs them). Harness modules beyond the nouns are
imported when first needed."""
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..core.errors import InputError

if TYPE_CHECKING:
    from ..judging.baseline import Baseline
    from ..scenario.model import Scenario

MARKER = "gpu_harness_matrix"
MARKER_KEYS = ("paths", "filter", "baseline")


def probe_name(argv: object) -> str:
    """A declared probe's name for a command: its program's file name in the matrix's alphabet."""
    from ..scenario.probes import PROBES

    program = (argv[0] if isinstance(argv, (list, tuple)) and argv and isinstance(argv[0], str)
               else "")
    name = (re.sub(r"[^a-z0-9._-]+", "-", program.rsplit("/", 1)[-1].lower()).strip("-._")
            or "command")
    return f"{name}-command" if name in PROBES else name


def command_declaration(argv: object, path: str, runtime: str, name: str,
                        command_keys: Mapping[str, Any],
                        settings: Optional[Mapping[str, Any]] = None,
                        runtimes: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """A one-scenario matrix: the command as a declared probe through `path` in `runtime`.
    argv, command_keys, settings ([defaults]) and runtimes go to the matrix parser as given (a
    Path as its string, a tuple as a list: what a matrix file would hold)."""
    probe: Dict[str, Any] = {"kind": "command", "argv": plain(argv),
                             **{k: plain(v) for k, v in command_keys.items()}}
    declaration: Dict[str, Any] = {"matrix": {"paths": [path], "runtimes": [runtime],
                                              "probes": [name]},
                                   "probes": {name: probe}}
    if settings:
        declaration["defaults"] = dict(settings)
    if runtimes:
        declaration["runtimes"] = {key: dict(value) if isinstance(value, Mapping) else value
                                   for key, value in runtimes.items()}
    return declaration


def plain(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return [plain(item) for item in value] if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True)
class MatrixRequest:
    """What a gpu_harness_matrix marker asks for, its file resolved beside the test's module."""

    file: Path
    paths: Tuple[str, ...] = ()
    pattern: Optional[str] = None
    baseline: Optional[Path] = None

    @property
    def slug(self) -> str:
        return (f"{re.sub(r'[^A-Za-z0-9._-]+', '_', self.file.stem)}-"
                f"{hashlib.sha1(repr(self).encode()).hexdigest()[:8]}")


def matrix_request(args: Sequence[Any], kwargs: Mapping[str, Any],
                   module_dir: Path) -> MatrixRequest:
    """The marker's arguments checked: one matrix file (relative to the test's module), and keys."""
    where = f"@pytest.mark.{MARKER}"
    unknown = sorted(set(kwargs) - set(MARKER_KEYS))
    paths, baseline = kwargs.get("paths", ()), kwargs.get("baseline")
    if len(args) != 1 or not isinstance(args[0], (str, os.PathLike)):
        raise InputError(f"{where}: takes one matrix file (a path), not {list(args)!r}")
    if unknown:
        raise InputError(f"{where}: unknown keyword {unknown[0]!r} (allowed: "
                         f"{', '.join(MARKER_KEYS)})")
    if isinstance(paths, str) or not all(isinstance(p, str) for p in paths):
        raise InputError(f"{where}: paths= must be a list of path names")
    return MatrixRequest(module_dir / Path(args[0]), tuple(paths), kwargs.get("filter"),
                         module_dir / Path(baseline) if baseline else None)


def load_matrix(request: MatrixRequest) -> Tuple[List["Scenario"], Optional["Baseline"]]:
    """The matrix read and checked by the harness's own parser, its scenarios selected, and its
    baseline; every problem an InputError with the harness's lines."""
    from ..judging import baseline as baseline_mod, deqprunner
    from ..scenario import paths as path_registry
    from ..matrix import load

    source = str(request.file)
    loaded = load(request.file)
    unknown = [p for p in request.paths if p not in path_registry.PATHS]
    if unknown:
        raise InputError(f"{source}: {MARKER}(paths=...): unknown path {unknown[0]!r} "
                         f"(known: {path_registry.known_ids()})")
    chosen = loaded.select(list(request.paths) or None, request.pattern)
    if not chosen:
        raise InputError(f"{source}: no scenario matches {MARKER}(paths={list(request.paths)}, "
                         f"filter={request.pattern!r})")
    known = deqprunner.load_any(request.baseline) if request.baseline else None
    if known is not None:
        baseline_mod.check_matches(known, [s.id for s in loaded.scenarios], source)
    return chosen, known
