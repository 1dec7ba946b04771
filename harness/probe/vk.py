#!/usr/bin/env python3
"""Vulkan probe: runs *inside* the sandbox/guest with the standard library and ctypes only.

Creates an instance with no window-system extension (headless), picks a physical device,
creates a logical device and renders a deterministic scene offscreen: two vertex-coloured
triangles that cross in depth, through a render pass and a graphics pipeline with the depth
test on, into a colour image copied to a host-visible buffer. Writes a PNG and prints one JSON
line describing the device and what the process could see. Every Vulkan call is checked: a
failing one names its VkResult and step; with --step-timeout a step that never returns (a
driver spinning on a failed allocation) is reported by name instead of hanging.
"""
import base64
import ctypes
import os
import struct
import sys
import time

from capsule import CAPSULE_ENV, Capsule
from facts import loader_diagnosis, mapped_libraries, vendor_libraries
from probelib import ProbeError, arguments, run, test_hooks, timed_rounds
from vkapi import (ACCESS_COLOR_WRITE, ACCESS_DEPTH_WRITE, ACCESS_TRANSFER_READ, APPLICATION_INFO,
                   ApplicationInfo,
                   ASPECT_COLOR, ASPECT_DEPTH, AttachmentDescription, AttachmentReference,
                   BUFFER_CREATE_INFO,
                   BUFFER_TRANSFER_DST, BUFFER_VERTEX, BufferCreateInfo, BufferImageCopy,
                   ClearDepthStencilValue,
                   ClearValue, COLOR_FORMAT, COMMAND_BUFFER_ALLOCATE_INFO,
                   COMMAND_BUFFER_BEGIN_INFO,
                   COMMAND_POOL_CREATE_INFO, CommandBufferAllocateInfo, CommandBufferBeginInfo,
                   CommandPoolCreateInfo,
                   COMPARE_LESS, ComponentMapping, DEPTH_FORMAT, DEVICE_CREATE_INFO,
                   DEVICE_QUEUE_CREATE_INFO,
                   DEVICE_TYPES, DeviceCreateInfo, DeviceQueueCreateInfo, DRIVER_IDS, Extent2D,
                   Extent3D, f32,
                   FENCE_CREATE_INFO, FENCE_WAIT_NS, FenceCreateInfo, FRAMEBUFFER_CREATE_INFO,
                   FramebufferCreateInfo,
                   GRAPHICS_PIPELINE_CREATE_INFO, GraphicsPipelineCreateInfo, Handle,
                   IMAGE_CREATE_INFO,
                   IMAGE_VIEW_CREATE_INFO, ImageCreateInfo, ImageSubresourceLayers,
                   ImageSubresourceRange,
                   ImageViewCreateInfo, INSTANCE_CREATE_INFO, InstanceCreateInfo, LAYOUT_COLOR,
                   LAYOUT_DEPTH,
                   LAYOUT_TRANSFER_SRC, LAYOUT_UNDEFINED, LOAD_CLEAR, LOAD_DONT_CARE,
                   MEMORY_ALLOCATE_INFO,
                   MEMORY_DEVICE_LOCAL, MEMORY_HOST_COHERENT, MEMORY_HOST_VISIBLE,
                   MemoryAllocateInfo,
                   MemoryRequirements, NonDispatchable, Offset2D, Offset3D,
                   PHYSICAL_DEVICE_DRIVER_PROPERTIES,
                   PHYSICAL_DEVICE_PROPERTIES_2, PhysicalDeviceDriverProperties,
                   PhysicalDeviceMemoryProperties,
                   PhysicalDeviceProperties, PhysicalDeviceProperties2,
                   PIPELINE_COLOR_BLEND_STATE_CREATE_INFO,
                   PIPELINE_COLOR_OUTPUT, PIPELINE_DEPTH_STENCIL_STATE_CREATE_INFO,
                   PIPELINE_EARLY_FRAGMENT,
                   PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO, PIPELINE_LAYOUT_CREATE_INFO,
                   PIPELINE_MULTISAMPLE_STATE_CREATE_INFO, PIPELINE_RASTERIZATION_STATE_CREATE_INFO,
                   PIPELINE_SHADER_STAGE_CREATE_INFO, PIPELINE_TRANSFER,
                   PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO,
                   PIPELINE_VIEWPORT_STATE_CREATE_INFO, PipelineColorBlendAttachmentState,
                   PipelineColorBlendStateCreateInfo, PipelineDepthStencilStateCreateInfo,
                   PipelineInputAssemblyStateCreateInfo, PipelineLayoutCreateInfo,
                   PipelineMultisampleStateCreateInfo,
                   PipelineRasterizationStateCreateInfo, PipelineShaderStageCreateInfo,
                   PipelineVertexInputStateCreateInfo, PipelineViewportStateCreateInfo,
                   QUEUE_GRAPHICS,
                   QueueFamilyProperties, Rect2D, RENDER_PASS_BEGIN_INFO, RENDER_PASS_CREATE_INFO,
                   RenderPassBeginInfo,
                   RenderPassCreateInfo, SHADER_MODULE_CREATE_INFO, ShaderModuleCreateInfo,
                   STAGE_FRAGMENT,
                   STAGE_VERTEX, StencilOpState, STORE_DONT_CARE, STORE_STORE, SUBMIT_INFO,
                   SubmitInfo,
                   SUBPASS_EXTERNAL, SubpassDependency, SubpassDescription, TRIANGLE_LIST, u32, u64,
                   USAGE_COLOR,
                   USAGE_DEPTH, USAGE_TRANSFER_SRC, VEC3_FORMAT, cp, version_text,
                   VertexInputAttributeDescription,
                   VertexInputBindingDescription, Viewport, vp, Vulkan)
