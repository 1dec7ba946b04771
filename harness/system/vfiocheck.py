"""VFIO's check, reading only: can this PCI device be given whole to a guest (its IOMMU group,
this host's IOMMU, vfio-pci and /dev/vfio, the memlock limit, a reset method), from the kernel's
files under a root. Standard library only: it travels with vfio.py (harness/system/vfio.py binds
and restores), beside a probe in a guest and beside the reaper."""
import os
import re
import resource
from dataclasses import asdict, dataclass, field
from typing import List, Optional

VFIO_DRIVER = "vfio-pci"
PCI_BRIDGE_CLASS = 0x0604
CAP_IPC_LOCK = 14
# Drivers a device in the same group may have without making the group unusable (the kernel's
# own list of "safe" drivers for a viable group: vfio-pci itself and the stub).
VIABLE_DRIVERS = (VFIO_DRIVER, "pci-stub")


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
        vendor, device = (self.read(self.device(bdf, name)) or "0x????"
                          for name in ("vendor", "device"))
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
    if (sysfs.exists(f"sys/bus/pci/drivers/{name}")
            or sysfs.exists(f"sys/module/{name.replace('-', '_')}")):
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


def candidates(sysfs: Optional[Sysfs] = None) -> List[str]:
    """Display controllers (PCI class 03): what one would pass to a guest to render."""
    sysfs = sysfs or Sysfs()
    return [bdf for bdf in sysfs.listdir("sys/bus/pci/devices")
            if sysfs.pci_class(bdf) >> 8 == 0x03]
