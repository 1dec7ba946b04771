"""Is vtest a boundary? A hostile client against a real virgl_test_server, measured from outside:
the session a real app sends (the gl probe through vtest-virgl, recorded by a relay between it
and its server), mutated and replayed by harness/probe/vtestfuzz.py while an honest app renders
through the same server; then what the server did: its processes for clients that crashed
(its SIGSEGV handler's "SIGSEGV!"), the server itself alive or not, its peak RSS, and whether the
honest app still passed (its exact golden image)."""
import json
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import vtestrelay
from ..system import kernelfaults, reaper, serverconfine, services
from ..run import runner
from ..launch import vtest
from ..host.diagnosis import server_crashes
from ..launch.lifecycle import Hooks, Workspace
from ..scenario.model import HOST, Runtime, Scenario
from ..workloads import registry as workloads
from ..scenario.outcomes import Outcome
from ..scenario.probes import GOLDENS_DIR, PROBE_DIR
from .serverbench import MemorySampler, plainest_venus_path, plainest_vtest_path
from ..host.toolset import Toolset
from ..core.errors import ComponentError, ToolMissing
from ..system import process

RELAY = Path(vtestrelay.__file__)  # run by path: a program of its own
FUZZER = PROBE_DIR / "vtestfuzz.py"
CASES = PROBE_DIR / "vtestcases.py"  # the fuzzer's targeted cases, beside it wherever it runs
DEVICE_FUZZER = PROBE_DIR / "virtgpufuzz.py"  # and its way through a guest's virtio-gpu device
HOSTILE = "hostile"  # the declared probe that runs the fuzzer inside a path
# How the server serves the hostile client and the honest app: a process per client (the
# default), one process for all (--no-fork --multi-clients), a server each, or a process per
# client under bwrap (harness/system/serverconfine.py).
FORKING, SHARED, PER_APP, CONFINED = "forking", "shared", "per-app", "confined"
MODES = (FORKING, SHARED, PER_APP, CONFINED)


class ModeUnavailable(ToolMissing):
    """This server cannot run in the mode asked for here; the message says why."""


@dataclass
class FuzzRun:
    """One fuzz run against one server, as measured."""

    server: str  # "virgl_test_server 0.10.4"
    mode: str  # how the server serves clients: MODES
    seed: int
    session_bytes: int
    tried: int
    answered: int
    dropped: int  # the server's side went away: its process for this client ended
    hung: int  # no answer within the deadline
    waiting: int  # the server waits for data no client would send (not a hang)
    crashes: int  # "SIGSEGV!" lines: processes for a client that crashed
    server_alive: bool  # the listening server outlived it all
    # how it ended where it did not: "service ... died during the run (killed by SIGPIPE)"
    server_end: str
    peak_rss_kb: int
    honest: str  # the honest app's outcome and reason
    seconds: float
    inputs: List[dict] = field(default_factory=list)  # the saved inputs: outcome, change, file
    targeted: List[dict] = field(default_factory=list)  # each targeted case: its outcome and how
    # what the server's process sees and may write
    reach: Dict[str, object] = field(default_factory=dict)
    # where the hostile client ran: "flatpak-vtest over trixie"
    client_in: str = "a process on the host"
    # Faults the kernel logged for the server's programs during the run (virgl_render_server has no
    # handler that would say so), and why none could be read where the kernel's log is not readable.
    kernel_faults: List[str] = field(default_factory=list)
    kernel_log: str = ""

    def to_json(self) -> dict:
        return asdict(self)


# The recorded app draws one frame a round, one round: a short session (its setup, shaders,
# resources, a frame, the read-back), so that each fuzzed input replays in milliseconds.
SHORT = ("--rounds", "1", "--frames", "1")


# Venus's decoder: a process the server starts for a Venus client
RENDER_SERVER = "virgl_render_server"


def app(index: int, probe_args=(), timeout_s: float = 60.0) -> Scenario:
    path = plainest_vtest_path()
    return Scenario(id=f"{path}/host/gl#{index}", path_id=path, runtime=HOST, probe="gl",
                    golden="gl",
                    timeout_s=timeout_s, probe_args=tuple(probe_args))


