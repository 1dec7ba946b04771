"""The guest's console protocol, defined once: the markers init.sh.j2 prints on the serial
console (it gets them from here) and what the host reads from them."""
import enum
import re
from typing import Iterable, Optional

from ...scenario.outcomes import Failure, FailureKind
from ...system.process import Exit
from ...core.templating import render
from . import stdin as stdin_mod

PREFIX = "gpu-harness:"


class Marker(str, enum.Enum):
    INIT_STARTED = "init started"
    PROBE_STARTING = "probe starting"
    PROBE_EXITED = "probe exited"  # followed by the exit status
    SCANOUT_READY = "SCANOUT-READY"  # the probe's image is on /dev/fb0: capture it now
    DONE = "powering off"  # init has synced the result share; nothing more to wait for
    INIT_FAILED = "INIT-FAILED"  # followed by ": what failed"
    AGENT_READY = "AGENT-READY"  # the command agent reads the second serial port
    # The nested VFIO tier: L2 shows its image on the device L1 passed through; capture it from
    # the outer QEMU and say so in the result share (harness/probe/vfio_nested.py waits for it).
    PASSED_SCANOUT_READY = "PASSED-DEVICE-SCANOUT-READY"

    @property
    def line(self) -> str:
        return f"{PREFIX} {self.value}"


# A reason is read from a whole line only: the console is polled while the guest still writes.
PANIC = re.compile(r"Kernel panic - not syncing: ?([^\r\n]*)\r?\n")
PROBE_EXIT = re.compile(re.escape(Marker.PROBE_EXITED.line) + r" (\d+)")
INIT_FAILURE = re.compile(re.escape(Marker.INIT_FAILED.line) + r": ([^\r\n]*)\r?\n")


def render_init(modules: Iterable[str], scanout: bool, agent: bool, machine: bool = False) -> str:
    """The guest's init; `machine`: it makes the host's root the guest's own and runs stage 2."""
    return render("init.sh.j2", modules=list(modules), scanout=scanout, agent=agent,
                  machine=machine, prefix=PREFIX,
                  m={marker.name: marker.value for marker in Marker}, stage2=render_stage2()
                  if machine else "",
                  stdin={"arg": stdin_mod.KERNEL_ARG.split("=")[0],
                         "hello": stdin_mod.HELLO.decode()})


def render_stage2() -> str:
    """A machine's second stage: PID 1 on its own root, it runs the workload and powers off."""
    return render("machine-stage2.sh.j2", prefix=PREFIX, m={marker.name: marker.value
                                                            for marker in Marker})


def seen(console: str, marker: Marker) -> bool:
    return marker.line in console


def guest_exit(console: str) -> Optional[Exit]:
    match = PROBE_EXIT.search(console)
    if not match:
        return None
    code = int(match.group(1))
    return Exit(None, code - 128) if code > 128 else Exit(code, None)


def failure(console: str, panicked: bool = False) -> Optional[Failure]:
    """Why the guest failed, from its console, or None: an init failure first (when init exits,
    the kernel panics with "Attempted to kill init" as a consequence, and the cause is what a
    person needs)."""
    failed = INIT_FAILURE.search(console)
    if failed:
        return Failure(FailureKind.LAUNCH_FAILED, f"guest init failed: {failed.group(1).strip()}")
    panic = PANIC.search(console)
    if panic or panicked:
        return Failure(FailureKind.GUEST_PANIC,
                       "guest kernel panic: "
                       f"{panic.group(1).strip() if panic else 'GUEST_PANICKED event'}")
    return None
