"""VFIO on a host: can this PCI device be given whole to a guest (check), give it to vfio-pci
(bind) and give it back (restore), each step checked and a failure naming its step. Standard
library only (the harness's error tree where it is there): the same file runs on the host, in
the nested tier's L1 guest beside the probe, and in the reaper (it gives back a device bound by a
harness that died). `check` never writes; nothing is bound unless a caller names the device."""
import argparse
import errno
import json
import os
import re
import resource
import sys
from dataclasses import asdict, dataclass, field
from typing import List, Optional

try:  # in the package: the harness's error tree; run by path (a guest, the reaper): on its own
    from ..core.errors import ComponentError, InputError
except ImportError:
    ComponentError = type("ComponentError", (Exception,), {})  # type: ignore[misc,assignment]
    InputError = type("InputError", (Exception,), {})  # type: ignore[misc,assignment]

VFIO_DRIVER = "vfio-pci"
BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
PCI_BRIDGE_CLASS = 0x0604
CAP_IPC_LOCK = 14
# Drivers a device in the same group may have without making the group unusable (the kernel's
# own list of "safe" drivers for a viable group: vfio-pci itself and the stub).
VIABLE_DRIVERS = (VFIO_DRIVER, "pci-stub")
STATE_DIR = "/run/gpu-harness/vfio"
NO_OVERRIDE = "(null)"  # what sysfs reads back for a device with no driver_override


class VfioError(ComponentError):
    """A step failed; str() is 'STEP: why'."""

    def __init__(self, step: str, reason: str):
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


class BadDevice(InputError, ValueError):
    """Not a PCI address in the domain:bus:slot.function form."""


def parse_bdf(text: str) -> str:
    bdf = text.strip().lower()
    if len(bdf) == 7 and BDF.match("0000:" + bdf):  # bus:slot.function, domain 0
        bdf = "0000:" + bdf
    if not BDF.match(bdf):
        raise BadDevice(f"{text!r} is not a PCI address (domain:bus:slot.function, e.g. "
                        "0000:01:00.0)")
    return bdf


class Sysfs:
    """The kernel's files under a root ('/' on a machine; a fixture tree in tests)."""

    def __init__(self, root: str = "/"):
        self.root = root

    def path(self, relative: str) -> str:
        return os.path.join(self.root, relative.lstrip("/"))

    def exists(self, relative: str) -> bool:
        return os.path.exists(self.path(relative))

    def read(self, relative: str) -> Optional[str]:
        try:
            with open(self.path(relative)) as handle:
                return handle.read().strip()
        except OSError:
            return None

    def link_name(self, relative: str) -> Optional[str]:
        """The last component of a symlink's target (a device's driver, its iommu_group)."""
        try:
            return os.path.basename(os.readlink(self.path(relative)))
        except OSError:
            return None

    def listdir(self, relative: str) -> List[str]:
        try:
            return sorted(os.listdir(self.path(relative)))
        except OSError:
            return []

    def write(self, relative: str, value: str) -> None:
        """A sysfs write; raises OSError as the kernel answered."""
        with open(self.path(relative), "w") as handle:
            handle.write(value)

    def device(self, bdf: str, name: str = "") -> str:
        return f"sys/bus/pci/devices/{bdf}" + (f"/{name}" if name else "")

    def driver(self, bdf: str) -> Optional[str]:
        return self.link_name(self.device(bdf, "driver"))

    def group(self, bdf: str) -> Optional[str]:
        return self.link_name(self.device(bdf, "iommu_group"))

    def group_members(self, group: str) -> List[str]:
        return self.listdir(f"sys/kernel/iommu_groups/{group}/devices")

    def pci_class(self, bdf: str) -> int:
        text = self.read(self.device(bdf, "class")) or "0"
        return int(text, 16) >> 8

    def ids(self, bdf: str) -> str:
        vendor, device = (self.read(self.device(bdf, name)) or "0x????" for name in ("vendor",
                                                                                     "device"))
        return f"{vendor[2:]}:{device[2:]}"


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str
    blocking: bool = True  # a failed blocking finding makes the device unusable for a guest


@dataclass
class GroupMember:
    bdf: str
    ids: str
    driver: Optional[str]
    bridge: bool

    @property
    def harmless(self) -> bool:
        return self.bridge or self.driver is None or self.driver in VIABLE_DRIVERS


@dataclass
class CheckReport:
    bdf: str
    ids: str = ""
    driver: Optional[str] = None
    iommu_group: Optional[str] = None
    group: List[GroupMember] = field(default_factory=list)
    reset_method: Optional[str] = None
    findings: List[Finding] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return all(f.ok for f in self.findings if f.blocking)

    @property
    def reason(self) -> str:
        """Why the device cannot be passed through ('' when it can)."""
        return "; ".join(f.detail for f in self.findings if f.blocking and not f.ok)

    def to_json(self) -> dict:
        return {**asdict(self), "usable": self.usable, "reason": self.reason}


