"""The one launch lifecycle every path family uses, as a template method: prepare -> start
services -> start workload -> watch -> stop -> collect.

A family subclasses Launch and fills in the hooks; `run()` is the batch form (a scenario),
`start()`/`stop()` the interactive one (a test's target). Whatever a hook raises is caught here
and recorded as the launch's fault, with the phase it happened in; services and the workload are
stopped however the launch ends."""
import abc
import enum
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional

from ..system import services as service_mod
from ..scenario.outcomes import Failure, FailureKind
from ..system.process import Exit, tail
from ..core.errors import ComponentError

if TYPE_CHECKING:
    from ..scenario.model import Scenario
    from ..host.toolset import Toolset

# Where a scenario's wall goes, in the order it happens: every second of an attempt is in one of
# these (check_s: can the path run here; *_s of a launch's steps; then the verdict, the audit of
# what the workload saw, and removing its scratch folder).
PHASE_NAMES = ("check_s", "image_build_s", "setup_s", "services_ready_s", "workload_start_s",
               "qemu_start_s", "boot_s", "probe_s", "capture_s", "finish_s", "shutdown_s", "stop_s",
               "collect_s", "verdict_s", "audit_s", "cleanup_s", "retried_s")
# Paths a sandbox should hide. The sentinel is a per-scenario file that only the host has.
HOST_PATHS = ("/home", "/root", "/srv", "/var/lib", "/boot", "/opt", "/mnt", "/media")


class Phase(str, enum.Enum):
    PREPARE = "prepare"
    SERVICES = "start-services"
    WORKLOAD = "start-workload"
    WATCH = "watch"
    STOP = "stop"
    COLLECT = "collect"
    VERDICT = "verdict"  # after the launch: reading the report, comparing images, judging

    def __str__(self) -> str:
        return self.value


@dataclass
class Workspace:
    """Where one scenario attempt keeps things: results (kept) and a short temp dir (removed)."""

    result_dir: Path  # configs, logs, images: kept for the report and re-runs
    tmp_dir: Path  # sockets and scratch: short path (unix sockets have a 108-byte limit)

    @property
    def probe_out(self) -> Path:
        return self.result_dir / "probe"

    @property
    def sentinel(self) -> Path:
        return self.tmp_dir / "host-sentinel"

    def create(self) -> None:
        self.probe_out.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.sentinel.write_text("visible only on the host\n")

    def host_paths(self) -> List[str]:
        return [*self.host_only_paths(), *HOST_PATHS]

    def host_only_paths(self) -> List[str]:
        """Paths only the host has, never a runtime's tree (a container's root is a whole tree,
        with its own /home and /root): the scenario's sentinel file and result folder."""
        return [str(self.sentinel), str(self.result_dir.resolve())]


@dataclass(frozen=True)
class Prepared:
    """A step a run does once before any scenario (a runtime built or found, the guest kernel
    unpacked, KVM tried, the host's driver discovered): its cost is the run's, not a scenario's."""

    step: str
    seconds: float
    detail: str = ""

    def to_dict(self) -> dict:
        return {"step": self.step, "seconds": round(self.seconds, 3), "detail": self.detail}


@dataclass
class Workload:
    """What runs through the path: a probe (by name, with extra args), or a user's command."""

    probe: Optional[str] = None
    probe_args: List[str] = field(default_factory=list)
    command: Optional[List[str]] = None
    # The workload probe's plan (harness.workloads: its steps), written as workload.json into the
    # probe's output folder before the launch; None for any other probe.
    plan: Optional[Dict[str, Any]] = None

    @property
    def is_probe(self) -> bool:
        return self.command is None


@dataclass
class Hooks:
    """Callbacks into a launch: services up, before each phase of a scenario (fault injection:
    `before_phase(phase, scenario_id)`), and how a launch's services are started (the server
    benchmark hands several launches one server that it started itself: `start_services` then
    returns what the launch must stop, none of the shared one)."""

    services_ready: Callable[[List[service_mod.RunningService]], None] = lambda services: None
    before_phase: Callable[[Phase, str], None] = lambda phase, scenario_id: None
    start_services: Callable[[List[service_mod.ServiceSpec]], List[service_mod.RunningService]] = \
        service_mod.start_all
    # Fault injection in a machine's guest: its kernel panics once this many scenarios finished
    # there.
    machine_panic_after: Optional[int] = None


@dataclass
class LaunchContext:
    scenario: "Scenario"
    toolset: "Toolset"
    workspace: Workspace
    workload: Workload
    hooks: Hooks = field(default_factory=Hooks)
    inherit_stdio: bool = False  # exec: the workload writes to the harness's own stdout/stderr
    interactive: bool = False  # a target: services and machine up, commands sent later
    # a presenting scenario's display server (launch.displayservers.DisplayServer), made before
    # the family plans the launch: the family hands its socket to the workload
    display: Optional[Any] = None


@dataclass(frozen=True, kw_only=True)
class HarnessFault:
    """An exception the harness raised while launching: a bug, or an environment problem."""

    phase: str
    error: str

    @classmethod
    def of(cls, phase: Optional[str], exc: BaseException) -> "HarnessFault":
        message = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        return cls(phase=str(phase or "launch"), error=f"{type(exc).__name__}: {message}" if message
                   else type(exc).__name__)

    def describe(self) -> str:
        return f"harness error during {self.phase}: {self.error}"


