#!/usr/bin/env python3
"""GLES probe: runs *inside* the sandbox/guest with the standard library and ctypes only.

Renders a deterministic scene (vertex-coloured triangle cut by a textured quad through the
depth test) into an FBO on an EGL context, reads it back, writes a PNG and prints one JSON
line describing what rendered it and what the process could see.
"""
import argparse
import ctypes
import ctypes.util
import faulthandler
import hashlib
import json
import os
import resource
import stat
import struct
import sys
import time
import zlib

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


class ProbeError(Exception):
    """A step of the probe failed; the message says which."""


def load_library(names):
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
    raise ProbeError("cannot load any of " + ", ".join(names) + ": " + "; ".join(errors))


RTLD_NOW, RTLD_GLOBAL = 2, 0x100
LM_ID_NEWLM = -1
RTLD_DI_LMID, RTLD_DI_LINKMAP = 1, 2
CAPSULE_ENV = "GPU_HARNESS_CAPSULE"
CAPSULE_NO_REDIRECT_ENV = "GPU_HARNESS_CAPSULE_NO_REDIRECT"  # test hook: leave the capsule's dlopen alone
PROT_READ, PROT_WRITE = 1, 2
SHT_RELA = 4
R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT = 6, 7


class LinkMap(ctypes.Structure):
    _fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p), ("l_ld", ctypes.c_void_p),
                ("l_next", ctypes.c_void_p), ("l_prev", ctypes.c_void_p)]


