"""VFIO on a host: can this PCI device be given whole to a guest (check), give it to vfio-pci
(bind) and give it back (restore), each step checked and a failure naming its step. Standard
library only (the harness's error tree where it is there): the same file runs on the host, in
the nested tier's L1 guest beside the probe, and in the reaper (it gives back a device bound by a
harness that died). `check` never writes; nothing is bound unless a caller names the device.

The check (reading only) is vfiocheck.py beside this file, wherever it travels."""
import argparse
import errno
import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from typing import List, Optional

try:  # in the package: the harness's error tree; run by path (a guest, the reaper): on its own
    from ..core.errors import ComponentError, InputError
except ImportError:
    ComponentError = type("ComponentError", (Exception,), {})  # type: ignore[misc,assignment]
    InputError = type("InputError", (Exception,), {})  # type: ignore[misc,assignment]
try:  # the check beside it: in the package, or run by path
    from .vfiocheck import (VFIO_DRIVER, CheckReport, Finding, Sysfs, candidates, check,
                            host_findings)
except ImportError:
    from vfiocheck import (VFIO_DRIVER, CheckReport, Finding,  # type: ignore[no-redef]
                           Sysfs, candidates, check, host_findings)

BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
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
        return ("\n" if self.original_override in (None, "", NO_OVERRIDE)
                else str(self.original_override))

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
