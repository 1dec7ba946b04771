#!/usr/bin/env python3
"""A GL program of your own that draws a picture, for a `command` probe with a golden: clears
an offscreen framebuffer and four scissored squares in four colours, reads the pixels back and
writes picture.png (standard library and ctypes only, surfaceless EGL: no window system).

    [probes.picture]
    kind = "command"
    argv = ["python3", "{out}/inputs/gl-picture.py"]
    files = ["harness/data/workloads/gl-picture.py"]
    picture = "picture.png"
    golden = "harness/data/workloads/gl-picture.golden.png"
"""
import ctypes
import struct
import sys
import zlib

SIZE = 64
egl, gles = ctypes.CDLL("libEGL.so.1"), ctypes.CDLL("libGLESv2.so.2")
vp, i32, u32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint32
egl.eglGetProcAddress.restype = vp
egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
get_display = ctypes.CFUNCTYPE(vp, ctypes.c_uint32, vp,
                               vp)(egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT"))
dpy = get_display(0x31DD, None, None)  # EGL_PLATFORM_SURFACELESS_MESA
egl.eglInitialize.argtypes = [vp, vp, vp]
if not egl.eglInitialize(dpy, None, None):
    sys.exit("eglInitialize failed")
config, count = vp(), i32()
egl.eglChooseConfig.argtypes = [vp, ctypes.POINTER(i32), ctypes.POINTER(vp), i32,
                                ctypes.POINTER(i32)]
egl.eglChooseConfig(dpy, (i32 * 3)(0x3040, 0x0004, 0x3038), ctypes.byref(config), 1,
                    ctypes.byref(count))
egl.eglBindAPI(0x30A0)  # EGL_OPENGL_ES_API
egl.eglCreateContext.restype = vp
egl.eglCreateContext.argtypes = [vp, vp, vp, ctypes.POINTER(i32)]
context = egl.eglCreateContext(dpy, config, None, (i32 * 3)(0x3098, 2, 0x3038))
egl.eglMakeCurrent.argtypes = [vp, vp, vp, vp]
if not context or not egl.eglMakeCurrent(dpy, None, None, context):
    sys.exit("no GLES2 context")
gles.glGetString.restype = ctypes.c_char_p
print("renderer:", gles.glGetString(0x1F01).decode())

framebuffer, renderbuffer = u32(), u32()
gles.glGenFramebuffers(1, ctypes.byref(framebuffer))
gles.glBindFramebuffer(0x8D40, framebuffer)  # GL_FRAMEBUFFER
gles.glGenRenderbuffers(1, ctypes.byref(renderbuffer))
gles.glBindRenderbuffer(0x8D41, renderbuffer)  # GL_RENDERBUFFER
gles.glRenderbufferStorage(0x8D41, 0x8058, SIZE, SIZE)  # GL_RGBA8
gles.glFramebufferRenderbuffer(0x8D40, 0x8CE0, 0x8D41, renderbuffer)  # GL_COLOR_ATTACHMENT0
if gles.glCheckFramebufferStatus(0x8D40) != 0x8CD5:  # GL_FRAMEBUFFER_COMPLETE
    sys.exit("framebuffer incomplete")
gles.glClearColor.argtypes = [ctypes.c_float] * 4
gles.glClearColor(0.1, 0.1, 0.2, 1.0)
gles.glClear(0x4000)  # GL_COLOR_BUFFER_BIT
gles.glEnable(0x0C11)  # GL_SCISSOR_TEST
half = SIZE // 2
for (x, y), colour in zip([(4, 4), (half, 4), (4, half), (half, half)],
                          [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)], strict=True):
    gles.glScissor(x, y, half - 8, half - 8)
    gles.glClearColor(*colour, 1.0)
    gles.glClear(0x4000)
pixels = ctypes.create_string_buffer(SIZE * SIZE * 4)
gles.glReadPixels(0, 0, SIZE, SIZE, 0x1908, 0x1401, pixels)  # GL_RGBA, GL_UNSIGNED_BYTE
if gles.glGetError() != 0:
    sys.exit("glReadPixels failed")

# GL's rows go up
rows = [pixels.raw[y * SIZE * 4:(y + 1) * SIZE * 4] for y in reversed(range(SIZE))]
raw = b"".join(b"\0" + row for row in rows)


def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


with open("picture.png", "wb") as png:
    png.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0,
                                                                0))
              + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
print("wrote picture.png")