def memlock_bytes() -> Optional[int]:
    """The memlock limit VFIO charges a guest's pinned RAM to; None: no limit applies (unlimited,
    or CAP_IPC_LOCK, with which type1 does not count)."""
    if has_capability(CAP_IPC_LOCK):
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else soft


def has_capability(number: int) -> bool:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> number & 1)
    except OSError:
        pass
    return False


def module_available(sysfs: Sysfs, name: str) -> bool:
    """Loaded, built in, or installed for the running kernel."""
    if sysfs.exists(f"sys/bus/pci/drivers/{name}") or sysfs.exists(f"sys/module/{name.replace('-', '_')}"):
        return True
    release = os.uname().release
    for listing in ("modules.builtin", "modules.dep"):
        text = sysfs.read(f"lib/modules/{release}/{listing}") or ""
        if re.search(rf"/{re.escape(name)}\.ko", text.replace("_", "-")):
            return True
    return False


def check(bdf: str, sysfs: Optional[Sysfs] = None, guest_ram_mb: int = 0,
          memlock: Optional[int] = -1) -> CheckReport:
    """Everything that decides whether `bdf` can go to a guest. Reads only. memlock: the limit in
    bytes (None: unlimited); -1: this process's own."""
    sysfs = sysfs or Sysfs()
    report = CheckReport(bdf)
    found = report.findings.append
    if not sysfs.exists(sysfs.device(bdf)):
        found(Finding("device", False, f"no PCI device {bdf}"))
        return report
    report.ids, report.driver = sysfs.ids(bdf), sysfs.driver(bdf)
    report.reset_method = sysfs.read(sysfs.device(bdf, "reset_method"))
    found(Finding("device", True, f"{bdf} [{report.ids}] class {sysfs.pci_class(bdf):04x}, "
                  f"driver {report.driver or 'none'}"))
    iommu, *host = host_findings(sysfs)
    found(iommu)
    if iommu.ok:
        group_findings(sysfs, bdf, report)
    report.findings.extend(host)
    found(memlock_finding(guest_ram_mb, memlock_bytes() if memlock == -1 else memlock))
    found(Finding("reset", bool(report.reset_method),
                  f"reset methods: {report.reset_method}" if report.reset_method
                  else "no reset method: the device may not come back clean from a guest",
                  blocking=False))
    if sysfs.read(sysfs.device(bdf, "boot_vga")) == "1":
        found(Finding("boot-vga", False,
                      "the host's boot display: binding it takes the console away", blocking=False))
    return report


def host_findings(sysfs: Sysfs) -> List[Finding]:
    """What this host gives any device: the IOMMU (first), vfio-pci, /dev/vfio."""
    groups = len(sysfs.listdir("sys/kernel/iommu_groups"))
    available = module_available(sysfs, VFIO_DRIVER)
    return [Finding("iommu", True, f"{groups} IOMMU groups") if groups else
            Finding("iommu", False,
                    "no IOMMU groups: the IOMMU is off (intel_iommu=on or amd_iommu=on on the "
                    "kernel command line, VT-d/AMD-Vi in the firmware)"),
            Finding("vfio-pci", available, "vfio-pci available" if available
                    else "no vfio-pci module for this kernel (CONFIG_VFIO_PCI)"),
            dev_vfio_finding(sysfs)]


def group_findings(sysfs: Sysfs, bdf: str, report: CheckReport) -> None:
    group = sysfs.group(bdf)
    report.iommu_group = group
    if group is None:
        report.findings.append(Finding("group", False, f"{bdf} is in no IOMMU group"))
        return
    for member in sysfs.group_members(group):
        report.group.append(GroupMember(member, sysfs.ids(member), sysfs.driver(member),
                                        sysfs.pci_class(member) == PCI_BRIDGE_CLASS))
    others = [m for m in report.group if m.bdf != bdf and not m.harmless]
    if others:
        named = ", ".join(f"{m.bdf} ({m.driver})" for m in others)
        report.findings.append(Finding("group", False,
                                       f"group {group} not viable: {named} share it and are bound "
                                       "to host drivers (pass them too, or unbind them)"))
    else:
        report.findings.append(Finding("group", True,
                                       f"group {group}: {len(report.group)} devices, all free"))