from vkshaders import SPIRV

PROBE_VERSION = 1
ICD_DIRS = ("/etc/vulkan/icd.d", "/usr/share/vulkan/icd.d")
# prefer a device of this type (cpu, virtual-gpu, ...)
DEVICE_TYPE_ENV = "GPU_HARNESS_VK_DEVICE_TYPE"

# The scene, in Vulkan clip space (x right, y down, depth 0 near .. 1 far): x, y, z, r, g, b.
# The first triangle leans back from depth 0.2 to 0.8; the second stands at 0.5, so the depth
# test cuts them along the line where they cross.
VERTICES = [
    -0.85, 0.80, 0.2, 1.0, 0.1, 0.1,
    0.85, 0.55, 0.2, 0.1, 1.0, 0.1,
    0.05, -0.90, 0.8, 0.1, 0.2, 1.0,
    -0.70, -0.60, 0.5, 0.98, 0.63, 0.12,
    0.70, -0.60, 0.5, 0.94, 0.94, 0.90,
    0.00, 0.75, 0.5, 0.20, 0.80, 0.80,
]
CLEAR_COLOR = (0.08, 0.09, 0.18, 1.0)


def spirv_words(name):
    data = base64.b64decode(SPIRV[name])
    if not data:
        raise ProbeError("no SPIR-V for %s (run scripts/spirv)" % name)
    return (u32 * (len(data) // 4)).from_buffer_copy(data), len(data)


def name_array(extensions):
    """Extension names as the create infos take them (None for none)."""
    return (cp * len(extensions))(*[e.encode() for e in extensions]) if extensions else None


def create_instance(vk, extensions=()):
    version = u32(1 << 22)  # 1.0 where vkEnumerateInstanceVersion is missing
    if vk.has("EnumerateInstanceVersion"):
        vk.check("vkEnumerateInstanceVersion", vk.EnumerateInstanceVersion, ctypes.byref(version))
    api = min(version.value, (1 << 22) | (1 << 12))  # ask for 1.1 at most: what the probe uses
    app = ApplicationInfo(APPLICATION_INFO, None, b"gpu-harness", 1, b"gpu-harness", 1, api)
    info = InstanceCreateInfo(INSTANCE_CREATE_INFO, None, 0, ctypes.pointer(app), 0, None,
                              len(extensions), name_array(extensions))
    instance = Handle()
    vk.check("vkCreateInstance", vk.CreateInstance, ctypes.byref(info), None,
             ctypes.byref(instance))
    return instance, version.value


def describe(vk, device):
    props = PhysicalDeviceProperties()
    vk.GetPhysicalDeviceProperties(device, ctypes.byref(props))
    facts = {"name": props.deviceName.decode("utf-8", "replace"),
             "type": DEVICE_TYPES.get(props.deviceType, "?"),
             "api_version": version_text(props.apiVersion), "driver_version": props.driverVersion,
             "vendor_id": "0x%x" % props.vendorID, "device_id": "0x%x" % props.deviceID}
    if props.apiVersion >= (1 << 22 | 2 << 12) and vk.has("GetPhysicalDeviceProperties2"):
        driver = PhysicalDeviceDriverProperties(PHYSICAL_DEVICE_DRIVER_PROPERTIES, None)
        both = PhysicalDeviceProperties2(PHYSICAL_DEVICE_PROPERTIES_2,
                                         ctypes.cast(ctypes.pointer(driver), vp))
        vk.GetPhysicalDeviceProperties2(device, ctypes.byref(both))
        facts.update(driver_id=DRIVER_IDS.get(driver.driverID, str(driver.driverID)),
                     driver_name=driver.driverName.decode("utf-8", "replace"),
                     driver_info=driver.driverInfo.decode("utf-8", "replace"))
    return facts


def pick_device(vk, instance):
    count = u32()
    vk.check("vkEnumeratePhysicalDevices", vk.EnumeratePhysicalDevices, instance,
             ctypes.byref(count), None)
    if not count.value:
        raise ProbeError("vkEnumeratePhysicalDevices found no device")
    devices = (Handle * count.value)()
    vk.check("vkEnumeratePhysicalDevices", vk.EnumeratePhysicalDevices, instance,
             ctypes.byref(count), devices)
    described = [(handle, describe(vk, handle)) for handle in devices[:count.value]]
    wanted = os.environ.get(DEVICE_TYPE_ENV)
    chosen = next((d for d in described if d[1]["type"] == wanted),
                  described[0]) if wanted else described[0]
    return chosen[0], chosen[1], [facts["name"] for _, facts in described]


def graphics_queue_family(vk, device):
    count = u32()
    vk.GetPhysicalDeviceQueueFamilyProperties(device, ctypes.byref(count), None)
    families = (QueueFamilyProperties * count.value)()
    vk.GetPhysicalDeviceQueueFamilyProperties(device, ctypes.byref(count), families)
    for index, family in enumerate(families[:count.value]):
        if family.queueFlags & QUEUE_GRAPHICS and family.queueCount:
            return index
    raise ProbeError("the device has no graphics queue")


class Renderer:
    """One device, the offscreen target and the pipeline; draw() renders a frame and reads it
    back."""

    def __init__(self, vk, physical, family, size, step, extensions=()):
        self.vk, self.size, self.step = vk, size, step
        priority = f32(1.0)
        queue_info = DeviceQueueCreateInfo(DEVICE_QUEUE_CREATE_INFO, None, 0, family, 1,
                                           ctypes.pointer(priority))
        info = DeviceCreateInfo(DEVICE_CREATE_INFO, None, 0, 1, ctypes.pointer(queue_info), 0, None,
                                len(extensions), name_array(extensions), None)
        self.device = Handle()
        vk.check("vkCreateDevice", vk.CreateDevice, physical, ctypes.byref(info), None,
                 ctypes.byref(self.device))
        self.queue = Handle()
        vk.GetDeviceQueue(self.device, family, 0, ctypes.byref(self.queue))
        self.memory = PhysicalDeviceMemoryProperties()
        vk.GetPhysicalDeviceMemoryProperties(physical, ctypes.byref(self.memory))
        self.family = family

    def create(self, kind, fn, info):
        handle = NonDispatchable()
        self.vk.check(kind, fn, self.device, ctypes.byref(info), None, ctypes.byref(handle))
        return handle

    def memory_type(self, bits, wanted, preferred=0):
        types = self.memory.memoryTypes[:self.memory.memoryTypeCount]
        for flags in (wanted | preferred, wanted):
            for index, kind in enumerate(types):
                if bits & (1 << index) and kind.propertyFlags & flags == flags:
                    return index
        raise ProbeError("no memory type with flags 0x%x for bits 0x%x" % (wanted, bits))

    def allocate(self, requirements, wanted, preferred=0):
        info = MemoryAllocateInfo(MEMORY_ALLOCATE_INFO, None, requirements.size,
                                  self.memory_type(requirements.memoryTypeBits, wanted, preferred))
        return self.create("vkAllocateMemory", self.vk.AllocateMemory, info)

    def image(self, fmt, usage, aspect):
        info = ImageCreateInfo(IMAGE_CREATE_INFO, None, 0, 1, fmt, Extent3D(self.size, self.size,
                                                                            1), 1, 1, 1, 0,
                               usage, 0, 0, None, LAYOUT_UNDEFINED)
        image = self.create("vkCreateImage", self.vk.CreateImage, info)
        requirements = MemoryRequirements()
        self.vk.GetImageMemoryRequirements(self.device, image, ctypes.byref(requirements))
        memory = self.allocate(requirements, 0, MEMORY_DEVICE_LOCAL)
        self.vk.check("vkBindImageMemory", self.vk.BindImageMemory, self.device, image, memory, 0)
        view = ImageViewCreateInfo(IMAGE_VIEW_CREATE_INFO, None, 0, image, 1, fmt,
                                   ComponentMapping(0, 0, 0, 0),
                                   ImageSubresourceRange(aspect, 0, 1, 0, 1))
        return image, self.create("vkCreateImageView", self.vk.CreateImageView, view)

    def buffer(self, size, usage):
        """A host-visible, coherent buffer, and its memory mapped."""
        info = BufferCreateInfo(BUFFER_CREATE_INFO, None, 0, size, usage, 0, 0, None)
        buffer = self.create("vkCreateBuffer", self.vk.CreateBuffer, info)
        requirements = MemoryRequirements()
        self.vk.GetBufferMemoryRequirements(self.device, buffer, ctypes.byref(requirements))
        memory = self.allocate(requirements, MEMORY_HOST_VISIBLE | MEMORY_HOST_COHERENT)
        self.vk.check("vkBindBufferMemory", self.vk.BindBufferMemory, self.device, buffer, memory,
                      0)
        mapped = vp()
        self.vk.check("vkMapMemory", self.vk.MapMemory, self.device, memory, 0, size, 0,
                      ctypes.byref(mapped))
        return buffer, mapped.value

    def render_pass(self, color_format=COLOR_FORMAT, final_layout=LAYOUT_TRANSFER_SRC):
        """Colour and depth cleared, the colour stored and left in `final_layout`."""
        attachments = (AttachmentDescription * 2)(
            AttachmentDescription(0, color_format, 1, LOAD_CLEAR, STORE_STORE, LOAD_DONT_CARE,
                                  STORE_DONT_CARE,
                                  LAYOUT_UNDEFINED, final_layout),
            AttachmentDescription(0, DEPTH_FORMAT, 1, LOAD_CLEAR, STORE_DONT_CARE, LOAD_DONT_CARE,
                                  STORE_DONT_CARE,
                                  LAYOUT_UNDEFINED, LAYOUT_DEPTH))
        color_ref, depth_ref = (AttachmentReference(0, LAYOUT_COLOR),
                                AttachmentReference(1, LAYOUT_DEPTH))
        subpass = SubpassDescription(0, 0, 0, None, 1, ctypes.pointer(color_ref), None,
                                     ctypes.pointer(depth_ref),
                                     0, None)
        dependencies = (SubpassDependency * 2)(
            SubpassDependency(SUBPASS_EXTERNAL, 0, PIPELINE_COLOR_OUTPUT | PIPELINE_EARLY_FRAGMENT,
                              PIPELINE_COLOR_OUTPUT | PIPELINE_EARLY_FRAGMENT, 0,
                              ACCESS_COLOR_WRITE | ACCESS_DEPTH_WRITE, 0),
            SubpassDependency(0, SUBPASS_EXTERNAL, PIPELINE_COLOR_OUTPUT, PIPELINE_TRANSFER,
                              ACCESS_COLOR_WRITE,
                              ACCESS_TRANSFER_READ, 0))
        info = RenderPassCreateInfo(RENDER_PASS_CREATE_INFO, None, 0, 2, attachments, 1,
                                    ctypes.pointer(subpass), 2,
                                    dependencies)
        return self.create("vkCreateRenderPass", self.vk.CreateRenderPass, info)

    def shader(self, name):
        words, size = spirv_words(name)
        info = ShaderModuleCreateInfo(SHADER_MODULE_CREATE_INFO, None, 0, size, words)
        return self.create("vkCreateShaderModule", self.vk.CreateShaderModule, info)

    def pipeline(self, render_pass):
        layout = self.create("vkCreatePipelineLayout", self.vk.CreatePipelineLayout,
                             PipelineLayoutCreateInfo(PIPELINE_LAYOUT_CREATE_INFO, None, 0, 0, None,
                                                      0, None))
        stages = (PipelineShaderStageCreateInfo * 2)(
            PipelineShaderStageCreateInfo(PIPELINE_SHADER_STAGE_CREATE_INFO, None, 0, STAGE_VERTEX,
                                          self.shader("scene.vert"), b"main", None),
            PipelineShaderStageCreateInfo(PIPELINE_SHADER_STAGE_CREATE_INFO, None, 0,
                                          STAGE_FRAGMENT,
                                          self.shader("scene.frag"), b"main", None))
        binding = VertexInputBindingDescription(0, 24, 0)
        attributes = (VertexInputAttributeDescription * 2)(
            VertexInputAttributeDescription(0, 0, VEC3_FORMAT, 0),
            VertexInputAttributeDescription(1, 0, VEC3_FORMAT, 12))
        vertex_input = PipelineVertexInputStateCreateInfo(PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO,
                                                          None, 0, 1,
                                                          ctypes.pointer(binding), 2, attributes)
        assembly = PipelineInputAssemblyStateCreateInfo(PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO,
                                                        None, 0,
                                                        TRIANGLE_LIST, 0)
        viewport = Viewport(0.0, 0.0, float(self.size), float(self.size), 0.0, 1.0)
        scissor = Rect2D(Offset2D(0, 0), Extent2D(self.size, self.size))
        viewport_state = PipelineViewportStateCreateInfo(PIPELINE_VIEWPORT_STATE_CREATE_INFO, None,
                                                         0, 1,
                                                         ctypes.pointer(viewport), 1,
                                                         ctypes.pointer(scissor))
        raster = PipelineRasterizationStateCreateInfo(PIPELINE_RASTERIZATION_STATE_CREATE_INFO,
                                                      None, 0, 0, 0, 0, 0,
                                                      0, 0, 0.0, 0.0, 0.0, 1.0)
        multisample = PipelineMultisampleStateCreateInfo(PIPELINE_MULTISAMPLE_STATE_CREATE_INFO,
                                                         None, 0, 1, 0, 0.0,
                                                         None, 0, 0)
        depth = PipelineDepthStencilStateCreateInfo(PIPELINE_DEPTH_STENCIL_STATE_CREATE_INFO, None,
                                                    0, 1, 1,
                                                    COMPARE_LESS, 0, 0, StencilOpState(),
                                                    StencilOpState(), 0.0, 1.0)
        blend_attachment = PipelineColorBlendAttachmentState(0, 0, 0, 0, 0, 0, 0, 0xF)
        blend = PipelineColorBlendStateCreateInfo(PIPELINE_COLOR_BLEND_STATE_CREATE_INFO, None, 0,
                                                  0, 0, 1,
                                                  ctypes.pointer(blend_attachment), (f32 * 4)())
        info = GraphicsPipelineCreateInfo(
            GRAPHICS_PIPELINE_CREATE_INFO, None, 0, 2, stages, ctypes.pointer(vertex_input),
                                          ctypes.pointer(assembly),
            None, ctypes.pointer(viewport_state), ctypes.pointer(raster),
                                          ctypes.pointer(multisample),
            ctypes.pointer(depth), ctypes.pointer(blend), None, layout, render_pass, 0, 0, -1)
        pipeline = NonDispatchable()
        self.vk.check("vkCreateGraphicsPipelines", self.vk.CreateGraphicsPipelines, self.device, 0,
                      1,
                      ctypes.byref(info), None, ctypes.byref(pipeline))
        return pipeline

    def prepare(self):
        """The target, the pipeline and one command buffer that draws and copies the image out."""
        size, vk = self.size, self.vk
        color_image, color_view = self.image(COLOR_FORMAT, USAGE_COLOR | USAGE_TRANSFER_SRC,
                                             ASPECT_COLOR)
        _, depth_view = self.image(DEPTH_FORMAT, USAGE_DEPTH, ASPECT_DEPTH)
        self.readback, self.readback_memory = self.buffer(size * size * 4, BUFFER_TRANSFER_DST)
        vertex_data = struct.pack("%df" % len(VERTICES), *VERTICES)
        vertices, mapped = self.buffer(len(vertex_data), BUFFER_VERTEX)
        ctypes.memmove(mapped, vertex_data, len(vertex_data))
        render_pass = self.render_pass()
        views = (NonDispatchable * 2)(color_view, depth_view)
        framebuffer = self.create("vkCreateFramebuffer", vk.CreateFramebuffer,
                                  FramebufferCreateInfo(FRAMEBUFFER_CREATE_INFO, None, 0,
                                                        render_pass, 2, views,
                                                        size, size, 1))
        pipeline = self.pipeline(render_pass)
        pool = self.create("vkCreateCommandPool", vk.CreateCommandPool,
                           CommandPoolCreateInfo(COMMAND_POOL_CREATE_INFO, None, 0, self.family))
        self.commands = Handle()
        vk.check("vkAllocateCommandBuffers", vk.AllocateCommandBuffers, self.device,
                 ctypes.byref(CommandBufferAllocateInfo(COMMAND_BUFFER_ALLOCATE_INFO, None, pool, 0,
                                                        1)),
                 ctypes.byref(self.commands))
        vk.check("vkBeginCommandBuffer", vk.BeginCommandBuffer, self.commands,
                 ctypes.byref(CommandBufferBeginInfo(COMMAND_BUFFER_BEGIN_INFO, None, 0, None)))
        clears = (ClearValue * 2)()
        clears[0].color.float32[:] = CLEAR_COLOR
        clears[1].depthStencil = ClearDepthStencilValue(1.0, 0)
        begin = RenderPassBeginInfo(RENDER_PASS_BEGIN_INFO, None, render_pass, framebuffer,
                                    Rect2D(Offset2D(0, 0), Extent2D(size, size)), 2, clears)
        vk.CmdBeginRenderPass(self.commands, ctypes.byref(begin), 0)
        vk.CmdBindPipeline(self.commands, 0, pipeline)
        vk.CmdBindVertexBuffers(self.commands, 0, 1, ctypes.byref(vertices), ctypes.byref(u64(0)))
        vk.CmdDraw(self.commands, len(VERTICES) // 6, 1, 0, 0)
        vk.CmdEndRenderPass(self.commands)
        region = BufferImageCopy(0, 0, 0, ImageSubresourceLayers(ASPECT_COLOR, 0, 0, 1),
                                 Offset3D(0, 0, 0), Extent3D(size, size, 1))
        vk.CmdCopyImageToBuffer(self.commands, color_image, LAYOUT_TRANSFER_SRC, self.readback, 1,
                                ctypes.byref(region))
        vk.check("vkEndCommandBuffer", vk.EndCommandBuffer, self.commands)
        self.fence = self.create("vkCreateFence", vk.CreateFence, FenceCreateInfo(FENCE_CREATE_INFO,
                                                                                  None, 0))

    def draw(self):
        vk = self.vk
        submit = SubmitInfo(SUBMIT_INFO, None, 0, None, None, 1, ctypes.pointer(self.commands), 0,
                            None)
        vk.check("vkQueueSubmit", vk.QueueSubmit, self.queue, 1, ctypes.byref(submit), self.fence)
        vk.check("vkWaitForFences", vk.WaitForFences, self.device, 1, ctypes.byref(self.fence), 1,
                 FENCE_WAIT_NS)
        vk.check("vkResetFences", vk.ResetFences, self.device, 1, ctypes.byref(self.fence))

    def rows(self):
        """Pixels top row first, RGB."""
        size = self.size
        raw = ctypes.string_at(self.readback_memory, size * size * 4)
        rows = []
        for y in range(size):
            row = raw[y * size * 4:(y + 1) * size * 4]
            rgb = bytearray(size * 3)
            rgb[0::3], rgb[1::3], rgb[2::3] = row[0::4], row[1::4], row[2::4]
            rows.append(bytes(rgb))
        return rows

    def close(self):
        self.vk.check("vkDeviceWaitIdle", self.vk.DeviceWaitIdle, self.device)
        self.vk.DestroyDevice(self.device, None)


def render(args, step, seen):
    timings: dict = {}
    t0 = time.perf_counter()
    # sandbox-capsule: the host's Vulkan loader and ICD in a link-map namespace of their own.
    capsule = Capsule(os.environ[CAPSULE_ENV]) if os.environ.get(CAPSULE_ENV) else None
    vk = Vulkan(step, capsule)
    instance, instance_version = create_instance(vk)
    timings["instance_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    t1 = time.perf_counter()
    physical, device, devices = pick_device(vk, instance)
    seen.update(renderer=device["name"], device=device, devices=devices)
    renderer = Renderer(vk, physical, graphics_queue_family(vk, physical), args.size, step)
    timings["device_ms"] = round((time.perf_counter() - t1) * 1000, 3)
    info = {"renderer": device["name"], "vendor": device.get("driver_name", ""),
            "version": "Vulkan %s %s" % (device["api_version"], device.get("driver_info", "")),
            "device": device, "devices": devices,
            "instance_version": version_text(instance_version)}
    test_hooks(args, step)
    t2 = time.perf_counter()
    renderer.prepare()
    renderer.draw()
    rows = renderer.rows()
    timings["first_frame_ms"] = round((time.perf_counter() - t2) * 1000, 3)
    timings.update(timed_rounds(renderer.draw, args))
    step(None)  # no driver call until the teardown's
    # What is mapped now is what rendered: destroying the instance unloads the ICD.
    info["libraries"] = mapped_libraries()
    if capsule:
        info["capsule"] = {"namespace": capsule.lmid, "libraries": capsule.loaded,
                           "dlopen_redirected_in": capsule.redirected,
                           "dlopen_calls": capsule.calls[:20],
                           "namespaces": capsule.namespaces()}
    renderer.close()
    vk.DestroyInstance(instance, None)
    return info, rows, timings


def diagnose():
    icds = vendor_libraries(["VK_DRIVER_FILES", "VK_ICD_FILENAMES"], "VK_DRIVER_DIRS", ICD_DIRS)
    return loader_diagnosis([("vulkan-icd", lib) for lib in icds])


def main(argv=None):
    args = arguments(__doc__).parse_args(argv)
    return run("vulkan", "vulkan", PROBE_VERSION, args, render, diagnose)


if __name__ == "__main__":
    sys.exit(main())