def elf_imports(path, wanted):
    """(GOT offset, symbol) of each x86-64 relocation in `path` that binds a symbol in `wanted`."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or struct.unpack_from("<H", data, 18)[0] != 62:
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found = []
    for section in sections:
        if section[1] != SHT_RELA or section[6] >= len(sections):
            continue
        symtab = sections[section[6]]
        strtab = sections[symtab[6]] if symtab[6] < len(sections) else None
        if strtab is None:
            continue
        for offset in range(section[4], section[4] + section[5], 24):
            r_offset, r_info, _ = struct.unpack_from("<QQq", data, offset)
            if r_info & 0xFFFFFFFF not in (R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT):
                continue
            st_name, = struct.unpack_from("<I", data, symtab[4] + (r_info >> 32) * 24)
            end = data.index(b"\0", strtab[4] + st_name)
            name = data[strtab[4] + st_name:end].decode("ascii", "replace")
            if name in wanted:
                found.append((r_offset, name))
    return found


class Capsule:
    """The host's GL stack in a link-map namespace of its own (dlmopen(LM_ID_NEWLM)), as
    libcapsule does: the manifest lists the host's libraries, dependencies first, so each
    DT_NEEDED name is found among what the namespace already holds; libc is the runtime's,
    loaded anew into the namespace. The app's own namespace never sees a host library."""

    def __init__(self, manifest_path):
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        libdl = self.libdl()
        dlmopen = declare(libdl, "dlmopen", ctypes.c_void_p, ctypes.c_long, ctypes.c_char_p, ctypes.c_int)
        dlerror = declare(libdl, "dlerror", ctypes.c_char_p)
        dlinfo = declare(libdl, "dlinfo", ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
        self.lmid = None
        handles = {}
        for path in manifest["load"]:
            handle = dlmopen(LM_ID_NEWLM if self.lmid is None else self.lmid, path.encode(), RTLD_NOW)
            if not handle:
                said = dlerror()
                raise ProbeError("capsule: dlmopen %s: %s" % (path, said.decode("utf-8", "replace") if said else "?"))
            if self.lmid is None:
                lmid = ctypes.c_long()
                dlinfo(handle, RTLD_DI_LMID, ctypes.byref(lmid))
                self.lmid = lmid.value
            handles[path] = handle
        self.entry = {name: ctypes.CDLL(path, handle=handles[path]) for name, path in manifest["entry"].items()}
        self.loaded = len(handles)
        self.dlmopen, self.dlerror, self.dlinfo = dlmopen, dlerror, dlinfo
        self.program_dlopen = declare(libdl, "dlopen", ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)
        self.calls = []
        self.redirected = [] if os.environ.get(CAPSULE_NO_REDIRECT_ENV) else self.redirect_dlopen(handles)

    def redirect_dlopen(self, handles):
        """Point the capsule's calls of dlopen() at dlmopen() into the capsule, without
        RTLD_GLOBAL. Mesa opens its DRI driver with RTLD_GLOBAL, and glibc has no global scope in
        a dlmopen() namespace: unpatched, that dlopen crashes in add_to_global_resize. This is
        what libcapsule does too (it rewrites the capsule's relocations for dlopen). dlopen(NULL)
        still means the program: LLVM's JIT asks for it, and crashes on anything else."""
        libc = ctypes.CDLL(None)
        mprotect = declare(libc, "mprotect", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        page = os.sysconf("SC_PAGE_SIZE")
        self.callback = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)(self.capsule_dlopen)
        address = ctypes.cast(self.callback, ctypes.c_void_p).value
        patched = []
        for path, handle in handles.items():
            link = ctypes.POINTER(LinkMap)()
            if self.dlinfo(handle, RTLD_DI_LINKMAP, ctypes.byref(link)) != 0:
                continue
            base = link.contents.l_addr or 0
            for offset, _ in elf_imports(path, ("dlopen",)):
                slot = base + offset
                start = slot - slot % page
                if mprotect(start, page * 2 if slot % page > page - 8 else page, PROT_READ | PROT_WRITE) != 0:
                    raise ProbeError("capsule: cannot make the GOT of %s writable" % path)
                ctypes.c_void_p.from_address(slot).value = address
                patched.append(os.path.basename(path))
        return sorted(set(patched))

    def capsule_dlopen(self, name, flags):
        self.calls.append(name.decode("utf-8", "replace") if name else None)
        if name is None:  # "the program itself" (LLVM asks, to look up symbols): the real answer
            return self.program_dlopen(None, flags) or None
        return self.dlmopen(self.lmid, name, flags & ~RTLD_GLOBAL) or None

    @staticmethod
    def libdl():
        program = ctypes.CDLL(None)
        if hasattr(program, "dlmopen"):
            return program
        return ctypes.CDLL("libdl.so.2")  # glibc < 2.34 keeps dlmopen there

    def library(self, name):
        if name not in self.entry:
            raise ProbeError("capsule: no %s in the manifest" % name)
        return self.entry[name]


def declare(lib, name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


class EGL:
    def __init__(self, lib=None):
        lib = lib or load_library(["libEGL.so.1", ctypes.util.find_library("EGL") or "libEGL.so"])
        vp, i32, u32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint32
        self.GetDisplay = declare(lib, "eglGetDisplay", vp, vp)
        self.Initialize = declare(lib, "eglInitialize", u32, vp, ctypes.POINTER(i32), ctypes.POINTER(i32))
        self.QueryString = declare(lib, "eglQueryString", ctypes.c_char_p, vp, i32)
        self.ChooseConfig = declare(lib, "eglChooseConfig", u32, vp, ctypes.POINTER(i32),
                                    ctypes.POINTER(vp), i32, ctypes.POINTER(i32))
        self.BindAPI = declare(lib, "eglBindAPI", u32, u32)
        self.CreateContext = declare(lib, "eglCreateContext", vp, vp, vp, vp, ctypes.POINTER(i32))
        self.CreatePbufferSurface = declare(lib, "eglCreatePbufferSurface", vp, vp, vp, ctypes.POINTER(i32))
        self.MakeCurrent = declare(lib, "eglMakeCurrent", u32, vp, vp, vp, vp)
        self.GetError = declare(lib, "eglGetError", i32)
        self.Terminate = declare(lib, "eglTerminate", u32, vp)
        self.GetProcAddress = declare(lib, "eglGetProcAddress", vp, ctypes.c_char_p)

    def platform_display(self, platform):
        addr = self.GetProcAddress(b"eglGetPlatformDisplayEXT")
        if not addr:
            return None
        proto = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32))
        return proto(addr)(platform, None, None)


def int_array(values):
    return (ctypes.c_int32 * len(values))(*values)


