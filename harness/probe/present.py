#!/usr/bin/env python3
"""Present probe: the offscreen probes' scene presented in a window on a display server.

Runs *inside* the sandbox/guest/container with the standard library and ctypes only, beside the
frame (probelib), windows.py and wlproto.py, and gles.py (GL) or vk.py, vkapi.py, vkwsi.py and
vkpresent.py (Vulkan). It makes a size x size window on the display server its environment names
(Wayland: WAYLAND_DISPLAY with XDG_RUNTIME_DIR, an xdg_toplevel; X11: DISPLAY), presents timed
rounds of frames of the scene into it (GL: an EGL window surface; Vulkan: a swapchain), makes sure
the last frame is on screen and reads it back (probe.png, judged as the offscreen probe's), and
writes present-ready.json. It then keeps the window up until the harness has captured the screen
(present-captured appears in its output folder) or --hold-s passes, and prints its report."""
import ctypes
import ctypes.util
import json
import os
import sys
import time

import gles
import windows
from facts import mapped_libraries
from probelib import (ProbeError, arguments, declare, load_library, png_bytes, run, test_hooks,
                      timed_rounds)

PROBE_VERSION = 1
READY, CAPTURED = "present-ready.json", "present-captured"
EGL_PLATFORMS = {"wayland": 0x31D8, "x11": 0x31D5}  # EGL_PLATFORM_WAYLAND_KHR, _X11_KHR
EGL_WINDOW_BIT, EGL_ALPHA_SIZE, EGL_DEPTH_SIZE = 0x0004, 0x3021, 0x3025
EGL_NATIVE_VISUAL_ID, EGL_CONFIG_ID = 0x302E, 0x3028
EGL_RENDER_BUFFER, EGL_BACK_BUFFER = 0x3086, 0x3084
WL_EGL_WINDOW_VERSION = 3


class WlEglWindow(ctypes.Structure):
    """struct wl_egl_window (wayland-egl-backend.h, version 3): public ABI that
    wl_egl_window_create only fills in, for a runtime without libwayland-egl.so.1."""

    _fields_ = [("version", ctypes.c_ssize_t), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("dx", ctypes.c_int), ("dy", ctypes.c_int), ("attached_width", ctypes.c_int),
                ("attached_height", ctypes.c_int), ("driver_private", ctypes.c_void_p),
                ("resize_callback", ctypes.c_void_p),
                ("destroy_window_callback", ctypes.c_void_p), ("surface", ctypes.c_void_p)]


def egl_window(surface, size):
    """(the wl_egl_window for `surface`, how it was made, what destroys it)."""
    try:
        lib = ctypes.CDLL("libwayland-egl.so.1")
    except OSError:
        window = WlEglWindow(WL_EGL_WINDOW_VERSION, size, size, 0, 0, 0, 0, None, None, None,
                             surface)
        # nothing to free: the driver clears its hooks at eglDestroySurface; the closure keeps
        # the struct alive until then
        return (ctypes.addressof(window), "ctypes (no libwayland-egl.so.1)",
                lambda kept=window: None)
    create = declare(lib, "wl_egl_window_create", ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                     ctypes.c_int)
    destroy = declare(lib, "wl_egl_window_destroy", None, ctypes.c_void_p)
    native = create(surface, size, size)
    if not native:
        raise ProbeError("wl_egl_window_create failed", step="eglCreateWindowSurface")
    return native, "libwayland-egl.so.1", lambda: destroy(native)


