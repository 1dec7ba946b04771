"""One virgl_test_server for N app instances, or one per instance (is it "not optimal to start
virgl_test_server for every Flatpak app instance"), measured with real servers and real probes.

Three ways, each with N apps of a vtest path (vtest-virgl: bwrap; flatpak-vtest: flatpak run)
rendering the GL probe at the same time:
  * per-instance: each app starts its own server and waits for it, as the vtest paths do;
  * shared: one server (it forks a process per client, virglrenderer's default) for all N;
  * shared, --no-fork --multi-clients: one server process serving all N clients itself
    (--multi-clients alone still forks one process per client).
Each server's start (spawn until its socket accepts), the peak of the summed RSS and PSS of every
server process while the apps render (PSS counts pages a fork shares with its parent once), and
each app's verdict (renderer, image against the golden, isolation), as a run would judge it."""
import dataclasses
import os
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from ..host import diagnosis
from ..scenario import paths
from ..system import reaper, services
from ..run import runner
from ..launch import vtest
from ..launch.families import registry
from ..launch.lifecycle import Hooks, Workspace
from ..scenario.model import DEFAULT_TIMEOUT_S, HOST, Runtime, Scenario
from ..scenario.outcomes import Outcome
from ..scenario.probes import GOLDENS_DIR
from ..system.process import Child
from ..host.toolset import Toolset

PER_INSTANCE, SHARED, MULTI_CLIENTS = "per-instance", "shared", "shared --no-fork --multi-clients"
MODES = (PER_INSTANCE, SHARED, MULTI_CLIENTS)
SAMPLE_INTERVAL_S = 0.02
ROLLUP_LINE = re.compile(r"^(Rss|Pss):\s+(\d+) kB$", re.M)


@dataclass
class SharingRun:
    """One round of one mode."""

    mode: str
    path: str
    instances: int
    servers: int
    start_s: List[float]  # each server's, spawn until its socket accepts
    peak_processes: int  # server processes alive at once, at most
    peak_rss_kb: int  # the largest sum of all server processes' RSS while the apps rendered
    peak_pss_kb: int  # the same for PSS
    largest_rss_kb: int  # the largest RSS of one server process
    wall_s: float  # the first server's start until the last app's end
    passed: int
    reasons: List[str] = field(default_factory=list)  # the apps that did not pass, and why
    server_said: str = ""  # a shared server's own last complaint, when apps failed
    processes_seen: int = 0  # server processes (servers and their forks) seen in the round


@dataclass
class SharingRow:
    """A mode over its rounds: medians, the runs kept."""

    mode: str
    path: str
    instances: int
    servers: int
    start_s: float  # median of every server's start, all rounds
    peak_processes: int
    peak_rss_kb: int  # medians of the rounds' peaks
    peak_pss_kb: int
    largest_rss_kb: int
    wall_s: float
    passed: str  # "4/4", or "3-4/4" where rounds differ
    runs: List[SharingRun]

    @property
    def reason(self) -> str:
        failing = next((run for run in self.runs if run.reasons), None)
        if failing is None:
            return ""
        said = f"; server: {failing.server_said}" if failing.server_said else ""
        return failing.reasons[0].split(": ", 2)[-1].split(": ", 1)[0] + said


def memory_kb(pid: int) -> Tuple[int, int]:
    """(RSS, PSS) of one process in kB; zeros if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            found = dict(ROLLUP_LINE.findall(rollup.read()))
    except OSError:
        return 0, 0
    return int(found.get("Rss", 0)), int(found.get("Pss", 0))


class MemorySampler:
    """Samples the summed RSS and PSS of some process groups (the servers and their forks) until
    stopped, keeping the peaks."""

    def __init__(self) -> None:
        self.children: List[Child] = []
        self.peak_rss_kb = self.peak_pss_kb = self.peak_processes = self.largest_rss_kb = 0
        self.seen: Set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, child: Child) -> None:
        self.children.append(child)

    def sample(self) -> None:
        pids = [pid for child in list(self.children) for pid in child.group_members()]
        totals = [memory_kb(pid) for pid in pids]
        self.peak_processes = max(self.peak_processes, len(pids))
        self.seen.update(pids)
        self.peak_rss_kb = max(self.peak_rss_kb, sum(rss for rss, _ in totals))
        self.peak_pss_kb = max(self.peak_pss_kb, sum(pss for _, pss in totals))
        self.largest_rss_kb = max([self.largest_rss_kb, *(rss for rss, _ in totals)])

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def scenario(path_id: str, index: int, runtime: Runtime, timeout_s: float) -> Scenario:
    return Scenario(id=f"{path_id}/{runtime.name}/gl#{index}", path_id=path_id, runtime=runtime,
                    probe="gl",
                    golden="gl", timeout_s=timeout_s)


def complaint(log_path: str) -> str:
    """The last line of a server's log that says something failed, the cause before the
    consequence."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return diagnosis.service_evidence(lines)