def open_display(egl):
    """Surfaceless first (no window system needed), then the default display."""
    client_exts = (egl.QueryString(None, EGL_EXTENSIONS) or b"").decode()
    attempts = []
    if "EGL_MESA_platform_surfaceless" in client_exts:
        attempts.append(("surfaceless", lambda: egl.platform_display(EGL_PLATFORM_SURFACELESS_MESA)))
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
    if not egl.ChooseConfig(dpy, attribs, ctypes.byref(config), 1, ctypes.byref(count)) or count.value < 1:
        raise ProbeError("eglChooseConfig found no GLES2 config (error 0x%x)" % egl.GetError())
    egl.BindAPI(EGL_OPENGL_ES_API)
    ctx = egl.CreateContext(dpy, config, None, int_array([EGL_CONTEXT_CLIENT_VERSION, 2, EGL_NONE]))
    if not ctx:
        raise ProbeError("eglCreateContext failed (error 0x%x)" % egl.GetError())
    display_exts = (egl.QueryString(dpy, EGL_EXTENSIONS) or b"").decode()
    surface = None
    if "EGL_KHR_surfaceless_context" not in display_exts:
        surface = egl.CreatePbufferSurface(dpy, config, int_array([EGL_WIDTH, 1, EGL_HEIGHT, 1, EGL_NONE]))
        if not surface:
            raise ProbeError("eglCreatePbufferSurface failed (error 0x%x)" % egl.GetError())
    if not egl.MakeCurrent(dpy, surface, surface, ctx):
        raise ProbeError("eglMakeCurrent failed (error 0x%x)" % egl.GetError())
    return "pbuffer" if surface else "surfaceless-context"


class GL:
    def __init__(self, lib=None):
        lib = lib or load_library(["libGLESv2.so.2", ctypes.util.find_library("GLESv2") or "libGLESv2.so"])
        vp, u32, i32, f32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int32, ctypes.c_float
        self.GetString = declare(lib, "glGetString", ctypes.c_char_p, u32)
        self.GetError = declare(lib, "glGetError", u32)
        self.CreateShader = declare(lib, "glCreateShader", u32, u32)
        self.ShaderSource = declare(lib, "glShaderSource", None, u32, i32, ctypes.POINTER(ctypes.c_char_p), vp)
        self.CompileShader = declare(lib, "glCompileShader", None, u32)
        self.GetShaderiv = declare(lib, "glGetShaderiv", None, u32, u32, ctypes.POINTER(i32))
        self.GetShaderInfoLog = declare(lib, "glGetShaderInfoLog", None, u32, i32, vp, ctypes.c_char_p)
        self.CreateProgram = declare(lib, "glCreateProgram", u32)
        self.AttachShader = declare(lib, "glAttachShader", None, u32, u32)
        self.BindAttribLocation = declare(lib, "glBindAttribLocation", None, u32, u32, ctypes.c_char_p)
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
        self.VertexAttribPointer = declare(lib, "glVertexAttribPointer", None, u32, i32, u32, ctypes.c_ubyte, i32, vp)
        self.DrawArrays = declare(lib, "glDrawArrays", None, u32, i32, i32)
        self.GenTextures = declare(lib, "glGenTextures", None, i32, ctypes.POINTER(u32))
        self.BindTexture = declare(lib, "glBindTexture", None, u32, u32)
        self.ActiveTexture = declare(lib, "glActiveTexture", None, u32)
        self.TexImage2D = declare(lib, "glTexImage2D", None, u32, i32, i32, i32, i32, i32, u32, u32, vp)
        self.TexParameteri = declare(lib, "glTexParameteri", None, u32, u32, i32)
        self.GenFramebuffers = declare(lib, "glGenFramebuffers", None, i32, ctypes.POINTER(u32))
        self.BindFramebuffer = declare(lib, "glBindFramebuffer", None, u32, u32)
        self.FramebufferTexture2D = declare(lib, "glFramebufferTexture2D", None, u32, u32, u32, u32, i32)
        self.GenRenderbuffers = declare(lib, "glGenRenderbuffers", None, i32, ctypes.POINTER(u32))
        self.BindRenderbuffer = declare(lib, "glBindRenderbuffer", None, u32, u32)
        self.RenderbufferStorage = declare(lib, "glRenderbufferStorage", None, u32, u32, i32, i32)
        self.FramebufferRenderbuffer = declare(lib, "glFramebufferRenderbuffer", None, u32, u32, u32, u32)
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
    gl.TexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, CHECKER_SIZE, CHECKER_SIZE, 0, GL_RGBA, GL_UNSIGNED_BYTE, data)
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