class GlPresenter:
    """An EGL context on the window's display and a window surface on it, gles.py's scene drawn
    into the surface's back buffer; frame() presents one frame, last_frame() the last, returning
    its pixels read from the back buffer before the swap."""

    def __init__(self, args, window, step, seen):
        self.window, self.step, self.size = window, step, args.size
        lib = load_library(["libEGL.so.1", ctypes.util.find_library("EGL") or "libEGL.so"])
        self.egl = egl = gles.EGL(lib)
        vp, i32 = ctypes.c_void_p, ctypes.c_int32
        self.create_surface = declare(lib, "eglCreateWindowSurface", vp, vp, vp, vp,
                                      ctypes.POINTER(i32))
        self.swap = declare(lib, "eglSwapBuffers", ctypes.c_uint32, vp, vp)
        self.config_attrib = declare(lib, "eglGetConfigAttrib", ctypes.c_uint32, vp, vp, i32,
                                     ctypes.POINTER(i32))
        self.destroy_surface = declare(lib, "eglDestroySurface", ctypes.c_uint32, vp, vp)
        step("eglGetPlatformDisplay")
        address = egl.GetProcAddress(b"eglGetPlatformDisplayEXT")
        if not address:
            raise ProbeError("this EGL has no eglGetPlatformDisplayEXT",
                             step="eglGetPlatformDisplay")
        get_display = ctypes.CFUNCTYPE(vp, ctypes.c_uint32, vp, vp)(address)
        self.dpy = dpy = get_display(EGL_PLATFORMS[window.kind], window.native(), None)
        step("eglInitialize")
        major, minor = i32(), i32()
        if not dpy or not egl.Initialize(dpy, ctypes.byref(major), ctypes.byref(minor)):
            raise ProbeError("eglInitialize failed on the %s platform (error 0x%x)"
                             % (window.kind, egl.GetError()), step="eglInitialize")
        step("eglChooseConfig")
        config = self.choose_config()
        egl.BindAPI(gles.EGL_OPENGL_ES_API)
        step("eglCreateContext")
        self.context = egl.CreateContext(dpy, config, None, gles.int_array(
            [gles.EGL_CONTEXT_CLIENT_VERSION, 2, gles.EGL_NONE]))
        if not self.context:
            raise ProbeError("eglCreateContext failed (error 0x%x)" % egl.GetError(),
                             step="eglCreateContext")
        step("eglCreateWindowSurface")
        if window.kind == "wayland":
            self.native, made, self.destroy_native = egl_window(window.surface, args.size)
        else:
            self.native, made, self.destroy_native = window.window, "xlib-window", None
        self.surface = self.create_surface(dpy, config, self.native, gles.int_array(
            [EGL_RENDER_BUFFER, EGL_BACK_BUFFER, gles.EGL_NONE]))
        if not self.surface:
            raise ProbeError("eglCreateWindowSurface failed (error 0x%x)" % egl.GetError(),
                             step="eglCreateWindowSurface")
        step("eglMakeCurrent")
        if not egl.MakeCurrent(dpy, self.surface, self.surface, self.context):
            raise ProbeError("eglMakeCurrent failed (error 0x%x)" % egl.GetError(),
                             step="eglMakeCurrent")
        step("scene")
        self.gl = gl = gles.GL()
        self.scene = gles.Scene(gl)
        gl.Viewport(0, 0, args.size, args.size)
        gl.check("scene setup")
        self.info = {
            "egl_platform": window.kind, "egl_surface": "window", "native_window": made,
            "egl_config": {name: self.attrib(config, key) for name, key in (
                ("id", EGL_CONFIG_ID), ("alpha", EGL_ALPHA_SIZE), ("depth", EGL_DEPTH_SIZE),
                ("native_visual", EGL_NATIVE_VISUAL_ID))},
            "egl_vendor": (egl.QueryString(dpy, gles.EGL_VENDOR) or b"").decode(),
            "egl_version": (egl.QueryString(dpy, gles.EGL_VERSION) or b"").decode(),
            "vendor": gl.string(gles.GL_VENDOR), "renderer": gl.string(gles.GL_RENDERER),
            "version": gl.string(gles.GL_VERSION),
            "shading_language": gl.string(gles.GL_SL_VERSION)}
        seen.update(self.info)

    def attrib(self, config, name):
        value = ctypes.c_int32()
        self.config_attrib(self.dpy, config, name, ctypes.byref(value))
        return value.value

    def choose_config(self):
        """An RGB888 window config with a depth buffer for GLES2: on X11 one of the window's
        visual; with 8 bits of alpha where there is one (a compositor's capture of an XRGB
        buffer may carry its undefined X byte as alpha), the scene writes alpha 1 everywhere."""
        configs, count = (ctypes.c_void_p * 64)(), ctypes.c_int32()
        wanted = gles.int_array([gles.EGL_SURFACE_TYPE, EGL_WINDOW_BIT, gles.EGL_RENDERABLE_TYPE,
                                 gles.EGL_OPENGL_ES2_BIT, gles.EGL_RED_SIZE, 8,
                                 gles.EGL_GREEN_SIZE, 8, gles.EGL_BLUE_SIZE, 8, EGL_DEPTH_SIZE, 16,
                                 gles.EGL_NONE])
        if not self.egl.ChooseConfig(self.dpy, wanted, configs, 64,
                                     ctypes.byref(count)) or count.value < 1:
            raise ProbeError("eglChooseConfig found no GLES2 window config (error 0x%x)"
                             % self.egl.GetError(), step="eglChooseConfig")
        visual = getattr(self.window, "visual", None)
        return min(configs[:count.value], key=lambda c: (
            visual is not None and self.attrib(c, EGL_NATIVE_VISUAL_ID) != visual,
            self.attrib(c, EGL_ALPHA_SIZE) != 8, self.attrib(c, gles.EGL_RED_SIZE) != 8))

    def frame(self, last=False):
        self.step("draw")
        self.scene.draw()
        rows = gles.read_rgb(self.gl, self.size) if last else None
        self.window.before_commit(last)
        self.step("eglSwapBuffers")
        if not self.swap(self.dpy, self.surface):
            raise ProbeError("eglSwapBuffers failed (error 0x%x)" % self.egl.GetError(),
                             step="eglSwapBuffers")
        self.window.pump()
        return rows

    def last_frame(self):
        rows = self.frame(last=True)
        self.step("glFinish")
        self.gl.Finish()
        return rows

    def close(self):
        egl = self.egl
        egl.MakeCurrent(self.dpy, None, None, None)
        self.destroy_surface(self.dpy, self.surface)
        if self.destroy_native:
            self.destroy_native()
        egl.Terminate(self.dpy)


