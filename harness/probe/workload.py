"""Workload probe: a declared workload (piglit tests, the user's command) run through the path.

Runs *inside* the sandbox/container/guest with the standard library only, beside gles.py and the
frame (probelib). It renders the gl probe's scene first (the renderer the path gives, and an image
for the golden: the path works before the workload is judged), then runs each step of the plan
the harness wrote into its output folder (workload.json) in the same environment, one after the
other, each with its own deadline; the report adds each step's exit, signal, time and the tail of
its output (the whole output is steps/NAME.log). "{out}" in a step's argv or environment is the
output folder as the path sees it (the harness puts the workload's own files in {out}/inputs).

A step with show_s is an app on a display: once it has run that long it is still up, the probe
notes which GL and Vulkan drivers its processes mapped, writes present-ready.json (the harness
then captures the screen and writes present-captured), and ends the app's process group."""
import difflib
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import gles
from probelib import arguments, run

PROBE_VERSION = "2"
PLAN = "workload.json"
OUTPUT_TAIL = 16384
READY, CAPTURED = "present-ready.json", "present-captured"  # harness.launch.presenting's names
CAPTURE_WAIT_S = 30.0
# the libraries that say which driver an app drew with (its GL or Vulkan driver)
DRIVER_LIBS = re.compile(r"/(\w+_dri\.so|libgallium[^/\s]*\.so|libvulkan_\w+\.so|"
                         r"libnvidia-(?:glcore|eglcore)\.so)")
VTEST_BUFFERS = "/memfd:vtest-res"  # a vtest client's resources (Mesa's virpipe maps them)
# a Wayland client's request attaching a buffer to a surface (libwayland 1.21's @ and 1.23's #)
FRAME_ATTACHED = re.compile(r"-> wl_surface[@#]\d+\.attach\(wl_buffer[@#]\d+")


def find(program, search):
    """argv[0] as the runtime has it: a path as given, else the first of the search folders that
    has it, else PATH; None where none has it."""
    if "/" in program:
        return program if os.access(program, os.X_OK) else None
    for pattern in search:
        for folder in sorted(glob.glob(pattern)):
            candidate = os.path.join(folder, program)
            if os.access(candidate, os.X_OK):
                return candidate
    for folder in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        candidate = os.path.join(folder, program)
        if folder and os.access(candidate, os.X_OK):
            return candidate
    return None


def near(program, search):
    """Where argv[0] was not found: the search folders the runtime has (its package is installed:
    the name is misspelt) and the names in them closest to it."""
    if "/" in program:
        return [], []
    folders = [folder for pattern in search for folder in sorted(glob.glob(pattern))
               if os.path.isdir(folder)]
    names = sorted({name for folder in folders for name in os.listdir(folder)})
    return folders, difflib.get_close_matches(program, names, n=3)


def tail(path):
    with open(path, "rb") as handle:
        handle.seek(max(0, os.path.getsize(path) - OUTPUT_TAIL))
        return handle.read().decode(errors="replace")


def placed(value, out):
    return value.replace("{out}", out)


def run_step(step, out):
    name = step["name"]
    argv = [placed(arg, out) for arg in step["argv"]]
    env = {key: placed(value, out) for key, value in step.get("env", {}).items()}
    found = {"name": name, "argv": argv}
    program = find(argv[0], step.get("search", []))
    if program is None:
        folders, close = near(argv[0], step.get("search", []))
        return {**found, "not_found": argv[0], "searched": folders, "near": close}
    log = os.path.join(out, "steps", re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".log")
    work = os.path.join(out, "steps", "work")
    os.makedirs(work, exist_ok=True)
    started = time.perf_counter()
    with open(log, "wb") as handle:
        process = subprocess.Popen([program, *argv[1:]], stdout=handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=work, start_new_session=True,
                                   env={**os.environ, **env})
        if step.get("show_s") is not None and shown_then_ended(process, step, out, found, log):
            pass
        else:
            try:
                process.wait(timeout=step["timeout_s"])
                found["timed_out"] = False
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                found["timed_out"] = True
    found["seconds"] = round(time.perf_counter() - started, 3)
    code = process.returncode
    if found.get("shown"):  # ended here, after its capture: not its own exit
        code = 0
    found.update(exit_code=code if code >= 0 else None, signal=-code if code < 0 else None,
                 output=tail(log), log=os.path.relpath(log, out))
    return found


