"""gpu-harness VFIO probe, run inside the nested tier's L1 guest (a q35 machine with an emulated
IOMMU and two devices to pass through: QEMU's `edu` and a virtio-gpu with iommu_platform=on).

With the harness's own vfio module (the file beside this one, the one the host uses), it binds
`edu` to vfio-pci and moves a test image through it by DMA, into the device and back, through
the IOMMU (VFIO type1 container, the mapping made here); then binds the virtio-gpu and starts an
L2 QEMU paused with `-device vfio-pci,host=...`, whose QMP `query-pci` must list the device;
then restores both devices and checks their original drivers are back. The image that came back
is probe.png, compared with a golden like any rendered image. One JSON report on stdout.

Standard library + ctypes only; the L2's QMP is spoken by qemu.qmp, whose files the guest gets
beside this probe (its ProbeSpec's packages).
"""
import contextlib
import ctypes
import io
import mmap
import os
import struct
import subprocess
import sys
import time

import probelib
import vfio

VERSION = 1
EDU, VIRTIO_GPU = "1234:11e8", "1af4:1050"
ORIGINAL_DRIVERS = {EDU: None, VIRTIO_GPU: "virtio-pci"}

VFIO_TYPE, VFIO_BASE = ord(";"), 100
VFIO_API_VERSION, VFIO_TYPE1_IOMMU = 0, 1
GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU, GROUP_GET_STATUS, GROUP_SET_CONTAINER = (
    (VFIO_TYPE << 8) | (VFIO_BASE + n) for n in range(5))
GROUP_GET_DEVICE_FD = (VFIO_TYPE << 8) | (VFIO_BASE + 6)
DEVICE_GET_REGION_INFO = (VFIO_TYPE << 8) | (VFIO_BASE + 8)
IOMMU_MAP_DMA, IOMMU_UNMAP_DMA = ((VFIO_TYPE << 8) | (VFIO_BASE + n) for n in (13, 14))
GROUP_FLAGS_VIABLE = 1
DMA_READ, DMA_WRITE = 1, 2
BAR0, CONFIG_REGION = 0, 7
PCI_COMMAND, COMMAND_MEMORY, COMMAND_MASTER = 0x04, 0x2, 0x4

# QEMU's edu device (docs/specs/edu.rst): DMA between guest memory and its 4 KiB buffer.
EDU_IDENTIFICATION, EDU_LIVENESS = 0x00, 0x04
EDU_DMA_SRC, EDU_DMA_DST, EDU_DMA_COUNT, EDU_DMA_CMD = 0x80, 0x88, 0x90, 0x98
EDU_DMA_RUN, EDU_DMA_TO_RAM = 0x1, 0x2
EDU_BUFFER = 0x40000
# A DMA that ends exactly at the buffer's end kills QEMU 7.2 (its range check wants end < end).
EDU_CHUNK = 4032
IOVA_OUT, IOVA_BACK = 0x100000, 0x200000  # below edu's 28-bit DMA mask

libc = ctypes.CDLL(None, use_errno=True)


class RegionInfo(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("index", ctypes.c_uint32),
                ("cap_offset", ctypes.c_uint32), ("size", ctypes.c_uint64), ("offset", ctypes.c_uint64)]


