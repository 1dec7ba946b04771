"""The sandbox family (sandbox-dri, vtest-virgl): the workload runs in bubblewrap over the
runtime's root filesystem, as Flatpak would run it. The argv is built as a list: no value from
a matrix can become an argument of its own."""
import functools
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ...host import driverlayout, hostdriver
from ...system import reaper, seccompfilter, serverconfine
from .. import presenting, vtest
from ..lifecycle import LaunchContext, Prepared
from ...scenario.model import HOST_KIND, Display, Runtime, Scenario
from ...scenario.pathspec import PathSpec
from ...scenario.probes import INSIDE
from ...system.services import ServiceSpec
from ...system.syncfd import SyncPipe
from ...host.toolset import Toolset
from .base import EnvMode, Plan, ProcessFamily, probe_spec, workload_env
from .exec_files import files_of
from ...system import process

HOME = f"{INSIDE}/home"
SYS_DIRS = ("/sys/dev", "/sys/devices", "/sys/bus", "/sys/class")
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
NIX_STORE = "/nix/store"
Pairs = Sequence[Tuple[str, str]]


@dataclass(frozen=True)
class RuntimeLayout:
    binds: Tuple[Tuple[str, str], ...]
    symlinks: Tuple[Tuple[str, str], ...]  # (target, link)


def runtime_layout(runtime: Runtime, extra_binds: Pairs = ()) -> RuntimeLayout:
    """/usr and /etc of the runtime, and its top-level lib/bin dirs as links or binds."""
    root = Path(runtime.root)
    binds, symlinks = list(extra_binds), []
    for name in ("usr", "etc"):
        if (root / name).is_dir():
            binds.append((str(root / name), f"/{name}"))
    for name in MERGED_DIRS:
        entry = root / name
        if entry.is_symlink():
            symlinks.append((os.readlink(entry), f"/{name}"))
        elif entry.is_dir():
            binds.append((str(entry), f"/{name}"))
    return RuntimeLayout(tuple(binds), tuple(symlinks))


def probe_python(toolset: Toolset, runtime: Runtime) -> Tuple[str, List[Tuple[str, str]]]:
    """The python3 to run inside, and what must be bound for it. On the host runtime with a Nix
    toolset, python3 is a store path (a wrapper that points EGL at the pinned Mesa): bind the
    store read-only and run it as is. Otherwise the runtime's own /usr/bin/python3, so that the
    probe uses the runtime's own Mesa."""
    python = toolset.path("python3")
    if python.startswith(NIX_STORE + "/") and runtime.kind == HOST_KIND:
        return python, [(NIX_STORE, NIX_STORE)]
    return os.path.join("/usr/bin", os.path.basename(python)), []


def sandbox_env(scenario: Scenario) -> List[Tuple[str, str]]:
    socket = vtest.SOCKET_INSIDE if vtest.SERVICE in scenario.spec.services else None
    return sorted(workload_env(scenario, HOME, socket).items())


@dataclass
class BwrapSpec:
    """A bubblewrap sandbox, described; argv() is the one place it becomes a command line."""

    bwrap: str
    layout: RuntimeLayout
    command: List[str]
    dri: bool = False
    sys_dirs: Sequence[str] = ()
    devices: Sequence[str] = ()  # host device nodes (or folders of them) bound as they are
    sockets: Pairs = ()  # (host socket, path inside), bound read-write
    ro_files: Pairs = ()
    rw_dirs: Pairs = ()
    env: Pairs = ()
    home: str = HOME
    extra: List[str] = field(default_factory=list)

    def argv(self) -> List[str]:
        argv = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
        for src, dst in self.layout.binds:
            argv += ["--ro-bind", src, dst]
        for target, link in self.layout.symlinks:
            argv += ["--symlink", target, link]
        argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run", "--dir",
                 self.home]
        devices = (["/dev/dri"] if self.dri else []) + [d for d in self.devices
                                                        if d != "/dev/dri" or not self.dri]
        for device in devices:
            argv += ["--dev-bind", device, device]
        if devices:
            for sys_dir in self.sys_dirs:
                argv += ["--ro-bind", sys_dir, sys_dir]
        for flag, pairs in (("--bind", self.sockets), ("--ro-bind", self.ro_files), ("--bind",
                                                                                     self.rw_dirs),
                            ("--setenv", self.env)):
            for first, second in pairs:
                argv += [flag, first, second]
        return argv + self.extra + ["--chdir", self.home, "--", *self.command]


def services_for(ctx: LaunchContext, sync: Optional[SyncPipe] = None) -> List[ServiceSpec]:
    if vtest.SERVICE in ctx.scenario.spec.services:
        return [vtest.server_spec(ctx.toolset, ctx.workspace, venus=ctx.scenario.spec.venus,
                                  sync=sync,
                                  confined=ctx.scenario.spec.confined_server,
                                  use_gles=ctx.scenario.spec.server_gles)]
    return []


@functools.lru_cache(maxsize=8)
def seccomp_missing(python: str) -> Optional[str]:
    """Why the confined server would run with no seccomp filter here (`python` cannot compile one),
    or None."""
    with reaper.temp_dir("gh-seccomp-") as scratch:
        try:
            seccompfilter.compile_filter(python, Path(scratch) / "check.bpf")
        except seccompfilter.SeccompUnavailable as exc:
            return str(exc)
    return None


