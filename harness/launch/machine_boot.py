"""A machine's guest booted: QEMU with the machine's virtio-gpu, the host's root made the guest's
own (overlaid, switch_root: user namespaces work in it), the run's output folder and the cache
shared, and the harness itself as the workload, which runs the machine's scenarios inside."""
import re
import stat
import time
import sys
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

from ..core import places
from ..runtimes import cache
from ..scenario import imagecompare
from .families.vm_launch import VmLaunch
from .lifecycle import LaunchContext
from ..scenario.machine_specs import MACHINE_ENV, MachineSpec
from ..core.templating import render
from . import presenting
from .families.base import SCANOUT
from .vm import console, display, initramfs, modules as modules_mod
from .vm.qemu import QemuSpec

SHARE_INSIDE = "/run/gpu-harness/out"  # the run's output folder, inside the guest
# XDG_CACHE_HOME inside: the host's cache is its gpu-harness
CACHE_INSIDE = "/run/gpu-harness/cache"
MACHINE_MODULES = ("overlay",)  # the writable root
# probe/kms.py's READY and CAPTURED, and a presenting scenario's on a guest's scanout
CAPTURE_ASKED, CAPTURE_DONE = presenting.SCANOUT_ASKED, presenting.SCANOUT_DONE
# a display still blank is captured again until then
CAPTURE_PATIENCE_S, CAPTURE_RETRY_S = 10.0, 0.5


FRESH_IN_GUEST = ("/tmp", "/run", "/var/tmp")  # the guest mounts a tmpfs of its own on each
KERNEL_ARG_SAFE = re.compile(r"^[A-Za-z0-9_./-]+$")


def hidden_harness_dirs(extra: Sequence[str] = ()) -> List[str]:
    """The harness's own folders (its checkout, its Python's prefixes) that lie under a folder the
    guest mounts afresh, and `extra` (what the scenarios name there: kept_paths): the guest binds
    them from the host's root (a clone under /tmp runs too)."""
    found = sorted({str(path) for path in (places.CHECKOUT, Path(sys.prefix).resolve(),
                                           Path(sys.base_prefix).resolve())
                    if any(path.is_relative_to(fresh) for fresh in FRESH_IN_GUEST)} | set(extra))
    outermost = [d for d in found if not any(d != other and Path(d).is_relative_to(other)
                                             for other in found)]
    return [d for d in outermost if KERNEL_ARG_SAFE.match(d)]


def strings_in(data: object) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from strings_in(value)
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from strings_in(value)


def kept_paths(data: object) -> List[str]:
    """The host's files and folders that `data` (a scenario's dict, a run's settings) names under a
    folder the guest mounts afresh (a test list, a trace, a root filesystem under /tmp), as the
    guest must keep them: a folder whole, a file with its folder (a trace's goldens lie beside
    it), or alone where that folder is /tmp itself."""
    fresh = [Path(folder) for folder in FRESH_IN_GUEST]
    found = set()
    for text in strings_in(data):
        path = Path(text)
        if not path.is_absolute() or path in fresh or not any(path.is_relative_to(folder)
                                                              for folder in fresh):
            continue
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode) or (stat.S_ISREG(mode) and path.parent in fresh):
            found.add(str(path))
        elif stat.S_ISREG(mode):
            found.add(str(path.parent))
    return sorted(found)


def unkeepable(paths: Sequence[str]) -> List[str]:
    """The paths a kernel command line cannot carry to the guest's init (a space, a colon)."""
    return [path for path in paths if not KERNEL_ARG_SAFE.match(path)]


