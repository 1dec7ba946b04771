"""The present probe (harness/probe/present.py): its Wayland interface tables against
wayland-scanner's, its window-system structs against the Vulkan and Xlib headers, its reports
without a display server and with one that never answers, and real runs on a weston and an Xvfb
this file starts (the host's Mesa, the trixie runtime through bwrap, virpipe through a
virgl_test_server in a mount namespace of its own), each capture showing the probe's read-back and
the read-back matching the offscreen probe's golden. Every wait has a deadline; no process, socket
or file is left behind.

Skips without wayland-scanner, gcc and the headers, weston, weston-screenshooter or Xvfb, unless
GPU_HARNESS_REQUIRE names "display", where that fails."""
import ctypes
import json
import mmap
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.launch import displayservers
from harness.runtimes import builds
from harness.scenario import imagecompare
from harness.scenario.model import Tolerance
from harness.scenario import probes
from harness.scenario.probes import GOLDENS_DIR, PROBE_DIR

sys.path.insert(0, str(PROBE_DIR))
import vkwsi  # noqa: E402
import windows  # noqa: E402
import wlproto  # noqa: E402

REQUIRED = {p.strip() for p in os.environ.get("GPU_HARNESS_REQUIRE", "").split(",") if p.strip()}
PROBE = PROBE_DIR / "present.py"
WESTON_INI = displayservers.WESTON_INI.format(background="204060")  # the harness's own
# the short runs: two rounds of 50 ms after the first frame
QUICK = ["--rounds", "2", "--round-seconds", "0.05", "--hold-s", "30"]


def need(*programs: str, package: str = "") -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        if "display" in REQUIRED:
            pytest.fail(f"{', '.join(missing)} required here ({package})")
        pytest.skip(f"needs {', '.join(missing)} ({package})")


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{what} within {seconds:g} s")


def stop(proc: subprocess.Popen, group: bool = False) -> None:
    """Stop a process this file started; with `group`, every process of the session it leads
    (what a wrapper started beside the probe)."""
    def running() -> bool:
        return proc.poll() is None or (group and any(session_of(pid) == proc.pid
                                                     for pid in os.listdir("/proc")
                                                     if pid.isdigit()))

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not running():
            return
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while running() and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not running(), f"pid {proc.pid} outlived SIGKILL"