@functools.lru_cache(maxsize=8)
def bwrap_works(bwrap: str) -> Optional[str]:
    """Why bwrap cannot make a sandbox on this machine, or None. In a Nix build sandbox, or on a
    host that restricts them, unprivileged user namespaces may be unavailable; the sandbox paths
    then cannot run at all, and the reason must say so rather than show a raw bwrap error."""
    try:
        done = process.run_program([bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/",
                                    "/", "true"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not be run ({exc})"
    if done.returncode == 0:
        return None
    said = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return (f"bwrap cannot create a sandbox here ({said}): the sandbox paths need unprivileged "
            "user "
            "namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone = "
            "1; "
            "in a Nix build, a builder that allows them in its sandbox)")


def host_driver_layout(ctx: LaunchContext) -> driverlayout.DriverLayout:
    """The host's driver for this path's mode (files, dependencies, capsule), its generated vendor
    files
    and capsule manifest written into the scenario's folder and bound from there."""
    tool = ctx.toolset.tools["host-driver"]
    assert tool.path is not None and ctx.scenario.spec.host_driver is not None
    driver = hostdriver.from_tool(tool.path, tool.extra)
    driver_layout = driverlayout.layout(driver, ctx.scenario.spec.host_driver,
                                        ctx.toolset.path("bwrap"))
    folder = ctx.workspace.tmp_dir / "host-driver"
    binds = list(driver_layout.binds)
    for inside, content in sorted(driver_layout.files.items()):
        written = folder / inside[len(driverlayout.PREFIX) + 1:]
        written.parent.mkdir(parents=True, exist_ok=True)
        written.write_text(content)
        binds.append((str(written), inside))
    (ctx.workspace.result_dir / "host-driver.json").write_text(json.dumps({
        "mode": ctx.scenario.spec.host_driver, "driver": driver.to_dict(),
        "libraries": [{"name": n, "file": f} for n, f in driver_layout.libraries],
        "env": driver_layout.env, "devices": driver_layout.devices}, indent=1) + "\n")
    return driverlayout.DriverLayout(binds, driver_layout.files, driver_layout.env,
                                     driver_layout.devices,
                                   driver_layout.libraries)


class SandboxFamily(ProcessFamily):
    name = "sandbox"
    displays = (Display.WAYLAND, Display.X11, Display.XWAYLAND)

    def prepare_run(self, scenarios: Sequence[Scenario], toolset: Toolset,
                    scratch: Path) -> List[Prepared]:
        """The host's driver, discovered and its dependency closure resolved, once for the run."""
        modes = sorted({s.spec.host_driver for s in scenarios if s.spec.host_driver})
        tool = toolset.tools.get("host-driver")
        if not modes or tool is None or not tool.path:
            return []
        started = time.monotonic()
        driver = hostdriver.from_tool(tool.path, tool.extra)
        for mode in modes:
            driverlayout.layout(driver, mode, toolset.path("bwrap"))
        return [Prepared("host driver", time.monotonic() - started,
                         f"{len(driver.libraries)} driver files under {driver.root}, laid out for "
                         f"{', '.join(str(mode) for mode in modes)}")]

    def available(self, spec: PathSpec, toolset: Toolset) -> Optional[str]:
        reason = super().available(spec, toolset) or bwrap_works(toolset.path("bwrap"))
        if reason is None and spec.venus:
            reason = vtest.venus_missing(toolset)
        if reason is None and spec.confined_server:
            reason = (serverconfine.why_not(toolset.path(vtest.SERVICE))
                      or seccomp_missing(toolset.path("python3")))
        return reason

    def plan(self, ctx: LaunchContext) -> Plan:
        scenario, toolset, workspace, workload = (ctx.scenario, ctx.toolset, ctx.workspace,
                                                  ctx.workload)
        sync = SyncPipe() if scenario.spec.sync_fd else None
        services = services_for(ctx, sync)
        sockets = [(s.ready_socket, vtest.SOCKET_INSIDE) for s in services
                   if s.name == vtest.SERVICE
                   and s.ready_socket]
        python, store_binds = probe_python(toolset, scenario.runtime)
        ro_files: List[Tuple[str, str]] = []
        rw_dirs: List[Tuple[str, str]] = []
        if workload.command is not None:
            command = list(workload.command)
            ro_files += [(placed.host, placed.inside) for placed in files_of(ctx)]  # exec --file
        else:
            spec = probe_spec(ctx)
            ro_files += [(str(path), f"{INSIDE}/{path.name}") for path in spec.files]
            rw_dirs.append((str(workspace.probe_out), f"{INSIDE}/out"))
            command = spec.sandbox_argv(python, workspace.host_paths(), workload.probe_args)
        env = sandbox_env(scenario)
        if ctx.display is not None:  # the server's socket bound under the sandbox's runtime folder
            runtime_dir = dict(env)["XDG_RUNTIME_DIR"]
            sockets += list(ctx.display.reach(runtime_dir).binds)
            env = sorted({**dict(env), **presenting.client_env(ctx.display, runtime_dir)}.items())
        devices: List[str] = []
        if scenario.spec.host_driver:
            driver = host_driver_layout(ctx)
            ro_files += driver.binds
            devices = driver.devices
            env = sorted({**dict(env), **driver.env, **dict(scenario.env)}.items())
        sandbox = BwrapSpec(bwrap=toolset.path("bwrap"), layout=runtime_layout(scenario.runtime,
                                                                               store_binds),
                            command=command, dri=scenario.spec.needs_render_node,
                            sys_dirs=[d for d in SYS_DIRS if os.path.isdir(d)], devices=devices,
                            sockets=sockets,
                            ro_files=ro_files, rw_dirs=rw_dirs, env=env,
                            extra=["--sync-fd", str(sync.read_fd)] if sync is not None else [])
        return Plan(argv=sandbox.argv(), env=dict(env), env_mode=EnvMode.CLEAR, services=services,
                    dirs=[str(workspace.tmp_dir)], sync=sync)


FAMILY = SandboxFamily()