@dataclass(kw_only=True)
class LaunchResult:
    """What the launch saw, apart from what the probe reported."""

    exit: Optional[Exit] = None
    failure: Optional[Failure] = None  # why the launch itself went wrong (None when it did not)
    skipped: str = ""  # why the path cannot run here ("" when it ran)
    fault: Optional[HarnessFault] = None
    argv: List[str] = field(default_factory=list)  # the workload's command (sandbox, QEMU, ...)
    phases: Dict[str, float] = field(default_factory=dict)
    rss_kb: Dict[str, int] = field(default_factory=dict)  # peak RSS of each service and machine
    events: List[dict] = field(default_factory=list)  # QMP events seen
    logs: Dict[str, str] = field(default_factory=dict)  # "probe" and one per service/machine
    artifacts: Dict[str, str] = field(default_factory=dict)  # "stdout", "image", "scanout"
    # launcher facts for the report (accel, ...)
    facts: Dict[str, object] = field(default_factory=dict)

    def timed(self, name: str, since: float) -> float:
        """Add the time since `since` to phase `name`; the time now."""
        now = time.monotonic()
        self.phases[name] = self.phases.get(name, 0.0) + now - since
        return now

    def fail(self, problem: str, kind: FailureKind) -> None:
        """Record why the launch went wrong; the first reason stands."""
        if self.failure is None:
            self.failure = Failure(kind, problem)

    @property
    def problem(self) -> str:
        return self.failure.message if self.failure else ""

    @property
    def log_path(self) -> str:
        return self.logs.get("probe", "")

    @property
    def image_path(self) -> Optional[str]:
        return self.artifacts.get("image")

    @property
    def scanout_path(self) -> Optional[str]:
        return self.artifacts.get("scanout")

    @property
    def service_logs(self) -> Dict[str, str]:
        return {name: path for name, path in self.logs.items() if name != "probe"}

    def log_tail(self, lines: int = 20) -> str:
        return tail(self.log_path, lines) if self.log_path else ""


class LaunchAborted(ComponentError):
    """A hook recorded why the launch cannot go on (result.problem); not a harness fault."""


class Launch(abc.ABC):
    """One launch of one workload through one path. Subclasses fill in the hooks."""

    def __init__(self, ctx: LaunchContext):
        self.ctx = ctx
        self.result = LaunchResult()
        self.services: List[service_mod.RunningService] = []
        self.phase: Optional[Phase] = None
        self._started_at = 0.0
        self._stopped = False

    # -- hooks --------------------------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self) -> List[service_mod.ServiceSpec]:
        """Render and save the configuration; return the services the workload needs."""

    @abc.abstractmethod
    def start_workload(self) -> None:
        """Start the workload (the services are up)."""

    @abc.abstractmethod
    def watch(self) -> None:
        """Wait until the workload is done (or a service died, or the timeout); record its exit."""

    @abc.abstractmethod
    def stop_workload(self) -> None:
        """Stop the workload however far it got; safe after a failed start."""

    def collect(self) -> None:
        """Gather what the workload left (report, images, logs) into the result."""
        return None  # a launch that leaves nothing to gather

    # -- the template ---------------------------------------------------------------------------
    @contextmanager
    def in_phase(self, phase: Phase) -> Iterator[None]:
        self.phase = phase
        self.ctx.hooks.before_phase(phase, self.ctx.scenario.id)
        yield

    def timed(self, name: str, since: float) -> float:
        return self.result.timed(name, since)

    @contextmanager
    def accounted(self, name: str) -> Iterator[None]:
        """Every second of the block belongs to a phase: what the hooks inside did not time
        themselves goes to `name` (a phase that raised is timed too)."""
        start, before = time.monotonic(), sum(self.result.phases.values())
        try:
            yield
        finally:
            rest = time.monotonic() - start - (sum(self.result.phases.values()) - before)
            self.result.phases[name] = self.result.phases.get(name, 0.0) + max(rest, 0.0)

    def start(self) -> None:
        """Prepare, bring the services up, start the workload. Raises on a fault; stop() undoes."""
        with self.in_phase(Phase.PREPARE), self.accounted("setup_s"):
            specs = self.prepare()
        with self.in_phase(Phase.SERVICES), self.accounted("services_ready_s"):
            self.result.logs.update({spec.name: spec.log_path for spec in specs})
            try:
                self.services = self.ctx.hooks.start_services(specs)
            except service_mod.ServiceError as exc:
                self.result.fail(str(exc), FailureKind.SERVICE_FAILED)
                raise LaunchAborted() from None
            self.ctx.hooks.services_ready(self.services)
        with self.in_phase(Phase.WORKLOAD), self.accounted("workload_start_s"):
            self.start_workload()
        self._started_at = time.monotonic()  # the workload runs from here (probe_s)

    def stop(self) -> None:
        """Stop the workload and the services; safe to call twice, and after a failed start."""
        if self._stopped:
            return
        self._stopped = True
        with self.accounted("stop_s"):
            try:
                with self.in_phase(Phase.STOP):
                    pass
            finally:  # whatever raised, the workload and the services go
                try:
                    self.stop_workload()
                finally:
                    service_mod.stop_all(self.services)
                    self.result.rss_kb.update({s.spec.name: s.peak_rss_kb for s in self.services})

    def service_failure(self) -> Optional[str]:
        for service in self.services:
            service.sample_rss()
        return service_mod.first_failure(self.services)

    def record_fault(self, exc: BaseException) -> None:
        if self.result.fault is None:
            self.result.fault = HarnessFault.of(self.phase, exc)

    def run(self) -> LaunchResult:
        try:
            self.start()
            with self.in_phase(Phase.WATCH), self.accounted("finish_s"):
                self.watch()
        except LaunchAborted:
            pass
        except Exception as exc:  # the failure boundary: one scenario's fault stays its own
            self.record_fault(exc)
        finally:
            try:
                self.stop()
            except Exception as exc:
                self.record_fault(exc)
        try:
            with self.in_phase(Phase.COLLECT), self.accounted("collect_s"):
                self.collect()
        except Exception as exc:
            self.record_fault(exc)
        return self.result
