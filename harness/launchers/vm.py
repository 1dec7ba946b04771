"""VM-family paths (vm-headless, vm-virtio-2d, vm-virgl): the workload runs in a QEMU guest that
boots the toolset's kernel with a generated initramfs, mounts the runtime root read-only over
9p, runs the probe, shows its image on the display and writes the result to a share."""
import os
import re
import threading
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from PIL import Image

from .. import services as service_mod
from ..matrix import Scenario
from ..process import Exit
from ..services import ServiceSpec
from ..templating import render, render_argv
from ..toolset import Toolset
from ..vm import accel as accel_mod, initramfs, kernel as kernel_mod, modules as modules_mod, xcapture
from ..vm.machine import Machine, MachineError
from .base import PROBE_FILES, LaunchPlan, ProbeResult, Workload, Workspace, parse_probe_output, probe_command, \
    write_config
from .sandbox import probe_python

GUEST_DIR = "/run/gpu-harness"
MEMORY_MB = 256  # the least that boots and renders every VM path here (measured); two fit side by side
XVFB_SCREEN = "1920x1200x24"
SCANOUT_SETTLE_S = 1.0
# acpi=off and the TSC flags save 0.35 s of a 2.9 s TCG boot (measured); without ACPI the guest
# cannot power QEMU off, so the harness quits QEMU when init says it is done (see drive()).
KERNEL_ARGS = "console=ttyS0 panic=-1 loglevel=4 mitigations=off vt.global_cursor_default=0 " \
              "acpi=off tsc=reliable no_timer_check"
DONE = "gpu-harness: powering off"  # init has synced the result share; nothing more to wait for
PANIC = re.compile(r"Kernel panic - not syncing: ?(.*)")
PROBE_EXIT = re.compile(r"gpu-harness: probe exited (\d+)")

_accel_lock = threading.Lock()
_accel: Optional[accel_mod.Accel] = None
_display_lock = threading.Lock()
DISPLAYS = range(90, 400)
_next_display = DISPLAYS.start


def acceleration(toolset: Toolset, workdir: Path) -> accel_mod.Accel:
    global _accel
    with _accel_lock:
        if _accel is None:
            kernel = kernel_mod.unpacked(toolset.path("kernel"))
            _accel = accel_mod.detect(toolset.path("qemu-system-x86_64"), kernel, toolset.path("busybox"), workdir)
        return _accel


def guest_env(scenario: Scenario) -> List[Tuple[str, str]]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": "/tmp"}
    env.update(dict(scenario.spec.env))
    env.update(dict(scenario.env))
    return sorted(env.items())


def guest_argv(scenario: Scenario, workspace: Workspace, workload: Workload, toolset: Toolset) -> List[str]:
    if not workload.is_probe:
        return list(workload.command)
    args = list(workload.probe_args)
    if "--frames" not in args:
        args += ["--frames", "10"]  # llvmpipe under TCG renders ~20 fps: keep the run short
    if scenario.spec.scanout:
        args += ["--scanout", "/dev/fb0"]
    # The runtime root is the guest's root, so a Nix toolset's python3 (a store path) is there too.
    python = [probe_python(toolset)[0], "-S"]  # -S: no site-packages scan; the probe needs only the stdlib
    return python + probe_command("", f"{GUEST_DIR}/{PROBE_FILES[workload.probe].name}", f"{GUEST_DIR}/out",
                                  workspace.host_paths(), args)[1:]


def build_initrd(scenario: Scenario, toolset: Toolset, workload: Workload, agent: bool = False) -> Tuple[Path, bool]:
    modules_dir = toolset.tools["kernel"].extra["modules_dir"]
    wanted = modules_mod.BASE_MODULES + (modules_mod.GPU_MODULES if scenario.spec.guest_gpu else ())
    modules = modules_mod.resolve_for_kernel(modules_dir, wanted)
    init = render("init.sh.j2", modules=modules, scanout=scenario.spec.scanout and not agent, agent=agent)
    files = ((PROBE_FILES[workload.probe].name, str(PROBE_FILES[workload.probe])),) if workload.is_probe else ()
    return initramfs.build(initramfs.InitramfsSpec(toolset.path("busybox"), modules_dir, tuple(modules), init, files))


def write_guest_workload(scenario: Scenario, workspace: Workspace, workload: Workload, toolset: Toolset) -> None:
    """The per-run part of the guest: its environment and the command init runs, on the share."""
    env = guest_env(scenario)
    (workspace.probe_out / "environment.sh").write_text(render("guest-workload.sh.j2", env=env, argv=[]))
    (workspace.probe_out / "workload.sh").write_text(
        render("guest-workload.sh.j2", env=env, argv=guest_argv(scenario, workspace, workload, toolset)))


def free_display() -> int:
    """An X display number no server uses, never handed out twice by this process: parallel
    scenarios each get their own."""
    global _next_display
    with _display_lock:
        for _ in range(DISPLAYS.stop - DISPLAYS.start):
            number = _next_display
            _next_display = DISPLAYS.start + (number + 1 - DISPLAYS.start) % len(DISPLAYS)
            if not os.path.exists(f"/tmp/.X{number}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{number}"):
                return number
    raise MachineError(f"no free X display number between :{DISPLAYS.start} and :{DISPLAYS.stop - 1}")


