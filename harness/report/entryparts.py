"""The parts of results.json as typed records: a scenario's checks, subtests, isolation facts,
leak audit, driver matching, baseline entry and runtime facts; the run's host and toolset. Each
is read tolerantly (harness.report.jsonvalues): a part of another shape is None or empty, never
an error, since a file written by an older version or by hand must still render."""
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

from ..host.drivermatch import DriverMatch
from ..judging.baseline import Kind, Known
from ..judging.exposure import Exposure
from ..scenario.outcomes import FailureKind, Subtest, SubtestOutcome
from . import jsonvalues as read
from .jsonvalues import Spread

__all__ = ["Check", "DriverMatch", "Execution", "Exposure", "HostFacts", "Isolation", "Known",
           "Presentation", "RuntimeFacts",
           "ToolEntry", "ToolsetFacts", "check", "driver_match", "exposure", "host", "isolation",
           "known",
           "presentation", "runtime_facts", "subtest", "toolset"]


@dataclass(frozen=True)
class Check:
    """One check of the verdict; an item of checks that is no object is an empty, failed one."""

    name: str = ""
    ok: bool = False
    detail: str = ""


@dataclass(frozen=True)
class Isolation:
    """What the probe measured inside: its namespaces, seccomp, capabilities, device nodes, and
    which host paths it could see of those it checked."""

    namespaces: Tuple[str, ...] = ()  # the names of the namespaces it reported
    seccomp_mode: Optional[float] = None
    no_new_privs: Optional[bool] = None
    capabilities: Optional[float] = None
    uid: Optional[float] = None
    dri_nodes: Tuple[str, ...] = ()
    host_paths_visible: Optional[float] = None
    host_paths_checked: Optional[float] = None
    # the paths themselves; None where the probe did not list them (an older probe)
    host_paths_checked_list: Optional[Tuple[str, ...]] = None
    host_paths_visible_list: Optional[Tuple[str, ...]] = None


@dataclass(frozen=True)
class Execution:
    """How a runtime's programs ran on this host: natively, or emulated (qemu-user)."""

    architecture: str = ""
    runs: str = ""  # "natively", "emulated"
    emulator: str = ""  # the qemu-user version line (or the interpreter), where emulated


@dataclass(frozen=True)
class RuntimeFacts:
    mesa: Optional[str] = None
    suite: Optional[str] = None  # the Debian suite it was built from; "" counts as one
    execution: Optional[Execution] = None


@dataclass(frozen=True)
class HostFacts:
    kernel: str = ""
    machine: str = ""
    render_nodes: Tuple[str, ...] = ()
    name: Optional[str] = None
    host_class: Optional[str] = None  # run --host-class


@dataclass(frozen=True)
class ToolEntry:
    path: str = ""
    version: Optional[str] = None


@dataclass(frozen=True)
class ToolsetFacts:
    source: str = ""  # discovery, manifest:FILE, runtime:NAME
    tools: Dict[str, ToolEntry] = field(default_factory=dict)

    def versions(self) -> Dict[str, str]:
        return {name: tool.version for name, tool in self.tools.items() if tool.version is not None}


@dataclass(frozen=True)
class Presentation:
    """How a presenting scenario's frames reached its display server (harness.judging.
    presentation)."""

    buffer_path: Optional[str] = None  # shm, dmabuf, putimage, ...
    buffer_paths: Tuple[str, ...] = ()
    buffers_created: Optional[int] = None
    buffer_size: Optional[Tuple[int, ...]] = None
    presented: Optional[int] = None
    discarded: Optional[int] = None
    last_frame: Optional[str] = None
    offered_dmabuf: bool = False
    fps: Optional[float] = None
    fps_spread: Optional[Spread] = None
    toolkit_renderer: Optional[str] = None  # an app's: gl, vulkan or cpu (what it mapped)


def check(data: object) -> Check:
    if not isinstance(data, dict):
        return Check()
    return Check(read.shown(data, "name"), bool(data.get("ok")), read.shown(data, "detail"))


