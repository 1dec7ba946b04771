"""Is vtest a boundary? A hostile client against a real virgl_test_server, measured from outside:
the session a real app sends (the gl probe through vtest-virgl, recorded by a relay between it
and its server), mutated and replayed by harness/probe/vtestfuzz.py while an honest app renders
through the same server; then what the server did: its processes for clients that crashed
(its SIGSEGV handler's "SIGSEGV!"), the server itself alive or not, its peak RSS, and whether the
honest app still passed (its exact golden image)."""
import json
import os
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

from . import reaper, runner, services, vtest
from .diagnosis import SERVER_SEGV
from .lifecycle import Hooks, Workspace
from .model import HOST, Scenario
from .outcomes import Outcome
from .probes import GOLDENS_DIR, PROBE_DIR
from .serverbench import MemorySampler, plainest_vtest_path
from .toolset import Toolset

RELAY = Path(__file__).resolve().parent / "vtestrelay.py"
FUZZER = PROBE_DIR / "vtestfuzz.py"


@dataclass
class FuzzRun:
    """One fuzz run against one server, as measured."""

    server: str  # "virgl_test_server 0.10.4"
    mode: str  # how the server serves clients: "forking" (a process per client)
    seed: int
    session_bytes: int
    tried: int
    answered: int
    dropped: int  # the server's side went away: its process for this client ended
    hung: int  # no answer within the deadline
    waiting: int  # the server waits for data no client would send (not a hang)
    crashes: int  # "SIGSEGV!" lines: processes for a client that crashed
    server_alive: bool  # the listening server outlived it all
    peak_rss_kb: int
    honest: str  # the honest app's outcome and reason
    seconds: float
    inputs: List[dict] = field(default_factory=list)  # the saved inputs: outcome, change, file

    def to_json(self) -> dict:
        return asdict(self)


# The recorded app draws one frame a round, one round: a short session (its setup, shaders,
# resources, a frame, the read-back), so that each fuzzed input replays in milliseconds.
SHORT = ("--rounds", "1", "--frames", "1")


def app(index: int, probe_args=(), timeout_s: float = 60.0) -> Scenario:
    path = plainest_vtest_path()
    return Scenario(id=f"{path}/host/gl#{index}", path_id=path, runtime=HOST, probe="gl", golden="gl",
                    timeout_s=timeout_s, probe_args=tuple(probe_args))


def server(toolset: Toolset, scratch: Path, out: Path, name: str) -> services.ServiceSpec:
    out.mkdir(parents=True, exist_ok=True)
    spec = vtest.server_spec(toolset, Workspace(out, scratch))
    spec.ready_socket = str(scratch / f"{name}.sock")
    spec.argv = vtest.server_argv(toolset.path(vtest.SERVICE), spec.ready_socket,
                                  toolset.render_nodes[0] if toolset.render_nodes else None)
    spec.log_path = str(out / f"{name}.log")
    return spec


def through(socket: str):
    """Hooks.start_services for an app whose vtest socket is `socket` (a hard link to it)."""
    def start(specs: List[services.ServiceSpec]) -> List[services.RunningService]:
        for spec in specs:
            if spec.name == vtest.SERVICE and spec.ready_socket:
                os.link(socket, spec.ready_socket)
        return services.start_all([spec for spec in specs if spec.name != vtest.SERVICE])
    return start


def record(toolset: Toolset, out: Path) -> Path:
    """The gl probe's own vtest session through a relay: what it sent, as bytes."""
    out.mkdir(parents=True, exist_ok=True)
    with reaper.temp_dir("gh-rec-") as scratch:
        real = services.start(server(toolset, Path(scratch), out, "recording-server"))
        relay_socket = str(Path(scratch) / "relay.sock")
        relay = services.ServiceSpec("vtest-relay", [sys.executable, str(RELAY), relay_socket, real.spec.ready_socket or "",
                                                     str(out / "session")], {"PATH": os.environ.get("PATH", "")},
                                     str(out / "relay.log"), ready_socket=relay_socket)
        running = [real]
        try:
            running.append(services.start(relay))
            (result,) = runner.run([app(0, SHORT)], toolset, runner.RunOptions(out_dir=out / "recording", goldens_dir=GOLDENS_DIR),
                                   hooks=Hooks(start_services=through(relay_socket)))
        finally:
            services.stop_all(running)
    if result.verdict.outcome is not Outcome.PASS:
        raise RuntimeError(f"the recorded app did not pass: {result.verdict.reason}")
    sessions = sorted(out.glob("session.*"), key=lambda p: p.stat().st_size)
    return sessions[-1]  # the client's rendering connection (the largest)


def fuzz(toolset: Toolset, session: Path, out: Path, seed: int = 0, count: int = 1000, seconds: float = 60.0,
         deadline_s: float = 5.0, honest_done: Optional[threading.Event] = None) -> FuzzRun:
    """The hostile client's inputs against a fresh forking server while an honest app renders
    through it; `honest_done` is set once the honest app has its verdict."""
    honest_done = honest_done or threading.Event()
    out.mkdir(parents=True, exist_ok=True)
    with reaper.temp_dir("gh-fuzz-") as scratch, MemorySampler() as sampler:
        running = services.start(server(toolset, Path(scratch), out, "server"))
        sampler.watch(running.child)
        honest: List[str] = []

        def honest_app() -> None:
            (result,) = runner.run([app(1)], toolset, runner.RunOptions(out_dir=out / "honest", goldens_dir=GOLDENS_DIR),
                                   hooks=Hooks(start_services=through(running.spec.ready_socket or "")))
            honest.append(f"{result.verdict.outcome.value}: {result.verdict.reason}")
            honest_done.set()

        try:
            thread = threading.Thread(target=honest_app)
            thread.start()
            done = subprocess.run([sys.executable, str(FUZZER), "fuzz", running.spec.ready_socket or "", str(session),
                                   "--seed", str(seed), "--count", str(count), "--seconds", str(seconds),
                                   "--deadline", str(deadline_s), "--out", str(out)],
                                  capture_output=True, text=True, timeout=seconds + 10 * deadline_s + 60)
            thread.join()
            alive = running.child.poll() is None
        finally:
            services.stop_all([running])
    if done.returncode != 0:
        raise RuntimeError(f"the fuzzer failed: {done.stderr.strip()[-400:]}")
    report = json.loads((out / "fuzz.json").read_text())
    log = Path(running.spec.log_path).read_text(errors="replace").splitlines()
    version = toolset.version(vtest.SERVICE) or "?"
    return FuzzRun(f"{vtest.SERVICE} {version}", "forking", seed, report["session_bytes"], report["tried"],
                   report["answered"], report["dropped"], report["hung"], report["waiting"],
                   sum(line.strip() == SERVER_SEGV for line in log), alive, sampler.peak_rss_kb,
                   honest[0] if honest else "did not finish", report["seconds"], report["inputs"])


def replay(toolset: Toolset, saved: Path, out: Path, deadline_s: float = 5.0) -> Optional[str]:
    """One saved input against a fresh server: what the fuzzer saw, and what the server logged."""
    with reaper.temp_dir("gh-replay-") as scratch:
        running = services.start(server(toolset, Path(scratch), out, "replay-server"))
        try:
            done = subprocess.run([sys.executable, str(FUZZER), "replay", running.spec.ready_socket or "", str(saved),
                                   "--deadline", str(deadline_s)], capture_output=True, text=True, timeout=60)
        finally:
            services.stop_all([running])
    return done.stdout.strip() or None