def xvfb_service(toolset: Toolset, workspace: Workspace) -> Tuple[ServiceSpec, str]:
    fbdir = workspace.tmp_dir / "xvfb"
    fbdir.mkdir(exist_ok=True)
    number = free_display()
    argv = [toolset.path("Xvfb"), f":{number}", "-screen", "0", XVFB_SCREEN, "-nolisten", "tcp", "-noreset", "-wr",
            "-fbdir", str(fbdir)]
    socket_path = f"/tmp/.X11-unix/X{number}"
    spec = ServiceSpec("Xvfb", argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                       str(workspace.result_dir / "xvfb.log"), ready_socket=socket_path,
                       leaves=(f"/tmp/.X{number}-lock", socket_path))
    return spec, f":{number}"


def display_for(scenario: Scenario, toolset: Toolset, workspace: Workspace) -> Tuple[str, List[ServiceSpec], Dict]:
    """QEMU's -display and the services it needs. virgl needs host GL: egl-headless on a render
    node where there is one, else SDL's GL on an Xvfb display."""
    if scenario.spec.guest_gpu != "virtio-gpu-gl-pci":
        return "none", [], {}
    if toolset.render_nodes:
        return f"egl-headless,rendernode={toolset.render_nodes[0]}", [], {}
    spec, display = xvfb_service(toolset, workspace)
    return "sdl,gl=on", [spec], {"DISPLAY": display, "SDL_VIDEODRIVER": "x11"}


def capture_display(machine: Machine, display: str, workspace: Workspace, target: Path) -> str:
    """The guest's display as seen from outside, as a PNG: QMP screendump where QEMU's display
    reads back, the Xvfb framebuffer (the SDL window's part of it) where it does not."""
    if display.startswith("sdl"):
        screen = xcapture.read_xwd(workspace.tmp_dir / "xvfb" / "Xvfb_screen0")
        Image.fromarray(xcapture.window_region(screen), "RGB").save(target)
    else:
        raw = workspace.tmp_dir / "screendump.ppm"
        machine.screendump(str(raw))
        with Image.open(raw) as image:
            image.convert("RGB").save(target)
    return str(target)


def capture_scanout(machine: Machine, display: str, workspace: Workspace) -> str:
    # The guest has written its framebuffer; give the kernel's damage worker and QEMU's display
    # refresh a moment to carry it out.
    time.sleep(SCANOUT_SETTLE_S)
    return capture_display(machine, display, workspace, workspace.result_dir / "scanout.png")


def guest_exit(console: str) -> Optional[Exit]:
    match = PROBE_EXIT.search(console)
    if not match:
        return None
    code = int(match.group(1))
    return Exit(None, code - 128) if code > 128 else Exit(code, None)


def console_problem(console: str, machine: Machine) -> str:
    # An init failure comes first: when init exits, the kernel panics ("Attempted to kill init")
    # as a consequence, and the cause is what a person needs.
    failed = re.search(r"gpu-harness: INIT-FAILED: (.*)", console)
    if failed:
        return f"guest init failed: {failed.group(1).strip()}"
    panic = PANIC.search(console)
    if panic or machine.event("GUEST_PANICKED"):
        return f"guest kernel panic: {panic.group(1).strip() if panic else 'GUEST_PANICKED event'}"
    return ""


def drive(machine: Machine, scenario: Scenario, display: str, workspace: Workspace,
          phases: Dict[str, float], booted_at: float) -> Tuple[str, bool, Optional[str]]:
    """Watch the guest until it is done. Returns (problem, timed_out, scanout image)."""
    deadline = booted_at + scenario.timeout_s
    scanout, sampled_at, quitting = None, 0.0, False
    while True:
        console, now = machine.console(), time.monotonic()
        if now - sampled_at > 0.25:
            phases_rss = machine.child.peak_rss_kb()
            machine.peak_rss_kb = max(machine.peak_rss_kb, phases_rss)
            sampled_at = now
        if "boot_s" not in phases and "probe starting" in console:
            phases["boot_s"] = now - booted_at
        if "probe_s" not in phases and PROBE_EXIT.search(console):
            phases["probe_s"] = now - booted_at - phases.get("boot_s", 0.0)
        problem = console_problem(console, machine)
        if problem:
            return problem, False, scanout
        if scenario.spec.scanout and scanout is None and "SCANOUT-READY" in console:
            scanout = capture_scanout(machine, display, workspace)
            machine.quit()
        if DONE in console and not quitting:
            quitting = True
            machine.quit()
        if not machine.running():
            if PROBE_EXIT.search(console) is None:
                last = machine.events[-1] if machine.events else {}
                return f"guest stopped before the probe finished ({last.get('event', 'QEMU exited')} " \
                       f"{last.get('data', {}).get('reason', '')})".strip(), False, scanout
            return "", False, scanout
        if now > deadline:
            return "", True, scanout
        time.sleep(0.02)


