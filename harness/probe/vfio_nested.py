"""gpu-harness VFIO probe: a device moved through the IOMMU and passed to an L2 QEMU, in the L1
guest.

The nested tier's L1 guest is a q35 machine with an emulated IOMMU and two devices to pass
through: QEMU's `edu` and a virtio-gpu with iommu_platform=on. With the harness's own vfio
module (the file beside this one, the one the host uses), it binds `edu` to vfio-pci and moves a
test image through it by DMA, into the device and back, through the IOMMU (VFIO type1 container,
the mapping made here: vfiodma.py); then binds the virtio-gpu and starts an L2 QEMU paused with
`-device vfio-pci,host=...`, whose QMP `query-pci` must list the device (l2guest.py); then
restores both devices and checks their original drivers are back. The image that came back is
probe.png, compared with a golden like any rendered image. One JSON report on stdout.

Standard library + ctypes only; the L2's QMP is spoken by qemu.qmp, whose files the guest gets
beside this probe (its ProbeSpec's packages).
"""
import contextlib
import io
import sys
import time

import probelib
import vfio
from l2guest import l2_boots, l2_sees
from vfiodma import dma_round_trip

VERSION = 1
EDU, VIRTIO_GPU = "1234:11e8", "1af4:1050"
ORIGINAL_DRIVERS = {EDU: None, VIRTIO_GPU: "virtio-pci"}


def pattern(size):
    """The test image: gradients and a diagonal lattice, every byte position distinct enough that
    a lost, doubled or shifted chunk shows."""
    return [bytes(v for x in range(size) for v in (x * 255 // (size - 1), y * 255 // (size - 1),
                                                    ((x ^ y) & 0x1F) * 8)) for y in range(size)]


def reaper_gives_back(bdf):
    """`gpu-harness vfio bind` (the CLI, its record on disk), then the reaper's own code given
    that bind as a harness that died would have left it (its pipe closed): the device must be
    back on its original driver. Both are the host's files, beside this probe."""
    import reaper

    state = "/tmp/gpu-harness-vfio-state"
    said = io.StringIO()
    # stdout is the report's
    with contextlib.redirect_stdout(sys.stderr), contextlib.redirect_stderr(said):
        if vfio.main(["bind", bdf, "--state-dir", state]) != 0:
            raise probelib.ProbeError(said.getvalue().strip()
                                      or "gpu-harness vfio bind %s failed" % bdf)
    record = vfio.load(bdf, state)
    if record is None or vfio.Sysfs().driver(bdf) != vfio.VFIO_DRIVER:
        raise probelib.ProbeError("gpu-harness vfio bind %s left no record or no vfio-pci "
                                  "binding" % bdf)
    reaper.serve(io.StringIO("vfio %s\n" % record.to_line()))
    back = vfio.Sysfs().driver(bdf)
    if back != record.original_driver:
        raise probelib.ProbeError("the reaper left %s on %s, not %s" % (bdf, back,
                                                                        record.original_driver))
    return record


def find(ids):
    sysfs = vfio.Sysfs()
    found = [bdf for bdf in sysfs.listdir("sys/bus/pci/devices") if sysfs.ids(bdf) == ids]
    if not found:
        raise probelib.ProbeError("no %s device in this guest" % ids)
    return found[0]


