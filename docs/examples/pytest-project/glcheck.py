#!/usr/bin/env python3
"""glcheck, this example project's app: gets a GLES2 context the surfaceless EGL way (no window
system, as every path offers), clears an offscreen framebuffer to a colour, reads a pixel back
and says whether the GPU drew it. Standard library and ctypes only.

    python3 glcheck.py   # renderer: ..., pixel: 51 102 153 255, ok (exit 0; else exit 1)
"""
import ctypes
import sys

WANTED = (51, 102, 153, 255)  # glClearColor(0.2, 0.4, 0.6, 1.0) in bytes


def main() -> int:
    egl, gles = ctypes.CDLL("libEGL.so.1"), ctypes.CDLL("libGLESv2.so.2")
    vp, i32, u32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint32
    egl.eglGetProcAddress.restype = vp
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    get_display = ctypes.CFUNCTYPE(vp, u32, vp, vp)(egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT"))
    dpy = get_display(0x31DD, None, None)  # EGL_PLATFORM_SURFACELESS_MESA
    egl.eglInitialize.argtypes = [vp, vp, vp]
    if not egl.eglInitialize(dpy, None, None):
        print("eglInitialize failed")
        return 1
    config, count = vp(), i32()
    egl.eglChooseConfig.argtypes = [vp, ctypes.POINTER(i32), ctypes.POINTER(vp), i32, ctypes.POINTER(i32)]
    egl.eglChooseConfig(dpy, (i32 * 3)(0x3040, 0x0004, 0x3038), ctypes.byref(config), 1, ctypes.byref(count))
    egl.eglBindAPI(0x30A0)  # EGL_OPENGL_ES_API
    egl.eglCreateContext.restype = vp
    egl.eglCreateContext.argtypes = [vp, vp, vp, ctypes.POINTER(i32)]
    context = egl.eglCreateContext(dpy, config, None, (i32 * 3)(0x3098, 2, 0x3038))  # GLES 2
    egl.eglMakeCurrent.argtypes = [vp, vp, vp, vp]
    if not context or not egl.eglMakeCurrent(dpy, None, None, context):
        print("no GLES2 context")
        return 1
    gles.glGetString.restype = ctypes.c_char_p
    print(f"renderer: {gles.glGetString(0x1F01).decode()}")  # GL_RENDERER

    texture, framebuffer = u32(), u32()  # an 8x8 RGBA texture as the colour attachment
    gles.glGenTextures(1, ctypes.byref(texture))
    gles.glBindTexture(0x0DE1, texture)  # GL_TEXTURE_2D
    gles.glTexImage2D(0x0DE1, 0, 0x1908, 8, 8, 0, 0x1908, 0x1401, None)  # GL_RGBA, GL_UNSIGNED_BYTE
    gles.glGenFramebuffers(1, ctypes.byref(framebuffer))
    gles.glBindFramebuffer(0x8D40, framebuffer)  # GL_FRAMEBUFFER
    gles.glFramebufferTexture2D(0x8D40, 0x8CE0, 0x0DE1, texture, 0)  # GL_COLOR_ATTACHMENT0
    if gles.glCheckFramebufferStatus(0x8D40) != 0x8CD5:  # GL_FRAMEBUFFER_COMPLETE
        print("framebuffer incomplete")
        return 1
    gles.glViewport(0, 0, 8, 8)
    gles.glClearColor.argtypes = [ctypes.c_float] * 4
    gles.glClearColor(0.2, 0.4, 0.6, 1.0)
    gles.glClear(0x4000)  # GL_COLOR_BUFFER_BIT
    pixel = (ctypes.c_uint8 * 4)()
    gles.glReadPixels(3, 3, 1, 1, 0x1908, 0x1401, pixel)
    print("pixel: " + " ".join(str(value) for value in pixel))
    if any(abs(got - wanted) > 1 for got, wanted in zip(pixel, WANTED, strict=True)):
        print(f"wrong pixel: wanted {' '.join(map(str, WANTED))}")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