def dev_vfio_finding(sysfs: Sysfs) -> Finding:
    container = sysfs.path("dev/vfio/vfio")
    if not os.path.exists(container):
        return Finding("dev-vfio", True, "/dev/vfio/vfio appears when vfio is loaded",
                       blocking=False)
    if not os.access(container, os.R_OK | os.W_OK):
        return Finding("dev-vfio", False,
                       "/dev/vfio/vfio is not readable and writable by this user")
    return Finding("dev-vfio", True, "/dev/vfio/vfio usable")


def memlock_finding(guest_ram_mb: int, limit: Optional[int]) -> Finding:
    needed = guest_ram_mb * 1024 * 1024
    if limit is None:
        return Finding("memlock", True, "memlock unlimited (or CAP_IPC_LOCK)")
    if needed > limit:
        return Finding("memlock", False,
                       f"memlock limit {limit // 1048576} MiB < guest RAM {guest_ram_mb} MiB "
                       "(all of it is pinned): raise `ulimit -l`")
    return Finding("memlock", True,
                   f"memlock limit {limit // 1048576} MiB covers {guest_ram_mb} MiB")


@dataclass
class BindRecord:
    """What `bind` changed, so `restore` can put it back."""

    bdf: str
    original_driver: Optional[str]
    original_override: Optional[str] = None  # as sysfs reads it; None or "(null)": none was set

    @property
    def override_to_restore(self) -> str:
        """What restore writes to driver_override: the one set before bind, or nothing (clears
        it)."""
        return "\n" if self.original_override in (None, "",
                                                  NO_OVERRIDE) else str(self.original_override)

    def to_line(self) -> str:
        return f"{self.bdf} {self.original_driver or '-'} {self.original_override or '-'}"

    @classmethod
    def from_line(cls, line: str) -> "BindRecord":
        bdf, driver, *override = line.split()
        chosen = override[0] if override and override[0] != "-" else None
        return cls(parse_bdf(bdf), None if driver == "-" else driver, chosen)


def why(exc: OSError, sysfs: Sysfs, bdf: str) -> str:
    if exc.errno == errno.EBUSY:
        return f"device busy (in use by {sysfs.driver(bdf) or 'a driver'}): {exc.strerror}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"not permitted ({exc.strerror}): needs root and a writable /sys"
    if exc.errno == errno.ENODEV:
        return f"no such device or driver ({exc.strerror})"
    return exc.strerror or str(exc)


def step(name: str, sysfs: Sysfs, bdf: str, relative: str, value: str) -> None:
    try:
        sysfs.write(relative, value)
    except OSError as exc:
        raise VfioError(name,
                        f"writing {value.strip() or 'nothing'!r} to /{relative}: "
                        f"{why(exc, sysfs, bdf)}") \
            from None


def bind(bdf: str, sysfs: Optional[Sysfs] = None) -> BindRecord:
    """Give `bdf` to vfio-pci: driver_override, unbind, probe, verify. A failed step undoes the
    ones before it, then raises VfioError naming it."""
    sysfs = sysfs or Sysfs()
    report = check(bdf, sysfs, memlock=None)
    if not report.usable:
        raise VfioError("preflight", report.reason)
    record = BindRecord(bdf, report.driver, sysfs.read(sysfs.device(bdf, "driver_override")))
    if report.driver == VFIO_DRIVER:
        return record
    try:
        step("driver_override", sysfs, bdf, sysfs.device(bdf, "driver_override"), VFIO_DRIVER)
        if report.driver:
            step("unbind", sysfs, bdf, sysfs.device(bdf, "driver/unbind"), bdf)
        step("bind", sysfs, bdf, "sys/bus/pci/drivers_probe", bdf)
        bound = sysfs.driver(bdf)
        if bound != VFIO_DRIVER:
            raise VfioError("verify",
                            f"driver is {bound or 'none'} after the probe, not {VFIO_DRIVER} "
                            "(is vfio-pci loaded? modprobe vfio-pci)")
    except VfioError:
        try:
            restore(record, sysfs)
        except VfioError:
            pass  # the first failure is the one to report; restore's own is in its log
        raise
    return record


def restore(record: BindRecord, sysfs: Optional[Sysfs] = None) -> None:
    """Give the device back: unbind from vfio-pci, clear driver_override, probe, verify that the
    original driver (or none) has it again."""
    sysfs = sysfs or Sysfs()
    bdf = record.bdf
    if not sysfs.exists(sysfs.device(bdf)):
        raise VfioError("restore", f"no PCI device {bdf}")
    current = sysfs.driver(bdf)
    if current is not None and current != record.original_driver:
        step("unbind", sysfs, bdf, sysfs.device(bdf, "driver/unbind"), bdf)
    step("clear-override", sysfs, bdf, sysfs.device(bdf, "driver_override"),
         record.override_to_restore)
    if record.original_driver and sysfs.driver(bdf) != record.original_driver:
        step("reprobe", sysfs, bdf, "sys/bus/pci/drivers_probe", bdf)
    back = sysfs.driver(bdf)
    if back != record.original_driver:
        raise VfioError("verify",
                        f"driver is {back or 'none'}, expected {record.original_driver or 'none'} "
                        "back")


