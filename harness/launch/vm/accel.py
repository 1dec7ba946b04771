"""KVM or TCG. /dev/kvm existing proves nothing (on some hosts KVM guests hang): KVM is used only
after a tiny guest has booted under it within a short bound, once per host boot (cached)."""
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ...system.process import Child, tail
from .initramfs import CACHE_DIR, InitramfsSpec, build

KVM_BOUND_S = 8.0
KVM_OK = "gpu-harness: KVM-OK"
TINY_INIT = "#!/bin/busybox sh\n/bin/busybox echo '" + KVM_OK + "'\n/bin/busybox poweroff -f\n"


@dataclass(frozen=True)
class KvmProbe:
    booted: bool
    seconds: float
    detail: str


@dataclass(frozen=True)
class Accel:
    name: str  # kvm | tcg
    reason: str


def decide(kvm_device: bool, probe: Optional[KvmProbe]) -> Accel:
    if not kvm_device:
        return Accel("tcg", "no usable /dev/kvm")
    if probe is None:
        return Accel("tcg", "/dev/kvm present but not tried")
    if probe.booted:
        return Accel("kvm", f"a KVM guest booted in {probe.seconds:.2f} s")
    return Accel("tcg", f"/dev/kvm present but {probe.detail}")


def kvm_device() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def try_kvm(qemu: str, kernel: str, busybox: str, workdir: Path,
            bound_s: float = KVM_BOUND_S) -> KvmProbe:
    initrd, _ = build(InitramfsSpec(busybox, "/", (), TINY_INIT, ()))
    serial = workdir / "kvm-probe.log"
    argv = [qemu, "-nodefaults", "-no-user-config", "-machine", "pc", "-accel", "kvm", "-cpu",
            "host", "-m", "128",
            "-kernel", kernel, "-initrd", str(initrd), "-append", "console=ttyS0 panic=-1 quiet",
            "-no-reboot", "-display", "none", "-serial", f"file:{serial}"]
    started = time.monotonic()
    log = workdir / "kvm-probe-qemu.log"
    # A Child: its process group is known to the reaper, so a harness killed now leaves no QEMU.
    end = Child(argv, dict(os.environ), str(log)).wait(bound_s)
    seconds = time.monotonic() - started
    # Read once QEMU is gone (at the bound it is killed): a guest that said it booted just before
    # the bound booted, whatever its power-off took.
    text = serial.read_text(errors="replace") if serial.exists() else ""
    if KVM_OK in text:
        return KvmProbe(True, seconds, "booted")
    if end.timed_out:
        return KvmProbe(False, bound_s, f"a KVM guest did not boot within {bound_s:g} s (hangs)")
    last = (tail(str(log), 1).strip() or "no output")
    return KvmProbe(False, seconds, f"a KVM guest failed: {last}")


def detect(qemu: Optional[str], kernel: Optional[str], busybox: Optional[str],
           workdir: Path) -> Accel:
    """The acceleration to use on this host, probing KVM once per host boot."""
    if not kvm_device() or not (qemu and kernel and busybox):
        return decide(False, None)
    cache = CACHE_DIR.parent / f"kvm-{boot_id()}.json"
    if cache.exists():
        try:
            return decide(True, KvmProbe(**json.loads(cache.read_text())))
        except (ValueError, TypeError):
            pass
    probe = try_kvm(qemu, kernel, busybox, workdir)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(asdict(probe)))
    return decide(True, probe)
