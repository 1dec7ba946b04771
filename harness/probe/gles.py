#!/usr/bin/env python3
"""GLES probe: runs *inside* the sandbox/guest with the standard library and ctypes only.

Renders a deterministic scene (vertex-coloured triangle cut by a textured quad through the
depth test) into an FBO on an EGL context, reads it back, writes a PNG and prints one JSON
line describing what rendered it and what the process could see.
"""
import ctypes
import ctypes.util
import os
import struct
import sys
import time

from capsule import CAPSULE_ENV, Capsule
from facts import dri_drivers, loader_diagnosis, vendor_libraries
from probelib import (ProbeError, arguments, declare, load_library, run, test_hooks,
                      timed_rounds)

PROBE_VERSION = 1

# EGL
EGL_DEFAULT_DISPLAY = 0
EGL_PLATFORM_SURFACELESS_MESA = 0x31DD
EGL_NONE = 0x3038
EGL_VENDOR, EGL_VERSION, EGL_EXTENSIONS = 0x3053, 0x3054, 0x3055
EGL_SURFACE_TYPE, EGL_PBUFFER_BIT = 0x3033, 0x0001
EGL_RENDERABLE_TYPE, EGL_OPENGL_ES2_BIT = 0x3040, 0x0004
EGL_RED_SIZE, EGL_GREEN_SIZE, EGL_BLUE_SIZE = 0x3024, 0x3023, 0x3022
EGL_OPENGL_ES_API = 0x30A0
EGL_CONTEXT_CLIENT_VERSION = 0x3098
EGL_WIDTH, EGL_HEIGHT = 0x3057, 0x3056

# GLES2
GL_VENDOR, GL_RENDERER, GL_VERSION, GL_SL_VERSION = 0x1F00, 0x1F01, 0x1F02, 0x8B8C
GL_FRAMEBUFFER, GL_RENDERBUFFER, GL_FRAMEBUFFER_COMPLETE = 0x8D40, 0x8D41, 0x8CD5
GL_COLOR_ATTACHMENT0, GL_DEPTH_ATTACHMENT, GL_DEPTH_COMPONENT16 = 0x8CE0, 0x8D00, 0x81A5
GL_TEXTURE_2D, GL_TEXTURE0, GL_RGBA, GL_UNSIGNED_BYTE = 0x0DE1, 0x84C0, 0x1908, 0x1401
GL_TEXTURE_MIN_FILTER, GL_TEXTURE_MAG_FILTER, GL_NEAREST = 0x2801, 0x2800, 0x2600
GL_TEXTURE_WRAP_S, GL_TEXTURE_WRAP_T, GL_REPEAT, GL_CLAMP_TO_EDGE = 0x2802, 0x2803, 0x2901, 0x812F
GL_VERTEX_SHADER, GL_FRAGMENT_SHADER = 0x8B31, 0x8B30
GL_COMPILE_STATUS, GL_LINK_STATUS = 0x8B81, 0x8B82
GL_ARRAY_BUFFER, GL_STATIC_DRAW, GL_FLOAT, GL_TRIANGLES = 0x8892, 0x88E4, 0x1406, 0x0004
GL_DEPTH_TEST, GL_LESS = 0x0B71, 0x0201
GL_COLOR_BUFFER_BIT, GL_DEPTH_BUFFER_BIT = 0x4000, 0x0100
GL_PACK_ALIGNMENT = 0x0D05

VERTEX_SHADER = b"""
attribute vec3 a_pos;
attribute vec3 a_color;
attribute vec2 a_uv;
varying vec3 v_color;
varying vec2 v_uv;
void main() {
    v_color = a_color;
    v_uv = a_uv;
    gl_Position = vec4(a_pos, 1.0);
}
"""

