"""What every launcher shares: the workspace, the plan it renders, and running that plan."""
import datetime
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .. import services as service_mod
from ..process import Child, Exit, tail
from ..templating import render

PROBE_DIR = Path(__file__).resolve().parent.parent / "probe"
PROBE_FILES = {"gl": PROBE_DIR / "gles.py"}
# Paths a sandbox should hide. The sentinel is a per-scenario file that only the host has.
HOST_PATHS = ("/home", "/root", "/srv", "/var/lib", "/boot", "/opt", "/mnt", "/media")


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
        return [str(self.sentinel), str(self.result_dir.resolve()), *HOST_PATHS]


@dataclass
class Workload:
    """What runs through the path: the probe (with extra args), or a user's command."""

    probe: Optional[str] = None
    probe_args: List[str] = field(default_factory=list)
    command: Optional[List[str]] = None

    @property
    def is_probe(self) -> bool:
        return self.command is None


@dataclass
class LaunchPlan:
    services: List[service_mod.ServiceSpec]
    argv: List[str]
    env: Dict[str, str]
    env_mode: str  # "clear": argv sets the whole environment (bwrap --clearenv); "inherit": env is it
    dirs: List[str] = field(default_factory=list)  # dirs the services need (for rerun.sh)


@dataclass
class ProbeResult:
    data: Optional[dict]  # the probe's JSON line, if it printed one
    exit: Optional[Exit]
    log_path: str
    image_path: Optional[str]
    phases: Dict[str, float]
    service_rss_kb: Dict[str, int]
    service_logs: Dict[str, str]
    problem: str = ""  # why the launch itself went wrong ("" when it did not)
    skipped: str = ""  # why the path cannot run here ("" when it ran)
    scanout_path: Optional[str] = None  # the display as captured from outside the machine
    facts: Dict[str, object] = field(default_factory=dict)  # launcher facts for the report (accel, ...)
    events: List[dict] = field(default_factory=list)  # QMP events seen

    def log_tail(self, lines: int = 20) -> str:
        return tail(self.log_path, lines)


def probe_command(python: str, probe_file: str, out_dir: str, host_paths: List[str], args: List[str]) -> List[str]:
    argv = [python, probe_file, "--out", out_dir]
    for path in host_paths:
        argv += ["--host-path", path]
    return argv + list(args)


def write_config(workspace: Workspace, scenario_id: str, plan: LaunchPlan) -> None:
    """Save everything launched, so the scenario can be re-run by hand from its folder."""
    out = workspace.result_dir
    (out / "workload.argv").write_text("\n".join(plan.argv) + "\n")
    (out / "workload.env").write_text("".join(f"{k}={v}\n" for k, v in sorted(plan.env.items())))
    for spec in plan.services:
        (out / f"service-{spec.name}.argv").write_text("\n".join(spec.argv) + "\n")
    script = out / "rerun.sh"
    script.write_text(render("rerun.sh.j2", scenario_id=scenario_id, services=plan.services, dirs=plan.dirs,
                             argv=plan.argv, env=plan.env, env_mode=plan.env_mode,
                             date=datetime.datetime.now().isoformat(timespec="seconds")))
    script.chmod(0o755)


def parse_probe_output(stdout_path: Path) -> Optional[dict]:
    try:
        lines = stdout_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def execute(plan: LaunchPlan, workspace: Workspace, timeout_s: float, phases: Dict[str, float],
            inherit_stdio: bool = False,
            on_services_ready: Callable[[List[service_mod.RunningService]], None] = lambda s: None) -> ProbeResult:
    """Start the services, run the workload until it exits or the timeout, stop the services."""
    out = workspace.result_dir
    log_path, stdout_path = out / "probe.log", out / "probe.stdout"
    result = ProbeResult(None, None, str(log_path), None, phases, {}, {})
    t0 = time.monotonic()
    try:
        running = service_mod.start_all(plan.services)
    except service_mod.ServiceError as exc:
        phases["services_ready_s"] = time.monotonic() - t0
        result.problem = str(exc)
        result.service_logs = {s.name: s.log_path for s in plan.services}
        return result
    phases["services_ready_s"] = time.monotonic() - t0
    try:
        on_services_ready(running)
        t1 = time.monotonic()
        env = plan.env if plan.env_mode == "inherit" else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        child = Child(plan.argv, env, str(log_path), None if inherit_stdio else str(stdout_path),
                      inherit_stdio=inherit_stdio)

        def watch():
            for service in running:
                service.sample_rss()
            return service_mod.first_failure(running)

        result.exit = child.wait(timeout_s, watch=watch)
        phases["probe_s"] = time.monotonic() - t1
        result.problem = result.exit.stopped_because or service_mod.first_failure(running) or ""
    finally:
        service_mod.stop_all(running)
    result.service_rss_kb = {s.spec.name: s.peak_rss_kb for s in running}
    result.service_logs = {s.spec.name: s.spec.log_path for s in running}
    if not inherit_stdio:
        result.data = parse_probe_output(stdout_path)
        image = workspace.probe_out / "probe.png"
        result.image_path = str(image) if image.exists() else None
    return result
