"""The L2 QEMU the passed device goes to: started with vfio-pci, asked over QMP, booted, watched.

Runs inside the nested tier's L1 guest with the standard library only, beside vfio_nested.py
(the harness puts them in one folder); the L2's QMP is spoken by qemu.qmp, whose files the
guest gets beside the probe. A paused L2 must list the device in query-pci; a booted one shows
the test pattern on the passed virtio-gpu and reports its interrupts on its console.
"""
import os
import subprocess
import time

import probelib


class L2:
    """An L2 QEMU given the device with vfio-pci, spoken to over QMP with qemu.qmp."""

    SOCKET = "/tmp/gpu-harness-l2.qmp"

    def __init__(self, args, bdf, machine_args):
        self.bdf, self.started, self.monitor = bdf, time.monotonic(), None
        self.log = open(os.path.join(args.out, "l2-qemu.log"), "wb")
        argv = [args.qemu, "-nodefaults", "-no-user-config", "-machine", "q35", "-accel", "tcg",
                "-display", "none",
                "-qmp", "unix:%s,server=on,wait=off" % self.SOCKET, "-device",
                "vfio-pci,host=%s,id=passed" % bdf,
                *machine_args]
        try:
            self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.log.close()
            raise probelib.ProbeError("L2 QEMU %s cannot start: %s" % (args.qemu, exc.strerror
                                                                       or exc)) from None

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
            raise probelib.ProbeError("L2 QMP query-pci: %s: %s" % (type(exc).__name__,
                                                                    log_tail(self.log))) \
                from None
        devices = [d for bus in (reply if isinstance(reply, list) else [])
                   for d in bus.get("devices", [])]
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
# Said on L1's console (harness/launch/vm/console.py Marker.PASSED_SCANOUT_READY): the host captures
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
        booted["framebuffer"] = next((said.split(L2_PREFIX + " ", 1)[1]
                                      for said in text.splitlines()
                                      if said.startswith(L2_PREFIX + " fb0 ")), "")
        booted["interrupts"] = interrupts(text)
        booted["interrupt_total"] = sum(booted["interrupts"].values())
        if not booted["interrupt_total"]:
            raise probelib.ProbeError("L2's virtio_gpu got no interrupts from the passed device "
                                      "(its DMA "
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
            raise probelib.ProbeError("L2 kernel panic: %s" % text.split("Kernel panic",
                                                                         1)[1].splitlines()[0])
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
        return " | ".join(line for line in text.read().splitlines()[-3:]
                          if line.strip()) or "no output"