FRAGMENT_SHADER = b"""
precision mediump float;
uniform sampler2D u_tex;
uniform float u_textured;
varying vec3 v_color;
varying vec2 v_uv;
void main() {
    vec4 texel = texture2D(u_tex, v_uv);
    gl_FragColor = mix(vec4(v_color, 1.0), texel, u_textured);
}
"""

# x, y, z, r, g, b, u, v. The triangle runs from z=-0.6 (in front) to z=+0.6 (behind), so the
# depth test cuts it along a line where it crosses the quad at z=0.
TRIANGLE = [
    -0.85, -0.80, -0.6, 1.0, 0.1, 0.1, 0.0, 0.0,
    0.85, -0.55, -0.6, 0.1, 1.0, 0.1, 0.0, 0.0,
    0.05, 0.90, 0.6, 0.1, 0.2, 1.0, 0.0, 0.0,
]
QUAD = [
    -0.6, -0.6, 0.0, 0, 0, 0, 0.0, 0.0,
    0.6, -0.6, 0.0, 0, 0, 0, 2.0, 0.0,
    0.6, 0.6, 0.0, 0, 0, 0, 2.0, 2.0,
    -0.6, -0.6, 0.0, 0, 0, 0, 0.0, 0.0,
    0.6, 0.6, 0.0, 0, 0, 0, 2.0, 2.0,
    -0.6, 0.6, 0.0, 0, 0, 0, 0.0, 2.0,
]
CHECKER_SIZE = 8
CHECKER_COLORS = ((250, 160, 30, 255), (240, 240, 230, 255))


class EGL:
    def __init__(self, lib=None):
        lib = lib or load_library(["libEGL.so.1", ctypes.util.find_library("EGL") or "libEGL.so"])
        vp, i32, u32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint32
        self.GetDisplay = declare(lib, "eglGetDisplay", vp, vp)
        self.Initialize = declare(lib, "eglInitialize", u32, vp, ctypes.POINTER(i32),
                                  ctypes.POINTER(i32))
        self.QueryString = declare(lib, "eglQueryString", ctypes.c_char_p, vp, i32)
        self.ChooseConfig = declare(lib, "eglChooseConfig", u32, vp, ctypes.POINTER(i32),
                                    ctypes.POINTER(vp), i32, ctypes.POINTER(i32))
        self.BindAPI = declare(lib, "eglBindAPI", u32, u32)
        self.CreateContext = declare(lib, "eglCreateContext", vp, vp, vp, vp, ctypes.POINTER(i32))
        self.CreatePbufferSurface = declare(lib, "eglCreatePbufferSurface", vp, vp, vp,
                                            ctypes.POINTER(i32))
        self.MakeCurrent = declare(lib, "eglMakeCurrent", u32, vp, vp, vp, vp)
        self.GetError = declare(lib, "eglGetError", i32)
        self.Terminate = declare(lib, "eglTerminate", u32, vp)
        self.GetProcAddress = declare(lib, "eglGetProcAddress", vp, ctypes.c_char_p)

    def platform_display(self, platform):
        addr = self.GetProcAddress(b"eglGetPlatformDisplayEXT")
        if not addr:
            return None
        proto = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p,
                                 ctypes.POINTER(ctypes.c_int32))
        return proto(addr)(platform, None, None)


def int_array(values):
    return (ctypes.c_int32 * len(values))(*values)


def open_display(egl):
    """Surfaceless first (no window system needed), then the default display."""
    client_exts = (egl.QueryString(None, EGL_EXTENSIONS) or b"").decode()
    attempts = []
    if "EGL_MESA_platform_surfaceless" in client_exts:
        attempts.append(("surfaceless",
                         lambda: egl.platform_display(EGL_PLATFORM_SURFACELESS_MESA)))
    attempts.append(("default", lambda: egl.GetDisplay(EGL_DEFAULT_DISPLAY)))
    errors = []
    for name, get in attempts:
        dpy = get()
        major, minor = ctypes.c_int32(), ctypes.c_int32()
        if dpy and egl.Initialize(dpy, ctypes.byref(major), ctypes.byref(minor)):
            return name, dpy
        errors.append("%s: eglInitialize error 0x%x" % (name, egl.GetError()))
    raise ProbeError("no EGL display: " + "; ".join(errors))


