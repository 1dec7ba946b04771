"""The launch of a QEMU guest: boot the toolset's kernel with a generated initramfs, mount the
runtime root read-only over 9p, run the probe (or the command agent), show its image on the
display, write the result to a share. The VM library it uses (console protocol, display, QEMU
argv, QMP machine, initramfs) is harness.launch.vm; the family around it is
harness.launch.families.vm."""
import os
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

from ...host import emulation
from ...host.diagnosis import QEMU_LOG
from ...system.interrupts import INTERRUPTS
from ..lifecycle import Launch, LaunchContext
from ...scenario.model import Scenario
from ...scenario.outcomes import FailureKind
from ...system.process import Exit
from ...system.retry import poll
from ...system.services import ServiceSpec
from ...core.templating import render
from ...host.toolset import Toolset
from ..vm import (accel as accel_mod, console, display as display_mod, initramfs,
                  kernel as kernel_mod)
from ..vm import arches, modules as modules_mod, stdin as stdin_mod
from ..vm.qemu_process import QemuProcess
from ..vm.qemu import QemuSpec
from .base import EnvMode, Plan, probe_spec, runtime_icds, workload_env, write_config
from . import exec_files
from .sandbox import probe_python
from . import vm_boot
from .vm_boot import GuestBoot

SCANOUT_SETTLE_S = 0.5
SCANOUT_WAIT_S = 5.0
SHARED_KERNEL_ARGS = ("panic=-1", "loglevel=4", "mitigations=off", "vt.global_cursor_default=0")


def kernel_args_for(arch: arches.GuestArch) -> Tuple[str, ...]:
    """A guest kernel's command line before the scenario's own arguments: its console, the shared
    arguments, its machine's own."""
    return (f"console={arch.console}", *SHARED_KERNEL_ARGS, *arch.kernel_args)


KERNEL_ARGS = kernel_args_for(arches.AMD64)  # an amd64 guest's

_accel_lock = threading.Lock()
_accel: Optional[accel_mod.Accel] = None


def acceleration(toolset: Toolset, workdir) -> accel_mod.Accel:
    """The acceleration of an amd64 guest here: KVM once a tiny guest has booted under it, else
    TCG."""
    global _accel
    with _accel_lock:
        if _accel is None:
            kernel = kernel_mod.unpacked(toolset.path("kernel"))
            _accel = accel_mod.detect(toolset.path("qemu-system-x86_64"), kernel,
                                      toolset.path("busybox"), workdir)
        return _accel


def guest_env(scenario: Scenario) -> List[Tuple[str, str]]:
    env = workload_env(scenario, "/tmp")  # the guest's root is the runtime's
    if "VK_DRIVER_FILES" not in env:
        # The loader is given the runtime's ICD files by name: over 9p a folder's offsets are the
        # host's 64-bit ext4 hash cookies, and a 32-bit guest program's readdir() fails on them
        # (EOVERFLOW), so an i386 loader would find no ICD at all.
        files = ":".join(runtime_icds(scenario.runtime, "*"))
        if files:
            env["VK_DRIVER_FILES"] = files
    return sorted(env.items())


def guest_argv(ctx: LaunchContext, scanout: bool, family_args: List[str]) -> List[str]:
    if ctx.workload.command is not None:
        # exec --file: copies on the share (the probe's output folder), linked into place in the
        # guest
        out = ctx.workspace.probe_out
        copies = [(f"{exec_files.OUT_INSIDE}/{Path(copy).relative_to(out)}", inside)
                  for copy, inside in exec_files.staged(ctx)]
        return exec_files.linked_first(copies, ctx.workload.command)
    # The runtime root is the guest's root, so a Nix toolset's python3 (a store path) is there too.
    return probe_spec(ctx).guest_argv(probe_python(ctx.toolset, ctx.scenario.runtime)[0],
                                      ctx.workspace.host_paths(),
                                      [*ctx.workload.probe_args, *family_args], scanout)