def write_ready(out, facts):
    """present-ready.json, whole or not at all: written aside, then renamed."""
    path = os.path.join(out, READY)
    with open(path + ".partial", "w") as handle:
        json.dump(facts, handle, sort_keys=True)
    os.replace(path + ".partial", path)


def ms(since):
    return round((time.perf_counter() - since) * 1000, 3)


def render(args, step, seen):
    timings: dict = {}
    started = time.perf_counter()
    window = (windows.WaylandWindow if args.display == "wayland"
              else windows.X11Window)(args.size, step)
    timings["window_ms"] = ms(started)
    started = time.perf_counter()
    if args.api == "gl":
        presenter = GlPresenter(args, window, step, seen)
    else:
        import vkpresent
        presenter = vkpresent.Presenter(args, window, step, seen)
    timings["context_ms"] = ms(started)
    test_hooks(args, step)
    started = time.perf_counter()
    presenter.frame()
    timings["first_frame_ms"] = ms(started)
    timings.update(timed_rounds(presenter.frame, args))
    started = time.perf_counter()
    rows = presenter.last_frame()
    shown = window.confirm(rows, step)
    timings["last_frame_ms"] = ms(started)
    ready = window.facts()
    ready.update(shown, frames=timings["frames"] + 2, size=[args.size, args.size],
                 display=args.display, image="probe.png", pid=os.getpid(),
                 buffers=dict(windows.mapped_buffers(), offered=ready.pop("offered")))
    with open(os.path.join(args.out, "probe.png"), "wb") as handle:
        handle.write(png_bytes(rows, args.size, args.size))
    write_ready(args.out, ready)
    started = time.perf_counter()
    ended = window.hold(os.path.join(args.out, CAPTURED), args.hold_s)
    info = dict(presenter.info, display=args.display, captured=ended == "captured",
                presentation=dict(ready, waited_for_capture_s=round(time.perf_counter() - started,
                                                                    3), hold_ended=ended),
                libraries=mapped_libraries())
    if not ended.startswith("display-error"):  # else the driver's teardown meets a dead socket
        step("teardown")
        presenter.close()
        window.close()
    return info, rows, timings


def main(argv=None):
    parser = arguments(__doc__)
    parser.add_argument("--api", choices=["gl", "vulkan"], required=True)
    parser.add_argument("--display", choices=["wayland", "x11"], required=True)
    parser.add_argument("--hold-s", type=float, default=20.0,
                        help="seconds to keep the window up for the capture at most")
    parser.set_defaults(step_timeout=20.0)  # a swap waiting for a frame callback that never comes
    args = parser.parse_args(argv)
    if args.api == "gl":
        return run("present-gl", "gles2", PROBE_VERSION, args, render, gles.diagnose)
    import vk
    return run("present-vulkan", "vulkan", PROBE_VERSION, args, render, vk.diagnose)


if __name__ == "__main__":
    sys.exit(main())