class GroupStatus(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class DmaMap(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("vaddr", ctypes.c_uint64),
                ("iova", ctypes.c_uint64), ("size", ctypes.c_uint64)]


class DmaUnmap(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("iova", ctypes.c_uint64),
                ("size", ctypes.c_uint64)]


def ioctl(step, fd, request, arg=None):
    result = libc.ioctl(fd, ctypes.c_ulong(request), arg)
    if result < 0:
        number = ctypes.get_errno()
        hint = " (no interrupt remapping: intremap=on on the IOMMU)" if step == "set-iommu" and number == 1 else ""
        raise probelib.ProbeError("vfio %s: %s%s" % (step, os.strerror(number), hint))
    return result


def pattern(size):
    """The test image: gradients and a diagonal lattice, every byte position distinct enough that
    a lost, doubled or shifted chunk shows."""
    return [bytes(v for x in range(size) for v in (x * 255 // (size - 1), y * 255 // (size - 1),
                                                    ((x ^ y) & 0x1F) * 8)) for y in range(size)]


class Container:
    """A VFIO type1 container with one group and one device in it: what a VMM sets up."""

    def __init__(self, bdf):
        self.fds, self.mapped = [], []
        try:
            self.set_up(bdf)
        except BaseException:
            self.close()  # the group must not stay attached while the device is given back
            raise

    def set_up(self, bdf):
        self.container = self.open("/dev/vfio/vfio")
        version = ioctl("api-version", self.container, GET_API_VERSION)
        if version != VFIO_API_VERSION:
            raise probelib.ProbeError("vfio api-version: %d, expected %d" % (version, VFIO_API_VERSION))
        if not ioctl("check-extension", self.container, CHECK_EXTENSION, VFIO_TYPE1_IOMMU):
            raise probelib.ProbeError("vfio check-extension: no type1 IOMMU")
        group = vfio.Sysfs().group(bdf)
        self.group = self.open("/dev/vfio/%s" % group)
        status = GroupStatus(ctypes.sizeof(GroupStatus), 0)
        ioctl("group-status", self.group, GROUP_GET_STATUS, ctypes.byref(status))
        if not status.flags & GROUP_FLAGS_VIABLE:
            raise probelib.ProbeError("vfio group-status: group %s not viable" % group)
        ioctl("set-container", self.group, GROUP_SET_CONTAINER, ctypes.byref(ctypes.c_int(self.container)))
        ioctl("set-iommu", self.container, SET_IOMMU, VFIO_TYPE1_IOMMU)
        self.device = ioctl("device-fd", self.group, GROUP_GET_DEVICE_FD, ctypes.c_char_p(bdf.encode()))
        self.fds.append(self.device)

    def open(self, path):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise probelib.ProbeError("vfio open %s: %s" % (path, exc.strerror)) from None
        self.fds.append(fd)
        return fd

    def region(self, index):
        info = RegionInfo(ctypes.sizeof(RegionInfo), 0, index, 0, 0, 0)
        ioctl("region-info", self.device, DEVICE_GET_REGION_INFO, ctypes.byref(info))
        return info.offset

    def map_dma(self, buffer, iova):
        vaddr = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        request = DmaMap(ctypes.sizeof(DmaMap), DMA_READ | DMA_WRITE, vaddr, iova, len(buffer))
        ioctl("map-dma", self.container, IOMMU_MAP_DMA, ctypes.byref(request))
        self.mapped.append((iova, len(buffer)))

    def close(self):
        for iova, size in self.mapped:
            request = DmaUnmap(ctypes.sizeof(DmaUnmap), 0, iova, size)
            libc.ioctl(self.container, ctypes.c_ulong(IOMMU_UNMAP_DMA), ctypes.byref(request))
        for fd in reversed(self.fds):
            os.close(fd)
        self.fds, self.mapped = [], []


class Edu:
    def __init__(self, container):
        self.fd, self.bar = container.device, container.region(BAR0)
        config = container.region(CONFIG_REGION)
        command = struct.unpack("<H", os.pread(self.fd, 2, config + PCI_COMMAND))[0]
        os.pwrite(self.fd, struct.pack("<H", command | COMMAND_MEMORY | COMMAND_MASTER), config + PCI_COMMAND)

    def read(self, register):
        return struct.unpack("<I", os.pread(self.fd, 4, self.bar + register))[0]

    def write(self, register, value):
        os.pwrite(self.fd, struct.pack("<I", value), self.bar + register)

    def dma(self, source, destination, count, to_ram):
        self.write(EDU_DMA_SRC, source)
        self.write(EDU_DMA_DST, destination)
        self.write(EDU_DMA_COUNT, count)
        self.write(EDU_DMA_CMD, EDU_DMA_RUN | (EDU_DMA_TO_RAM if to_ram else 0))
        deadline = time.monotonic() + 10
        while self.read(EDU_DMA_CMD) & EDU_DMA_RUN:
            if time.monotonic() > deadline:
                raise probelib.ProbeError("edu dma: not finished after 10 s")
            time.sleep(0.005)


def page_buffer(size):
    return mmap.mmap(-1, (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)


def dma_round_trip(bdf, rows):
    """The image into edu's buffer and back out, chunk by chunk, both ways through the IOMMU."""
    data = b"".join(rows)
    container = Container(bdf)
    try:
        edu = Edu(container)
        identity = edu.read(EDU_IDENTIFICATION)
        if identity & 0xFF != 0xED:
            raise probelib.ProbeError("edu identification 0x%08x, expected 0x..ed" % identity)
        edu.write(EDU_LIVENESS, 0x12345678)
        if edu.read(EDU_LIVENESS) != (~0x12345678 & 0xFFFFFFFF):
            raise probelib.ProbeError("edu liveness check failed")
        out, back = page_buffer(len(data)), page_buffer(len(data))
        out[:len(data)] = data
        container.map_dma(out, IOVA_OUT)
        container.map_dma(back, IOVA_BACK)
        chunks = 0
        for start in range(0, len(data), EDU_CHUNK):
            count = min(EDU_CHUNK, len(data) - start)
            edu.dma(IOVA_OUT + start, EDU_BUFFER, count, to_ram=False)
            edu.dma(EDU_BUFFER, IOVA_BACK + start, count, to_ram=True)
            chunks += 1
        returned = bytes(back[:len(data)])
        return returned, {"identification": "0x%08x" % identity, "bytes": len(data), "chunks": chunks,
                          "iova": [hex(IOVA_OUT), hex(IOVA_BACK)], "exact": returned == data}
    finally:
        container.close()


class L2:
    """An L2 QEMU given the device with vfio-pci, spoken to over QMP with qemu.qmp."""

    SOCKET = "/tmp/gpu-harness-l2.qmp"

    def __init__(self, args, bdf, machine_args):
        self.bdf, self.started, self.monitor = bdf, time.monotonic(), None
        self.log = open(os.path.join(args.out, "l2-qemu.log"), "wb")
        argv = [args.qemu, "-nodefaults", "-no-user-config", "-machine", "q35", "-accel", "tcg", "-display", "none",
                "-qmp", "unix:%s,server=on,wait=off" % self.SOCKET, "-device", "vfio-pci,host=%s,id=passed" % bdf,
                *machine_args]
        try:
            self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.log.close()
            raise probelib.ProbeError("L2 QEMU %s cannot start: %s" % (args.qemu, exc.strerror or exc)) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()

    @property
    def seconds(self):
        return time.monotonic() - self.started

    def query_pci(self):
        """The passed device as L2 lists it (None if it does not), and every device's ids."""
        from qemu.qmp.legacy import QEMUMonitorProtocol

        while not os.path.exists(self.SOCKET):
            if self.process.poll() is not None or self.seconds > 60:
                raise probelib.ProbeError("L2 QEMU with vfio-pci,host=%s did not start: %s"
                                          % (self.bdf, log_tail(self.log)))
            time.sleep(0.05)
        self.monitor = QEMUMonitorProtocol(self.SOCKET)
        try:
            self.monitor.connect()
            reply = self.monitor.cmd("query-pci")
        except Exception as exc:  # whatever qemu.qmp raised: the L2's own words are in its log
            raise probelib.ProbeError("L2 QMP query-pci: %s: %s" % (type(exc).__name__, log_tail(self.log))) \
                from None
        devices = [d for bus in (reply if isinstance(reply, list) else []) for d in bus.get("devices", [])]
        passed = [d for d in devices if d.get("qdev_id") == "passed"]
        return passed[0] if passed else None, [d.get("id", {}) for d in devices]

    def quit(self):
        """Over the QMP connection query_pci made."""
        monitor = self.monitor
        assert monitor is not None
        try:
            monitor.cmd("quit")
            monitor.close()
        except (EOFError, OSError):
            pass  # QEMU may close the socket before qemu.qmp has read the answer to quit
        self.process.wait(30)


def l2_sees(args, bdf):
    """An L2 QEMU, paused, with the device; what its QMP query-pci lists."""
    with L2(args, bdf, ["-m", "64", "-S"]) as l2:
        passed, listed = l2.query_pci()
        l2.quit()
        return passed, l2.seconds, listed


L2_PREFIX = "gpu-harness-l2:"  # the L2 init's lines on its console (templates/l2-init.sh.j2)
# Said on L1's console (harness/vm/console.py Marker.PASSED_SCANOUT_READY): the host captures
# L2's image from the outer QEMU, then writes the ack file into the result share.
SCANOUT_READY_LINE = "gpu-harness: PASSED-DEVICE-SCANOUT-READY"


def l2_boots(args, bdf, step, seen):
    """An L2 QEMU that boots with the device: its virtio_gpu drives it, its init shows the
    pattern on the framebuffer and reports the device's interrupts. The host captures the image
    from the outer QEMU while L2 runs; then L2 is quit over QMP."""
    console = os.path.join(args.out, "l2-console.log")
    booted = seen.setdefault("l2_boot", {})
    machine = ["-m", "128", "-no-reboot", "-kernel", args.l2_kernel, "-initrd", args.l2_initrd,
               "-append", args.l2_append, "-serial", "file:%s" % console]
    with L2(args, bdf, machine) as l2:
        for name, line in (("l2-init", L2_PREFIX + " init started"),
                           ("l2-framebuffer", L2_PREFIX + " framebuffer written"),
                           ("l2-interrupts", L2_PREFIX + " interrupts end")):
            step(name)
            wait_for_line(console, line, l2.process, l2.log)
            booted[name.replace("-", "_") + "_s"] = round(l2.seconds, 3)
        text = read(console)
        booted["framebuffer"] = next((said.split(L2_PREFIX + " ", 1)[1] for said in text.splitlines()
                                      if said.startswith(L2_PREFIX + " fb0 ")), "")
        booted["interrupts"] = interrupts(text)
        booted["interrupt_total"] = sum(booted["interrupts"].values())
        if not booted["interrupt_total"]:
            raise probelib.ProbeError("L2's virtio_gpu got no interrupts from the passed device (its DMA "
                                      "bypasses the IOMMU? iommu_platform=on)")
        passed, listed = l2.query_pci()
        step("host-capture")
        with open("/dev/ttyS0", "w") as l1_console:
            l1_console.write(SCANOUT_READY_LINE + "\n")
        deadline = time.monotonic() + 60
        while not os.path.exists(args.ack_file):
            if time.monotonic() > deadline:
                raise probelib.ProbeError("the host did not capture L2's image within 60 s")
            time.sleep(0.1)
        booted["captured_s"] = round(l2.seconds, 3)
        l2.quit()
        return passed, l2.seconds, listed


def read(path):
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def wait_for_line(console, line, l2, log):
    while True:
        text = read(console)
        if line in text:
            return
        failed = [said for said in text.splitlines() if said.startswith(L2_PREFIX + " FAILED")]
        if failed:
            raise probelib.ProbeError("L2 init: %s" % failed[0].split("FAILED: ", 1)[-1])
        if "Kernel panic" in text:
            raise probelib.ProbeError("L2 kernel panic: %s" % text.split("Kernel panic", 1)[1].splitlines()[0])
        if l2.poll() is not None:
            raise probelib.ProbeError("L2 QEMU exited before %r: %s" % (line, log_tail(log)))
        time.sleep(0.2)


def interrupts(console_text):
    """The passed device's interrupt counts as L2's /proc/interrupts has them, by handler name."""
    counts = {}
    for line in console_text.splitlines():
        if not line.startswith(L2_PREFIX + " interrupts ") or line.endswith(" interrupts end"):
            continue
        fields = line[len(L2_PREFIX + " interrupts "):].split()
        numbers = [int(f) for f in fields[1:] if f.isdigit()]
        if fields and numbers:
            counts[fields[-1]] = sum(numbers[:1])  # one CPU in L2
    return counts


def log_tail(log):
    log.flush()
    with open(log.name, errors="replace") as text:
        return " | ".join(line for line in text.read().splitlines()[-3:] if line.strip()) or "no output"


def reaper_gives_back(bdf):
    """`gpu-harness vfio bind` (the CLI, its record on disk), then the reaper's own code given
    that bind as a harness that died would have left it (its pipe closed): the device must be
    back on its original driver. Both are the host's files, beside this probe."""
    import reaper

    state = "/tmp/gpu-harness-vfio-state"
    said = io.StringIO()
    with contextlib.redirect_stdout(sys.stderr), contextlib.redirect_stderr(said):  # stdout is the report's
        if vfio.main(["bind", bdf, "--state-dir", state]) != 0:
            raise probelib.ProbeError(said.getvalue().strip() or "gpu-harness vfio bind %s failed" % bdf)
    record = vfio.load(bdf, state)
    if record is None or vfio.Sysfs().driver(bdf) != vfio.VFIO_DRIVER:
        raise probelib.ProbeError("gpu-harness vfio bind %s left no record or no vfio-pci binding" % bdf)
    reaper.serve(io.StringIO("vfio %s\n" % record.to_line()))
    back = vfio.Sysfs().driver(bdf)
    if back != record.original_driver:
        raise probelib.ProbeError("the reaper left %s on %s, not %s" % (bdf, back, record.original_driver))
    return record


def find(ids):
    found = vfio.devices_by_ids(ids)
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
            raise probelib.ProbeError("%s has driver %s after restore" % (bdf, vfio.Sysfs().driver(bdf)))
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
            timed("restore-" + ("edu" if bdf == edu else "gpu"), lambda record=record: vfio.restore(record))
        except probelib.ProbeError as exc:
            failures.append(exc)
    if failures and sys.exc_info()[0] is None:
        raise failures[0]


def describe(name, value):
    if name == "reaper-restores":
        return "vfio bind, then the reaper gave it back to %s" % (value.original_driver or "no driver")
    if isinstance(value, vfio.BindRecord):
        return "bound to vfio-pci (was %s)" % (value.original_driver or "none")
    if name == "dma-round-trip":
        return "%(bytes)d bytes in %(chunks)d chunks, exact: %(exact)s" % value[1]
    if name in ("l2-query-pci", "l2-boot") and value[0]:
        return "L2 lists %04x:%04x at %02x.%d" % (value[0]["id"]["vendor"], value[0]["id"]["device"],
                                                   value[0]["slot"], value[0]["function"])
    return "done"


def diagnose():
    return {}


def main(argv=None):
    parser = probelib.arguments(__doc__)
    parser.add_argument("--qemu", default="qemu-system-x86_64", help="the QEMU L2 runs in")
    parser.add_argument("--l2-kernel", help="boot L2 with this kernel (the full tier); else L2 stays paused")
    parser.add_argument("--l2-initrd")
    parser.add_argument("--l2-append", default="console=ttyS0 acpi=off")
    parser.add_argument("--ack-file", help="the host writes it once it has captured L2's image")
    args = parser.parse_args(argv)
    return probelib.run("vfio", "vfio", VERSION, args, render, diagnose)


if __name__ == "__main__":
    sys.exit(main())
