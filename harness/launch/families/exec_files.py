"""exec's --file: host files put where the user's command sees them inside the path, bound
read-only by a sandbox or a container, copied to a guest's share or beside a Flatpak app and
linked into place from inside before the command starts."""
import shlex
import shutil
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import List, Sequence, Tuple

from ...scenario.probes import INSIDE
from ..lifecycle import LaunchContext, Workload

FOLDER_INSIDE = f"{INSIDE}/files"  # where a file is put without an INSIDE_PATH: FOLDER_INSIDE/NAME
OUT_INSIDE = f"{INSIDE}/out"  # the probe's output folder inside a guest (its share)
# in the probe's output folder: the copies a guest or a Flatpak app reads, STAGED/N/NAME
STAGED = "files"
CANNOT_PLACE = 126  # the command's exit where a file cannot be put where it was asked for


@dataclass(frozen=True)
class InsideFile:
    """A host file and where the command sees it inside the path."""

    host: str  # absolute
    inside: str  # absolute, normalised

    @staticmethod
    def default_inside(host: str) -> str:
        return f"{FOLDER_INSIDE}/{PurePosixPath(host).name}"


@dataclass
class CommandWorkload(Workload):
    """A user's command (exec) and the host files it is given."""

    files: Tuple[InsideFile, ...] = ()


def files_of(ctx: LaunchContext) -> Tuple[InsideFile, ...]:
    workload = ctx.workload
    return workload.files if isinstance(workload, CommandWorkload) else ()


def staged(ctx: LaunchContext) -> List[Tuple[str, str]]:
    """The command's files copied into the probe's output folder (mode kept: a script stays
    executable): (the copy on the host, where the command sees it)."""
    copies = []
    for number, placed in enumerate(files_of(ctx)):
        copy = ctx.workspace.probe_out / STAGED / str(number) / PurePosixPath(placed.host).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(placed.host, copy)
        copies.append((str(copy), placed.inside))
    return copies


def linked_first(links: Sequence[Tuple[str, str]], command: Sequence[str]) -> List[str]:
    """The command, run once each (source, inside) is linked into place from inside the path (its
    /run and /tmp are its own); where one cannot be (a read-only folder of the runtime) it does not
    run: one line on stderr, exit 126."""
    if not links:
        return list(command)
    steps = []
    for source, inside in links:
        said = (f"gpu-harness: --file: cannot put a file at {inside} in this path (its runtime's "
                "tree is read-only; /run and /tmp are writable)")
        steps.append(f"{{ mkdir -p {shlex.quote(str(PurePosixPath(inside).parent))} 2>/dev/null && "
                     f"ln -sfn {shlex.quote(source)} {shlex.quote(inside)} 2>/dev/null; }} || "
                     f"{{ echo {shlex.quote(said)} >&2; exit {CANNOT_PLACE}; }}")
    return ["/bin/sh", "-c", "; ".join(steps) + '; exec "$@"', "sh", *command]