def candidates(sysfs: Optional[Sysfs] = None) -> List[str]:
    """Display controllers (PCI class 03): what one would pass to a guest to render."""
    sysfs = sysfs or Sysfs()
    return [bdf for bdf in sysfs.listdir("sys/bus/pci/devices")
            if sysfs.pci_class(bdf) >> 8 == 0x03]


def state_file(bdf: str, state_dir: str = STATE_DIR) -> str:
    return os.path.join(state_dir, f"{bdf}.json")


def save(record: BindRecord, state_dir: str = STATE_DIR) -> None:
    os.makedirs(state_dir, exist_ok=True)
    with open(state_file(record.bdf, state_dir), "w") as handle:
        json.dump(asdict(record), handle)


def load(bdf: str, state_dir: str = STATE_DIR) -> Optional[BindRecord]:
    try:
        with open(state_file(bdf, state_dir)) as handle:
            return BindRecord(**json.load(handle))
    except (OSError, ValueError, TypeError):
        return None


def forget(bdf: str, state_dir: str = STATE_DIR) -> None:
    try:
        os.unlink(state_file(bdf, state_dir))
    except OSError:
        pass


def finding_line(finding: Finding) -> str:
    return (f"  {'ok' if finding.ok else ('FAIL' if finding.blocking else 'warn'):4} "
            f"{finding.name:15} {finding.detail}")


def print_check(report: CheckReport, out=None) -> None:
    out = out or sys.stdout
    print(f"{report.bdf} [{report.ids or '?'}]: " + ("usable" if report.usable
                                                     else f"NOT usable: {report.reason}"), file=out)
    print(*map(finding_line, report.findings), sep="\n", file=out)
    for member in report.group:
        print(f"       group member {member.bdf} [{member.ids}] driver {member.driver or 'none'}"
              + (" (bridge)" if member.bridge else ""), file=out)


def main(argv: Optional[List[str]] = None, root: str = "/") -> int:
    parser = argparse.ArgumentParser(prog="gpu-harness vfio", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    checking = sub.add_parser("check",
                              help="can the device go to a guest? (changes nothing); no BDF: every "
                                   "GPU")
    checking.add_argument("bdf", nargs="?")
    checking.add_argument("--guest-ram-mb", type=int, default=1024)
    checking.add_argument("--json", action="store_true")
    for name, text in (("bind", "give the device to vfio-pci (records what to restore)"),
                       ("restore", "give the device back to its original driver")):
        one = sub.add_parser(name, help=text)
        one.add_argument("bdf")
        one.add_argument("--state-dir", default=STATE_DIR)
        if name == "restore":
            one.add_argument("--driver",
                             help="the driver to give it back to, if bind's record is gone ('-': "
                                  "none)")
    args = parser.parse_args(argv)
    sysfs = Sysfs(root)
    try:
        devices = [parse_bdf(args.bdf)] if args.bdf else candidates(sysfs)
    except BadDevice as exc:
        print(f"gpu-harness vfio: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        reports = [check(bdf, sysfs, args.guest_ram_mb) for bdf in devices]
        if args.json:
            print(json.dumps([r.to_json() for r in reports], indent=2))
        elif not reports:
            print("no display controllers (PCI class 03) on this machine; for any other device "
                  "this host has:",
                  *map(finding_line, host_findings(sysfs)), sep="\n")
        for report in reports if not args.json else ():
            print_check(report)
        return 0 if reports and all(r.usable for r in reports) else 1
    (bdf,) = devices
    try:
        if args.command == "bind":
            made = bind(bdf, sysfs)
            save(made, args.state_dir)
            print(f"{bdf}: bound to {VFIO_DRIVER} (was {made.original_driver or 'none'}); "
                  f"restore with: gpu-harness vfio restore {bdf}")
            return 0
        record = load(bdf, args.state_dir) or (
            BindRecord(bdf, None if args.driver == "-" else args.driver) if args.driver else None)
        if record is None:
            print(f"gpu-harness vfio: no record of binding {bdf} in {args.state_dir}: say which "
                  "driver it "
                  "goes back to with --driver NAME ('-' for none)", file=sys.stderr)
            return 2
        restore(record, sysfs)
        forget(bdf, args.state_dir)
        print(f"{bdf}: back to {record.original_driver or 'no driver'}")
        return 0
    except VfioError as exc:
        print(f"gpu-harness vfio {args.command} {bdf}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