def venus_app(runtime: Runtime) -> Scenario:
    """The Vulkan probe through vtest-venus over `runtime` (one with Mesa's Venus driver)."""
    path = plainest_venus_path()
    return Scenario(id=f"{path}/{runtime.name}/vulkan", path_id=path, runtime=runtime,
                    probe="vulkan",
                    golden="vulkan", timeout_s=30)


def hostile(path: str, runtime: Runtime, session: Path, seed: int, count: int, seconds: float,
            deadline_s: float) -> Scenario:
    """The fuzzer as a probe inside `path` over `runtime`: a declared command workload (after
    the workload probe's own gl scene), the socket the path gives its apps as its target."""
    argv = ["python3", "{out}/inputs/vtestfuzz.py", "fuzz", "-", f"{{out}}/inputs/{session.name}",
            "--seed", str(seed),
            "--count", str(count), "--seconds", str(seconds), "--deadline", str(deadline_s),
            "--out", "{out}/fuzz"]
    step_s = seconds + 30 * deadline_s + 60  # its inputs, the targeted cases' deadlines, its start
    declared, problems = workloads.parse(HOSTILE, {"kind": "command", "argv": argv,
                                                   "timeout_s": step_s,
                                                   "files": [str(FUZZER), str(CASES),
                                                             str(DEVICE_FUZZER),
                                                             str(session)]})
    assert not problems, problems  # built here, not read from a user's file
    return Scenario(id=f"{path}/{runtime.name}/{HOSTILE}", path_id=path, runtime=runtime,
                    probe=HOSTILE,
                    timeout_s=step_s + 120, declared=declared)


def server(toolset: Toolset, scratch: Path, out: Path, name: str, mode: str = FORKING,
           extra_env: Optional[Dict[str, str]] = None, venus: bool = False) -> services.ServiceSpec:
    """The server a hostile client meets, run as `mode` says (`venus`: with --venus); `extra_env`
    for its process (a test plants a crash with LD_PRELOAD)."""
    out.mkdir(parents=True, exist_ok=True)
    spec = vtest.server_spec(toolset, Workspace(out, scratch))
    spec.ready_socket = str(scratch / f"{name}.sock")
    render_node = toolset.render_nodes[0] if toolset.render_nodes else None
    spec.argv = vtest.server_argv(toolset.path(vtest.SERVICE), spec.ready_socket, render_node,
                                  venus=venus, multi_clients=mode == SHARED)
    if mode == CONFINED:
        why = serverconfine.why_not(toolset.path(vtest.SERVICE))
        if why:
            raise ModeUnavailable(why)
        confined = serverconfine.confine(toolset.path("bwrap"), toolset.path("python3"), spec.argv,
                                         str(scratch),
                                         render_node, scratch, name)
        spec.argv, spec.handed = confined.argv, confined.handed
    spec.env.update(extra_env or {})
    spec.log_path = str(out / f"{name}.log")
    return spec


def reach_of(toolset: Toolset, mode: str, scratch: Path) -> dict:
    """What a crashed server's process reaches, run as the server runs in `mode`."""
    render_node = toolset.render_nodes[0] if toolset.render_nodes else None

    def confine(argv: List[str]) -> serverconfine.Confined:
        return serverconfine.confine(toolset.path("bwrap"), toolset.path("python3"), argv,
                                     str(scratch), render_node,
                                     scratch, "reach")
    return serverconfine.reach(toolset.path("python3"), str(scratch), confine
                               if mode == CONFINED else None)


def through(socket: str):
    """Hooks.start_services for an app whose vtest socket is `socket` (a hard link to it)."""
    def start(specs: List[services.ServiceSpec]) -> List[services.RunningService]:
        for spec in specs:
            if spec.name == vtest.SERVICE and spec.ready_socket:
                os.link(socket, spec.ready_socket)
        return services.start_all([spec for spec in specs if spec.name != vtest.SERVICE])
    return start