@dataclass
class VmPlan:
    """Everything needed to start one guest: QEMU's argv and environment, its services, and where
    its console, QMP and (for interactive guests) command agent sockets are."""

    argv: List[str]
    env: Dict[str, str]
    services: List[ServiceSpec]
    display: str
    serial_log: Path
    qmp_socket: Path
    agent_socket: Optional[Path]
    facts: Dict[str, object]
    phases: Dict[str, float]


def prepare(scenario: Scenario, toolset: Toolset, workspace: Workspace, workload: Workload,
            agent: bool = False) -> VmPlan:
    """Build the guest image and render QEMU's argv. With agent=True the guest runs a command
    agent on its second serial port instead of the workload (see harness.guest)."""
    t0 = time.monotonic()
    out = workspace.result_dir
    accel = acceleration(toolset, workspace.tmp_dir)
    kernel = kernel_mod.unpacked(toolset.path("kernel"))
    initrd, built = build_initrd(scenario, toolset, workload, agent)
    write_guest_workload(scenario, workspace, workload, toolset)
    phases = {"image_build_s": time.monotonic() - t0}
    display, service_specs, display_env = display_for(scenario, toolset, workspace)
    serial_log, qmp_socket = out / "console.log", workspace.tmp_dir / "qmp.sock"
    agent_socket = workspace.tmp_dir / "agent.sock" if agent else None
    cmdline = " ".join([KERNEL_ARGS, *scenario.kernel_args])
    argv = render_argv("qemu.args.j2", qemu=toolset.path("qemu-system-x86_64"), accel=accel.name,
                       memory_mb=MEMORY_MB, kernel=kernel, initrd=initrd, cmdline=cmdline, serial_log=serial_log,
                       qmp_socket=qmp_socket, agent_socket=agent_socket, runtime_root=scenario.runtime.root,
                       out_dir=workspace.probe_out, gpu=scenario.spec.guest_gpu, display=display)
    write_config(workspace, scenario.id, LaunchPlan(service_specs, argv, display_env, "inherit",
                                                    dirs=[str(workspace.tmp_dir)]))
    phases["setup_s"] = time.monotonic() - t0 - phases["image_build_s"]
    facts = {"accel": accel.name, "accel_reason": accel.reason, "initramfs": str(initrd),
             "initramfs_built": built, "kernel": kernel, "memory_mb": MEMORY_MB, "display": display}
    return VmPlan(argv, {**os.environ, **display_env}, service_specs, display, serial_log, qmp_socket, agent_socket,
                  facts, phases)


def launch(scenario: Scenario, toolset: Toolset, workspace: Workspace, workload: Workload,
           inherit_stdio: bool = False, on_services_ready=lambda services: None) -> ProbeResult:
    out = workspace.result_dir
    plan = prepare(scenario, toolset, workspace, workload)
    phases, serial_log = plan.phases, plan.serial_log
    result = ProbeResult(None, None, str(workspace.probe_out / "probe.log"), None, phases, {},
                         {"serial console": str(serial_log), "qemu": str(out / "qemu.log")})
    result.facts = plan.facts
    t1 = time.monotonic()
    try:
        running = service_mod.start_all(plan.services)
    except service_mod.ServiceError as exc:
        result.problem = str(exc)
        return result
    phases["services_ready_s"] = time.monotonic() - t1
    machine = Machine(plan.argv, plan.env, str(plan.qmp_socket), str(out / "qemu.log"), str(serial_log))
    timed_out = False
    try:
        on_services_ready(running)
        phases["qemu_start_s"] = machine.start()
        problem, timed_out, scanout = drive(machine, scenario, plan.display, workspace, phases, time.monotonic())
        result.problem = problem or service_mod.first_failure(running) or ""
        result.scanout_path = scanout
        t_stop = time.monotonic()
        for service in running:
            service.sample_rss()
    except MachineError as exc:
        result.problem = str(exc)
        t_stop = time.monotonic()
    finally:
        machine.stop()
        service_mod.stop_all(running)
    phases["shutdown_s"] = time.monotonic() - t_stop
    result.events = list(machine.events)
    result.service_rss_kb = {"qemu": machine.peak_rss_kb,
                             **{s.spec.name: s.peak_rss_kb for s in running}}
    result.service_logs.update({s.spec.name: s.spec.log_path for s in running})
    console = Path(serial_log).read_text(errors="replace") if serial_log.exists() else ""
    result.exit = guest_exit(console)
    if timed_out:
        result.exit = Exit(None, 9, timed_out=True)
    result.data = parse_probe_output(workspace.probe_out / "probe.stdout")
    image = workspace.probe_out / "probe.png"
    result.image_path = str(image) if image.exists() else None
    if inherit_stdio:
        for name, stream in (("probe.stdout", 1), ("probe.log", 2)):
            path = workspace.probe_out / name
            if path.exists():
                os.write(stream, path.read_bytes())
    return result
