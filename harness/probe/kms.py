"""KMS probe: the GL probe's scene shown on a display by a compositor from the runtime (weston, its
DRM backend and kiosk shell, on the card node), for the machine around it to capture.

Runs *inside* the sandbox/container with the standard library only, beside gles.py and the frame
(probelib). It starts seatd and weston on /dev/dri/card*, renders the scene as the gl probe does
(EGL on the render node), shows the image with weston-image, then asks whoever watches the output
folder (a virtual GPU machine's host) to capture the display (kms-ready) and waits for it
(kms-captured); the verdict compares the capture with the golden. A render node alone cannot
modeset: with no card node the compositor step fails, saying so."""
import glob
import os
import re
import subprocess
import sys
import time

import gles
from probelib import ProbeError, arguments, png_bytes, run

PROBE_VERSION = "1"
READY, CAPTURED = "kms-ready", "kms-captured"
SHOWN = "shown.png"
SHOW_SETTLE_S = 3.0  # weston-image's first frame and the compositor's page flip
CAPTURE_WAIT_S = 60.0


def started(argv, log, env):
    with open(log, "wb") as handle:
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise ProbeError(f"{what} within {seconds:g} s", step="compositor")


def program(name):
    for folder in ("/usr/bin", "/usr/sbin", "/bin", "/sbin"):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise ProbeError(f"the runtime has no {name} (a compositor from the runtime shows the image: "
                     "install weston "
                     "and seatd in it)", step="compositor")


def tail(path, lines=5):
    try:
        with open(path, errors="replace") as handle:
            return " | ".join(line.strip() for line in handle.read().splitlines()[-lines:]
                              if line.strip())
    except OSError:
        return ""


class Compositor:
    """seatd and weston on the card, their logs in the output folder; stopped however it ends."""

    def __init__(self, out):
        self.out, self.children = out, []
        self.runtime = os.path.join("/tmp", "kms-runtime")
        os.makedirs(self.runtime, mode=0o700, exist_ok=True)
        self.env = dict(os.environ, XDG_RUNTIME_DIR=self.runtime, SEATD_VTBOUND="0",
                        LIBSEAT_BACKEND="seatd")

    def start(self, seconds):
        cards = sorted(glob.glob("/dev/dri/card*"))
        if not cards:
            raise ProbeError("no DRM card node (/dev/dri/card* absent): a render node alone cannot "
                             "modeset",
                             step="compositor")
        self.children.append(started([program("seatd"), "-g", "root"], os.path.join(self.out,
                                                                                    "seatd.log"),
                                     self.env))
        socket = os.path.join(self.runtime, "seatd.sock")
        wait_for(lambda: os.path.exists(socket) or os.path.exists("/run/seatd.sock"), seconds,
                 "seatd did not start")
        log = os.path.join(self.out, "weston.log")
        self.children.append(started([program("weston"), "--backend=drm", "--shell=kiosk",
                                      "--continue-without-input",
                                      "--idle-time=0", f"--log={log}", "--socket=wayland-gh"],
                                     os.path.join(self.out, "weston.out"), self.env))
        display = os.path.join(self.runtime, "wayland-gh")

        def up():
            if self.children[-1].poll() is not None:
                raise ProbeError(f"weston exited ({self.children[-1].returncode}): {tail(log)}",
                                 step="compositor")
            return os.path.exists(display)

        wait_for(up, seconds, f"weston did not listen: {tail(log)}")
        return {"card": cards[0], "compositor": self.version(), "output": self.output(log)}

    def show(self, image):
        env = dict(self.env, WAYLAND_DISPLAY="wayland-gh")
        self.children.append(started([program("weston-image"), image],
                                     os.path.join(self.out, "weston-image.log"), env))
        time.sleep(SHOW_SETTLE_S)
        if self.children[-1].poll() is not None:
            raise ProbeError("weston-image exited: "
                             f"{tail(os.path.join(self.out, 'weston-image.log'))}", step="show")

    def version(self):
        try:
            done = subprocess.run([program("weston"), "--version"], capture_output=True, text=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return (done.stdout or done.stderr).strip() or None

    @staticmethod
    def output(log):
        try:
            with open(log, errors="replace") as handle:
                found = re.findall(r"Output '([^']+)' enabled", handle.read())
        except OSError:
            return None
        return found[0] if found else None

    def stop(self):
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def render(args, step, seen):
    compositor = Compositor(args.out)
    try:
        step("compositor")
        seen["kms"] = compositor.start(args.step_timeout or 60)
        info, rows, timings = gles.render(args, step, seen)
        step("show")
        shown = os.path.join(args.out, SHOWN)
        with open(shown, "wb") as handle:
            handle.write(png_bytes(rows, args.size, args.size))
        compositor.show(shown)
        step(None)  # the capture is the machine's time
        with open(os.path.join(args.out, READY), "w") as handle:
            handle.write("shown\n")
        deadline = time.monotonic() + CAPTURE_WAIT_S
        while time.monotonic() < deadline and not os.path.exists(os.path.join(args.out, CAPTURED)):
            time.sleep(0.2)
        info["kms"] = dict(seen["kms"], captured=os.path.exists(os.path.join(args.out, CAPTURED)))
        return info, rows, timings
    finally:
        compositor.stop()


def main(argv=None):
    args = arguments(__doc__).parse_args(argv)
    return run("kms", "gles2+kms", PROBE_VERSION, args, render, gles.diagnose)


if __name__ == "__main__":
    sys.exit(main())