def group_drivers(pgid):
    """The driver libraries the processes of a group have mapped, by file name, sorted."""
    found: set = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            with open(f"/proc/{pid}/maps") as maps:
                text = maps.read()
            found.update(m.group(1) for m in DRIVER_LIBS.finditer(text))
            if VTEST_BUFFERS in text:
                found.add("vtest buffers (virpipe)")
        except (OSError, ProcessLookupError):
            continue
    return sorted(found)


class TraceWatch:
    """A Wayland client's protocol trace (WAYLAND_DEBUG=1, in its log) read as it grows, each
    byte once: whether it has attached a buffer to a surface (its first frame is on its way to
    the compositor)."""

    def __init__(self, log):
        self.log, self.offset, self.partial = log, 0, b""

    def frame_attached(self):
        try:
            with open(self.log, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return False
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()  # a line still being written
        return any(FRAME_ATTACHED.search(line.decode(errors="replace")) for line in lines)


def first_frame_in(log):
    """Whether the whole trace in `log` has attached a buffer to a surface."""
    watch = TraceWatch(log)
    return watch.frame_attached() or bool(FRAME_ATTACHED.search(
        watch.partial.decode(errors="replace")))


def until_shown(process, step, log):
    """Wait until the app's window has been up for show_s: counted from its first frame on
    Wayland (a slow machine draws its first window late), from its start elsewhere; True once
    that is so (or the step's deadline comes first), False where the app ended before."""
    traced = os.environ.get("WAYLAND_DEBUG") == "1" and os.environ.get("WAYLAND_DISPLAY")
    # the capture and the app's end need their time within the step's deadline
    deadline = time.monotonic() + max(step["timeout_s"] - CAPTURE_WAIT_S - 5, step["show_s"])
    shown_from = None if traced else time.monotonic()
    trace = TraceWatch(log)
    while True:
        if process.poll() is not None:
            return False
        now = time.monotonic()
        if shown_from is None and trace.frame_attached():
            shown_from = now
        if (shown_from is not None and now - shown_from >= step["show_s"]) or now >= deadline:
            return True
        time.sleep(0.1)


def shown_then_ended(process, step, out, found, log):
    """An app on a display: True once its window was up for show_s, captured and ended (found
    says shown and what it drew with); False where it ended before that (its exit is judged)."""
    if not until_shown(process, step, log):
        return False
    found.update(timed_out=False, shown=True, drivers=group_drivers(process.pid))
    ready = os.path.join(out, READY)
    with open(ready + ".part", "w") as handle:
        json.dump({"app": step["name"], "pid": process.pid, "drivers": found["drivers"]}, handle)
    os.rename(ready + ".part", ready)
    deadline = time.monotonic() + CAPTURE_WAIT_S
    while not os.path.exists(os.path.join(out, CAPTURED)) and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.05)
    found["captured"] = os.path.exists(os.path.join(out, CAPTURED))
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()
    return True


def render(args, step, seen):
    with open(os.path.join(args.out, PLAN)) as handle:
        plan = json.load(handle)
    info, rows, timings = gles.render(args, step, seen)
    step(None)  # each step has its own deadline
    os.makedirs(os.path.join(args.out, "steps"), exist_ok=True)
    started = time.perf_counter()
    out = os.path.abspath(args.out)
    info["steps"] = [run_step(s, out) for s in plan["steps"]]
    info["workload"] = {"probe": plan.get("probe"), "kind": plan.get("kind")}
    timings["workload_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return info, rows, timings


def main(argv=None):
    args = arguments(__doc__).parse_args(argv)
    if not os.path.exists(os.path.join(args.out, PLAN)):
        raise SystemExit(f"workload: no {PLAN} in {args.out}: the harness writes it before the "
                         "probe runs")
    return run("workload", "gles2", PROBE_VERSION, args, render, gles.diagnose)


if __name__ == "__main__":
    sys.exit(main())
