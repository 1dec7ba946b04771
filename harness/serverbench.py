"""One virgl_test_server for N app instances, or one per instance (seed 000: "not optimal to start
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
from typing import Dict, List, Optional, Sequence, Tuple

from . import diagnosis, probes, runner, services, verdict, vtest
from .lifecycle import Launch, LaunchContext, Workload, Workspace
from .matrix import DEFAULT_TIMEOUT_S, HOST_KIND, HOST_RUNTIME, Runtime, Scenario
from .process import Child
from .toolset import Toolset

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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, child: Child) -> None:
        self.children.append(child)

    def sample(self) -> None:
        pids = [pid for child in list(self.children) for pid in child.group_members()]
        totals = [memory_kb(pid) for pid in pids]
        self.peak_processes = max(self.peak_processes, len(pids))
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
    return Scenario(id=f"{path_id}/{runtime.name}/gl#{index}", path_id=path_id, runtime=runtime, probe="gl",
                    golden="gl", timeout_s=timeout_s)


class Instances:
    """N apps of one vtest path, prepared (configs written, Flatpak apps installed), their own
    servers not started."""

    def __init__(self, toolset: Toolset, path_id: str, runtime: Runtime, count: int, out: Path,
                 temp: runner.TempRoot, timeout_s: float):
        self.launches: List[Launch] = []
        self.sockets: List[str] = []
        self.own_servers: List[services.ServiceSpec] = []
        for index in range(count):
            item = scenario(path_id, index, runtime, timeout_s)
            workspace = Workspace(out / f"app-{index}", temp.scenario_dir())
            workload = Workload(probe="gl", probe_args=runner.probe_args(item))
            ctx = LaunchContext(item, toolset, workspace, workload)
            workspace.create()
            launch = item.spec.family.launch(ctx)
            (server,) = [spec for spec in launch.prepare() if spec.name == vtest.SERVICE]
            assert server.ready_socket
            self.launches.append(launch)
            self.own_servers.append(server)
            self.sockets.append(server.ready_socket)

    def start_app(self, index: int) -> None:
        self.launches[index].start_workload()

    def finish(self) -> None:
        for launch in self.launches:
            launch.watch()

    def stop(self) -> None:
        for launch in self.launches:
            launch.stop()
            launch.collect()


def judged(launches: Sequence[Launch], goldens: Path, host: verdict.HostFacts) -> List[verdict.Verdict]:
    """Each app's verdict, as a run would give it."""
    found = []
    for launch in launches:
        ctx = launch.ctx
        report, problem = probes.read_report(probes.get("gl"), launch.result.artifacts.get("stdout"))
        observed = verdict.Observed(launch.result, report, problem)
        found.append(verdict.evaluate(ctx.scenario, observed, host,
                                      verdict.Goldens(goldens, ctx.workspace.result_dir)))
    return found


