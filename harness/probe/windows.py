"""The present probe's windows: an xdg_toplevel on Wayland, an Xlib window on X11.

Runs *inside* the sandbox/guest/container with the standard library and ctypes only, beside
present.py. Each window is made on the display server its environment names (WAYLAND_DISPLAY,
DISPLAY), is told before each frame's commit (Wayland: presentation feedback, and a frame callback
on the last frame), confirms that the last frame is on screen, stays mapped while the harness
captures it, and says what the probe itself can see of how its buffers travel. Every wait has a
deadline; the driver calls around it are the watchdog's steps."""
import ctypes
import os
import select
import socket
import time

from probelib import ProbeError, declare, load_library
from wlproto import Client

TITLE, APP_ID = b"gpu-harness present probe", b"org.gpuharness.PresentProbe"
CONFIRM_S = 5.0  # how long the last frame may take to reach the screen


def mapped_buffers():
    """Shared memory this process maps, from /proc/self/maps: SysV segments (MIT-SHM), memfds by
    name, numbers folded (wl_shm pools, a software WSI's images, vtest-res-* resources),
    dma-bufs and a DRM node's buffers; each counted once however often it is mapped."""
    sysv, dmabufs, drm = set(), set(), set()
    memfds: dict = {}
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                path = parts[5].strip() if len(parts) == 6 else ""
                key = (parts[3], parts[4]) if len(parts) > 4 else None
                if path.startswith("/SYSV"):
                    sysv.add(key)
                elif path.startswith("/memfd:"):
                    name = path[len("/memfd:"):].replace(" (deleted)", "")
                    stem = name.rstrip("0123456789")  # vtest-res-17: one name per kind
                    name = stem + "*" if stem != name else name
                    memfds.setdefault(name, set()).add(key)
                elif "dmabuf" in path:
                    dmabufs.add(key)
                elif path.startswith("/dev/dri/"):
                    drm.add(key)
    except OSError:
        return {"error": "/proc/self/maps unreadable"}
    return {"sysv_segments": len(sysv), "memfds": {n: len(k) for n, k in sorted(memfds.items())},
            "dmabufs": len(dmabufs), "drm_mappings": len(drm), "from": "/proc/self/maps"}