def create_context(egl, dpy):
    attribs = int_array([EGL_SURFACE_TYPE, EGL_PBUFFER_BIT, EGL_RENDERABLE_TYPE, EGL_OPENGL_ES2_BIT,
                         EGL_RED_SIZE, 8, EGL_GREEN_SIZE, 8, EGL_BLUE_SIZE, 8, EGL_NONE])
    config, count = ctypes.c_void_p(), ctypes.c_int32()
    if not egl.ChooseConfig(dpy, attribs, ctypes.byref(config), 1,
                            ctypes.byref(count)) or count.value < 1:
        raise ProbeError("eglChooseConfig found no GLES2 config (error 0x%x)" % egl.GetError())
    egl.BindAPI(EGL_OPENGL_ES_API)
    ctx = egl.CreateContext(dpy, config, None, int_array([EGL_CONTEXT_CLIENT_VERSION, 2, EGL_NONE]))
    if not ctx:
        raise ProbeError("eglCreateContext failed (error 0x%x)" % egl.GetError())
    display_exts = (egl.QueryString(dpy, EGL_EXTENSIONS) or b"").decode()
    surface = None
    if "EGL_KHR_surfaceless_context" not in display_exts:
        surface = egl.CreatePbufferSurface(dpy, config, int_array([EGL_WIDTH, 1, EGL_HEIGHT, 1,
                                                                   EGL_NONE]))
        if not surface:
            raise ProbeError("eglCreatePbufferSurface failed (error 0x%x)" % egl.GetError())
    if not egl.MakeCurrent(dpy, surface, surface, ctx):
        raise ProbeError("eglMakeCurrent failed (error 0x%x)" % egl.GetError())
    return "pbuffer" if surface else "surfaceless-context"


