"""What every path family shares: the Family interface, the plan a family renders, saving it
(argv, environment, rerun.sh), and the launch of a plain process (host, sandbox)."""
import abc
import dataclasses
import datetime
import glob
import itertools
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple, Type

from ...host import emulation
from ...scenario import probes
from ...system.interrupts import INTERRUPTS
from .. import presenting
from ..lifecycle import Launch, LaunchContext, LaunchResult, Prepared, Workload, Workspace
from ...scenario.model import IMAGE_KIND, LOCAL, Runtime, Scenario
from ...scenario.outcomes import FailureKind
from ...scenario.pathspec import PathSpec
from ...system.process import Child
from ...system.services import ServiceSpec
from ...system.syncfd import SyncPipe
from ..target import CommandResult, Target, TargetError
from ...core.templating import render
from ...core.textenum import TextEnum
from ...host.toolset import Toolset
from ...workloads import registry as workloads
from ...core.errors import DefinitionError

NO_RENDER_NODE = "no DRM render node on this host (/dev/dri/renderD* absent)"
WORKLOAD_PLAN = "workload.json"  # in the probe's output folder: what the workload probe runs
WORKLOAD_INPUTS = "inputs"  # beside it: the workload's own files (harness.workloads.base.INPUTS)
SCANOUT = "scanout.png"  # in a scenario's folder: its display, as captured from outside
ICD_DIRS = ("usr/share/vulkan/icd.d", "etc/vulkan/icd.d")


def runtime_icds(runtime: Runtime, name: str) -> List[str]:
    """The runtime's Vulkan ICD files for driver `name` (virtio: Mesa's Venus), as paths inside it.
    All architectures' files: the loader skips an ICD it cannot load."""
    found = []
    for folder in ICD_DIRS:
        base = os.path.join(runtime.root, folder)
        found += sorted(f"/{folder}/{os.path.basename(p)}"
                        for p in glob.glob(os.path.join(base, f"{name}_icd*.json")))
    return found


def workload_env(scenario: Scenario, home: str, socket: Optional[str] = None) -> Dict[str, str]:
    """What a workload inside a runtime runs with: a plain base, the path's own variables, its
    Vulkan ICD, the vtest socket's name where it has one, and the scenario's variables last (a
    matrix may override any of them)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": home}
    env.update(dict(scenario.spec.env))
    env.update(icd_env(scenario.spec, scenario.runtime))
    if socket:
        env["VTEST_SOCKET_NAME"] = socket
    env.update(dict(scenario.env))
    return env


def icd_env(spec: PathSpec, runtime: Runtime) -> Dict[str, str]:
    """The loader pointed at the path's ICD only, so another device cannot answer instead."""
    if not spec.vulkan_icd:
        return {}
    files = ":".join(runtime_icds(runtime, spec.vulkan_icd))
    return {"VK_DRIVER_FILES": files, "VK_ICD_FILENAMES": files} if files else {}


class EnvMode(TextEnum):
    CLEAR = "clear"  # argv sets the whole environment (bwrap --clearenv)
    INHERIT = "inherit"  # the launched process gets env as it is