def guest_acceleration(boot: GuestBoot, toolset: Toolset, workdir) -> accel_mod.Accel:
    if boot.foreign:
        return accel_mod.Accel("tcg",
                               f"an {boot.arch.name} guest on an {emulation.host_architecture()} "
                               "host")
    return acceleration(toolset, workdir)


def build_initrd(ctx: LaunchContext, boot: GuestBoot, wanted: Tuple[str, ...], scanout: bool):
    agent = ctx.interactive
    modules = modules_mod.resolve_for_kernel(boot.modules_dir, wanted)
    init = console.render_init(modules, scanout=scanout and not agent, agent=agent)
    files: Tuple[Tuple[str, str], ...] = ()
    if ctx.workload.probe is not None:
        spec = probe_spec(ctx)
        files = tuple((path.name, str(path)) for path in spec.files) + \
            tuple((name, str(path)) for name, path in spec.package_files())
    return initramfs.build(initramfs.InitramfsSpec(boot.busybox, boot.modules_dir, tuple(modules),
                                                   init, files))


def write_guest_workload(ctx: LaunchContext, scanout: bool, family_args: List[str]) -> None:
    """The per-run part of the guest: its environment and the command init runs, on the share."""
    env, out = guest_env(ctx.scenario), ctx.workspace.probe_out
    (out / "environment.sh").write_text(render("guest-workload.sh.j2", env=env, argv=[]))
    (out / "workload.sh").write_text(render("guest-workload.sh.j2", env=env,
                                            argv=guest_argv(ctx, scanout, family_args)))


