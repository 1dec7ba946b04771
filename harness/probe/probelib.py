"""The frame every probe runs in: its started and report lines, step watchdog, PNG and scanout.

Runs *inside* the sandbox/guest/container with the standard library and ctypes only, next to the
probe that imports it (the harness puts both in one folder, with facts.py, what the frame
reports of the runtime: isolation, mounts, libraries). A watchdog reports a driver call that
never returns; the image is written as a PNG and, in a guest, for the framebuffer scanout."""
import argparse
import ctypes
import faulthandler
import hashlib
import json
import os
import resource
import struct
import sys
import threading
import time
import zlib

from facts import isolation_facts, libc_version, mapped_libraries, mounts


class ProbeError(Exception):
    """A step of the probe failed; the message says which. `step` and `code` (a VkResult's
    name) go into the report as fields of their own where the step knows them."""

    def __init__(self, message, step=None, code=None):
        super().__init__(message)
        self.step, self.code = step, code


def load_library(names):
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
    raise ProbeError("cannot load any of " + ", ".join(names) + ": " + "; ".join(errors))


def declare(lib, name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


def png_bytes(rows, width, height):
    def chunk(tag, data):
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I",
                                                                 zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))


SCANOUT_FILE = "/tmp/gpu-harness-scanout.fb"


def framebuffer_image(device, rows, size):
    """The rendered image at the top-left of a frame for `device` (rest black), written to
    SCANOUT_FILE for the guest's init to copy to the device once this process has exited:
    while the probe's GL driver holds the DRM device, fbdev writes are not flushed to the
    display. Expects 32 bpp XRGB, what DRM's fbdev emulation gives."""
    sysfs = "/sys/class/graphics/" + os.path.basename(device)
    with open(sysfs + "/bits_per_pixel") as handle:
        bpp = int(handle.read())
    with open(sysfs + "/stride") as handle:
        stride = int(handle.read())
    with open(sysfs + "/virtual_size") as handle:
        width, height = (int(v) for v in handle.read().strip().split(","))
    if bpp != 32:
        raise ProbeError("framebuffer %s has %d bpp, expected 32" % (device, bpp))
    black = bytes(stride)
    shown = min(size, width)
    with open(SCANOUT_FILE, "wb") as fb:
        for y in range(height):
            if y >= size:
                fb.write(black)
                continue
            line = bytearray(stride)
            rgb = rows[y][:shown * 3]
            (line[0:shown * 4:4], line[1:shown * 4:4],
             line[2:shown * 4:4]) = rgb[2::3], rgb[1::3], rgb[0::3]
            fb.write(bytes(line))
    return {"device": device, "width": width, "height": height, "file": SCANOUT_FILE}


def test_hooks(args, step):
    """Once the GPU context exists: the step watchdog paused (holding and injected faults are
    the test's own time), then --hold seconds, then --fault."""
    step(None)
    if args.hold:
        time.sleep(args.hold)
    if args.fault:
        inject_fault(args.fault)


def inject_fault(kind):
    """Test hook: make the probe fail in a controlled way after the GPU context exists."""
    if kind == "segv":
        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "hang":
        while True:
            time.sleep(1)
    elif kind == "exit":
        sys.exit(3)


class Watchdog:
    """A driver call that never returns (a Venus client spinning on a failed allocation) must
    still end with a report: each step has a deadline, and when it passes the report is printed
    with the step's name and the process ends."""

    def __init__(self, seconds, on_expiry):
        self.seconds, self.on_expiry = seconds, on_expiry
        self.step_name, self.deadline = None, None
        self.lock = threading.Lock()
        if seconds:
            threading.Thread(target=self.watch, daemon=True).start()

    def step(self, name):
        """Start step `name` (None: no step runs, no deadline)."""
        with self.lock:
            self.step_name = name
            self.deadline = time.monotonic() + self.seconds if self.seconds and name else None

    def watch(self):
        while True:
            time.sleep(0.1)
            with self.lock:
                expired = self.deadline is not None and time.monotonic() > self.deadline
                name = self.step_name
            if expired:
                self.on_expiry(name, "step %s: no answer from the driver after %g s"
                               % (name, self.seconds))
                os._exit(3)