def session_of(pid: str):
    """The session of a live process (a zombie, waiting for a reaper, is none)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state, _, _, session = stat.read().rpartition(")")[2].split()[:4]
    except (OSError, ValueError):
        return None
    return int(session) if state != "Z" else None


def report_of(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WAYLAND_DISPLAY", "DISPLAY", "XDG_RUNTIME_DIR")}
    return dict(env, **extra)


# --- the tables and structs ------------------------------------------------------------------

def scanner_tables(xml: Path) -> dict:
    """{interface: (version, requests, events)} as `wayland-scanner private-code` writes them,
    each message (name, signature, [argument interfaces])."""
    code = subprocess.run(["wayland-scanner", "private-code", str(xml), "/dev/stdout"],
                          capture_output=True, text=True, check=True, timeout=60).stdout
    types = re.search(r"static const struct wl_interface \*\w+_types\[\] = \{(.*?)\};", code,
                      re.S).group(1)
    types = [None if t.strip() == "NULL" else t.strip().lstrip("&")[:-len("_interface")]
             for t in types.split(",") if t.strip()]
    found: dict = {}
    for iface, kind, body in re.findall(r"static const struct wl_message (\w+)_(requests|events)"
                                        r"\[\] = \{(.*?)\n\};", code, re.S):
        listed = [(name, signature, types[int(at):int(at) + len(wlproto.letters(signature))])
                  for name, signature, at in re.findall(r'\{ "(\w+)", "([^"]*)", \w+_types \+ '
                                                        r'(\d+) \}', body)]
        found.setdefault(iface, {})[kind] = listed
    versions = re.findall(r'WL_PRIVATE const struct wl_interface (\w+)_interface = \{\s*"\w+", '
                          r'(\d+),', code)
    return {iface: (int(version), found.get(iface, {}).get("requests", []),
                    found.get(iface, {}).get("events", [])) for iface, version in versions}


def since(signature: str) -> int:
    digits = re.match(r"\d*", signature).group(0)
    return int(digits) if digits else 1


def live_messages(table, count) -> list:
    """A wl_message table as libwayland reads it, each type pointer named by its interface."""
    return [(table[i].name.decode(), table[i].signature.decode(),
             [wlproto.WlInterface.from_address(table[i].types[a]).name.decode()
              if table[i].types[a] else None
              for a in range(len(wlproto.letters(table[i].signature.decode())))])
            for i in range(count)]


def test_the_extension_tables_are_what_wayland_scanner_makes_of_the_xml():
    need("wayland-scanner", package="libwayland-bin")
    protocols = Path("/usr/share/wayland-protocols/stable")
    xmls = [protocols / "xdg-shell" / "xdg-shell.xml",
            protocols / "presentation-time" / "presentation-time.xml"]
    if not all(xml.exists() for xml in xmls):
        need("no-such-program-wayland-protocols", package="wayland-protocols")
    client = wlproto.Client()  # the tables as built for libwayland-client, read back
    compared = set()
    for xml in xmls:
        for name, (version, requests, events) in scanner_tables(xml).items():
            ours = client.interface(name)
            assert ours.version <= version, name
            mine = (live_messages(ours.methods, ours.method_count),
                    live_messages(ours.events, ours.event_count))
            # a newer XML may add messages after our version; up to it, the same
            theirs = tuple([list(m[:2]) + [m[2]] for m in listed if since(m[1]) <= ours.version]
                           for listed in (requests, events))
            assert [list(m[:2]) + [m[2]] for m in mine[0]] == theirs[0], f"{name} requests"
            assert [list(m[:2]) + [m[2]] for m in mine[1]] == theirs[1], f"{name} events"
            compared.add(name)
    assert compared == set(wlproto.PROTOCOLS)


def c_layouts(tmp_path: Path, prelude: list, wanted: dict) -> dict:
    """sizeof and offsetof by the C compiler: {C type: [member designators]} -> {(type, member):
    bytes}, '@sizeof' for the size."""
    need("gcc", package="gcc")
    lines = ["#include <stdio.h>", "#include <stddef.h>", *prelude, "int main(void) {"]
    for c_name, members in wanted.items():
        lines.append(f'printf("{c_name} @sizeof %zu\\n", sizeof({c_name}));')
        lines += [f'printf("{c_name} {m} %zu\\n", offsetof({c_name}, {m}));' for m in members]
    source, program = tmp_path / "layout.c", tmp_path / "layout"
    source.write_text("\n".join(lines + ["return 0;", "}"]) + "\n")
    subprocess.run(["gcc", "-o", str(program), str(source)], check=True, capture_output=True,
                   text=True, timeout=120)
    found = {}
    for line in subprocess.run([str(program)], check=True, capture_output=True, text=True,
                               timeout=60).stdout.splitlines():
        c_name, member, value = line.split()
        found[(c_name, member)] = int(value)
    return found


def laid_out_as_in_c(tmp_path: Path, prelude: list, structs: dict) -> None:
    """Each ctypes struct ({struct: C type}) has the C type's size and members' offsets."""
    found = c_layouts(tmp_path, prelude, {c_name: [f[0] for f in layout._fields_]
                                          for layout, c_name in structs.items()})
    for layout, c_name in structs.items():
        assert ctypes.sizeof(layout) == found[(c_name, "@sizeof")], f"sizeof({c_name})"
        for member, *_ in layout._fields_:
            assert getattr(layout, member).offset == found[(c_name, member)], f"{c_name}.{member}"


def test_the_window_system_structs_match_the_vulkan_headers(tmp_path):
    if not os.path.exists("/usr/include/vulkan/vulkan_wayland.h"):
        need("no-such-program-vulkan-headers", package="libvulkan-dev")
    laid_out_as_in_c(tmp_path, [
        "#include <vulkan/vulkan_core.h>", "struct wl_display; struct wl_surface;",
        "#include <vulkan/vulkan_wayland.h>",
        "typedef struct _XDisplay Display; typedef unsigned long Window, VisualID;",
        "#include <vulkan/vulkan_xlib.h>"], {
        vkwsi.WaylandSurfaceCreateInfo: "VkWaylandSurfaceCreateInfoKHR",
        vkwsi.XlibSurfaceCreateInfo: "VkXlibSurfaceCreateInfoKHR",
        vkwsi.SurfaceCapabilities: "VkSurfaceCapabilitiesKHR",
        vkwsi.SurfaceFormat: "VkSurfaceFormatKHR",
        vkwsi.SwapchainCreateInfo: "VkSwapchainCreateInfoKHR",
        vkwsi.PresentInfo: "VkPresentInfoKHR", vkwsi.SemaphoreCreateInfo: "VkSemaphoreCreateInfo",
        vkwsi.ImageMemoryBarrier: "VkImageMemoryBarrier",
        vkwsi.ExtensionProperties: "VkExtensionProperties"})


def test_the_xlib_structs_match_xlib_h(tmp_path):
    if not os.path.exists("/usr/include/X11/Xlib.h"):
        need("no-such-program-xlib-headers", package="libx11-dev")
    laid_out_as_in_c(tmp_path, ["#include <X11/Xlib.h>"], {windows.XErrorEvent: "XErrorEvent"})
    # XImage up to the first two of its functions, f.create_image and f.destroy_image (the one
    # the probe calls)
    members = {name: f"f.{name}" if name.endswith("_image") else name
               for name, *_ in windows.XImage._fields_}
    found = c_layouts(tmp_path, ["#include <X11/Xlib.h>"], {"XImage": list(members.values())})
    for name, member in members.items():
        assert getattr(windows.XImage, name).offset == found[("XImage", member)], member


def test_the_buffers_it_sees_fold_numbered_memfds_and_count_each_once():
    maps = []
    try:
        for name in ("vtest-res-1", "vtest-res-2", "mesa-shared"):
            fd = os.memfd_create(name)
            os.ftruncate(fd, 4096)
            maps += [mmap.mmap(fd, 4096), mmap.mmap(fd, 4096)]  # twice: still one
            os.close(fd)
        found = windows.mapped_buffers()
    finally:
        for mapped in maps:
            mapped.close()
    assert found["memfds"]["vtest-res-*"] == 2 and found["memfds"]["mesa-shared"] == 1
    assert found["from"] == "/proc/self/maps"


def flat_copy(api: str, folder: Path) -> Path:
    """The probe and exactly its spec's support files, side by side, as a path gets them."""
    folder.mkdir()
    for file in probes.get(f"present-{api}").files:
        shutil.copy(file, folder / file.name)
    return folder