class GL:
    def __init__(self, lib=None):
        lib = lib or load_library(["libGLESv2.so.2", ctypes.util.find_library("GLESv2")
                                   or "libGLESv2.so"])
        vp, u32, i32, f32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int32, ctypes.c_float
        self.GetString = declare(lib, "glGetString", ctypes.c_char_p, u32)
        self.GetError = declare(lib, "glGetError", u32)
        self.CreateShader = declare(lib, "glCreateShader", u32, u32)
        self.ShaderSource = declare(lib, "glShaderSource", None, u32, i32,
                                    ctypes.POINTER(ctypes.c_char_p), vp)
        self.CompileShader = declare(lib, "glCompileShader", None, u32)
        self.GetShaderiv = declare(lib, "glGetShaderiv", None, u32, u32, ctypes.POINTER(i32))
        self.GetShaderInfoLog = declare(lib, "glGetShaderInfoLog", None, u32, i32, vp,
                                        ctypes.c_char_p)
        self.CreateProgram = declare(lib, "glCreateProgram", u32)
        self.AttachShader = declare(lib, "glAttachShader", None, u32, u32)
        self.BindAttribLocation = declare(lib, "glBindAttribLocation", None, u32, u32,
                                          ctypes.c_char_p)
        self.LinkProgram = declare(lib, "glLinkProgram", None, u32)
        self.GetProgramiv = declare(lib, "glGetProgramiv", None, u32, u32, ctypes.POINTER(i32))
        self.UseProgram = declare(lib, "glUseProgram", None, u32)
        self.GetUniformLocation = declare(lib, "glGetUniformLocation", i32, u32, ctypes.c_char_p)
        self.Uniform1i = declare(lib, "glUniform1i", None, i32, i32)
        self.Uniform1f = declare(lib, "glUniform1f", None, i32, f32)
        self.GenBuffers = declare(lib, "glGenBuffers", None, i32, ctypes.POINTER(u32))
        self.BindBuffer = declare(lib, "glBindBuffer", None, u32, u32)
        self.BufferData = declare(lib, "glBufferData", None, u32, ctypes.c_ssize_t, vp, u32)
        self.EnableVertexAttribArray = declare(lib, "glEnableVertexAttribArray", None, u32)
        self.VertexAttribPointer = declare(lib, "glVertexAttribPointer", None, u32, i32, u32,
                                           ctypes.c_ubyte, i32, vp)
        self.DrawArrays = declare(lib, "glDrawArrays", None, u32, i32, i32)
        self.GenTextures = declare(lib, "glGenTextures", None, i32, ctypes.POINTER(u32))
        self.BindTexture = declare(lib, "glBindTexture", None, u32, u32)
        self.ActiveTexture = declare(lib, "glActiveTexture", None, u32)
        self.TexImage2D = declare(lib, "glTexImage2D", None, u32, i32, i32, i32, i32, i32, u32, u32,
                                  vp)
        self.TexParameteri = declare(lib, "glTexParameteri", None, u32, u32, i32)
        self.GenFramebuffers = declare(lib, "glGenFramebuffers", None, i32, ctypes.POINTER(u32))
        self.BindFramebuffer = declare(lib, "glBindFramebuffer", None, u32, u32)
        self.FramebufferTexture2D = declare(lib, "glFramebufferTexture2D", None, u32, u32, u32, u32,
                                            i32)
        self.GenRenderbuffers = declare(lib, "glGenRenderbuffers", None, i32, ctypes.POINTER(u32))
        self.BindRenderbuffer = declare(lib, "glBindRenderbuffer", None, u32, u32)
        self.RenderbufferStorage = declare(lib, "glRenderbufferStorage", None, u32, u32, i32, i32)
        self.FramebufferRenderbuffer = declare(lib, "glFramebufferRenderbuffer", None, u32, u32,
                                               u32, u32)
        self.CheckFramebufferStatus = declare(lib, "glCheckFramebufferStatus", u32, u32)
        self.Viewport = declare(lib, "glViewport", None, i32, i32, i32, i32)
        self.ClearColor = declare(lib, "glClearColor", None, f32, f32, f32, f32)
        self.Clear = declare(lib, "glClear", None, u32)
        self.Enable = declare(lib, "glEnable", None, u32)
        self.DepthFunc = declare(lib, "glDepthFunc", None, u32)
        self.Finish = declare(lib, "glFinish", None)
        self.PixelStorei = declare(lib, "glPixelStorei", None, u32, i32)
        self.ReadPixels = declare(lib, "glReadPixels", None, i32, i32, i32, i32, u32, u32, vp)

    def string(self, name):
        value = self.GetString(name)
        return value.decode("utf-8", "replace") if value else ""

    def gen(self, fn):
        handle = ctypes.c_uint32()
        fn(1, ctypes.byref(handle))
        return handle.value

    def check(self, step):
        err = self.GetError()
        if err:
            raise ProbeError("GL error 0x%x after %s" % (err, step))


def compile_shader(gl, kind, source):
    shader = gl.CreateShader(kind)
    src = ctypes.c_char_p(source)
    gl.ShaderSource(shader, 1, ctypes.byref(src), None)
    gl.CompileShader(shader)
    ok = ctypes.c_int32()
    gl.GetShaderiv(shader, GL_COMPILE_STATUS, ctypes.byref(ok))
    if not ok.value:
        log = ctypes.create_string_buffer(4096)
        gl.GetShaderInfoLog(shader, 4096, None, log)
        raise ProbeError("shader compile failed: " + log.value.decode("utf-8", "replace").strip())
    return shader