def arguments(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True, help="directory for probe.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=0,
                        help="at most this many frames a round (0: no limit)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed rounds of frames; fps is their median")
    parser.add_argument("--round-seconds", type=float, default=0.1, help="how long one round draws")
    parser.add_argument("--host-path", action="append", default=[],
                        help="a host path that should be hidden")
    parser.add_argument("--hold", type=float, default=0.0,
                        help="seconds to wait after context creation")
    parser.add_argument("--scanout", help="framebuffer device to show the image on, e.g. /dev/fb0")
    parser.add_argument("--step-timeout", type=float, default=0.0,
                        help="seconds one driver step may take before the probe reports it and "
                             "exits (0: none)")
    parser.add_argument("--fault", choices=["segv", "abort", "hang", "exit"],
                        help=argparse.SUPPRESS)
    return parser


def timed_rounds(draw, args):
    """fps as the median of timed rounds (each draws frames for round-seconds, at least one, at
    most --frames where set), with the slowest and fastest round: one short burst measures the
    machine's scheduling as much as the driver."""
    rates, frames = [], 0
    for _ in range(max(1, args.rounds)):
        count, started = 0, time.perf_counter()
        while True:
            draw()
            count += 1
            elapsed = time.perf_counter() - started
            if elapsed >= args.round_seconds or (args.frames and count >= args.frames):
                break
        rates.append(count / elapsed if elapsed > 0 else 0.0)
        frames += count
    ordered = sorted(rates)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {"frames": frames, "fps": round(median, 2), "fps_min": round(ordered[0], 2),
            "fps_max": round(ordered[-1], 2), "fps_rounds": len(rates)}


def run(probe, api, version, args, render, diagnose):
    """The frame of a probe run: the started line (before any driver code: it survives a crash),
    render(args, step, seen) -> (info, rows, timings), the image, and the report line. What
    render puts in `seen` on the way (the device it found) is reported even when a later step
    fails or never returns."""
    faulthandler.enable()  # a crash in the driver leaves a traceback in the probe's log
    print(json.dumps({"probe": probe, "stage": "started", "mounts": mounts(),
                      "libc": libc_version(),
                      "isolation": isolation_facts(args.host_path)}, sort_keys=True), flush=True)
    result = {"probe": probe, "probe_version": version, "api": api, "ok": False}
    started = time.perf_counter()
    printed = threading.Lock()

    def report():
        for key, value in list(result.pop("seen", {}).items()):
            result.setdefault(key, value)
        result.setdefault("libraries", mapped_libraries())
        result["libc"] = libc_version()
        result["mounts"] = mounts()
        result["timings_total_ms"] = round((time.perf_counter() - started) * 1000, 3)
        result["isolation"] = isolation_facts(args.host_path)
        result["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result["python"] = sys.version.split()[0]
        print(json.dumps(result, sort_keys=True, default=str), flush=True)

    def expired(step_name, message):
        if printed.acquire(blocking=False):
            result.update(error=message, failed_step=step_name, hung=True)
            report()

    watchdog = Watchdog(args.step_timeout, expired)
    seen: dict = {}
    result["seen"] = seen
    try:
        info, rows, timings = render(args, watchdog.step, seen)
        watchdog.step(None)
        with open(os.path.join(args.out, "probe.png"), "wb") as handle:
            handle.write(png_bytes(rows, args.size, args.size))
        result.update(info)
        result.update(ok=True, image="probe.png", size=[args.size, args.size],
                      pixels_md5=hashlib.md5(b"".join(rows)).hexdigest(), timings=timings)
        if args.scanout:
            result["scanout"] = framebuffer_image(args.scanout, rows, args.size)
    except ProbeError as exc:
        watchdog.step(None)
        result["error"] = str(exc)
        if exc.step:
            result["failed_step"] = exc.step
        if exc.code:
            result["result_code"] = exc.code
        result["diagnosis"] = diagnose()
    if not printed.acquire(blocking=False):
        return 3
    report()
    return 0 if result["ok"] else 1