class WaylandWindow:
    """A size x size xdg_toplevel, configured and acknowledged before the driver draws into it."""

    kind = "wayland"

    def __init__(self, size, step):
        if not os.environ.get("WAYLAND_DISPLAY"):
            raise ProbeError("WAYLAND_DISPLAY is not set", step="wl_display_connect")
        self.size = size
        step("wl_display_connect")
        self.wl = wl = Client()
        self.display = wl.connect()
        step("wl_registry")
        self.registry, self.globals = wl.registry()
        offered = {g[1] for g in self.globals}
        for needed in ("wl_compositor", "xdg_wm_base"):
            if needed not in offered:
                raise ProbeError("the compositor offers no %s (it offers %s)"
                                 % (needed, ", ".join(sorted(offered))), step="wl_registry")
        step("xdg_toplevel")
        compositor = wl.bind(self.registry, self.globals, "wl_compositor", 4)
        self.wm_base = wl.bind(self.registry, self.globals, "xdg_wm_base", 1)
        wl.listen(self.wm_base, "xdg_wm_base", {
            "ping": lambda base, serial: wl.request(base, "xdg_wm_base", "pong", serial)})
        self.presentation = wl.bind(self.registry, self.globals, "wp_presentation", 1)
        self.clock_id = None
        if self.presentation:
            wl.listen(self.presentation, "wp_presentation",
                      {"clock_id": lambda _, clock: setattr(self, "clock_id", clock)})
        self.surface = wl.request(compositor, "wl_compositor", "create_surface", None,
                                  new="wl_surface")
        xdg_surface = wl.request(self.wm_base, "xdg_wm_base", "get_xdg_surface", None,
                                 self.surface, new="xdg_surface")
        self.configured: list = []
        self.suggested: list = []
        self.closed = False

        def configure(proxy, serial):
            wl.request(proxy, "xdg_surface", "ack_configure", serial)
            self.configured.append(serial)

        wl.listen(xdg_surface, "xdg_surface", {"configure": configure})
        toplevel = wl.request(xdg_surface, "xdg_surface", "get_toplevel", None,
                              new="xdg_toplevel")
        wl.listen(toplevel, "xdg_toplevel", {
            "configure": lambda _, width, height, states: self.suggested.append([width, height]),
            "close": lambda _: setattr(self, "closed", True)})
        wl.request(toplevel, "xdg_toplevel", "set_title", TITLE)
        wl.request(toplevel, "xdg_toplevel", "set_app_id", APP_ID)
        wl.request(self.surface, "wl_surface", "commit")  # no buffer yet: asks for a configure
        step("xdg_surface.configure")
        while not self.configured:
            wl.roundtrip("xdg_surface.configure")
        self.feedback: dict = {"requested": 0, "presented": 0, "discarded": 0, "refresh_ns": None}
        self.pending, self.last = {}, {}
        self.feedback_listener = wl.listener("wp_presentation_feedback", {
            "presented": lambda proxy, *times: self.answered(proxy, "presented", times[3]),
            "discarded": lambda proxy: self.answered(proxy, "discarded", None)})

    def native(self):
        return self.display

    def before_commit(self, last=False):
        """Ask for the fate of the commit the driver makes next (eglSwapBuffers,
        vkQueuePresentKHR): presentation feedback where offered, and on the last frame a frame
        callback too."""
        wl, frame = self.wl, self.feedback["requested"]
        if self.presentation:
            feedback = wl.request(self.presentation, "wp_presentation", "feedback", self.surface,
                                  None, new="wp_presentation_feedback")
            self.pending[feedback] = frame
            wl.listen(feedback, "wp_presentation_feedback", self.feedback_listener)
            self.feedback["requested"] += 1
            if last:
                self.last["feedback"] = frame
        if last:
            callback = wl.request(self.surface, "wl_surface", "frame", None, new="wl_callback")
            wl.listen(callback, "wl_callback",
                      {"done": lambda proxy, _: self.last.update(frame_callback=True)})

    def answered(self, proxy, fate, refresh):
        frame = self.pending.pop(proxy, None)
        self.feedback[fate] += 1
        if refresh:
            self.feedback["refresh_ns"] = refresh
        if frame is not None and frame == self.last.get("feedback"):
            self.last["fate"] = fate
        self.wl.destroy(proxy)

    def pump(self):
        self.wl.pump()

    def confirm(self, rows, step):
        """Wait until the last frame's frame callback (and its feedback, where offered) came
        back: the compositor has shown it (or, if discarded, says so)."""
        step("wl_surface.frame")
        deadline = time.monotonic() + CONFIRM_S
        while not (self.last.get("frame_callback")
                   and ("feedback" not in self.last or "fate" in self.last)):
            if time.monotonic() > deadline:
                raise ProbeError("the compositor did not answer the last frame's frame callback "
                                 "within %g s" % CONFIRM_S, step="wl_surface.frame")
            if not self.wl.wait(deadline - time.monotonic()):
                raise ProbeError("the connection failed: " + self.wl.error(),
                                 step="wl_surface.frame")
        step(None)
        return {"last_frame": self.last.get("fate", "frame-callback")}

    def hold(self, until, seconds):
        """Keep the window up, answering the compositor, until `until` exists or `seconds`
        pass: why it stopped."""
        deadline = time.monotonic() + seconds
        while not os.path.exists(until):
            if self.closed:
                return "closed"
            if time.monotonic() >= deadline:
                return "timeout"
            if not self.wl.wait(min(0.05, deadline - time.monotonic())):
                return "display-error: " + self.wl.error()
        return "captured"

    def facts(self):
        counted = self.presentation is not None
        offered = sorted({g[1] for g in self.globals})
        return {"presented": self.feedback["presented"] if counted else None,
                "discarded": self.feedback["discarded"] if counted else None,
                "feedback": "wp_presentation" if counted else "frame-callback",
                "refresh_ns": self.feedback["refresh_ns"], "clock_id": self.clock_id,
                "configure_sizes": self.suggested[:4], "position": None,
                "offered": [g for g in offered if g in ("wl_shm", "zwp_linux_dmabuf_v1", "wl_drm")],
                "globals": offered, "handler_errors": self.wl.handler_errors[:5]}

    def close(self):
        self.wl.disconnect()


class XEvent(ctypes.Union):
    _fields_ = [("type", ctypes.c_int), ("pad", ctypes.c_long * 24)]


class XErrorEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("display", ctypes.c_void_p),
                ("resourceid", ctypes.c_ulong), ("serial", ctypes.c_ulong),
                ("error_code", ctypes.c_ubyte), ("request_code", ctypes.c_ubyte),
                ("minor_code", ctypes.c_ubyte)]