def png_bytes(rows, width, height):
    def chunk(tag, data):
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


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
            line[0:shown * 4:4], line[1:shown * 4:4], line[2:shown * 4:4] = rgb[2::3], rgb[1::3], rgb[0::3]
            fb.write(bytes(line))
    return {"device": device, "width": width, "height": height, "file": SCANOUT_FILE}


def read_status_field(name):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def isolation_facts(host_paths):
    try:
        dri = sorted(os.listdir("/dev/dri"))
    except OSError:
        dri = []
    namespaces: dict = {}
    for ns in ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup"):
        try:
            namespaces[ns] = os.readlink("/proc/self/ns/" + ns)
        except OSError:
            namespaces[ns] = None
    seccomp = read_status_field("Seccomp")
    nnp = read_status_field("NoNewPrivs")
    visible = [p for p in host_paths if os.path.exists(p)]
    return {
        "dri_nodes": ["/dev/dri/" + name for name in dri],
        "namespaces": namespaces,
        "seccomp_mode": int(seccomp) if seccomp and seccomp.isdigit() else None,
        "no_new_privs": nnp == "1" if nnp is not None else None,
        "host_paths_checked": len(host_paths),
        "host_paths_visible": len(visible),
        "host_paths_visible_list": visible,
        "uid": os.getuid(),
    }


def mapped_libraries():
    """Every shared object this process has mapped: which driver really rendered."""
    found = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    found.add(parts[5].strip())
    except OSError:
        pass
    return sorted(found)


def libc_version():
    try:
        fn = declare(ctypes.CDLL(None), "gnu_get_libc_version", ctypes.c_char_p)
        return fn().decode()
    except (OSError, AttributeError):
        return None


def mount_kind(path):
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "?"
    for kind, test in (("socket", stat.S_ISSOCK), ("char", stat.S_ISCHR), ("dir", stat.S_ISDIR)):
        if test(mode):
            return kind
    return "file"


def mounts():
    """The process's mounts as (mount point, root within its filesystem, fs type, device,
    source, what the mount point is): the harness maps them back to host paths for the leak
    audit."""
    entries = []
    try:
        with open("/proc/self/mountinfo") as info:
            for line in info:
                fields = line.split()
                dash = fields.index("-")
                point = fields[4].replace("\\040", " ")
                entries.append([point, fields[3].replace("\\040", " "), fields[dash + 1], fields[2],
                                fields[dash + 2], mount_kind(point)])
    except (OSError, ValueError, IndexError):
        pass
    return entries


DEFAULT_VENDOR_DIRS = ("/etc/glvnd/egl_vendor.d", "/usr/share/glvnd/egl_vendor.d")
DRI_DIRS = ("/usr/lib/x86_64-linux-gnu/dri", "/usr/lib/i386-linux-gnu/dri", "/usr/lib64/dri", "/usr/lib/dri")
MAX_DRI_CHECKED = 4


