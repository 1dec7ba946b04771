"""The present probe's Vulkan half: vk.py's scene rendered into a swapchain's images and presented.

Runs *inside* the sandbox/guest/container with the standard library and ctypes only, beside vk.py,
vkapi.py, vkwsi.py and present.py. The instance asks for VK_KHR_surface and the display's surface
extension, the device for VK_KHR_swapchain; vk.py's Renderer makes the device, the depth image, the
pipeline and the buffers. Each frame's command buffer draws into the acquired image, copies it to a
host buffer (the read-back of the last frame) and hands it to the presentation engine (FIFO: paced
by the display). Where the swapchain's images cannot be copied, the last frame is rendered once
more offscreen, by vk.py's own target: the same scene, the same pixels."""
import ctypes
import struct

import vk as scene
import vkwsi
from probelib import ProbeError
from vkapi import (ACCESS_TRANSFER_READ, ASPECT_COLOR, ASPECT_DEPTH, BUFFER_TRANSFER_DST,
                   BUFFER_VERTEX, COMMAND_BUFFER_ALLOCATE_INFO, COMMAND_BUFFER_BEGIN_INFO,
                   COMMAND_POOL_CREATE_INFO, DEPTH_FORMAT, FENCE_CREATE_INFO, FENCE_WAIT_NS,
                   FRAMEBUFFER_CREATE_INFO, IMAGE_VIEW_CREATE_INFO, LAYOUT_TRANSFER_SRC,
                   RENDER_PASS_BEGIN_INFO, SUBMIT_INFO, USAGE_COLOR, USAGE_DEPTH,
                   USAGE_TRANSFER_SRC, BufferImageCopy, ClearDepthStencilValue, ClearValue,
                   CommandBufferAllocateInfo, CommandBufferBeginInfo, CommandPoolCreateInfo,
                   ComponentMapping, Extent2D, Extent3D, FenceCreateInfo, FramebufferCreateInfo,
                   Handle, ImageSubresourceLayers, ImageSubresourceRange, ImageViewCreateInfo,
                   NonDispatchable, Offset2D, Offset3D, Rect2D, RenderPassBeginInfo, SubmitInfo,
                   result_name, u32, u64, version_text)
from vkwsi import (COMPOSITE_INHERIT, COMPOSITE_OPAQUE, COMPOSITE_POST, COMPOSITE_PRE,
                   FORMAT_B8G8R8A8_UNORM, FORMAT_R8G8B8A8_UNORM, IMAGE_MEMORY_BARRIER,
                   LAYOUT_PRESENT_SRC, NO_QUEUE_FAMILY, PRESENT_FIFO, PRESENT_INFO, PRESENT_MODES,
                   SEMAPHORE_CREATE_INFO, STAGE_BOTTOM, STAGE_COLOR_OUTPUT, STAGE_TRANSFER,
                   SUBOPTIMAL, SWAPCHAIN_CREATE_INFO,
                   WAYLAND_SURFACE_CREATE_INFO, XLIB_SURFACE_CREATE_INFO, ImageMemoryBarrier,
                   PresentInfo, SemaphoreCreateInfo, SurfaceCapabilities, SurfaceFormat,
                   SwapchainCreateInfo, WaylandSurfaceCreateInfo, XlibSurfaceCreateInfo)

# the failed step where the device cannot present to the surface (harness.host.diagnosis reads it)
PRESENT_SUPPORT = "present-support"


def create_surface(vk, instance, window):
    surface = NonDispatchable()
    if window.kind == "wayland":
        info = WaylandSurfaceCreateInfo(WAYLAND_SURFACE_CREATE_INFO, None, 0, window.display,
                                        window.surface)
        vk.check("vkCreateWaylandSurfaceKHR", vk.CreateWaylandSurfaceKHR, instance,
                 ctypes.byref(info), None, ctypes.byref(surface))
    else:
        info = XlibSurfaceCreateInfo(XLIB_SURFACE_CREATE_INFO, None, 0, window.dpy, window.window)
        vk.check("vkCreateXlibSurfaceKHR", vk.CreateXlibSurfaceKHR, instance, ctypes.byref(info),
                 None, ctypes.byref(surface))
    return surface