class XImage(ctypes.Structure):
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("xoffset", ctypes.c_int),
                ("format", ctypes.c_int), ("data", ctypes.c_void_p), ("byte_order", ctypes.c_int),
                ("bitmap_unit", ctypes.c_int), ("bitmap_bit_order", ctypes.c_int),
                ("bitmap_pad", ctypes.c_int), ("depth", ctypes.c_int),
                ("bytes_per_line", ctypes.c_int), ("bits_per_pixel", ctypes.c_int),
                ("red_mask", ctypes.c_ulong), ("green_mask", ctypes.c_ulong),
                ("blue_mask", ctypes.c_ulong), ("obdata", ctypes.c_void_p),
                ("create_image", ctypes.c_void_p), ("destroy_image", ctypes.c_void_p)]


STRUCTURE_NOTIFY, EXPOSURE, MAP_NOTIFY, Z_PIXMAP, ALL_PLANES = (1 << 17, 1 << 15, 19, 2,
                                                            ctypes.c_ulong(-1).value)
X_EXTENSIONS = (b"MIT-SHM", b"Present", b"DRI3", b"DRI2", b"GLX", b"Composite")
ERROR_HANDLERS: list = []


class X11Window:
    """A size x size window at the root's top left (no window manager places it), mapped."""

    kind = "x11"

    def __init__(self, size, step):
        if not os.environ.get("DISPLAY"):
            raise ProbeError("DISPLAY is not set", step="XOpenDisplay")
        self.size, self.errors = size, []
        lib = load_library(["libX11.so.6"])
        vp, ul, i, u, pi = (ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_uint,
                            ctypes.POINTER(ctypes.c_int))
        declare(lib, "XInitThreads", i)()
        self.x = {name: declare(lib, name, restype, *argtypes) for name, restype, argtypes in (
            ("XOpenDisplay", vp, [ctypes.c_char_p]), ("XDefaultRootWindow", ul, [vp]),
            ("XCreateSimpleWindow", ul, [vp, ul, i, i, u, u, u, ul, ul]),
            ("XSetWindowBackgroundPixmap", i, [vp, ul, ul]),
            ("XStoreName", i, [vp, ul, ctypes.c_char_p]),
            ("XSelectInput", i, [vp, ul, ctypes.c_long]), ("XMapWindow", i, [vp, ul]),
            ("XPending", i, [vp]), ("XNextEvent", i, [vp, ctypes.POINTER(XEvent)]),
            ("XSync", i, [vp, i]), ("XConnectionNumber", i, [vp]),
            ("XQueryExtension", i, [vp, ctypes.c_char_p, pi, pi, pi]),
            ("XTranslateCoordinates", i, [vp, ul, ul, i, i, pi, pi, ctypes.POINTER(ul)]),
            ("XGetImage", ctypes.POINTER(XImage), [vp, ul, i, i, u, u, ul, i]),
            ("XSetErrorHandler", vp, [vp]), ("XDestroyWindow", i, [vp, ul]),
            ("XDefaultScreen", i, [vp]), ("XDefaultVisual", vp, [vp, i]),
            ("XVisualIDFromVisual", ul, [vp]),
            ("XCloseDisplay", i, [vp]))}
        on_error = ctypes.CFUNCTYPE(i, vp, ctypes.POINTER(XErrorEvent))(self.error)
        ERROR_HANDLERS.append(on_error)  # Xlib keeps it for the process's life
        self.x["XSetErrorHandler"](ctypes.cast(on_error, vp))  # Xlib's own exits
        step("XOpenDisplay")
        self.dpy = self.x["XOpenDisplay"](None)
        if not self.dpy:
            raise ProbeError("XOpenDisplay failed: no X server at DISPLAY=%s"
                             % os.environ["DISPLAY"], step="XOpenDisplay")
        step("XCreateSimpleWindow")
        self.root = self.x["XDefaultRootWindow"](self.dpy)
        self.visual = self.x["XVisualIDFromVisual"](self.x["XDefaultVisual"](
            self.dpy, self.x["XDefaultScreen"](self.dpy)))
        self.window = self.x["XCreateSimpleWindow"](self.dpy, self.root, 0, 0, size, size, 0, 0, 0)
        self.x["XSetWindowBackgroundPixmap"](self.dpy, self.window, 0)  # None: never cleared
        self.x["XStoreName"](self.dpy, self.window, TITLE)
        self.x["XSelectInput"](self.dpy, self.window, STRUCTURE_NOTIFY | EXPOSURE)
        self.x["XMapWindow"](self.dpy, self.window)
        step("XMapWindow")
        if not self.events(CONFIRM_S, MAP_NOTIFY):
            raise ProbeError("no MapNotify within %g s" % CONFIRM_S, step="XMapWindow")

    def error(self, _, event):
        e = event.contents
        self.errors.append({"error_code": e.error_code, "request_code": e.request_code,
                            "minor_code": e.minor_code})
        return 0

    def native(self):
        return self.dpy

    def events(self, seconds, wanted=None):
        """Read the window's events for at most `seconds`; True once `wanted` came. A server
        that closed the connection is a ProbeError here, before Xlib's own handler exits."""
        deadline, event = time.monotonic() + seconds, XEvent()
        fd = self.x["XConnectionNumber"](self.dpy)
        while True:
            if select.select([fd], [], [], 0)[0] and self.hung_up(fd):
                raise ProbeError("the X server closed the connection", step="XPending")
            while self.x["XPending"](self.dpy):
                self.x["XNextEvent"](self.dpy, ctypes.byref(event))
                if wanted is not None and event.type == wanted:
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([fd], [], [], min(left, 0.05))

    @staticmethod
    def hung_up(fd):
        peer = socket.socket(fileno=os.dup(fd))
        try:
            return peer.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except OSError:
            return False
        finally:
            peer.close()

    def before_commit(self, last=False):
        pass

    def pump(self):
        self.events(0)

    def shown_rows(self):
        """What the window shows now, RGB rows top first (XGetImage); None if unreadable."""
        image = self.x["XGetImage"](self.dpy, self.window, 0, 0, self.size, self.size, ALL_PLANES,
                                    Z_PIXMAP)
        if not image:
            return None
        img, rows = image.contents, None
        if img.bits_per_pixel == 32 and img.red_mask == 0xFF0000 and img.byte_order == 0:
            raw = ctypes.string_at(img.data, img.bytes_per_line * self.size)
            rows = []
            for y in range(self.size):
                line = raw[y * img.bytes_per_line:y * img.bytes_per_line + self.size * 4]
                rgb = bytearray(self.size * 3)
                rgb[0::3], rgb[1::3], rgb[2::3] = line[2::4], line[1::4], line[0::4]
                rows.append(bytes(rgb))
        ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(img.destroy_image)(image)
        return rows

    def confirm(self, rows, step):
        """XSync (the driver's puts are in the server), then read the window until it shows the
        read-back frame: a presenting thread of the driver may still be putting it."""
        step("XSync")
        deadline = time.monotonic() + CONFIRM_S
        while True:
            self.x["XSync"](self.dpy, 0)
            shown = self.shown_rows()
            if shown is None or shown == rows or time.monotonic() > deadline:
                break
            self.events(0.02)
        step(None)
        return {"last_frame": "shown" if shown == rows else "not-shown" if shown else "unreadable"}

    def hold(self, until, seconds):
        deadline = time.monotonic() + seconds
        while not os.path.exists(until):
            if time.monotonic() >= deadline:
                return "timeout"
            try:
                self.events(min(0.05, deadline - time.monotonic()))
            except ProbeError as exc:
                return "display-error: %s" % exc
        return "captured"

    def facts(self):
        found = {}
        for name in X_EXTENSIONS:
            codes = [ctypes.c_int() for _ in range(3)]
            found[name.decode()] = bool(self.x["XQueryExtension"](
                self.dpy, name, *[ctypes.byref(c) for c in codes]))
        x, y, child = ctypes.c_int(), ctypes.c_int(), ctypes.c_ulong()
        self.x["XTranslateCoordinates"](self.dpy, self.window, self.root, 0, 0, ctypes.byref(x),
                                        ctypes.byref(y), ctypes.byref(child))
        return {"presented": None, "discarded": None, "feedback": "none", "refresh_ns": None,
                "position": [x.value, y.value], "window": self.window,
                "offered": [n for n in ("MIT-SHM", "DRI3", "Present") if found[n]],
                "extensions": found, "x_errors": self.errors[:5]}

    def close(self):
        self.x["XDestroyWindow"](self.dpy, self.window)
        self.x["XCloseDisplay"](self.dpy)