def vendor_libraries():
    files = [f for f in os.environ.get("__EGL_VENDOR_LIBRARY_FILENAMES", "").split(":") if f]
    if not files:
        dirs = os.environ.get("__EGL_VENDOR_LIBRARY_DIRS")
        for folder in dirs.split(":") if dirs else DEFAULT_VENDOR_DIRS:
            try:
                files += [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".json")]
            except OSError:
                continue
    libraries = []
    for name in files:
        try:
            with open(name) as handle:
                libraries.append(json.load(handle)["ICD"]["library_path"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            libraries.append("%s (unreadable vendor file: %s)" % (name, exc))
    return libraries


def dri_drivers():
    """The DRI drivers Mesa would load (one per file; software first)."""
    dirs = [d for d in os.environ.get("LIBGL_DRIVERS_PATH", "").split(":") if d] or DRI_DIRS
    seen, drivers = set(), []
    for folder in dirs:
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith("_dri.so"))
        except OSError:
            continue
        names.sort(key=lambda n: (not n.startswith("swrast"), n))
        for name in names:
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                drivers.append(path)
    return drivers[:MAX_DRI_CHECKED]


def dynamic_loader():
    for path in mapped_libraries():
        name = os.path.basename(path)
        if name.startswith("ld-linux") or (name.startswith("ld-") and name[3:4].isdigit()):  # ld-2.31.so
            return path
    return None


def loader_listing(loader, library):
    """What the runtime's own loader says of a library, as ldd -r has it say: every missing
    name, version and symbol, where dlerror gives only the first."""
    import subprocess  # only on the failure path

    env = dict(os.environ, LD_TRACE_LOADED_OBJECTS="1", LD_WARN="yes", LD_BIND_NOW="yes")  # what ldd -r sets
    try:
        done = subprocess.run([loader, library], capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    lines = (done.stdout + done.stderr).splitlines()
    return {"missing": sorted({line.split()[0] for line in lines if "=> not found" in line}),
            "errors": [line.strip() for line in lines
                       if ("not found" in line and "=>" not in line) or "undefined symbol" in line][:20]}


def loader_diagnosis():
    """Why the driver did not load, in the loader's own words: each vendor library and DRI
    driver opened the way the loaders open them (dlerror), and listed by ld.so."""
    loader = dynamic_loader()
    checked = []
    for role, library in [("egl-vendor", lib) for lib in vendor_libraries()] + [("dri", d) for d in dri_drivers()]:
        entry = {"role": role, "library": library}
        try:
            ctypes.CDLL(library)
            entry["dlopen"] = "ok"
        except OSError as exc:
            entry["dlopen"] = str(exc)
            if loader and library.startswith("/") and os.path.exists(library):
                entry.update(loader_listing(loader, library))
        checked.append(entry)
    return checked


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


def render(args):
    timings: dict = {}
    t0 = time.perf_counter()
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

    if args.hold:
        time.sleep(args.hold)
    if args.fault:
        inject_fault(args.fault)
    t1 = time.perf_counter()
    create_target(gl, args.size)
    scene = Scene(gl)
    scene.draw()
    rows = read_rgb(gl, args.size)
    timings["first_frame_ms"] = round((time.perf_counter() - t1) * 1000, 3)
    t2 = time.perf_counter()
    for _ in range(args.frames):
        scene.draw()
        gl.Finish()
    elapsed = time.perf_counter() - t2
    timings["frames"] = args.frames
    timings["fps"] = round(args.frames / elapsed, 2) if elapsed > 0 and args.frames else None
    gl.check("frame loop")
    if capsule:
        info["capsule"] = {"namespace": capsule.lmid, "libraries": capsule.loaded,
                           "dlopen_redirected_in": capsule.redirected, "dlopen_calls": capsule.calls[:20]}
    egl.Terminate(dpy)
    return info, rows, timings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="directory for probe.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--host-path", action="append", default=[], help="a host path that should be hidden")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to wait after context creation")
    parser.add_argument("--scanout", help="framebuffer device to show the image on, e.g. /dev/fb0")
    parser.add_argument("--fault", choices=["segv", "abort", "hang", "exit"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    faulthandler.enable()  # a crash in the driver leaves a traceback in the probe's log
    # What the process sees, printed before any driver code runs: it survives a crash.
    print(json.dumps({"probe": "gl", "stage": "started", "mounts": mounts(), "libc": libc_version(),
                      "isolation": isolation_facts(args.host_path)}, sort_keys=True), flush=True)
    result = {"probe": "gl", "probe_version": PROBE_VERSION, "api": "gles2", "ok": False}
    started = time.perf_counter()
    try:
        info, rows, timings = render(args)
        image = os.path.join(args.out, "probe.png")
        with open(image, "wb") as handle:
            handle.write(png_bytes(rows, args.size, args.size))
        result.update(info)
        result.update(ok=True, image="probe.png", size=[args.size, args.size],
                      pixels_md5=hashlib.md5(b"".join(rows)).hexdigest(), timings=timings)
        if args.scanout:
            result["scanout"] = framebuffer_image(args.scanout, rows, args.size)
    except ProbeError as exc:
        result["error"] = str(exc)
        result["diagnosis"] = loader_diagnosis()
    result["libraries"] = mapped_libraries()
    result["libc"] = libc_version()
    result["mounts"] = mounts()
    result["timings_total_ms"] = round((time.perf_counter() - started) * 1000, 3)
    result["isolation"] = isolation_facts(args.host_path)
    result["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["python"] = sys.version.split()[0]
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