def record_session(toolset: Toolset, out: Path, venus_runtime: Optional[Runtime] = None) -> Path:
    """The gl probe's own vtest session through a relay: what it sent, as bytes. With
    `venus_runtime`: the Vulkan probe's through vtest-venus over that runtime, against a --venus
    server (whatever its verdict: on a host that cannot map the server's memory the probe hangs
    there, and what it sent until then is the session)."""
    out.mkdir(parents=True, exist_ok=True)
    recorded = venus_app(venus_runtime) if venus_runtime else app(0, SHORT)
    with reaper.temp_dir("gh-rec-") as scratch:
        real = services.start(server(toolset, Path(scratch), out, "recording-server",
                                     venus=bool(venus_runtime)))
        relay_socket = str(Path(scratch) / "relay.sock")
        relay = services.ServiceSpec("vtest-relay", [sys.executable, str(RELAY), relay_socket,
                                                     real.spec.ready_socket or "",
                                                     str(out / "session")],
                                     {"PATH": os.environ.get("PATH", "")},
                                     str(out / "relay.log"), ready_socket=relay_socket)
        running = [real]
        try:
            running.append(services.start(relay))
            (result,) = runner.run([recorded], toolset, runner.RunOptions(out_dir=out / "recording",
                                                                          goldens_dir=GOLDENS_DIR),
                                   hooks=Hooks(start_services=through(relay_socket)))
        finally:
            services.stop_all(running)
    sessions = sorted(out.glob("session.*"), key=lambda p: p.stat().st_size)
    if (not sessions or not sessions[-1].stat().st_size
            or (result.verdict.outcome is not Outcome.PASS and not venus_runtime)):
        raise ComponentError("the recorded app sent nothing or did not pass: "
                             f"{result.verdict.outcome.value}: {result.verdict.reason}")
    return sessions[-1]  # the client's rendering connection (the largest)


def fuzz(toolset: Toolset, session: Path, out: Path, seed: int = 0, count: int = 1000,
         seconds: float = 60.0,
         deadline_s: float = 5.0, honest_done: Optional[threading.Event] = None,
         mode: str = FORKING,
         server_env: Optional[Dict[str, str]] = None, path: Optional[str] = None,
         runtime: Runtime = HOST, venus: bool = False) -> FuzzRun:
    """The hostile client's inputs against a fresh server run as `mode` says, while an honest app
    renders through it (per-app: through a server of its own); `honest_done` is set once the
    honest app has its verdict. `path`: the hostile client runs inside that path over `runtime`
    (its sandbox, container or Flatpak), else as a plain process here. `venus`: the server runs
    with --venus (a Venus session's target; the honest app is a GL one beside it all the same)."""
    honest_done = honest_done or threading.Event()
    out.mkdir(parents=True, exist_ok=True)
    kernel = kernelfaults.Watch()
    try:
        with reaper.temp_dir("gh-fuzz-") as scratch, MemorySampler() as sampler:
            reach = reach_of(toolset, mode, Path(scratch))
            running = services.start(server(toolset, Path(scratch), out, "server", mode, server_env,
                                            venus))
            started, own = [running], None
            honest: List[str] = []

            def honest_app() -> None:
                socket = (own or running).spec.ready_socket or ""
                (result,) = runner.run([app(1)], toolset,
                                       runner.RunOptions(out_dir=out / "honest",
                                                         goldens_dir=GOLDENS_DIR),
                                       hooks=Hooks(start_services=through(socket)))
                honest.append(f"{result.verdict.outcome.value}: {result.verdict.reason}")
                honest_done.set()

            thread = threading.Thread(target=honest_app)
            try:
                sampler.watch(running.child)
                if mode == PER_APP:
                    own = services.start(server(toolset, Path(scratch), out, "honest-server"))
                    started.append(own)
                thread.start()
                if path is None:
                    report = run_here(running.spec.ready_socket or "", session, out, seed, count,
                                      seconds, deadline_s)
                else:
                    report = run_inside(toolset, hostile(path, runtime, session, seed, count,
                                                         seconds, deadline_s),
                                        running.spec.ready_socket or "", out)
                thread.join()
                alive, end = running.child.poll() is None, running.failure() or ""
            finally:
                if thread.is_alive():  # the fuzzer failed: the honest app ends on its own timeout
                    thread.join()
                services.stop_all(started)
    finally:
        kernel.stop()  # what the kernel logged during the run, read now
    version = toolset.version(vtest.SERVICE) or "?"
    crashes = server_crashes(running.spec.log_path)
    faults = [fault.line for fault in kernel.faults([vtest.SERVICE, RENDER_SERVER])]
    return FuzzRun(f"{vtest.SERVICE} {version}" + (" --venus" if venus else ""), mode, seed,
                   report["session_bytes"], report["tried"],
                   report["answered"], report["dropped"], report["hung"], report["waiting"],
                   crashes, alive, end,
                   sampler.peak_rss_kb, honest[0] if honest else "did not finish",
                   report["seconds"], report["inputs"],
                   report.get("targeted", []), reach,
                   f"{report['path']} over {report['runtime']}" if "path" in report
                   else "a process on the host",
                   faults, kernel.unreadable or "")


