"""exec's inputs beside its command: --file HOST_PATH[:INSIDE_PATH] and --env NAME=VALUE read and
checked (bad input is one line, exit 2), and the hints said after a command that failed: a host
file the path hides, a piglit program with no PIGLIT_PLATFORM."""
import fnmatch
import os
import posixpath
from pathlib import PurePosixPath
from typing import Dict, List, Sequence, Tuple

from ..core.errors import InputError, bad_character, shown
from ..launch.families import registry
from ..launch.families.exec_files import InsideFile
from ..launch.families.host import HostFamily
from ..launch.lifecycle import HOST_PATHS
from ..matrix.checks import ENV_NAME
from ..scenario.model import Scenario
from ..workloads.piglit import BIN_DIRS as PIGLIT_BIN_DIRS

HIDDEN = (*HOST_PATHS, "/tmp")  # host folders a path's command does not see (its /tmp is its own)
SPLIT_ON = ",:"  # podman splits a volume on these, flatpak a filesystem on ':'


def on_host(path_id: str) -> bool:
    """The path runs the command as a plain process on this host (native, software)."""
    return isinstance(registry.of_path(path_id), HostFamily)


def inside_files(values: Sequence[str], path_id: str) -> Tuple[InsideFile, ...]:
    """--file values: each an existing host file, and where the command sees it (INSIDE_PATH, else
    /run/gpu-harness/files/NAME); two files at one place, or a file for the host's own paths,
    refused."""
    found: Dict[str, InsideFile] = {}
    for value in values:
        host, colon, inside = value.rpartition(":")
        if not colon or not inside.startswith("/"):
            host, inside = value, ""
        where = os.path.abspath(os.path.expanduser(host)) if host else ""
        if not where or not os.path.isfile(where):
            state = ("is a folder (--file takes files)" if where and os.path.isdir(where)
                     else "is no file on this host")
            raise InputError(f"exec --file: {shown(host or value)} {state}")
        inside = posixpath.normpath(inside or InsideFile.default_inside(where))
        why = bad_character(where + inside) or next((f"has a {char!r}, which a path cannot pass on"
                                                     for char in SPLIT_ON
                                                     if char in where + inside), None)
        if why:
            raise InputError(f"exec --file: {shown(value)} {why}")
        if inside == "/" or ".." in PurePosixPath(inside).parts:
            raise InputError(f"exec --file: {shown(value)}: INSIDE_PATH must name a file (an "
                             "absolute path)")
        if inside in found:
            raise InputError(f"exec --file: {found[inside].host} and {where} would both be "
                             f"{inside} "
                             "(give one another: --file HOST_PATH:INSIDE_PATH)")
        found[inside] = InsideFile(where, inside)
    if found and on_host(path_id):
        raise InputError(f"exec --file: {path_id} runs the command on this host, where it sees "
                         f"{next(iter(found.values())).host} as it is (--file is for the paths "
                         "that hide "
                         "the host's files)")
    return tuple(found.values())


def environment(values: Sequence[str]) -> Dict[str, str]:
    """--env values: NAME=VALUE each, a later one of a name winning."""
    env: Dict[str, str] = {}
    for value in values:
        name, equals, text = value.partition("=")
        if not equals or not ENV_NAME.match(name):
            raise InputError(f"exec --env: {shown(value)} must be NAME=VALUE (NAME: letters, "
                             "digits and '_', "
                             "not starting with a digit)")
        why = bad_character(text)
        if why:
            raise InputError(f"exec --env: the value of {name} {why}")
        env[name] = text
    return env


def hidden_arguments(command: Sequence[str], files: Sequence[InsideFile]) -> List[str]:
    """The command's arguments (or an --option=VALUE's value) that name a file on this host in a
    folder the paths hide from it, and that no --file puts inside."""
    given = {placed.host for placed in files}
    named = []
    for argument in command:
        value = argument.partition("=")[2] if argument.startswith("-") else argument
        if (value.startswith("/") and value not in given and os.path.isfile(value)
                and any(value.startswith(folder + "/") for folder in HIDDEN)):
            named.append(value)
    return named


def piglit_platform_unset(scenario: Scenario, command: Sequence[str]) -> bool:
    """The command is a piglit program (in piglit's bin folder) and its environment has no
    PIGLIT_PLATFORM: it opens an X11 display, which no path gives (the host's only where DISPLAY is
    set)."""
    folder = posixpath.dirname(command[0]) if command else ""
    if not any(fnmatch.fnmatchcase(folder, pattern) for pattern in PIGLIT_BIN_DIRS):
        return False
    given = {**(os.environ if on_host(scenario.path_id) else {}), **dict(scenario.spec.env),
             **dict(scenario.env)}
    return "PIGLIT_PLATFORM" not in given and "DISPLAY" not in given


def failure_hints(scenario: Scenario, command: Sequence[str],
                  files: Sequence[InsideFile]) -> List[str]:
    """What to try, where the command failed, from what exec knows without its output."""
    hints = []
    if piglit_platform_unset(scenario, command):
        hints.append("hint: piglit's programs open the display PIGLIT_PLATFORM names (unset: "
                     "X11's, which no "
                     "path gives): --env PIGLIT_PLATFORM=surfaceless_egl")
    if on_host(scenario.path_id):
        return hints
    return hints + [f"hint: {value} is on this host, whose {', '.join(HIDDEN[:2])}, /tmp, ... "
                    f"{scenario.path_id} hides: "
            f"--file {value} puts it at {InsideFile.default_inside(value)} (--file "
            "HOST_PATH:INSIDE_PATH elsewhere)"
            for value in hidden_arguments(command, files)[:2]]