class VmLaunch(Launch):
    """QEMU as the workload: booted with the probe (batch) or with the command agent (interactive).
    family_args: what the family adds to the probe's arguments."""

    machine: Optional[QemuProcess] = None
    stdin_socket: Optional[Path] = None  # exec: where QEMU connects for the command's stdin
    stdin_stream: Optional[stdin_mod.StdinStream] = None
    display = "none"

    def __init__(self, ctx: LaunchContext, family_args: Optional[List[str]] = None):
        super().__init__(ctx)
        self.family_args = list(family_args or [])

    def prepare(self) -> List[ServiceSpec]:
        ctx = self.ctx
        scenario, toolset, workspace = ctx.scenario, ctx.toolset, ctx.workspace
        out = workspace.result_dir
        # the family said Skip where it cannot
        self.boot = vm_boot.guest_boot(toolset, scenario.runtime)
        # the run tried KVM before any scenario
        accel = guest_acceleration(self.boot, toolset, workspace.tmp_dir)
        kernel = self.boot.kernel if self.boot.foreign else kernel_mod.unpacked(self.boot.kernel)
        arch = self.boot.arch
        t0 = time.monotonic()
        initrd, built = self.guest_image()
        self.result.phases["image_build_s"] = time.monotonic() - t0
        self.display, services, display_env = display_mod.display_for(scenario.spec.guest_gpu or "",
                                                                      toolset, workspace)
        self.serial_log, self.qmp_socket = out / "console.log", workspace.tmp_dir / "qmp.sock"
        self.agent_socket = workspace.tmp_dir / "agent.sock" if ctx.interactive else None
        self.stdin_socket = workspace.tmp_dir / "stdin.sock" if self.streams_stdin else None
        stdin_args = (stdin_mod.KERNEL_ARG,) if self.stdin_socket else ()
        qemu = self.machine_spec(QemuSpec(
            qemu=self.boot.qemu, accel=accel.name, memory_mb=arch.memory_mb, kernel=kernel,
            machine=arch.machine, cpu=None if accel.name == "kvm" else arch.tcg_cpu,
            initrd=str(initrd),
            cmdline=" ".join(self.kernel_args() + stdin_args + scenario.kernel_args),
            serial_log=str(self.serial_log), qmp_socket=str(self.qmp_socket),
            runtime_root=self.guest_root(), out_dir=str(self.share_dir()),
            display=self.display, gpu=scenario.spec.guest_gpu,
            agent_socket=str(self.agent_socket) if self.agent_socket else None,
            stdin_socket=str(self.stdin_socket) if self.stdin_socket else None))
        self.plan = Plan(argv=qemu.argv(), env=display_env, env_mode=EnvMode.INHERIT,
                         services=services,
                         dirs=[str(workspace.tmp_dir)])
        write_config(workspace, scenario.id, self.plan)
        self.result.argv = list(self.plan.argv)
        self.result.logs.update({"probe": str(workspace.probe_out / "probe.log"),
                                 "serial console": str(self.serial_log),
                                 QEMU_LOG: str(out / "qemu.log")})
        self.result.facts.update({"accel": accel.name, "accel_reason": accel.reason,
                                  "initramfs": str(initrd),
                                  "initramfs_built": built, "kernel": kernel,
                                  "memory_mb": qemu.memory_mb,
                                  "display": self.display, "guest_architecture": arch.name,
                                  "guest_kernel_from": self.boot.kernel_source})
        return services

    def guest_image(self) -> Tuple[Path, bool]:
        """The initramfs (cached by content; whether it was built now) and, on the result share,
        what init runs this time."""
        wanted = self.guest_modules() + (stdin_mod.MODULES if self.streams_stdin else ())
        initrd, built = build_initrd(self.ctx, self.boot, wanted, self.guest_scanout())
        write_guest_workload(self.ctx, self.guest_scanout(), self.family_args)
        return initrd, built

    @property
    def streams_stdin(self) -> bool:
        """exec: the command in the guest reads the harness's stdin as it comes
        (harness.launch.vm.stdin)."""
        return self.ctx.inherit_stdio and not self.ctx.interactive

    def share_dir(self) -> Path:
        """The host folder the guest writes its results to (mount tag `out`)."""
        return self.ctx.workspace.probe_out

    def kernel_args(self) -> Tuple[str, ...]:
        """The guest kernel's command line before the scenario's own arguments (which win)."""
        return kernel_args_for(self.boot.arch)

    def guest_scanout(self) -> bool:
        """Whether the guest's init shows the probe's image on its framebuffer for the host to
        capture (the nested VFIO tier's L2 shows its own, so its L1 does not)."""
        return self.ctx.scenario.spec.scanout

    def guest_modules(self) -> Tuple[str, ...]:
        """The kernel modules the guest's init loads (with their dependencies)."""
        return modules_mod.BASE_MODULES + (modules_mod.GPU_MODULES
                                           if self.ctx.scenario.spec.guest_gpu else ())

    def machine_spec(self, qemu: QemuSpec) -> QemuSpec:
        """The machine as this path wants it (the vfio family changes it)."""
        return qemu

    def guest_root(self) -> str:
        """The runtime root as QEMU sees it: a QEMU run from a runtime (`--toolset runtime:NAME`)
        has that runtime's /usr, so the host's own root is exported from where the host's is
        seen."""
        root = self.ctx.scenario.runtime.root
        qemu = self.ctx.toolset.tools["qemu-system-x86_64"]
        return str(qemu.extra.get("host_root", "/")) if root == "/" else root

    def start_workload(self) -> None:
        if self.stdin_socket is not None:
            # Listening before QEMU starts: QEMU connects as it starts.
            self.stdin_stream = stdin_mod.StdinStream(str(self.stdin_socket),
                                                      stdin_mod.harness_stdin())
        self.machine = QemuProcess(self.plan.argv, {**os.environ, **self.plan.env},
                                   str(self.qmp_socket),
                               str(self.ctx.workspace.result_dir / "qemu.log"),
                                   str(self.serial_log))
        self.result.phases["qemu_start_s"] = self.machine.start()

    def capture_scanout(self) -> None:
        """The guest has written its framebuffer; the kernel's damage worker and QEMU's display
        refresh carry it out a moment later (longer on a loaded machine), so capture until the
        display shows anything at all, for a few seconds at most."""
        from PIL import Image

        machine = self.machine
        assert machine is not None
        target = self.ctx.workspace.result_dir / "scanout.png"

        def shows_something() -> bool:
            display_mod.capture(machine, self.display, self.ctx.workspace, target)
            with Image.open(target) as image:
                low, high = image.convert("L").getextrema()
            return low != high

        time.sleep(SCANOUT_SETTLE_S)
        poll(shows_something, SCANOUT_WAIT_S, interval_s=0.25)
        self.result.artifacts["scanout"] = str(target)

    def watch(self) -> None:
        """Follow the console until the guest is done, panics, stops early or times out."""
        assert self.machine is not None
        self._booted_at, self._sampled_at, self._quitting = time.monotonic(), 0.0, False
        if not poll(self.watch_step, self.ctx.scenario.timeout_s):
            self.result.exit = Exit(None, 9, timed_out=True)

    def watch_step(self) -> bool:
        """One look at the guest; True once there is nothing more to wait for. QEMU is looked at
        before its console is read: once it has exited, its serial file is whole, so a guest that
        panicked or finished and stopped between two looks is judged by all it said (a read before
        the look could miss the panic that made QEMU exit; measured once in CI)."""
        machine, phases, spec = self.machine, self.result.phases, self.ctx.scenario.spec
        assert machine is not None
        running = machine.running()
        text, now = machine.console(), time.monotonic()
        if now - self._sampled_at > 0.25:
            machine.sample_rss()
            self._sampled_at = now
        if "boot_s" not in phases and console.seen(text, console.Marker.PROBE_STARTING):
            phases["boot_s"] = now - self._booted_at
        if "probe_s" not in phases and console.PROBE_EXIT.search(text):
            phases["probe_s"] = now - self._booted_at - phases.get("boot_s", 0.0)
        failed = console.failure(text, machine.event("GUEST_PANICKED") is not None)
        if failed is not None:
            self.result.fail(failed.message, failed.kind)
            return True
        if not running:
            if console.PROBE_EXIT.search(text) is None:
                last = machine.events[-1] if machine.events else {}
                reason = (f"{last.get('event', 'QEMU exited')} "
                          f"{last.get('data', {}).get('reason', '')}").strip()
                self.result.fail(f"guest stopped before the probe finished ({reason})",
                                 FailureKind.LAUNCH_FAILED)
            return True
        if (spec.scanout and "scanout" not in self.result.artifacts
                and console.seen(text, console.Marker.SCANOUT_READY)):
            self.capture_scanout()
            machine.quit()
        if console.seen(text, console.Marker.DONE) and not self._quitting:
            self._quitting = True
            machine.quit()
        if INTERRUPTS.requested:
            self.result.fail(INTERRUPTS.reason(), FailureKind.INTERRUPTED)
            return True
        return False

    def stop_workload(self) -> None:
        t_stop = time.monotonic()
        try:
            if self.machine is not None:
                self.machine.stop()
                self.result.rss_kb["qemu"] = self.machine.peak_rss_kb
                self.result.events = list(self.machine.events)
        finally:
            if self.stdin_stream is not None:
                self.stdin_stream.stop()
        for service in self.services:
            service.sample_rss()
        self.timed("shutdown_s", t_stop)
        failure = None if self.result.problem else self.service_failure()
        if failure:
            self.result.fail(failure, FailureKind.SERVICE_DIED)

    def collect(self) -> None:
        if self.ctx.interactive:
            return
        text = self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""
        if self.result.exit is None:
            self.result.exit = console.guest_exit(text)
        out = self.ctx.workspace.probe_out
        for name, path in (("stdout", out / "probe.stdout"), ("image", out / "probe.png")):
            if path.exists():
                self.result.artifacts[name] = str(path)
        if self.ctx.inherit_stdio:
            for name, stream in (("probe.stdout", 1), ("probe.log", 2)):
                path = out / name
                if path.exists():
                    os.write(stream, path.read_bytes())