class Servers:
    """The servers of one round, as the apps' launches start them (per instance) or as the round
    hands them one it started itself (shared); each watched by the memory sampler."""

    def __init__(self, sampler: MemorySampler, shared: Optional[services.RunningService] = None):
        self.sampler, self.shared = sampler, shared
        self.started: List[services.RunningService] = [shared] if shared else []
        self._lock = threading.Lock()
        if shared is not None:
            sampler.watch(shared.child)

    def start(self, specs: List[services.ServiceSpec]) -> List[services.RunningService]:
        """A launch's services: its own, or (shared) its socket linked to the shared server's,
        which the launch does not stop."""
        if self.shared is None:
            return services.start_all(specs)
        for spec in specs:
            if spec.name == vtest.SERVICE and spec.ready_socket:
                os.link(self.shared.spec.ready_socket or "", spec.ready_socket)  # the same socket
        return services.start_all([spec for spec in specs if spec.name != vtest.SERVICE])

    def ready(self, running: List[services.RunningService]) -> None:
        with self._lock:
            for service in running:
                if service.spec.name == vtest.SERVICE and service not in self.started:
                    self.started.append(service)
                    self.sampler.watch(service.child)


def measure(mode: str, toolset: Toolset, path_id: str, runtime: Runtime, count: int, out: Path,
            goldens: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> SharingRun:
    """N apps of `path_id` rendering at once, their servers started the `mode` way. Each app is a
    scenario of a run (runner.run, all N at once): its launch, failure boundary and verdict."""
    apps = [scenario(path_id, index, runtime, timeout_s) for index in range(count)]
    folder = out / mode.replace(" ", "")
    shared: Optional[services.RunningService] = None
    with reaper.temp_dir("gh-servers-") as scratch, MemorySampler() as sampler:
        t0 = time.monotonic()
        try:
            if mode != PER_INSTANCE:
                shared = services.start(shared_server(toolset, Path(scratch), folder,
                                                      mode == MULTI_CLIENTS))
            servers = Servers(sampler, shared)
            results = runner.run(apps, toolset, runner.RunOptions(out_dir=folder, jobs=count,
                                                                  goldens_dir=goldens),
                                 hooks=Hooks(services_ready=servers.ready,
                                             start_services=servers.start))
            wall = time.monotonic() - t0
            sampler.sample()
        finally:
            services.stop_all([shared] if shared else [])
    failed = [f"app {i}: {r.verdict.outcome.value}: {r.verdict.reason}" for i,
              r in enumerate(results)
              if r.verdict.outcome is not Outcome.PASS]
    said = complaint(servers.started[0].spec.log_path) if failed and shared is not None else ""
    return SharingRun(mode, path_id, count, len(servers.started), [round(s.ready_s, 4)
                                                                   for s in servers.started],
                      sampler.peak_processes, sampler.peak_rss_kb, sampler.peak_pss_kb,
                      sampler.largest_rss_kb,
                      round(wall, 3), count - len(failed), failed, said, len(sampler.seen))


def row(runs: List[SharingRun]) -> SharingRow:
    first = runs[0]
    least, most = min(run.passed for run in runs), max(run.passed for run in runs)
    return SharingRow(first.mode, first.path, first.instances, first.servers,
                      statistics.median(s for run in runs for s in run.start_s),
                      max(run.peak_processes for run in runs),
                      int(statistics.median(run.peak_rss_kb for run in runs)),
                      int(statistics.median(run.peak_pss_kb for run in runs)),
                      int(statistics.median(run.largest_rss_kb for run in runs)),
                      statistics.median(run.wall_s for run in runs),
                      f"{least}{f'-{most}' if most != least else ''}/{first.instances}", runs)


def shared_server(toolset: Toolset, scratch: Path, out: Path,
                  multi_clients: bool) -> services.ServiceSpec:
    out.mkdir(parents=True, exist_ok=True)
    spec = vtest.server_spec(toolset, Workspace(out, scratch), multi_clients=multi_clients)
    spec.log_path = str(out / f"shared-server{'-multi-clients' if multi_clients else ''}.log")
    return spec


def plainest_vtest_path() -> str:
    """The first path of the table whose GL goes to a virgl_test_server it starts itself (no
    supervisor, no Venus): plain bwrap."""
    return next(spec.id for spec in paths.PATHS.values()
                if vtest.SERVICE in spec.services and "gl" in spec.renderers
                and not spec.sync_fd and not spec.venus)


def plainest_venus_path() -> str:
    """The first path of the table whose Vulkan goes to a --venus virgl_test_server it starts
    itself (the table puts plain bwrap first)."""
    return next(spec.id for spec in paths.PATHS.values() if vtest.SERVICE in spec.services
                and spec.venus)


def compare(toolset: Toolset, count: int, out: Path, path_id: Optional[str] = None,
            runtime: Optional[Runtime] = None,
            rounds: int = 3, goldens: Optional[Path] = None) -> List[SharingRow]:
    """The three ways, each `rounds` times, the rounds interleaved (a machine's load drifts)."""
    goldens = goldens or GOLDENS_DIR
    path_id = path_id or plainest_vtest_path()
    runs: Dict[str, List[SharingRun]] = {mode: [] for mode in MODES}
    for number in range(1, rounds + 1):
        for mode in MODES:
            runs[mode].append(measure(mode, toolset, path_id, runtime or HOST, count,
                                      out / f"round-{number}", goldens))
    return [row(runs[mode]) for mode in MODES]


def why_not(toolset: Toolset, path_id: str) -> Optional[str]:
    spec = paths.get(path_id)
    return registry.of(spec).available(spec, toolset)


def table(rows: List[SharingRow]):
    from rich.markup import escape
    from rich.table import Table

    first = rows[0] if rows else None
    title = (f"vtest server: shared vs per-instance, {first.instances} apps of {first.path} "
             "rendering at once, "
             f"median of {len(first.runs)} rounds" if first
             else "vtest server: shared vs per-instance")
    out = Table(title=title)
    out.add_column("mode", justify="left")
    for column in ("servers", "apps passed", "server start s", "server processes", "RSS MiB (sum)",
                   "PSS MiB (sum)",
                   "largest process RSS MiB", "wall s"):
        out.add_column(column, justify="right")
    out.add_column("why not", justify="left")
    for item in rows:
        out.add_row(item.mode, str(item.servers), item.passed, f"{item.start_s:.3f}",
                    str(item.peak_processes),
                    f"{item.peak_rss_kb / 1024:.0f}", f"{item.peak_pss_kb / 1024:.0f}",
                    f"{item.largest_rss_kb / 1024:.0f}", f"{item.wall_s:.2f}",
                    escape(item.reason or "-"))
    return out


def summary(rows: List[SharingRow]) -> List[Dict[str, object]]:
    """For bench.json: each mode's medians and its rounds."""
    return [dataclasses.asdict(item) for item in rows]


def section(toolset: Toolset, count: int, out: Path, rounds: int, path_id: Optional[str] = None):
    """`gpu-harness bench`'s server table and its bench.json entry; a line saying why where the
    path cannot run here."""
    path_id = path_id or plainest_vtest_path()
    reason = why_not(toolset, path_id)
    if reason:
        return (f"vtest server: shared vs per-instance: not measured: {path_id}: {reason}",
                {"skipped": reason})
    rows = compare(toolset, count, out, path_id, rounds=rounds)
    return table(rows), {"path": path_id, "instances": count, "rounds": rounds,
                         "modes": summary(rows)}