def build_program(gl):
    program = gl.CreateProgram()
    gl.AttachShader(program, compile_shader(gl, GL_VERTEX_SHADER, VERTEX_SHADER))
    gl.AttachShader(program, compile_shader(gl, GL_FRAGMENT_SHADER, FRAGMENT_SHADER))
    for index, name in enumerate((b"a_pos", b"a_color", b"a_uv")):
        gl.BindAttribLocation(program, index, name)
    gl.LinkProgram(program)
    ok = ctypes.c_int32()
    gl.GetProgramiv(program, GL_LINK_STATUS, ctypes.byref(ok))
    if not ok.value:
        raise ProbeError("program link failed")
    gl.UseProgram(program)
    gl.Uniform1i(gl.GetUniformLocation(program, b"u_tex"), 0)
    return program


def checker_texels():
    rows = []
    for y in range(CHECKER_SIZE):
        for x in range(CHECKER_SIZE):
            rows.append(bytes(CHECKER_COLORS[(x + y) % 2]))
    return b"".join(rows)


def upload_texture(gl):
    tex = gl.gen(gl.GenTextures)
    gl.ActiveTexture(GL_TEXTURE0)
    gl.BindTexture(GL_TEXTURE_2D, tex)
    data = checker_texels()
    gl.TexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, CHECKER_SIZE, CHECKER_SIZE, 0, GL_RGBA,
                  GL_UNSIGNED_BYTE, data)
    for pname, value in ((GL_TEXTURE_MIN_FILTER, GL_NEAREST), (GL_TEXTURE_MAG_FILTER, GL_NEAREST),
                         (GL_TEXTURE_WRAP_S, GL_REPEAT), (GL_TEXTURE_WRAP_T, GL_REPEAT)):
        gl.TexParameteri(GL_TEXTURE_2D, pname, value)
    gl.check("texture upload")


def upload_geometry(gl, vertices):
    buf = gl.gen(gl.GenBuffers)
    gl.BindBuffer(GL_ARRAY_BUFFER, buf)
    data = struct.pack("%df" % len(vertices), *vertices)
    gl.BufferData(GL_ARRAY_BUFFER, len(data), data, GL_STATIC_DRAW)
    return buf, len(vertices) // 8


def bind_geometry(gl, buf):
    gl.BindBuffer(GL_ARRAY_BUFFER, buf)
    stride = 8 * 4
    for index, (size, offset) in enumerate(((3, 0), (3, 12), (2, 24))):
        gl.EnableVertexAttribArray(index)
        gl.VertexAttribPointer(index, size, GL_FLOAT, 0, stride, ctypes.c_void_p(offset))


def create_target(gl, size):
    fbo = gl.gen(gl.GenFramebuffers)
    gl.BindFramebuffer(GL_FRAMEBUFFER, fbo)
    color = gl.gen(gl.GenTextures)
    gl.BindTexture(GL_TEXTURE_2D, color)
    gl.TexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, size, size, 0, GL_RGBA, GL_UNSIGNED_BYTE, None)
    gl.TexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST)
    gl.TexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST)
    gl.FramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, color, 0)
    depth = gl.gen(gl.GenRenderbuffers)
    gl.BindRenderbuffer(GL_RENDERBUFFER, depth)
    gl.RenderbufferStorage(GL_RENDERBUFFER, GL_DEPTH_COMPONENT16, size, size)
    gl.FramebufferRenderbuffer(GL_FRAMEBUFFER, GL_DEPTH_ATTACHMENT, GL_RENDERBUFFER, depth)
    status = gl.CheckFramebufferStatus(GL_FRAMEBUFFER)
    if status != GL_FRAMEBUFFER_COMPLETE:
        raise ProbeError("framebuffer incomplete: 0x%x" % status)
    gl.Viewport(0, 0, size, size)