def subtest(data: object) -> Optional[Subtest]:
    """A subtest with a name and an outcome this version knows; None for anything else."""
    if not isinstance(data, dict) or "name" not in data or data.get("outcome") not in OUTCOME_WORDS:
        return None
    figures = read.numbers(data, "figures")
    return Subtest(str(data["name"]), SubtestOutcome(data["outcome"]), read.shown(data, "detail"),
                   read.number(data, "seconds"), figures)


OUTCOME_WORDS = [outcome.value for outcome in SubtestOutcome]


def isolation(data: Mapping) -> Optional[Isolation]:
    if not data:
        return None

    def listed(key: str) -> Optional[Tuple[str, ...]]:
        return tuple(read.texts(data, key)) if key in data else None

    return Isolation(tuple(str(name) for name in read.mapping(data, "namespaces")),
                     read.number(data, "seccomp_mode"),
                     read.flag(data, "no_new_privs"), read.number(data, "capabilities"),
                     read.number(data, "uid"),
                     tuple(read.texts(data, "dri_nodes")), read.number(data, "host_paths_visible"),
                     read.number(data, "host_paths_checked"), listed("host_paths_checked_list"),
                     listed("host_paths_visible_list"))


def exposure(data: Mapping) -> Optional[Exposure]:
    """The leak audit as harness.judging.exposure wrote it (its to_dict)."""
    if not data:
        return None
    count = read.number(data, "host_file_count")
    return Exposure(data.get("whole_host") is True, read.texts(data, "host_files"),
                    int(count) if count is not None else None, read.texts(data, "host_devices"),
                    read.texts(data, "host_sockets"), read.texts(data, "shared_namespaces"),
                    data.get("separate_kernel") is True, read.shown(data, "source"),
                    read.texts(data, "host_folders_checked"), read.texts(data,
                                                                         "host_folders_visible"))


def driver_match(data: object) -> Optional[DriverMatch]:
    return DriverMatch.from_dict(data)


def known(data: object) -> Optional[Known]:
    """The baseline's entry that judged the scenario (Known.to_dict), or None."""
    if not isinstance(data, dict) or data.get("kind") not in [kind.value for kind in Kind]:
        return None
    failure = data.get("failure")
    return Known(read.shown(data, "match"), Kind(data["kind"]), read.shown(data, "reason"),
                 FailureKind(failure) if failure in [kind.value for kind in FailureKind] else None,
                 host=read.text(data, "host"), subtest=read.text(data, "subtest"))


def runtime_facts(data: Mapping) -> RuntimeFacts:
    suite = data.get("suite")
    execution = read.mapping(data, "execution")
    emulator = execution.get("version") or execution.get("interpreter") or ""
    return RuntimeFacts(read.text(data, "mesa"), suite if isinstance(suite, str) else None,
                        Execution(read.text(execution, "architecture") or "",
                                  read.text(execution, "runs") or "", str(emulator))
                        if execution else None)


def host(data: Mapping) -> HostFacts:
    return HostFacts(read.shown(data, "kernel"), read.shown(data, "machine"),
                     tuple(read.texts(data, "render_nodes")), read.shown(data, "name") or None,
                     read.shown(data, "class") or None)


def toolset(data: Mapping) -> ToolsetFacts:
    tools = {str(name): ToolEntry(read.shown(tool, "path"), tool["version"]
                                  if isinstance(tool.get("version"), str)
                                  else None)
             for name, tool in read.mapping(data, "tools").items() if isinstance(tool, dict)}
    return ToolsetFacts(read.shown(data, "source"), tools)


def presentation(data: Mapping) -> Optional[Presentation]:
    if not data:
        return None
    size = data.get("buffer_size")
    return Presentation(read.text(data, "buffer_path"), tuple(read.texts(data, "buffer_paths")),
                        read.whole(data, "buffers_created"),
                        tuple(int(n) for n in size if isinstance(n, (int, float)))
                        if isinstance(size, list) else None,
                        read.whole(data, "presented"), read.whole(data, "discarded"),
                        read.text(data, "last_frame"), read.flag(data, "offered_dmabuf") is True,
                        read.number(data, "fps"), read.spread(data, "fps_spread"),
                        read.text(data, "toolkit_renderer"))