def run_here(socket: str, session: Path, out: Path, seed: int, count: int, seconds: float,
             deadline_s: float) -> dict:
    """The fuzzer as a plain process on this host; its fuzz.json."""
    done = process.run_program([sys.executable, str(FUZZER), "fuzz", socket, str(session), "--seed",
                                str(seed),
                           "--count", str(count), "--seconds", str(seconds), "--deadline",
                                str(deadline_s),
                           "--out", str(out)], capture_output=True, text=True,
                               timeout=seconds + 30 * deadline_s + 60)
    if done.returncode != 0:
        raise ComponentError(f"the fuzzer failed: {done.stderr.strip()[-400:]}")
    report = dict(json.loads((out / "fuzz.json").read_text()))
    for saved in report["inputs"]:
        saved["file"] = str(out / saved["file"])
    return report


def run_inside(toolset: Toolset, scenario: Scenario, socket: str, out: Path) -> dict:
    """The fuzzer as a probe inside its scenario's path, through `socket`; its fuzz.json, with the
    path and the scenario's verdict (its inputs saved where the scenario's probe wrote them)."""
    (result,) = runner.run([scenario], toolset, runner.RunOptions(out_dir=out / "hostile",
                                                                  goldens_dir=GOLDENS_DIR),
                           hooks=Hooks(start_services=through(socket)))
    written = result.result_dir / "probe" / "fuzz" / "fuzz.json"
    if not written.is_file():
        raise ComponentError(f"the hostile client in {scenario.path_id} wrote no report: "
                           f"{result.verdict.outcome.value}: {result.verdict.reason}")
    report = dict(json.loads(written.read_text()))
    for saved in report["inputs"]:
        saved["file"] = str(written.parent / saved["file"])
    return {**report, "path": scenario.path_id, "runtime": scenario.runtime.name,
            "verdict": f"{result.verdict.outcome.value}: {result.verdict.reason}"}


def replay(toolset: Toolset, saved: Path, out: Path, deadline_s: float = 5.0, mode: str = FORKING,
           server_env: Optional[Dict[str, str]] = None,
           venus: bool = False) -> Tuple[Optional[str], int]:
    """One saved input against a fresh server: what the fuzzer saw, and the crashes the server
    logged."""
    with reaper.temp_dir("gh-replay-") as scratch:
        running = services.start(server(toolset, Path(scratch), out, "replay-server", mode,
                                        server_env, venus))
        try:
            done = process.run_program([sys.executable, str(FUZZER), "replay",
                                        running.spec.ready_socket or "", str(saved),
                                   "--deadline", str(deadline_s)], capture_output=True, text=True,
                                       timeout=60)
        finally:
            services.stop_all([running])
    return done.stdout.strip() or None, server_crashes(running.spec.log_path)
