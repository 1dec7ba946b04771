#!/usr/bin/env python3
"""A GL program of your own, for `gpu-harness exec`: prints the renderer an EGL/GLES context
gets where it runs (standard library and ctypes only, surfaceless EGL: no window system).

    gpu-harness exec --path vtest-virgl -- python3 - < docs/examples/gl-renderer.py
"""
import ctypes
import sys

egl, gles = ctypes.CDLL("libEGL.so.1"), ctypes.CDLL("libGLESv2.so.2")
vp, i32 = ctypes.c_void_p, ctypes.c_int32
egl.eglGetProcAddress.restype = vp
egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
get_display = ctypes.CFUNCTYPE(vp, ctypes.c_uint32, vp, vp)(egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT"))
dpy = get_display(0x31DD, None, None)  # EGL_PLATFORM_SURFACELESS_MESA
egl.eglInitialize.argtypes = [vp, vp, vp]
if not egl.eglInitialize(dpy, None, None):
    sys.exit("eglInitialize failed")
config, count = vp(), i32()
egl.eglChooseConfig.argtypes = [vp, ctypes.POINTER(i32), ctypes.POINTER(vp), i32, ctypes.POINTER(i32)]
attribs = (i32 * 3)(0x3040, 0x0004, 0x3038)  # EGL_RENDERABLE_TYPE: EGL_OPENGL_ES2_BIT
egl.eglChooseConfig(dpy, attribs, ctypes.byref(config), 1, ctypes.byref(count))
egl.eglBindAPI(0x30A0)  # EGL_OPENGL_ES_API
egl.eglCreateContext.restype = vp
egl.eglCreateContext.argtypes = [vp, vp, vp, ctypes.POINTER(i32)]
context = egl.eglCreateContext(dpy, config, None, (i32 * 3)(0x3098, 2, 0x3038))
egl.eglMakeCurrent.argtypes = [vp, vp, vp, vp]
if not context or not egl.eglMakeCurrent(dpy, None, None, context):
    sys.exit("no GLES2 context")
gles.glGetString.restype = ctypes.c_char_p
print(gles.glGetString(0x1F01).decode())  # GL_RENDERER