@dataclass
class Plan:
    """Everything one launch runs, rendered: saved per scenario so it can be re-run by hand."""

    argv: List[str]
    env: Dict[str, str]
    env_mode: EnvMode
    services: List[ServiceSpec] = field(default_factory=list)
    dirs: List[str] = field(default_factory=list)  # dirs the services need (for rerun.sh)
    # the sandbox's end of a supervised service's pipe goes to the workload
    sync: Optional[SyncPipe] = None
    # what making the plan found, for the report
    facts: Dict[str, object] = field(default_factory=dict)
    # The workload process's mark (reaper.MARK_VAR) where argv must name it (a container's
    # processes get it through podman's --env); None: the launch gives it a new one.
    mark: Optional[str] = None

    def process_env(self) -> Dict[str, str]:
        """The environment the launched process gets: the plan's, or (when argv sets the whole
        environment itself, as bwrap --clearenv does) only the PATH to find the launcher."""
        return (self.env if self.env_mode is EnvMode.INHERIT
                else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def write_config(workspace: Workspace, scenario_id: str, plan: Plan) -> None:
    """Save everything launched, so the scenario can be re-run by hand from its folder."""
    out = workspace.result_dir
    (out / "workload.argv").write_text("\n".join(plan.argv) + "\n")
    (out / "workload.env").write_text("".join(f"{k}={v}\n" for k, v in sorted(plan.env.items())))
    for spec in plan.services:
        (out / f"service-{spec.name}.argv").write_text("\n".join(spec.argv) + "\n")
    script = out / "rerun.sh"
    # A sync pipe (a supervised service, bwrap --sync-fd) is a FIFO by hand: the script opens the
    # sandbox's end on the fd number the workload's argv names, the service's on its own.
    sync = {"fifo": str(workspace.tmp_dir / "sync.fifo"), "read": plan.sync.read_fd,
            "write": plan.sync.write_fd} if plan.sync else None
    script.write_text(render("rerun.sh.j2", scenario_id=scenario_id, services=plan.services,
                             dirs=plan.dirs,
                             argv=plan.argv, env=plan.env, env_mode=plan.env_mode.value, sync=sync,
                             out=str(workspace.probe_out),
                             date=datetime.datetime.now().isoformat(timespec="seconds")))
    script.chmod(0o755)


def probe_spec(ctx: LaunchContext) -> probes.ProbeSpec:
    assert ctx.workload.probe is not None
    return probes.get(ctx.workload.probe)


class Family(abc.ABC):
    """One way of launching a workload. A path (pathspec.PathSpec) names its family by name;
    harness.launch.families.registry maps the name to the object."""

    name: ClassVar[str]
    system_features: ClassVar[Tuple[str, ...]] = ()  # Nix build-machine features its checks need
    # the runtime kinds it takes; None: any
    runtime_kinds: ClassVar[Optional[Tuple[str, ...]]] = None
    # Nix systems its checks exist on; None: all
    nix_systems: ClassVar[Optional[Tuple[str, ...]]] = None
    # Its paths run in a machine's guest as on a host (a VM in the guest would need nested
    # virtualization)
    runs_in_guest: ClassVar[bool] = True
    # The display servers its workload can present to (model.Display), beside offscreen: the
    # families whose workload reaches a host socket (a bind, Flatpak's --socket) take them.
    displays: ClassVar[Tuple[str, ...]] = ()

    def __init__(self) -> None:
        if not getattr(self, "name", ""):
            raise DefinitionError(f"{type(self).__name__} names no family (class attribute name)")

    def accepts(self, runtime: Runtime) -> bool:
        """Whether this family can run a workload in that runtime: any root filesystem where it
        names no kinds; an image archive (no tree to run in) only where it names that kind."""
        if self.runtime_kinds is None:
            return runtime.kind != IMAGE_KIND
        return runtime.kind in self.runtime_kinds

    def available(self, spec: PathSpec, toolset: Toolset) -> Optional[str]:
        """Why `spec` cannot run on this machine with this toolset, or None."""
        missing = toolset.missing(spec.requires)
        if missing:
            return "missing " + "; ".join(toolset.why_missing(name) for name in missing)
        if spec.needs_render_node and not toolset.render_nodes:
            return NO_RENDER_NODE
        return None

    @abc.abstractmethod
    def launch(self, ctx: LaunchContext) -> Launch:
        """The launch of the context's workload through this family (not started)."""

    @abc.abstractmethod
    def target(self, ctx: LaunchContext) -> Target:
        """A running instance of the path that a test sends commands to (not started)."""

    def probe_args(self, ctx: LaunchContext) -> List[str]:
        """Arguments this family adds to the probe's (none but the vfio family's)."""
        return []

    def prepare_run(self, scenarios: Sequence[Scenario], toolset: Toolset,
                    scratch: Path) -> List[Prepared]:
        """What this family does once per run before its scenarios (they would each do it the
        first time otherwise), each step timed: `scenarios` are this family's that can run here."""
        return []

    def own_dirs(self, workspace: Workspace) -> List[str]:
        """Folders of the harness's own, outside the workspace, that the workload sees (the leak
        audit does not count them as the host's)."""
        return []

    def unavailable_in(self, ctx: LaunchContext) -> Optional[str]:
        """Why this workload cannot run in the scenario's runtime, or None: a Vulkan probe on a
        path that needs a particular ICD the runtime does not have."""
        spec, runtime, probe = ctx.scenario.spec, ctx.scenario.runtime, ctx.workload.probe
        display = presenting.unavailable(ctx.scenario, ctx.toolset)
        if display:
            return display
        if probe and probes.get(probe).shown and ctx.scenario.machine == LOCAL:
            return (f"the {probe} probe shows its image on a display that only a virtual GPU "
                    "machine's host "
                    "captures: run it on one (--machine virgl-guest)")
        if (spec.vulkan_icd and probe and probes.get(probe).api == "vulkan"
                and not runtime_icds(runtime, spec.vulkan_icd)):
            return (f"runtime {runtime.name} has no {spec.vulkan_icd} Vulkan ICD "
                    f"({spec.vulkan_icd}_icd*.json; "
                    "Mesa's Venus driver is in Debian 13 and later)")
        architecture = (emulation.tree_architecture(runtime.root)
                        if runtime.kind is not IMAGE_KIND else None)
        if architecture and emulation.how_runs(architecture) is None:
            return f"runtime {runtime.name}: {emulation.why_not(architecture)}"
        declared = ctx.scenario.declared
        shipped = workloads.shipped_in(declared) if declared else None
        if declared and shipped:
            refused = self.refuses_shipped(ctx, shipped[0])
            return f"{declared.name}: {refused}" if refused else None
        if declared and runtime.kind is not IMAGE_KIND:
            missing = workloads.missing_in(declared, Path(runtime.root))
            if missing:
                return f"{declared.name}: runtime {runtime.name}: {missing}"
        return None

    def refuses_shipped(self, ctx: LaunchContext, kind: str) -> Optional[str]:
        """Why this path cannot run a program that ships in a `kind` ("bundle": a Flatpak bundle),
        or None where it runs it."""
        return (f"its program ships in a Flatpak {kind}: it runs on the flatpak paths that run "
                "over the "
                "runtime's /usr (flatpak-vtest, flatpak-dri)")

    def run(self, ctx: LaunchContext) -> LaunchResult:
        """Launch the context's workload through its path; a path that cannot run here is a Skip."""
        started = time.monotonic()
        reason = self.available(ctx.scenario.spec, ctx.toolset) or self.unavailable_in(ctx)
        if reason:
            skipped = LaunchResult(skipped=reason)
            skipped.timed("check_s", started)
            return skipped
        ctx.workspace.create()
        if ctx.workload.plan is not None:
            write_plan(ctx.workspace.probe_out, ctx.workload.plan)
        checked = time.monotonic()
        launched = self.launch(ctx).run()
        launched.phases["check_s"] = checked - started
        if ctx.workload.plan is not None:  # a workload's logs and pictures are judged from there
            launched.artifacts["probe_out"] = str(ctx.workspace.probe_out)
        return launched

    def __repr__(self) -> str:
        return f"<family {self.name}>"


class ProcessFamily(Family):
    """A family whose workload is one process tree on the host (a plain process, a sandbox, a
    container, a Flatpak app): it renders a Plan, which its launch class (a ProcessLaunch) runs."""

    launch_class: ClassVar[Type["ProcessLaunch"]]

    @abc.abstractmethod
    def plan(self, ctx: LaunchContext) -> Plan:
        """Everything the launch runs, rendered: argv, environment, services."""

    def launch(self, ctx: LaunchContext) -> "ProcessLaunch":
        return self.launch_class(ctx, self)

    def target(self, ctx: LaunchContext) -> Target:
        return ProcessTarget(ctx, self)


class ProcessLaunch(Launch):
    """A workload that is one process tree on the host: a plain process or a sandbox."""

    child: Optional[Child] = None

    def __init__(self, ctx: LaunchContext, family: ProcessFamily):
        super().__init__(ctx)
        self.family = family

    def prepare(self) -> List[ServiceSpec]:
        ctx = self.ctx
        ctx.display = presenting.server_for(ctx.scenario, ctx.toolset, ctx.workspace)
        self.plan = self.family.plan(ctx)
        if ctx.display is not None:  # up before the workload and the path's own sidecars
            self.plan.services.insert(0, ctx.display.spec)
            self.result.facts["display_server"] = ctx.display.to_dict()
            self.result.logs[ctx.display.spec.name] = ctx.display.spec.log_path
        write_config(ctx.workspace, ctx.scenario.id, self.plan)
        self.result.argv = list(self.plan.argv)
        self.result.facts.update(self.plan.facts)
        self.result.logs["probe"] = str(ctx.workspace.result_dir / "probe.log")
        return self.plan.services

    def start_workload(self) -> None:
        if self.ctx.interactive:
            return
        out = self.ctx.workspace.result_dir
        stdout = None if self.ctx.inherit_stdio else str(out / "probe.stdout")
        sync = self.plan.sync
        try:
            self.child = Child(self.plan.argv, self.plan.process_env(), str(out / "probe.log"),
                               stdout,
                               inherit_stdio=self.ctx.inherit_stdio,
                               pass_fds=(sync.read_fd,) if sync is not None else (),
                               mark=self.plan.mark,
                               capped=True)
        except OSError as exc:
            self.result.fail(f"cannot start {self.plan.argv[0]}: {exc.strerror or exc}",
                             FailureKind.LAUNCH_FAILED)
        finally:
            if sync is not None:
                sync.close(sync.read_fd)  # bwrap holds the only read end now: its end is the signal

    def watch(self) -> None:
        if self.child is None:
            return
        screen = (presenting.ScreenCapture(self.ctx.display, self.ctx.workspace, self.result)
                  if self.ctx.display is not None else None)

        def look() -> Optional[str]:
            if screen is not None:
                screen.tick()  # the probe's last frame is shown: the screen is captured now
            return self.service_failure()

        self.result.exit = self.child.wait(self.ctx.scenario.timeout_s, watch=look,
                                           abort=INTERRUPTS.why_stop)
        self.timed("probe_s", self._started_at)
        if screen is not None:  # the capture's seconds are its own phase, not the probe's
            self.result.phases["probe_s"] -= screen.seconds
        if INTERRUPTS.requested and self.result.exit.stopped_because == INTERRUPTS.reason():
            self.result.fail(INTERRUPTS.reason(), FailureKind.INTERRUPTED)
        reason = self.result.exit.stopped_because or self.service_failure()
        if reason:
            self.result.fail(reason, FailureKind.SERVICE_DIED)

    def stop_workload(self) -> None:
        if self.child is not None:
            # A sandbox's processes leave the child's group and, when it is stopped while bwrap
            # is still setting up, its tree too: they carry the child's mark, and go with it
            # (the services, stopped next, have marks of their own).
            self.child.stop()
        plan = getattr(self, "plan", None)
        if plan is not None and plan.sync is not None:
            plan.sync.close_all()  # a launch that failed before handing them over

    def collect(self) -> None:
        if self.ctx.inherit_stdio or self.ctx.interactive:
            return
        out = self.ctx.workspace
        stdout, image = out.result_dir / "probe.stdout", out.probe_out / "probe.png"
        # what a machine's host captured of the display (the kms probe)
        scanout = out.result_dir / SCANOUT
        if stdout.exists():
            self.result.artifacts["stdout"] = str(stdout)
        if image.exists():
            self.result.artifacts["image"] = str(image)
        if scanout.exists():
            self.result.artifacts["scanout"] = str(scanout)



def write_plan(probe_out: Path, plan: dict) -> None:
    """workload.json, and the workload's own files (a trace) beside it in inputs/ where the path
    sees them."""
    (probe_out / WORKLOAD_PLAN).write_text(json.dumps(plan, indent=1))
    for name, source in (plan.get("inputs") or {}).items():
        (probe_out / WORKLOAD_INPUTS).mkdir(exist_ok=True)
        shutil.copyfile(source, probe_out / WORKLOAD_INPUTS / name)


class ProcessTarget(Target):
    """A process family's path: its services stay up; each command runs as a fresh workload
    (`/bin/sh -c COMMAND`) launched exactly as the path launches a probe."""

    launch: Optional[ProcessLaunch] = None

    def __init__(self, ctx: LaunchContext, family: ProcessFamily):
        super().__init__(ctx)
        self.family = family

    def start(self) -> "ProcessTarget":
        spec = self.ctx.scenario.spec
        reason = self.family.available(spec, self.ctx.toolset)
        if reason:
            raise TargetError(f"{self.path_id} cannot run here: {reason}")
        self.ctx.workspace.create()
        self.launch = self.family.launch(self.ctx)
        try:
            self.launch.start()
        except Exception as exc:
            self.close()
            raise TargetError(f"{self.path_id} did not start: {exc}") from None
        if self.launch.result.problem:
            problem = self.launch.result.problem
            self.close()
            raise TargetError(f"{self.path_id} did not start: {problem}")
        self._commands = itertools.count(1)
        return self

    def run(self, command: str, timeout_s: float = 60.0) -> CommandResult:
        if self.launch is None:
            raise TargetError(f"the {self.path_id} target is not running")
        ctx = dataclasses.replace(self.ctx, workload=Workload(command=["/bin/sh", "-c", command]))
        plan = self.family.plan(ctx)
        log = self.ctx.workspace.result_dir / f"command-{next(self._commands)}.log"
        child = Child(plan.argv, plan.process_env(), str(log))
        end = child.wait(timeout_s, watch=self.launch.service_failure)
        output = log.read_text(errors="replace")
        if end.timed_out:
            raise TargetError(f"command did not finish in {timeout_s:g} s: {command!r}")
        if end.stopped_because:
            raise TargetError(f"{end.stopped_because} during {command!r}")
        return CommandResult(command, end.code if end.code is not None else 128 + (end.signal or 0),
                             output)

    def close(self) -> None:
        if self.launch is not None:
            self.launch.stop()
            self.launch = None


ProcessFamily.launch_class = ProcessLaunch
