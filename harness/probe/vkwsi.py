"""The Vulkan window-system bindings the present probe adds to vkapi's: surfaces and swapchains.

Runs *inside* the sandbox/guest/container with the standard library and ctypes only, beside
vkapi.py and vkpresent.py. The structs are laid out as vulkan_core.h, vulkan_wayland.h and
vulkan_xlib.h lay them out (a test compares them with the C compiler's); Vulkan is vkapi's loader
wrapper with the VK_KHR_surface, VK_KHR_wayland_surface, VK_KHR_xlib_surface and VK_KHR_swapchain
commands added, each call a watchdog step as vkapi's are."""
import ctypes

import vkapi
from probelib import declare
from vkapi import (P, Extent2D, Handle, ImageSubresourceRange, NonDispatchable, cp, header, i32,
                   make, u32, u64, vp)

# sTypes
SWAPCHAIN_CREATE_INFO, PRESENT_INFO = 1000001000, 1000001001
XLIB_SURFACE_CREATE_INFO, WAYLAND_SURFACE_CREATE_INFO = 1000004000, 1000006000
SEMAPHORE_CREATE_INFO, IMAGE_MEMORY_BARRIER = 9, 45
LAYOUT_PRESENT_SRC = 1000001002
FORMAT_R8G8B8A8_UNORM, FORMAT_B8G8R8A8_UNORM = 37, 44
PRESENT_MODES = {0: "immediate", 1: "mailbox", 2: "fifo", 3: "fifo_relaxed"}
PRESENT_FIFO = 2  # every implementation offers it; paced by the display
COMPOSITE_OPAQUE, COMPOSITE_PRE, COMPOSITE_POST, COMPOSITE_INHERIT = 1, 2, 4, 8
STAGE_COLOR_OUTPUT, STAGE_TRANSFER, STAGE_BOTTOM = 0x400, 0x1000, 0x2000
SUBOPTIMAL = 1000001003
NO_QUEUE_FAMILY = 0xFFFFFFFF
SURFACE_EXTENSIONS = {"wayland": "VK_KHR_wayland_surface", "x11": "VK_KHR_xlib_surface"}

WaylandSurfaceCreateInfo = make("WaylandSurfaceCreateInfo", header() + [
    ("flags", u32), ("display", vp), ("surface", vp)])
XlibSurfaceCreateInfo = make("XlibSurfaceCreateInfo", header() + [
    ("flags", u32), ("dpy", vp), ("window", ctypes.c_ulong)])
SurfaceCapabilities = make("SurfaceCapabilities", [
    ("minImageCount", u32), ("maxImageCount", u32), ("currentExtent", Extent2D),
    ("minImageExtent", Extent2D), ("maxImageExtent", Extent2D), ("maxImageArrayLayers", u32),
    ("supportedTransforms", u32), ("currentTransform", u32), ("supportedCompositeAlpha", u32),
    ("supportedUsageFlags", u32)])
SurfaceFormat = make("SurfaceFormat", [("format", u32), ("colorSpace", u32)])
SwapchainCreateInfo = make("SwapchainCreateInfo", header() + [
    ("flags", u32), ("surface", NonDispatchable), ("minImageCount", u32), ("imageFormat", u32),
    ("imageColorSpace", u32), ("imageExtent", Extent2D), ("imageArrayLayers", u32),
    ("imageUsage", u32), ("imageSharingMode", u32), ("queueFamilyIndexCount", u32),
    ("pQueueFamilyIndices", P(u32)), ("preTransform", u32), ("compositeAlpha", u32),
    ("presentMode", u32), ("clipped", u32), ("oldSwapchain", NonDispatchable)])
PresentInfo = make("PresentInfo", header() + [
    ("waitSemaphoreCount", u32), ("pWaitSemaphores", P(NonDispatchable)),
    ("swapchainCount", u32), ("pSwapchains", P(NonDispatchable)), ("pImageIndices", P(u32)),
    ("pResults", P(i32))])