def render(args, step, seen):
    timings, bound = {}, {}
    steps: list = []
    seen["steps"] = steps

    def timed(name, action):
        step(name)
        started = time.monotonic()
        try:
            value = action()
        except vfio.VfioError as exc:
            steps.append({"name": name, "ok": False, "detail": str(exc)})
            raise probelib.ProbeError("vfio %s" % exc) from None
        except probelib.ProbeError as exc:
            steps.append({"name": name, "ok": False, "detail": str(exc)})
            raise
        timings[name + "_ms"] = round((time.monotonic() - started) * 1000, 3)
        steps.append({"name": name, "ok": True, "detail": describe(name, value)})
        return value

    edu, gpu = find(EDU), find(VIRTIO_GPU)
    seen["devices"] = {EDU: vfio.check(edu).to_json(), VIRTIO_GPU: vfio.check(gpu).to_json()}
    rows = pattern(args.size)
    try:
        timed("reaper-restores", lambda: reaper_gives_back(edu))
        bound[edu] = timed("bind-edu", lambda: vfio.bind(edu))
        returned, dma = timed("dma-round-trip", lambda: dma_round_trip(edu, rows))
        seen["dma"] = dma
        bound[gpu] = timed("bind-gpu", lambda: vfio.bind(gpu))
        if args.l2_kernel:
            passed, l2_s, listed = timed("l2-boot", lambda: l2_boots(args, gpu, step, seen))
        else:
            passed, l2_s, listed = timed("l2-query-pci", lambda: l2_sees(args, gpu))
        seen["l2"] = {"passed": passed, "devices": listed, "seconds": round(l2_s, 3)}
        if passed is None:
            raise probelib.ProbeError("L2 query-pci does not list the passed device: %s" % listed)
    finally:
        give_back(bound, edu, timed)
    for ids, bdf in ((EDU, edu), (VIRTIO_GPU, gpu)):
        if vfio.Sysfs().driver(bdf) != ORIGINAL_DRIVERS[ids]:
            raise probelib.ProbeError("%s has driver %s after restore" % (bdf,
                                                                          vfio.Sysfs().driver(bdf)))
    device = passed["id"]
    renderer = "%04x:%04x vfio-pci host=%s -> L2 %02x:%02x.%d" % (
        device["vendor"], device["device"], gpu, passed["bus"], passed["slot"], passed["function"])
    rows_back = [returned[y * args.size * 3:(y + 1) * args.size * 3] for y in range(args.size)]
    info = {"renderer": renderer, "vendor": "%04x" % device["vendor"], "version": "vfio type1",
            "restored": {edu: ORIGINAL_DRIVERS[EDU], gpu: ORIGINAL_DRIVERS[VIRTIO_GPU]}}
    return info, rows_back, timings


def give_back(bound, edu, timed):
    """Every bound device restored, each whatever became of the others; the first failure is
    raised after all were tried (a failure already on its way out keeps precedence)."""
    failures = []
    for bdf, record in reversed(list(bound.items())):
        try:
            timed("restore-" + ("edu" if bdf == edu else "gpu"),
                  lambda record=record: vfio.restore(record))
        except probelib.ProbeError as exc:
            failures.append(exc)
    if failures and sys.exc_info()[0] is None:
        raise failures[0]


def describe(name, value):
    if name == "reaper-restores":
        return "vfio bind, then the reaper gave it back to %s" % (value.original_driver
                                                                  or "no driver")
    if isinstance(value, vfio.BindRecord):
        return "bound to vfio-pci (was %s)" % (value.original_driver or "none")
    if name == "dma-round-trip":
        return "%(bytes)d bytes in %(chunks)d chunks, exact: %(exact)s" % value[1]
    if name in ("l2-query-pci", "l2-boot") and value[0]:
        return "L2 lists %04x:%04x at %02x.%d" % (value[0]["id"]["vendor"],
                                                  value[0]["id"]["device"],
                                                   value[0]["slot"], value[0]["function"])
    return "done"


def diagnose():
    return {}


def main(argv=None):
    parser = probelib.arguments(__doc__)
    parser.add_argument("--qemu", default="qemu-system-x86_64", help="the QEMU L2 runs in")
    parser.add_argument("--l2-kernel",
                        help="boot L2 with this kernel (the full tier); else L2 stays paused")
    parser.add_argument("--l2-initrd")
    parser.add_argument("--l2-append", default="console=ttyS0 acpi=off")
    parser.add_argument("--ack-file", help="the host writes it once it has captured L2's image")
    args = parser.parse_args(argv)
    return probelib.run("vfio", "vfio", VERSION, args, render, diagnose)


if __name__ == "__main__":
    sys.exit(main())
