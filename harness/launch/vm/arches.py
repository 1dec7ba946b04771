"""The guest architectures the VM paths boot: for each, its QEMU, machine, CPU, console and memory.

An amd64 guest boots the toolset's kernel, under KVM where it works; a guest of another
architecture boots the runtime's own kernel (its /boot/vmlinuz-*, its modules, its busybox),
always under TCG: no host CPU runs it."""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class GuestArch:
    name: str  # Debian's name: amd64, arm64
    qemu: str  # the toolset's tool that boots it
    machine: str
    tcg_cpu: str  # the -cpu model under TCG (KVM: the host's)
    console: str  # the kernel's console device: the machine's first serial port
    memory_mb: int  # the least that boots and renders every VM path (measured)
    kernel_args: Tuple[str, ...] = ()  # this machine's own kernel arguments, after the shared ones
    second_serial: bool = True  # whether the machine has a second serial port (the command agent's)


# acpi=off and the TSC flags save 0.35 s of a 2.9 s TCG boot of a pc (measured); without ACPI
# the guest cannot power QEMU off, so the harness quits QEMU when init says it is done.
AMD64 = GuestArch("amd64", "qemu-system-x86_64", "pc", "qemu64", "ttyS0", 256,
                  ("acpi=off", "tsc=reliable", "no_timer_check"))
# cortex-a57: what Debian's arm64 kernel and userland are built for, and cheaper under TCG than
# `max` (whose pointer authentication is emulated at every call and return).
ARM64 = GuestArch("arm64", "qemu-system-aarch64", "virt", "cortex-a57", "ttyAMA0", 512, (),
                  second_serial=False)
# QEMU's virt machine boots its bundled OpenSBI firmware, which starts the kernel in S-mode.
RISCV64 = GuestArch("riscv64", "qemu-system-riscv64", "virt", "rv64", "ttyS0", 512, (),
                    second_serial=False)

ARCHES: Dict[str, GuestArch] = {arch.name: arch for arch in (AMD64, ARM64, RISCV64)}


def get(name: str) -> Optional[GuestArch]:
    """The guest architecture of Debian's name `name`, or None where the VM paths boot none."""
    return ARCHES.get(name)