class Swapchain(scene.Renderer):
    """vk.py's device and pipeline, drawing into the images of a swapchain on `surface`."""

    def __init__(self, vk, physical, family, size, step, surface):
        super().__init__(vk, physical, family, size, step, extensions=("VK_KHR_swapchain",))
        self.physical, self.surface, self.swapchain = physical, surface, NonDispatchable()
        self.suboptimal = 0  # presents answered VK_SUBOPTIMAL_KHR: shown, counted

    def create_swapchain(self):
        vk, size = self.vk, self.size
        caps = SurfaceCapabilities()
        vk.check("vkGetPhysicalDeviceSurfaceCapabilitiesKHR",
                 vk.GetPhysicalDeviceSurfaceCapabilitiesKHR, self.physical, self.surface,
                 ctypes.byref(caps))
        formats = [(f.format, f.colorSpace) for f in vkwsi.enumerate_into(
            vk, "vkGetPhysicalDeviceSurfaceFormatsKHR", vk.GetPhysicalDeviceSurfaceFormatsKHR,
            SurfaceFormat, self.physical, self.surface)]
        modes = vkwsi.enumerate_into(vk, "vkGetPhysicalDeviceSurfacePresentModesKHR",
                                     vk.GetPhysicalDeviceSurfacePresentModesKHR, u32,
                                     self.physical, self.surface)
        unorm = [f for f in formats if f[0] in (FORMAT_B8G8R8A8_UNORM, FORMAT_R8G8B8A8_UNORM)]
        if not unorm:
            raise ProbeError("the surface offers no 8-bit UNORM RGBA/BGRA format (it offers %s)"
                             % formats, step="vkGetPhysicalDeviceSurfaceFormatsKHR")
        self.format, colorspace = unorm[0]
        alpha = next((a for a in (COMPOSITE_OPAQUE, COMPOSITE_INHERIT, COMPOSITE_PRE,
                                  COMPOSITE_POST) if caps.supportedCompositeAlpha & a),
                     COMPOSITE_OPAQUE)
        extent = caps.currentExtent  # 0xFFFFFFFF on Wayland: the swapchain sets the size
        if extent.width != 0xFFFFFFFF and (extent.width, extent.height) != (size, size):
            raise ProbeError("the surface is %dx%d, not %dx%d"
                             % (extent.width, extent.height, size, size),
                             step="vkGetPhysicalDeviceSurfaceCapabilitiesKHR")
        self.copies = bool(caps.supportedUsageFlags & USAGE_TRANSFER_SRC)
        images = max(caps.minImageCount, 2)
        if caps.maxImageCount:
            images = min(images, caps.maxImageCount)
        info = SwapchainCreateInfo(SWAPCHAIN_CREATE_INFO, None, 0, self.surface, images,
                                   self.format, colorspace, Extent2D(size, size), 1,
                                   USAGE_COLOR | (USAGE_TRANSFER_SRC if self.copies else 0), 0, 0,
                                   None, caps.currentTransform, alpha, PRESENT_FIFO, 1, 0)
        self.swapchain = self.create("vkCreateSwapchainKHR", vk.CreateSwapchainKHR, info)
        self.images = vkwsi.enumerate_into(vk, "vkGetSwapchainImagesKHR", vk.GetSwapchainImagesKHR,
                                           NonDispatchable, self.device, self.swapchain)
        return {"format": self.format, "formats": formats, "present_mode": "fifo",
                "present_modes": [PRESENT_MODES.get(m, m) for m in modes],
                "composite_alpha": alpha, "images": len(self.images),
                "min_images": caps.minImageCount, "usage_flags": caps.supportedUsageFlags,
                "current_extent": [caps.currentExtent.width, caps.currentExtent.height],
                "readback": "swapchain-image" if self.copies else "offscreen-render"}

    def prepare(self):
        """One command buffer per swapchain image: draw, copy the image out, make it
        presentable."""
        vk, size = self.vk, self.size
        _, depth_view = self.image(DEPTH_FORMAT, USAGE_DEPTH, ASPECT_DEPTH)
        self.readback, self.readback_memory = self.buffer(size * size * 4, BUFFER_TRANSFER_DST)
        data = struct.pack("%df" % len(scene.VERTICES), *scene.VERTICES)
        self.vertices, mapped = self.buffer(len(data), BUFFER_VERTEX)
        ctypes.memmove(mapped, data, len(data))
        render_pass = self.render_pass(self.format, LAYOUT_TRANSFER_SRC if self.copies
                                       else LAYOUT_PRESENT_SRC)
        pipeline = self.pipeline(render_pass)
        pool = self.create("vkCreateCommandPool", vk.CreateCommandPool,
                           CommandPoolCreateInfo(COMMAND_POOL_CREATE_INFO, None, 0, self.family))
        self.commands = (Handle * len(self.images))()
        vk.check("vkAllocateCommandBuffers", vk.AllocateCommandBuffers, self.device,
                 ctypes.byref(CommandBufferAllocateInfo(COMMAND_BUFFER_ALLOCATE_INFO, None, pool, 0,
                                                        len(self.images))), self.commands)
        color = ImageSubresourceRange(ASPECT_COLOR, 0, 1, 0, 1)
        for index, image in enumerate(self.images):
            view = self.create("vkCreateImageView", vk.CreateImageView, ImageViewCreateInfo(
                IMAGE_VIEW_CREATE_INFO, None, 0, image, 1, self.format,
                ComponentMapping(0, 0, 0, 0), color))
            framebuffer = self.create("vkCreateFramebuffer", vk.CreateFramebuffer,
                                      FramebufferCreateInfo(FRAMEBUFFER_CREATE_INFO, None, 0,
                                                            render_pass, 2,
                                                            (NonDispatchable * 2)(view, depth_view),
                                                            size, size, 1))
            self.record(self.commands[index], image, render_pass, framebuffer, pipeline, color)
        semaphore = SemaphoreCreateInfo(SEMAPHORE_CREATE_INFO, None, 0)
        self.acquired = self.create("vkCreateSemaphore", vk.CreateSemaphore, semaphore)
        self.rendered = self.create("vkCreateSemaphore", vk.CreateSemaphore, semaphore)
        self.fence = self.create("vkCreateFence", vk.CreateFence,
                                 FenceCreateInfo(FENCE_CREATE_INFO, None, 0))

    def record(self, commands, image, render_pass, framebuffer, pipeline, color):
        vk, size = self.vk, self.size
        vk.check("vkBeginCommandBuffer", vk.BeginCommandBuffer, commands,
                 ctypes.byref(CommandBufferBeginInfo(COMMAND_BUFFER_BEGIN_INFO, None, 0, None)))
        clears = (ClearValue * 2)()
        clears[0].color.float32[:] = scene.CLEAR_COLOR
        clears[1].depthStencil = ClearDepthStencilValue(1.0, 0)
        begin = RenderPassBeginInfo(RENDER_PASS_BEGIN_INFO, None, render_pass, framebuffer,
                                    Rect2D(Offset2D(0, 0), Extent2D(size, size)), 2, clears)
        vk.CmdBeginRenderPass(commands, ctypes.byref(begin), 0)
        vk.CmdBindPipeline(commands, 0, pipeline)
        vk.CmdBindVertexBuffers(commands, 0, 1, ctypes.byref(self.vertices), ctypes.byref(u64(0)))
        vk.CmdDraw(commands, len(scene.VERTICES) // 6, 1, 0, 0)
        vk.CmdEndRenderPass(commands)
        if self.copies:
            region = BufferImageCopy(0, 0, 0, ImageSubresourceLayers(ASPECT_COLOR, 0, 0, 1),
                                     Offset3D(0, 0, 0), Extent3D(size, size, 1))
            vk.CmdCopyImageToBuffer(commands, image, LAYOUT_TRANSFER_SRC, self.readback, 1,
                                    ctypes.byref(region))
            barrier = ImageMemoryBarrier(IMAGE_MEMORY_BARRIER, None, ACCESS_TRANSFER_READ, 0,
                                         LAYOUT_TRANSFER_SRC, LAYOUT_PRESENT_SRC, NO_QUEUE_FAMILY,
                                         NO_QUEUE_FAMILY, image, color)
            vk.CmdPipelineBarrier(commands, STAGE_TRANSFER, STAGE_BOTTOM, 0, 0, None, 0, None, 1,
                                  ctypes.byref(barrier))
        vk.check("vkEndCommandBuffer", vk.EndCommandBuffer, commands)

    def present(self, window, last=False):
        """Acquire an image, draw into it (and copy it out), present it."""
        vk, index = self.vk, u32()
        self.checked("vkAcquireNextImageKHR", vk.AcquireNextImageKHR, self.device, self.swapchain,
                     FENCE_WAIT_NS, self.acquired, 0, ctypes.byref(index))
        stage = u32(STAGE_COLOR_OUTPUT)
        submit = SubmitInfo(SUBMIT_INFO, None, 1, ctypes.pointer(self.acquired),
                            ctypes.pointer(stage), 1,
                            ctypes.pointer(Handle(self.commands[index.value])), 1,
                            ctypes.pointer(self.rendered))
        vk.check("vkQueueSubmit", vk.QueueSubmit, self.queue, 1, ctypes.byref(submit), self.fence)
        vk.check("vkWaitForFences", vk.WaitForFences, self.device, 1, ctypes.byref(self.fence), 1,
                 FENCE_WAIT_NS)
        vk.check("vkResetFences", vk.ResetFences, self.device, 1, ctypes.byref(self.fence))
        window.before_commit(last)
        info = PresentInfo(PRESENT_INFO, None, 1, ctypes.pointer(self.rendered), 1,
                           ctypes.pointer(self.swapchain),
                           ctypes.pointer(index), None)
        self.checked("vkQueuePresentKHR", vk.QueuePresentKHR, self.queue, ctypes.byref(info))
        window.pump()

    def checked(self, step, call, *args):
        """A call that may also answer VK_SUBOPTIMAL_KHR: still presented, counted."""
        result = call(*args)
        if result == SUBOPTIMAL:
            self.suboptimal += 1
        elif result != 0:
            raise ProbeError("%s failed: %s" % (step, result_name(result)), step=step,
                             code=result_name(result))

    def rows(self):
        """The last frame, RGB rows top first, from the copy of its swapchain image."""
        rows = super().rows()
        if self.format != FORMAT_B8G8R8A8_UNORM:
            return rows
        swapped = []
        for row in rows:
            rgb = bytearray(row)
            rgb[0::3], rgb[2::3] = row[2::3], row[0::3]
            swapped.append(bytes(rgb))
        return swapped

    def close(self):
        self.vk.check("vkDeviceWaitIdle", self.vk.DeviceWaitIdle, self.device)
        self.vk.DestroySwapchainKHR(self.device, self.swapchain, None)
        super().close()


class Presenter:
    """The present probe's Vulkan presenter: frame() presents one frame, last_frame() presents
    the last and returns its pixels."""

    def __init__(self, args, window, step, seen):
        self.step, self.window = step, window
        self.vk = vk = vkwsi.Vulkan(step)
        wanted = ["VK_KHR_surface", vkwsi.SURFACE_EXTENSIONS[window.kind]]
        missing = [e for e in wanted if e not in vkwsi.extension_names(vk)]
        if missing:
            raise ProbeError("the Vulkan loader and its drivers offer no %s" % ", ".join(missing),
                             step="vkCreateInstance")
        self.instance, instance_version = scene.create_instance(vk, wanted)
        self.surface = create_surface(vk, self.instance, window)
        physical, device, devices = scene.pick_device(vk, self.instance)
        seen.update(renderer=device["name"], device=device, devices=devices)
        family, supported = scene.graphics_queue_family(vk, physical), u32()
        vk.check("vkGetPhysicalDeviceSurfaceSupportKHR", vk.GetPhysicalDeviceSurfaceSupportKHR,
                 physical, family, self.surface, ctypes.byref(supported))
        if not supported.value:
            raise ProbeError("%s cannot present to this %s surface" % (device["name"], window.kind),
                             step=PRESENT_SUPPORT)
        if "VK_KHR_swapchain" not in vkwsi.extension_names(vk, physical):
            raise ProbeError("%s offers no VK_KHR_swapchain" % device["name"], step=PRESENT_SUPPORT)
        self.chain = Swapchain(vk, physical, family, args.size, step, self.surface)
        swapchain = self.chain.create_swapchain()
        self.chain.prepare()
        self.offscreen = (physical, family, args.size)
        self.info = {"renderer": device["name"], "vendor": device.get("driver_name", ""),
                     "version": "Vulkan %s %s" % (device["api_version"],
                                                  device.get("driver_info", "")),
                     "device": device, "devices": devices,
                     "instance_version": version_text(instance_version), "swapchain": swapchain}

    def frame(self, last=False):
        self.chain.present(self.window, last)

    def last_frame(self):
        self.frame(last=True)
        self.vk.check("vkQueueWaitIdle", self.vk.QueueWaitIdle, self.chain.queue)
        self.info["suboptimal"] = self.chain.suboptimal
        if self.chain.copies:
            return self.chain.rows()
        offscreen = scene.Renderer(self.vk, *self.offscreen, self.step)
        offscreen.prepare()
        offscreen.draw()
        rows = offscreen.rows()
        offscreen.close()
        return rows

    def close(self):
        self.chain.close()
        self.vk.DestroySurfaceKHR(self.instance, self.surface, None)
        self.vk.DestroyInstance(self.instance, None)