@pytest.mark.parametrize("api", ["gl", "vulkan"])
def test_its_spec_carries_every_module_it_imports_and_the_offscreen_probes_golden(api, tmp_path):
    spec = probes.get(f"present-{api}")
    assert spec.file == PROBE and spec.golden_name == api and spec.api == api
    assert {"display", "presentation", "captured"} <= set(spec.schema)
    assert set(probes.get(api).schema) <= set(spec.schema)
    modules = "present" + (", vkpresent" if api == "vulkan" else "")
    done = subprocess.run([sys.executable, "-S", "-c", f"import {modules}"],
                          cwd=flat_copy(api, tmp_path / "flat"), capture_output=True, text=True,
                          timeout=60, env=clean_env(PYTHONPATH=""))
    assert done.returncode == 0, done.stderr


# --- without a display server ----------------------------------------------------------------

def run_probe(args, env, timeout=60):
    return subprocess.run([sys.executable, str(PROBE), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_no_display_server_is_an_error_report_naming_the_step(tmp_path):
    done = run_probe(["--out", str(tmp_path), "--api", "gl", "--display", "wayland"], clean_env())
    report = report_of(done.stdout)
    assert done.returncode == 1 and report["ok"] is False
    assert (report["failed_step"], report["error"]) == ("wl_display_connect",
                                                        "WAYLAND_DISPLAY is not set")
    display = next(f":{n}" for n in range(4000, 5000) if not os.path.exists(f"/tmp/.X11-unix/X{n}"))
    done = run_probe(["--out", str(tmp_path), "--api", "vulkan", "--display", "x11"],
                     clean_env(DISPLAY=display))
    report = report_of(done.stdout)
    assert done.returncode == 1 and report["failed_step"] == "XOpenDisplay"
    assert not (tmp_path / "present-ready.json").exists()


def test_a_compositor_that_never_answers_is_reported_by_the_watchdog_not_waited_for():
    """A socket that takes the connection and says nothing: the registry's roundtrip never
    returns, and the step timeout ends the probe with a report naming it."""
    folder = Path(tempfile.mkdtemp(prefix="present-"))
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        silent.bind(str(folder / "wayland-silent"))
        silent.listen(1)
        started = time.monotonic()
        done = run_probe(["--out", str(folder), "--api", "gl", "--display", "wayland",
                          "--step-timeout", "1"],
                         clean_env(WAYLAND_DISPLAY=str(folder / "wayland-silent"),
                                   XDG_RUNTIME_DIR=str(folder)), timeout=30)
        took = time.monotonic() - started
    finally:
        silent.close()
        shutil.rmtree(folder)
    report = report_of(done.stdout)
    assert done.returncode == 3 and report["hung"] is True and took < 20
    assert report["failed_step"] == "wl_registry"


# --- on real display servers -----------------------------------------------------------------

class Server:
    """A display server this file started, in a short folder of its own (a socket's path is at
    most 107 bytes): its clients' environment and its screen."""

    def __init__(self, kind: str, folder: Path):
        self.kind, self.folder = kind, folder
        self.proc: subprocess.Popen
        self.env: dict = {}

    def capture(self) -> np.ndarray:
        if self.kind == "wayland":
            shots = self.folder / "shots"
            shots.mkdir()
            subprocess.run(["weston-screenshooter"], cwd=shots, env=self.env, check=True,
                           capture_output=True, timeout=30)
            [shot] = list(shots.glob("*.png"))
            return imagecompare.load_rgb(shot)
        return read_xwd((self.folder / "fb" / "Xvfb_screen0").read_bytes())


def read_xwd(data: bytes) -> np.ndarray:
    """Xvfb -fbdir's screen: an XWD dump, 24/32 bpp TrueColor, as RGB rows."""
    fields = struct.unpack(">25I", data[:100])
    header, width, height, bytes_per_line, colors = (fields[0], fields[4], fields[5], fields[12],
                                                     fields[19])
    assert fields[7] == 0 and bytes_per_line >= width * 4, "an LSBFirst 32-bit XWD"
    start = header + colors * 12
    pixels = np.frombuffer(data[start:start + bytes_per_line * height], dtype=np.uint8)
    pixels = pixels.reshape(height, bytes_per_line)[:, :width * 4].reshape(height, width, 4)
    return pixels[:, :, 2::-1].astype(np.int16)


@pytest.fixture
def server(request):
    """weston (headless, pixman, desktop shell, no animations) or Xvfb (-displayfd), stopped and
    its folder removed however the test ends."""
    kind = request.param
    need(*(("weston", "weston-screenshooter") if kind == "wayland" else ("Xvfb",)),
         package="weston" if kind == "wayland" else "xvfb")
    folder = Path(tempfile.mkdtemp(prefix="present-"))
    found = Server(kind, folder)
    try:
        if kind == "wayland":
            runtime = folder / "xdg"
            runtime.mkdir(mode=0o700)
            (folder / "weston.ini").write_text(WESTON_INI)
            found.proc = subprocess.Popen(
                ["weston", "--backend=headless-backend.so", "--use-pixman", "--debug",
                 "--socket=wayland-p", "--width=640", "--height=480",
                 f"--config={folder / 'weston.ini'}", "--shell=desktop-shell.so",
                 f"--log={folder / 'weston.log'}"],
                env=clean_env(XDG_RUNTIME_DIR=str(runtime)), cwd=folder,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: (runtime / "wayland-p").exists() or found.proc.poll() is not None,
                     20, "weston's socket")
            assert found.proc.poll() is None, (folder / "weston.log").read_text()[-2000:]
            found.env = clean_env(XDG_RUNTIME_DIR=str(runtime), WAYLAND_DISPLAY="wayland-p")
        else:
            (folder / "fb").mkdir()
            read, write = os.pipe()
            found.proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-nolisten", "tcp",
                                           "-noreset", "-screen", "0", "640x480x24", "-fbdir",
                                           str(folder / "fb")], pass_fds=(write,),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.close(write)
            number = b""
            while not number.endswith(b"\n"):
                assert select.select([read], [], [], 20)[0], "no display number from Xvfb"
                chunk = os.read(read, 16)
                assert chunk, "Xvfb exited before it was ready"
                number += chunk
            os.close(read)
            found.env = clean_env(DISPLAY=":" + number.decode().strip())
        yield found
    finally:
        if hasattr(found, "proc"):
            stop(found.proc)
        shutil.rmtree(folder, ignore_errors=True)
    if kind == "x11":  # Xvfb takes its lock and socket with it
        number = found.env.get("DISPLAY", ":")[1:]
        assert not os.path.exists(f"/tmp/.X{number}-lock")
        assert not os.path.exists(f"/tmp/.X11-unix/X{number}")


def present(server: Server, api: str, wrap=(), inside=None, extra_env=None, capture=True,
            args=QUICK, stopping=None):
    """Run the probe on `server` (under `wrap`, where `inside` says where the probe's folder,
    its output folder and python are), capture the screen once it is ready, tell it so (or stop
    `stopping`, the server, instead), and read its report: (report, ready, capture)."""
    out = server.folder / "out"
    out.mkdir()
    inside = inside or {"probe": str(PROBE_DIR), "out": str(out), "python": sys.executable}
    argv = [*wrap, inside["python"], inside["probe"] + "/present.py", "--out", inside["out"],
            "--api", api, "--display", server.kind, *args]
    env = dict(server.env, XDG_CACHE_HOME=str(server.folder / "cache"), **(extra_env or {}))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        wait_for(lambda: (out / "present-ready.json").exists() or proc.poll() is not None, 60,
                 "present-ready.json")
        shot, ready = None, {}
        if (out / "present-ready.json").exists():
            ready = json.loads((out / "present-ready.json").read_text())
            if stopping is not None:
                stop(stopping)
            elif capture:
                shot = server.capture()
                (out / "present-captured").touch()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        stop(proc, group=True)
    report = report_of(stdout)
    assert proc.returncode == 0 and report["ok"], (report.get("error"), stderr[-2000:])
    assert not list(out.glob("*.partial"))
    return report, ready, shot


def located(capture: np.ndarray, image: np.ndarray):
    """Where `image` is, pixel for pixel, in `capture` (x, y), or None."""
    height, width = image.shape[:2]
    starts = np.nonzero((capture[:-height + 1, :-width + 1] == image[0, 0]).all(axis=2))
    for y, x in zip(*starts, strict=True):
        if (capture[y:y + height, x:x + width] == image).all():
            return int(x), int(y)
    return None


def shown_and_golden(server: Server, report: dict, ready: dict, shot, api: str, display: str):
    out = server.folder / "out"
    readback = imagecompare.load_rgb(out / "probe.png")
    assert readback.shape == (256, 256, 3) and report["image"] == "probe.png"
    compared = imagecompare.compare(out / "probe.png", GOLDENS_DIR / f"{api}.png", Tolerance())
    assert compared.matched, compared.reason
    assert report["display"] == display and report["captured"] is True
    presentation = report["presentation"]
    assert presentation["hold_ended"] == "captured" and presentation["waited_for_capture_s"] < 30
    assert {k: presentation[k] for k in ready} == ready and ready["size"] == [256, 256]
    assert ready["frames"] == report["timings"]["frames"] + 2
    if display == "wayland":  # weston offers wp_presentation: every frame's fate is known
        assert ready["last_frame"] == "presented" and ready["discarded"] == 0
        assert ready["presented"] == ready["frames"]
        where = located(shot, readback)
    else:
        assert ready["last_frame"] == "shown" and ready["presented"] is None
        assert ready["position"] == [0, 0]
        where = located(shot, readback)
        assert where == (0, 0)
    assert where is not None, "the read-back is not in the capture"
    return presentation


@pytest.mark.parametrize("server", ["wayland", "x11"], indirect=True)
@pytest.mark.parametrize("api", ["gl", "vulkan"])
def test_it_presents_on_the_display_and_the_capture_shows_its_readback(server, api):
    report, ready, shot = present(server, api)
    presentation = shown_and_golden(server, report, ready, shot, api, server.kind)
    assert report["renderer"].startswith("llvmpipe") and report["probe"] == f"present-{api}"
    assert presentation["buffers"]["offered"] == (["wl_shm"] if server.kind == "wayland"
                                                   else ["MIT-SHM", "Present"])
    if api == "vulkan":
        assert report["swapchain"]["readback"] == "swapchain-image"


@pytest.mark.parametrize("server", ["x11"], indirect=True)
def test_without_a_capture_it_holds_the_window_for_hold_s_then_reports(server):
    report, ready, _ = present(server, "gl", capture=False,
                               args=["--rounds", "1", "--round-seconds", "0.05", "--hold-s", "1"])
    assert report["captured"] is False and report["presentation"]["hold_ended"] == "timeout"
    assert 1 <= report["presentation"]["waited_for_capture_s"] < 5


@pytest.mark.parametrize("server", ["wayland"], indirect=True)
def test_requests_take_the_older_marshal_call_where_libwayland_has_no_marshal_flags(server,
                                                                                    monkeypatch):
    """libwayland before 1.20 (bullseye's 1.18) has no wl_proxy_marshal_flags: a toplevel is
    made, configured and acknowledged through wl_proxy_marshal_constructor_versioned."""
    for name in ("XDG_RUNTIME_DIR", "WAYLAND_DISPLAY"):
        monkeypatch.setenv(name, server.env[name])
    steps = []
    original = wlproto.Client.__init__

    def without_marshal_flags(self):
        original(self)
        self.marshal_flags = None

    monkeypatch.setattr(wlproto.Client, "__init__", without_marshal_flags)
    window = windows.WaylandWindow(64, steps.append)
    try:
        assert window.wl.marshal_flags is None and window.configured and not window.closed
        assert steps == ["wl_display_connect", "wl_registry", "xdg_toplevel",
                         "xdg_surface.configure"]
        assert window.wl.wait(0.1) and window.wl.handler_errors == []
    finally:
        window.close()


@pytest.mark.parametrize("server", ["x11", "wayland"], indirect=True)
def test_a_display_server_that_dies_while_it_holds_ends_the_hold_not_the_report(server):
    report, _, _ = present(server, "gl", capture=False, stopping=server.proc)
    assert report["captured"] is False
    assert report["presentation"]["hold_ended"].startswith("display-error")


def trixie_root() -> Path:
    """The trixie runtime, built here where the suite's background build has not made it yet (it
    waits for that build)."""
    need("bwrap", package="bubblewrap")
    try:
        built = builds.ensure("trixie")
    except HarnessError as exc:
        if "display" in REQUIRED:
            pytest.fail(f"the trixie runtime is required here: {exc}")
        pytest.skip(f"the trixie runtime could not be built: {exc}")
    return built.root


@pytest.mark.parametrize(("server", "api"), [("wayland", "gl"), ("x11", "vulkan")],
                         indirect=["server"])
def test_it_presents_from_the_trixie_runtime(server, api):
    """Mesa 25 and Python 3.13 from the runtime's read-only root (bwrap); trixie has no
    libwayland-egl.so.1, so the probe fills struct wl_egl_window itself."""
    root = trixie_root()
    wrap = ["bwrap", "--ro-bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs",
            "/tmp", "--ro-bind", str(flat_copy(api, server.folder / "flat")), "/tmp/probe",
            "--bind", str(server.folder / "out"),
            "/tmp/out", "--setenv", "XDG_CACHE_HOME", "/tmp", "--die-with-parent"]
    if server.kind == "wayland":
        wrap += ["--bind", server.env["XDG_RUNTIME_DIR"], "/tmp/xdg", "--setenv",
                 "XDG_RUNTIME_DIR", "/tmp/xdg"]
    else:
        wrap += ["--ro-bind", "/tmp/.X11-unix", "/tmp/.X11-unix"]
    report, ready, shot = present(server, api, wrap=wrap, inside={
        "probe": "/tmp/probe", "out": "/tmp/out", "python": "python3"})
    shown_and_golden(server, report, ready, shot, api, server.kind)
    assert report["python"].startswith("3.13") and "LLVM 19" in report["renderer"]
    if api == "gl":
        assert report["native_window"] == "ctypes (no libwayland-egl.so.1)"


# The server on Mesa 22.3's fixed socket, in a mount namespace with a /tmp of its own: the test's
# folder (under the old /tmp) is bound into it again from the working folder; the server itself
# must not render with virpipe (it would connect to itself).
VTEST = """cd "$KEEP" && mount -t tmpfs tmpfs /tmp && mkdir -p "$KEEP" || exit 97
mount --no-canonicalize --bind . "$KEEP" || exit 97
env -u GALLIUM_DRIVER virgl_test_server --use-egl-surfaceless --socket-path=/tmp/.virgl_test \\
    >"$KEEP/vtest.log" 2>&1 &
server=$!
tries=0
while [ ! -S /tmp/.virgl_test ] && [ $tries -lt 400 ]; do sleep 0.05; tries=$((tries + 1)); done
"$@"
status=$?
kill $server
wait $server
exit $status
"""


@pytest.mark.parametrize("server", ["wayland"], indirect=True)
def test_it_presents_through_virpipe_and_a_vtest_server_of_its_own(server):
    """virgl_test_server on Mesa 22.3's fixed socket, /tmp/.virgl_test, in a mount namespace
    with a /tmp of its own (the machine's socket path is never touched); its frames come back to
    the probe and go to weston as shared memory."""
    need("virgl_test_server", "unshare", package="virgl-server")
    if os.geteuid() != 0:
        pytest.skip("a mount namespace of its own needs root")
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c", VTEST, "sh"]
    report, ready, shot = present(server, "gl", wrap=wrap, extra_env={
        "GALLIUM_DRIVER": "virpipe", "KEEP": str(server.folder)})
    shown_and_golden(server, report, ready, shot, "gl", "wayland")
    assert report["renderer"].startswith("virgl")
    assert "vtest-res-*" in report["presentation"]["buffers"]["memfds"]