class Scene:
    def __init__(self, gl):
        self.gl = gl
        self.program = build_program(gl)
        self.textured = gl.GetUniformLocation(self.program, b"u_textured")
        self.triangle = upload_geometry(gl, TRIANGLE)
        self.quad = upload_geometry(gl, QUAD)
        upload_texture(gl)
        gl.Enable(GL_DEPTH_TEST)
        gl.DepthFunc(GL_LESS)

    def draw(self):
        gl = self.gl
        gl.ClearColor(0.08, 0.09, 0.18, 1.0)
        gl.Clear(GL_COLOR_BUFFER_BIT | GL_DEPTH_BUFFER_BIT)
        for (buf, count), textured in ((self.triangle, 0.0), (self.quad, 1.0)):
            bind_geometry(gl, buf)
            gl.Uniform1f(self.textured, textured)
            gl.DrawArrays(GL_TRIANGLES, 0, count)


def read_rgb(gl, size):
    """Pixels top row first, RGB (alpha is dropped: it says nothing about the path)."""
    buf = ctypes.create_string_buffer(size * size * 4)
    gl.PixelStorei(GL_PACK_ALIGNMENT, 1)
    gl.ReadPixels(0, 0, size, size, GL_RGBA, GL_UNSIGNED_BYTE, buf)
    gl.check("glReadPixels")
    raw = buf.raw
    rows = []
    for y in range(size - 1, -1, -1):
        row = raw[y * size * 4:(y + 1) * size * 4]
        rgb = bytearray(size * 3)
        rgb[0::3], rgb[1::3], rgb[2::3] = row[0::4], row[1::4], row[2::4]
        rows.append(bytes(rgb))
    return rows


def render(args, step, seen):
    timings: dict = {}
    t0 = time.perf_counter()
    step("context")
    capsule = Capsule(os.environ[CAPSULE_ENV]) if os.environ.get(CAPSULE_ENV) else None
    egl = EGL(capsule.library("libEGL.so.1") if capsule else None)
    platform, dpy = open_display(egl)
    surface_mode = create_context(egl, dpy)
    timings["context_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    gl = GL(capsule.library("libGLESv2.so.2") if capsule else None)
    info = {
        "egl_platform": platform,
        "egl_surface": surface_mode,
        "egl_vendor": (egl.QueryString(dpy, EGL_VENDOR) or b"").decode(),
        "egl_version": (egl.QueryString(dpy, EGL_VERSION) or b"").decode(),
        "vendor": gl.string(GL_VENDOR),
        "renderer": gl.string(GL_RENDERER),
        "version": gl.string(GL_VERSION),
        "shading_language": gl.string(GL_SL_VERSION),
    }
    seen.update(info)

    test_hooks(args, step)
    t1 = time.perf_counter()
    step("first-frame")
    create_target(gl, args.size)
    scene = Scene(gl)
    scene.draw()
    rows = read_rgb(gl, args.size)
    timings["first_frame_ms"] = round((time.perf_counter() - t1) * 1000, 3)
    step("frames")

    def frame():
        scene.draw()
        gl.Finish()

    timings.update(timed_rounds(frame, args))
    gl.check("frame loop")
    if capsule:
        info["capsule"] = {"namespace": capsule.lmid, "libraries": capsule.loaded,
                           "dlopen_redirected_in": capsule.redirected,
                           "dlopen_calls": capsule.calls[:20],
                           "namespaces": capsule.namespaces()}
    egl.Terminate(dpy)
    return info, rows, timings


EGL_VENDOR_DIRS = ("/etc/glvnd/egl_vendor.d", "/usr/share/glvnd/egl_vendor.d")


def diagnose():
    vendors = vendor_libraries(["__EGL_VENDOR_LIBRARY_FILENAMES"], "__EGL_VENDOR_LIBRARY_DIRS",
                               EGL_VENDOR_DIRS)
    return loader_diagnosis([("egl-vendor", lib) for lib in vendors] + [("dri", d)
                                                                        for d in dri_drivers()])


def main(argv=None):
    args = arguments(__doc__).parse_args(argv)
    return run("gl", "gles2", PROBE_VERSION, args, render, diagnose)


if __name__ == "__main__":
    sys.exit(main())