def complaint(log_path: str) -> str:
    """The last line of a server's log that says something failed, the cause before the consequence."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return diagnosis.service_evidence(lines)


def measure(mode: str, toolset: Toolset, path_id: str, runtime: Runtime, count: int, out: Path,
            goldens: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> SharingRun:
    """N apps of `path_id` rendering at once, their servers started the `mode` way."""
    temp = runner.TempRoot()
    started: List[services.RunningService] = []
    apps: Optional[Instances] = None
    try:
        apps = Instances(toolset, path_id, runtime, count, out / mode.replace(" ", ""), temp, timeout_s)
        with MemorySampler() as sampler:
            t0 = time.monotonic()
            if mode == PER_INSTANCE:
                for index, spec in enumerate(apps.own_servers):
                    server = services.start(spec)
                    apps.launches[index].services = [server]  # the launch stops it with its app
                    started.append(server)
                    sampler.watch(server.child)
                    apps.start_app(index)
            else:
                server = services.start(shared_server(toolset, temp, out, multi_clients=mode == MULTI_CLIENTS))
                started.append(server)
                sampler.watch(server.child)
                for index, socket in enumerate(apps.sockets):
                    # The app's path names its own socket; a hard link to the shared one is the same socket.
                    os.link(server.spec.ready_socket or "", socket)
                    apps.start_app(index)
            apps.finish()
            wall = time.monotonic() - t0
            sampler.sample()
    finally:
        if apps is not None:
            apps.stop()
        services.stop_all(started)
        temp.remove()
    verdicts = judged(apps.launches, goldens, runner.host_facts(toolset))
    failed = [f"app {i}: {v.outcome.value}: {v.reason}" for i, v in enumerate(verdicts) if v.outcome != verdict.PASS]
    said = complaint(started[0].spec.log_path) if failed and mode != PER_INSTANCE else ""
    return SharingRun(mode, path_id, count, len(started), [round(s.ready_s, 4) for s in started],
                      sampler.peak_processes, sampler.peak_rss_kb, sampler.peak_pss_kb, sampler.largest_rss_kb,
                      round(wall, 3), count - len(failed), failed, said)


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


def shared_server(toolset: Toolset, temp: runner.TempRoot, out: Path, multi_clients: bool) -> services.ServiceSpec:
    folder = temp.scenario_dir()
    folder.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(out, folder)
    spec = vtest.server_spec(toolset, workspace, multi_clients=multi_clients)
    spec.log_path = str(out / f"shared-server{'-multi-clients' if multi_clients else ''}.log")
    return spec


def host_runtime() -> Runtime:
    return Runtime(HOST_RUNTIME, HOST_KIND, "/", "the host's own root filesystem")


def plainest_vtest_path() -> str:
    """The first path of the table whose GL goes to a virgl_test_server it starts itself (no
    supervisor, no Venus): plain bwrap."""
    from .paths import PATHS

    return next(spec.id for spec in PATHS.values()
                if vtest.SERVICE in spec.services and "gl" in spec.renderers and not spec.sync_fd and not spec.venus)


def compare(toolset: Toolset, count: int, out: Path, path_id: Optional[str] = None, runtime: Optional[Runtime] = None,
            rounds: int = 3, goldens: Optional[Path] = None) -> List[SharingRow]:
    """The three ways, each `rounds` times, the rounds interleaved (a machine's load drifts)."""
    goldens = goldens or runner.GOLDENS_DIR
    path_id = path_id or plainest_vtest_path()
    runs: Dict[str, List[SharingRun]] = {mode: [] for mode in MODES}
    for number in range(1, rounds + 1):
        for mode in MODES:
            runs[mode].append(measure(mode, toolset, path_id, runtime or host_runtime(), count,
                                      out / f"round-{number}", goldens))
    return [row(runs[mode]) for mode in MODES]


def why_not(toolset: Toolset, path_id: str) -> Optional[str]:
    from .paths import get

    spec = get(path_id)
    return spec.family.available(spec, toolset)


def table(rows: List[SharingRow]):
    from rich.markup import escape
    from rich.table import Table

    first = rows[0] if rows else None
    title = (f"vtest server: shared vs per-instance, {first.instances} apps of {first.path} rendering at once, "
             f"median of {len(first.runs)} rounds" if first else "vtest server: shared vs per-instance")
    out = Table(title=title)
    out.add_column("mode", justify="left")
    for column in ("servers", "apps passed", "server start s", "server processes", "RSS MiB (sum)", "PSS MiB (sum)",
                   "largest process RSS MiB", "wall s"):
        out.add_column(column, justify="right")
    out.add_column("why not", justify="left")
    for item in rows:
        out.add_row(item.mode, str(item.servers), item.passed, f"{item.start_s:.3f}", str(item.peak_processes),
                    f"{item.peak_rss_kb / 1024:.0f}", f"{item.peak_pss_kb / 1024:.0f}",
                    f"{item.largest_rss_kb / 1024:.0f}", f"{item.wall_s:.2f}", escape(item.reason or "-"))
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
        return f"vtest server: shared vs per-instance: not measured: {path_id}: {reason}", {"skipped": reason}
    rows = compare(toolset, count, out, path_id, rounds=rounds)
    return table(rows), {"path": path_id, "instances": count, "rounds": rounds, "modes": summary(rows)}