SemaphoreCreateInfo = make("SemaphoreCreateInfo", header() + [("flags", u32)])
ImageMemoryBarrier = make("ImageMemoryBarrier", header() + [
    ("srcAccessMask", u32), ("dstAccessMask", u32), ("oldLayout", u32), ("newLayout", u32),
    ("srcQueueFamilyIndex", u32), ("dstQueueFamilyIndex", u32), ("image", NonDispatchable),
    ("subresourceRange", ImageSubresourceRange)])
ExtensionProperties = make("ExtensionProperties", [("extensionName", ctypes.c_char * 256),
                                                   ("specVersion", u32)])

H, ND = Handle, NonDispatchable
COMMANDS = [
    ("vkEnumerateInstanceExtensionProperties", i32, [cp, P(u32), P(ExtensionProperties)]),
    ("vkEnumerateDeviceExtensionProperties", i32, [H, cp, P(u32), P(ExtensionProperties)]),
    ("vkCreateWaylandSurfaceKHR", i32, [H, P(WaylandSurfaceCreateInfo), vp, P(ND)]),
    ("vkCreateXlibSurfaceKHR", i32, [H, P(XlibSurfaceCreateInfo), vp, P(ND)]),
    ("vkDestroySurfaceKHR", None, [H, ND, vp]),
    ("vkGetPhysicalDeviceSurfaceSupportKHR", i32, [H, u32, ND, P(u32)]),
    ("vkGetPhysicalDeviceSurfaceCapabilitiesKHR", i32, [H, ND, P(SurfaceCapabilities)]),
    ("vkGetPhysicalDeviceSurfaceFormatsKHR", i32, [H, ND, P(u32), P(SurfaceFormat)]),
    ("vkGetPhysicalDeviceSurfacePresentModesKHR", i32, [H, ND, P(u32), P(u32)]),
    ("vkCreateSwapchainKHR", i32, [H, P(SwapchainCreateInfo), vp, P(ND)]),
    ("vkDestroySwapchainKHR", None, [H, ND, vp]),
    ("vkGetSwapchainImagesKHR", i32, [H, ND, P(u32), P(ND)]),
    ("vkAcquireNextImageKHR", i32, [H, ND, u64, ND, ND, P(u32)]),
    ("vkQueuePresentKHR", i32, [H, P(PresentInfo)]),
    ("vkQueueWaitIdle", i32, [H]),
    ("vkCreateSemaphore", i32, [H, P(SemaphoreCreateInfo), vp, P(ND)]),
    ("vkCmdPipelineBarrier", None, [H, u32, u32, u32, u32, vp, u32, vp, u32,
                                    P(ImageMemoryBarrier)]),
]


class Vulkan(vkapi.Vulkan):
    """vkapi's loader commands and the window-system ones, from the same loader (it exports
    them all)."""

    def __init__(self, step):
        super().__init__(step)
        lib = ctypes.CDLL("libvulkan.so.1")  # loaded by the base already: the same handle
        for name, restype, argtypes in COMMANDS:
            if hasattr(lib, name):
                self.fn[name] = self.stepped(name, declare(lib, name, restype, *argtypes))


def enumerate_into(vk, step, call, struct, *args):
    """A Vulkan two-call enumeration (count, then the items) as a list."""
    count = u32()
    vk.check(step, call, *args, ctypes.byref(count), None)
    items = (struct * count.value)()
    vk.check(step, call, *args, ctypes.byref(count), items)
    return list(items[:count.value])


def extension_names(vk, device=None):
    """The instance's extensions (the loader's and its drivers'), or a device's."""
    if device is None:
        found = enumerate_into(vk, "vkEnumerateInstanceExtensionProperties",
                               vk.EnumerateInstanceExtensionProperties, ExtensionProperties, None)
    else:
        found = enumerate_into(vk, "vkEnumerateDeviceExtensionProperties",
                               vk.EnumerateDeviceExtensionProperties, ExtensionProperties, device,
                               None)
    return [e.extensionName.decode("utf-8", "replace") for e in found]