class MachineLaunch(VmLaunch):
    """The guest of a machine. The workload is the context's command (the harness inside), run by
    the guest's second stage from the run's output folder, which is shared whole."""

    def __init__(self, ctx: LaunchContext, machine: MachineSpec, share: Path,
                 kept: Sequence[str] = ()):
        super().__init__(ctx)
        self.spec, self.share, self.kept = machine, share, tuple(kept)

    def share_dir(self) -> Path:
        return self.share

    def workload_dir(self) -> str:
        """Where the workload script is, relative to the share (the kernel command line names
        it)."""
        return str(self.ctx.workspace.probe_out.relative_to(self.share))

    def guest_image(self) -> Tuple[Path, bool]:
        ctx = self.ctx
        modules_dir = str(ctx.toolset.tools["kernel"].extra["modules_dir"])
        modules = modules_mod.resolve_for_kernel(modules_dir, self.guest_modules())
        init = console.render_init(modules, scanout=False, agent=False, machine=True)
        built = initramfs.build(initramfs.InitramfsSpec(ctx.toolset.path("busybox"), modules_dir,
                                                        tuple(modules), init,
                                                        ()))
        out = ctx.workspace.probe_out
        argv = list(ctx.workload.command or [])
        (out / "workload.sh").write_text(render("guest-workload.sh.j2", env=self.environment(),
                                                argv=argv, stdin=None))
        return built

    def environment(self) -> List[Tuple[str, str]]:
        """What the harness inside runs with: the machine's name (its scenarios run locally there),
        the shared cache, a writable temp folder."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root",
               "LANG": "C.UTF-8", "TMPDIR": "/tmp", "XDG_CACHE_HOME": CACHE_INSIDE,
               MACHINE_ENV: self.spec.name,
               "PYTHONDONTWRITEBYTECODE": "1", **dict(self.ctx.scenario.env)}
        return sorted(env.items())

    def watch_step(self) -> bool:
        """A scenario inside whose probe shows its image on the guest's display (the kms probe)
        asks for it to be captured from here: its kms-ready in its output folder on the share."""
        if self.machine is not None and self.machine.running():  # an exited QEMU has no display
            for ready in self.share.glob(f"scenarios/*/probe/{CAPTURE_ASKED}"):
                done = ready.with_name(CAPTURE_DONE)
                if not done.exists():
                    self.capture_shown(ready.parent.parent / SCANOUT)
                    done.write_text("captured\n")
        return super().watch_step()

    def capture_shown(self, target: Path) -> None:
        """The guest's display, captured again while it shows nothing yet: a compositor's page
        flip under TCG can come after the probe said it showed the image (measured: a black
        capture 3 s after weston-image started)."""
        assert self.machine is not None
        deadline = time.monotonic() + CAPTURE_PATIENCE_S
        display.capture(self.machine, self.display, self.ctx.workspace, target)
        while imagecompare.shows_nothing(target) and time.monotonic() < deadline:
            time.sleep(CAPTURE_RETRY_S)
            display.capture(self.machine, self.display, self.ctx.workspace, target)

    def guest_modules(self) -> Tuple[str, ...]:
        return modules_mod.BASE_MODULES + modules_mod.GPU_MODULES + MACHINE_MODULES

    def guest_scanout(self) -> bool:
        return False

    def kernel_args(self) -> Tuple[str, ...]:
        kept = hidden_harness_dirs(self.kept)
        return (*super().kernel_args(), f"gpu_harness.workload={self.workload_dir()}",
                *([f"gpu_harness.keep={':'.join(kept)}"] if kept else []))

    def machine_spec(self, qemu: QemuSpec) -> QemuSpec:
        import dataclasses

        # The harness inside imports numpy, whose builds need x86-64-v2 (SSE4.2): qemu64 lacks it,
        # TCG's max model has it (and AVX2).
        cpu = None if qemu.accel == "kvm" else "max"
        return dataclasses.replace(qemu, memory_mb=self.spec.memory_mb, shares=(("cache",
                                                                                 str(cache.ROOT)),),
                                   cpu=cpu)

    def guest_root(self) -> str:
        qemu = self.ctx.toolset.tools["qemu-system-x86_64"]
        return str(qemu.extra.get("host_root", "/"))

    def own_dirs(self) -> List[str]:
        return [str(self.share), str(cache.ROOT)]
