"""The Vulkan probe's ctypes bindings: the struct layouts, constants and loader commands it uses.

Runs *inside* the sandbox/guest with the standard library and ctypes only, beside vk.py (the
harness puts them in one folder). Each struct is laid out as the Vulkan headers lay it out (a
test compares them with the C compiler's); Vulkan wraps the loader's commands so that every
call is a watchdog step and a failing one raises with its step and VkResult.
"""
import ctypes

from probelib import ProbeError, declare

u32, i32, u64, f32, u8 = (ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64, ctypes.c_float,
                          ctypes.c_uint8)
vp, cp, size_t = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
# dispatchable: VkInstance, VkPhysicalDevice, VkDevice, VkQueue, VkCommandBuffer
Handle = ctypes.c_void_p
NonDispatchable = ctypes.c_uint64  # everything else, on a 64-bit platform
P = ctypes.POINTER

RESULTS = {
    0: "VK_SUCCESS", 1: "VK_NOT_READY", 2: "VK_TIMEOUT", 3: "VK_EVENT_SET", 4: "VK_EVENT_RESET",
           5: "VK_INCOMPLETE",
    -1: "VK_ERROR_OUT_OF_HOST_MEMORY", -2: "VK_ERROR_OUT_OF_DEVICE_MEMORY",
           -3: "VK_ERROR_INITIALIZATION_FAILED",
    -4: "VK_ERROR_DEVICE_LOST", -5: "VK_ERROR_MEMORY_MAP_FAILED", -6: "VK_ERROR_LAYER_NOT_PRESENT",
    -7: "VK_ERROR_EXTENSION_NOT_PRESENT", -8: "VK_ERROR_FEATURE_NOT_PRESENT",
           -9: "VK_ERROR_INCOMPATIBLE_DRIVER",
    -10: "VK_ERROR_TOO_MANY_OBJECTS", -11: "VK_ERROR_FORMAT_NOT_SUPPORTED",
           -12: "VK_ERROR_FRAGMENTED_POOL",
    -13: "VK_ERROR_UNKNOWN", -1000069000: "VK_ERROR_OUT_OF_POOL_MEMORY",
    -1000072003: "VK_ERROR_INVALID_EXTERNAL_HANDLE", -1000161000: "VK_ERROR_FRAGMENTATION",
    -1000257000: "VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS", -1000001004: "VK_ERROR_OUT_OF_DATE_KHR",
    1000001003: "VK_SUBOPTIMAL_KHR",
}
DEVICE_TYPES = {0: "other", 1: "integrated-gpu", 2: "discrete-gpu", 3: "virtual-gpu", 4: "cpu"}
DRIVER_IDS = {1: "AMD_PROPRIETARY", 2: "AMD_OPEN_SOURCE", 3: "MESA_RADV", 4: "NVIDIA_PROPRIETARY",
              5: "INTEL_PROPRIETARY_WINDOWS", 6: "INTEL_OPEN_SOURCE_MESA",
              7: "IMAGINATION_PROPRIETARY",
              8: "QUALCOMM_PROPRIETARY", 9: "ARM_PROPRIETARY", 10: "GOOGLE_SWIFTSHADER",
              11: "GGP_PROPRIETARY",
              12: "BROADCOM_PROPRIETARY", 13: "MESA_LLVMPIPE", 14: "MOLTENVK",
              15: "COREAVI_PROPRIETARY",
              16: "JUICE_PROPRIETARY", 17: "VERISILICON_PROPRIETARY", 18: "MESA_TURNIP",
              19: "MESA_V3DV",
              20: "MESA_PANVK", 21: "SAMSUNG_PROPRIETARY", 22: "MESA_VENUS", 23: "MESA_DOZEN",
              24: "MESA_NVK",
              25: "IMAGINATION_OPEN_SOURCE_MESA", 26: "MESA_HONEYKRISP",
              27: "VULKAN_SC_EMULATION_ON_VULKAN"}

# sType values
APPLICATION_INFO, INSTANCE_CREATE_INFO, DEVICE_QUEUE_CREATE_INFO, DEVICE_CREATE_INFO = 0, 1, 2, 3
SUBMIT_INFO, MEMORY_ALLOCATE_INFO, FENCE_CREATE_INFO, BUFFER_CREATE_INFO = 4, 5, 8, 12
IMAGE_CREATE_INFO, IMAGE_VIEW_CREATE_INFO, SHADER_MODULE_CREATE_INFO = 14, 15, 16
PIPELINE_SHADER_STAGE_CREATE_INFO, PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO = 18, 19
PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO, PIPELINE_VIEWPORT_STATE_CREATE_INFO = 20, 22
PIPELINE_RASTERIZATION_STATE_CREATE_INFO, PIPELINE_MULTISAMPLE_STATE_CREATE_INFO = 23, 24
PIPELINE_DEPTH_STENCIL_STATE_CREATE_INFO, PIPELINE_COLOR_BLEND_STATE_CREATE_INFO = 25, 26
GRAPHICS_PIPELINE_CREATE_INFO, PIPELINE_LAYOUT_CREATE_INFO = 28, 30
FRAMEBUFFER_CREATE_INFO, RENDER_PASS_CREATE_INFO, COMMAND_POOL_CREATE_INFO = 37, 38, 39
COMMAND_BUFFER_ALLOCATE_INFO, COMMAND_BUFFER_BEGIN_INFO, RENDER_PASS_BEGIN_INFO = 40, 42, 43
PHYSICAL_DEVICE_PROPERTIES_2, PHYSICAL_DEVICE_DRIVER_PROPERTIES = 1000059001, 1000196000

# R8G8B8A8_UNORM, D16_UNORM, R32G32B32_SFLOAT
COLOR_FORMAT, DEPTH_FORMAT, VEC3_FORMAT = 37, 124, 106
LAYOUT_UNDEFINED, LAYOUT_COLOR, LAYOUT_DEPTH, LAYOUT_TRANSFER_SRC = 0, 2, 3, 6
USAGE_TRANSFER_SRC, USAGE_COLOR, USAGE_DEPTH = 0x1, 0x10, 0x20
BUFFER_TRANSFER_DST, BUFFER_VERTEX = 0x2, 0x80
MEMORY_DEVICE_LOCAL, MEMORY_HOST_VISIBLE, MEMORY_HOST_COHERENT = 0x1, 0x2, 0x4
ASPECT_COLOR, ASPECT_DEPTH = 0x1, 0x2
LOAD_CLEAR, LOAD_DONT_CARE, STORE_STORE, STORE_DONT_CARE = 1, 2, 0, 1
STAGE_VERTEX, STAGE_FRAGMENT = 0x1, 0x10
PIPELINE_COLOR_OUTPUT, PIPELINE_EARLY_FRAGMENT, PIPELINE_TRANSFER = 0x400, 0x100, 0x1000
ACCESS_COLOR_WRITE, ACCESS_DEPTH_WRITE, ACCESS_TRANSFER_READ = 0x100, 0x400, 0x800
SUBPASS_EXTERNAL = 0xFFFFFFFF
QUEUE_GRAPHICS = 0x1
COMPARE_LESS, TRIANGLE_LIST = 1, 3
FENCE_WAIT_NS = 30 * 1000 * 1000 * 1000


def make(name, fields):
    return type(name, (ctypes.Structure,), {"_fields_": fields})


def header():
    return [("sType", u32), ("pNext", vp)]


ApplicationInfo = make("ApplicationInfo", header() + [
    ("pApplicationName", cp), ("applicationVersion", u32), ("pEngineName", cp), ("engineVersion",
                                                                                 u32),
    ("apiVersion", u32)])
InstanceCreateInfo = make("InstanceCreateInfo", header() + [
    ("flags", u32), ("pApplicationInfo", P(ApplicationInfo)), ("enabledLayerCount", u32),
    ("ppEnabledLayerNames", P(cp)), ("enabledExtensionCount", u32), ("ppEnabledExtensionNames",
                                                                     P(cp))])
# The 504-byte limits block is only carried through, never read: its size and 8-byte alignment
# matter.
PhysicalDeviceLimits = make("PhysicalDeviceLimits", [("raw", u64 * 63)])
PhysicalDeviceSparseProperties = make("PhysicalDeviceSparseProperties", [("raw", u32 * 5)])
PhysicalDeviceProperties = make("PhysicalDeviceProperties", [
    ("apiVersion", u32), ("driverVersion", u32), ("vendorID", u32), ("deviceID", u32),
                                                             ("deviceType", u32),
    ("deviceName", ctypes.c_char * 256), ("pipelineCacheUUID", u8 * 16), ("limits",
                                                                          PhysicalDeviceLimits),
    ("sparseProperties", PhysicalDeviceSparseProperties)])
PhysicalDeviceProperties2 = make("PhysicalDeviceProperties2", header() + [
    ("properties", PhysicalDeviceProperties)])
ConformanceVersion = make("ConformanceVersion", [("major", u8), ("minor", u8), ("subminor", u8),
                                                 ("patch", u8)])
PhysicalDeviceDriverProperties = make("PhysicalDeviceDriverProperties", header() + [
    ("driverID", u32), ("driverName", ctypes.c_char * 256), ("driverInfo", ctypes.c_char * 256),
    ("conformanceVersion", ConformanceVersion)])
Extent3D = make("Extent3D", [("width", u32), ("height", u32), ("depth", u32)])
QueueFamilyProperties = make("QueueFamilyProperties", [
    ("queueFlags", u32), ("queueCount", u32), ("timestampValidBits", u32),
                                                       ("minImageTransferGranularity", Extent3D)])
DeviceQueueCreateInfo = make("DeviceQueueCreateInfo", header() + [
    ("flags", u32), ("queueFamilyIndex", u32), ("queueCount", u32), ("pQueuePriorities", P(f32))])
DeviceCreateInfo = make("DeviceCreateInfo", header() + [
    ("flags", u32), ("queueCreateInfoCount", u32), ("pQueueCreateInfos", P(DeviceQueueCreateInfo)),
    ("enabledLayerCount", u32), ("ppEnabledLayerNames", P(cp)), ("enabledExtensionCount", u32),
    ("ppEnabledExtensionNames", P(cp)), ("pEnabledFeatures", vp)])
MemoryType = make("MemoryType", [("propertyFlags", u32), ("heapIndex", u32)])
MemoryHeap = make("MemoryHeap", [("size", u64), ("flags", u32)])
PhysicalDeviceMemoryProperties = make("PhysicalDeviceMemoryProperties", [
    ("memoryTypeCount", u32), ("memoryTypes", MemoryType * 32), ("memoryHeapCount", u32),
    ("memoryHeaps", MemoryHeap * 16)])
MemoryRequirements = make("MemoryRequirements", [("size", u64), ("alignment", u64),
                                                 ("memoryTypeBits", u32)])
MemoryAllocateInfo = make("MemoryAllocateInfo", header() + [("allocationSize", u64),
                                                            ("memoryTypeIndex", u32)])
ImageCreateInfo = make("ImageCreateInfo", header() + [
    ("flags", u32), ("imageType", u32), ("format", u32), ("extent", Extent3D), ("mipLevels", u32),
    ("arrayLayers", u32), ("samples", u32), ("tiling", u32), ("usage", u32), ("sharingMode", u32),
    ("queueFamilyIndexCount", u32), ("pQueueFamilyIndices", P(u32)), ("initialLayout", u32)])
ComponentMapping = make("ComponentMapping", [("r", u32), ("g", u32), ("b", u32), ("a", u32)])
ImageSubresourceRange = make("ImageSubresourceRange", [
    ("aspectMask", u32), ("baseMipLevel", u32), ("levelCount", u32), ("baseArrayLayer", u32),
                                                       ("layerCount", u32)])
ImageViewCreateInfo = make("ImageViewCreateInfo", header() + [
    ("flags", u32), ("image", NonDispatchable), ("viewType", u32), ("format", u32),
    ("components", ComponentMapping),
    ("subresourceRange", ImageSubresourceRange)])
AttachmentDescription = make("AttachmentDescription", [
    ("flags", u32), ("format", u32), ("samples", u32), ("loadOp", u32), ("storeOp", u32),
                                                       ("stencilLoadOp", u32),
    ("stencilStoreOp", u32), ("initialLayout", u32), ("finalLayout", u32)])
AttachmentReference = make("AttachmentReference", [("attachment", u32), ("layout", u32)])
SubpassDescription = make("SubpassDescription", [
    ("flags", u32), ("pipelineBindPoint", u32), ("inputAttachmentCount", u32),
    ("pInputAttachments", P(AttachmentReference)), ("colorAttachmentCount", u32),
    ("pColorAttachments", P(AttachmentReference)), ("pResolveAttachments", P(AttachmentReference)),
    ("pDepthStencilAttachment", P(AttachmentReference)), ("preserveAttachmentCount", u32),
    ("pPreserveAttachments", P(u32))])
SubpassDependency = make("SubpassDependency", [
    ("srcSubpass", u32), ("dstSubpass", u32), ("srcStageMask", u32), ("dstStageMask", u32),
                                               ("srcAccessMask", u32),
    ("dstAccessMask", u32), ("dependencyFlags", u32)])
RenderPassCreateInfo = make("RenderPassCreateInfo", header() + [
    ("flags", u32), ("attachmentCount", u32), ("pAttachments", P(AttachmentDescription)),
                                                                ("subpassCount", u32),
    ("pSubpasses", P(SubpassDescription)), ("dependencyCount", u32), ("pDependencies",
                                                                      P(SubpassDependency))])
FramebufferCreateInfo = make("FramebufferCreateInfo", header() + [
    ("flags", u32), ("renderPass", NonDispatchable), ("attachmentCount", u32), ("pAttachments",
                                                                                P(NonDispatchable)),
    ("width", u32), ("height", u32), ("layers", u32)])
ShaderModuleCreateInfo = make("ShaderModuleCreateInfo", header() + [
    ("flags", u32), ("codeSize", size_t), ("pCode", P(u32))])
PipelineShaderStageCreateInfo = make("PipelineShaderStageCreateInfo", header() + [
    ("flags", u32), ("stage", u32), ("module", NonDispatchable), ("pName", cp),
    ("pSpecializationInfo", vp)])
VertexInputBindingDescription = make("VertexInputBindingDescription", [
    ("binding", u32), ("stride", u32), ("inputRate", u32)])
VertexInputAttributeDescription = make("VertexInputAttributeDescription", [
    ("location", u32), ("binding", u32), ("format", u32), ("offset", u32)])
PipelineVertexInputStateCreateInfo = make("PipelineVertexInputStateCreateInfo", header() + [
    ("flags", u32), ("vertexBindingDescriptionCount", u32),
    ("pVertexBindingDescriptions", P(VertexInputBindingDescription)),
    ("vertexAttributeDescriptionCount", u32),
    ("pVertexAttributeDescriptions", P(VertexInputAttributeDescription))])
PipelineInputAssemblyStateCreateInfo = make("PipelineInputAssemblyStateCreateInfo", header() + [
    ("flags", u32), ("topology", u32), ("primitiveRestartEnable", u32)])
Viewport = make("Viewport", [("x", f32), ("y", f32), ("width", f32), ("height", f32),
                             ("minDepth", f32), ("maxDepth", f32)])
Offset2D = make("Offset2D", [("x", i32), ("y", i32)])
Extent2D = make("Extent2D", [("width", u32), ("height", u32)])
Rect2D = make("Rect2D", [("offset", Offset2D), ("extent", Extent2D)])
PipelineViewportStateCreateInfo = make("PipelineViewportStateCreateInfo", header() + [
    ("flags", u32), ("viewportCount", u32), ("pViewports", P(Viewport)), ("scissorCount", u32),
    ("pScissors", P(Rect2D))])
PipelineRasterizationStateCreateInfo = make("PipelineRasterizationStateCreateInfo", header() + [
    ("flags", u32), ("depthClampEnable", u32), ("rasterizerDiscardEnable", u32),
    ("polygonMode", u32), ("cullMode", u32), ("frontFace", u32), ("depthBiasEnable", u32),
    ("depthBiasConstantFactor", f32), ("depthBiasClamp", f32), ("depthBiasSlopeFactor", f32),
    ("lineWidth", f32)])
PipelineMultisampleStateCreateInfo = make("PipelineMultisampleStateCreateInfo", header() + [
    ("flags", u32), ("rasterizationSamples", u32), ("sampleShadingEnable", u32),
    ("minSampleShading", f32),
    ("pSampleMask", P(u32)), ("alphaToCoverageEnable", u32), ("alphaToOneEnable", u32)])
StencilOpState = make("StencilOpState", [
    ("failOp", u32), ("passOp", u32), ("depthFailOp", u32), ("compareOp", u32), ("compareMask",
                                                                                 u32),
    ("writeMask", u32), ("reference", u32)])
PipelineDepthStencilStateCreateInfo = make("PipelineDepthStencilStateCreateInfo", header() + [
    ("flags", u32), ("depthTestEnable", u32), ("depthWriteEnable", u32), ("depthCompareOp", u32),
    ("depthBoundsTestEnable", u32), ("stencilTestEnable", u32), ("front", StencilOpState),
    ("back", StencilOpState),
    ("minDepthBounds", f32), ("maxDepthBounds", f32)])
PipelineColorBlendAttachmentState = make("PipelineColorBlendAttachmentState", [
    ("blendEnable", u32), ("srcColorBlendFactor", u32), ("dstColorBlendFactor", u32),
                                                                               ("colorBlendOp",
                                                                                u32),
    ("srcAlphaBlendFactor", u32), ("dstAlphaBlendFactor", u32), ("alphaBlendOp", u32),
                                                                               ("colorWriteMask",
                                                                                u32)])
PipelineColorBlendStateCreateInfo = make("PipelineColorBlendStateCreateInfo", header() + [
    ("flags", u32), ("logicOpEnable", u32), ("logicOp", u32), ("attachmentCount", u32),
    ("pAttachments", P(PipelineColorBlendAttachmentState)), ("blendConstants", f32 * 4)])
PipelineLayoutCreateInfo = make("PipelineLayoutCreateInfo", header() + [
    ("flags", u32), ("setLayoutCount", u32), ("pSetLayouts", P(NonDispatchable)),
                                                                        ("pushConstantRangeCount",
                                                                         u32),
    ("pPushConstantRanges", vp)])
GraphicsPipelineCreateInfo = make("GraphicsPipelineCreateInfo", header() + [
    ("flags", u32), ("stageCount", u32), ("pStages", P(PipelineShaderStageCreateInfo)),
    ("pVertexInputState", P(PipelineVertexInputStateCreateInfo)),
    ("pInputAssemblyState", P(PipelineInputAssemblyStateCreateInfo)), ("pTessellationState", vp),
    ("pViewportState", P(PipelineViewportStateCreateInfo)),
    ("pRasterizationState", P(PipelineRasterizationStateCreateInfo)),
    ("pMultisampleState", P(PipelineMultisampleStateCreateInfo)),
    ("pDepthStencilState", P(PipelineDepthStencilStateCreateInfo)),
    ("pColorBlendState", P(PipelineColorBlendStateCreateInfo)), ("pDynamicState", vp),
    ("layout", NonDispatchable), ("renderPass", NonDispatchable), ("subpass", u32),
    ("basePipelineHandle", NonDispatchable), ("basePipelineIndex", i32)])
CommandPoolCreateInfo = make("CommandPoolCreateInfo", header() + [("flags", u32),
                                                                  ("queueFamilyIndex", u32)])
CommandBufferAllocateInfo = make("CommandBufferAllocateInfo", header() + [
    ("commandPool", NonDispatchable), ("level", u32), ("commandBufferCount", u32)])
CommandBufferBeginInfo = make("CommandBufferBeginInfo", header() + [("flags", u32),
                                                                    ("pInheritanceInfo", vp)])
class ClearColorValue(ctypes.Union):
    _fields_ = [("float32", f32 * 4), ("uint32", u32 * 4)]
ClearDepthStencilValue = make("ClearDepthStencilValue", [("depth", f32), ("stencil", u32)])
class ClearValue(ctypes.Union):
    _fields_ = [("color", ClearColorValue), ("depthStencil", ClearDepthStencilValue)]
RenderPassBeginInfo = make("RenderPassBeginInfo", header() + [
    ("renderPass", NonDispatchable), ("framebuffer", NonDispatchable), ("renderArea", Rect2D),
    ("clearValueCount", u32), ("pClearValues", P(ClearValue))])
BufferCreateInfo = make("BufferCreateInfo", header() + [
    ("flags", u32), ("size", u64), ("usage", u32), ("sharingMode", u32), ("queueFamilyIndexCount",
                                                                          u32),
    ("pQueueFamilyIndices", P(u32))])
ImageSubresourceLayers = make("ImageSubresourceLayers", [
    ("aspectMask", u32), ("mipLevel", u32), ("baseArrayLayer", u32), ("layerCount", u32)])
Offset3D = make("Offset3D", [("x", i32), ("y", i32), ("z", i32)])
BufferImageCopy = make("BufferImageCopy", [
    ("bufferOffset", u64), ("bufferRowLength", u32), ("bufferImageHeight", u32),
    ("imageSubresource", ImageSubresourceLayers), ("imageOffset", Offset3D), ("imageExtent",
                                                                              Extent3D)])
SubmitInfo = make("SubmitInfo", header() + [
    ("waitSemaphoreCount", u32), ("pWaitSemaphores", P(NonDispatchable)), ("pWaitDstStageMask",
                                                                           P(u32)),
    ("commandBufferCount", u32), ("pCommandBuffers", P(Handle)), ("signalSemaphoreCount", u32),
    ("pSignalSemaphores", P(NonDispatchable))])
FenceCreateInfo = make("FenceCreateInfo", header() + [("flags", u32)])

# (name, restype, argtypes): the commands used, from the loader (core 1.0/1.1: the loader exports
# them).
COMMANDS = [
    ("vkEnumerateInstanceVersion", i32, [P(u32)]),
    ("vkCreateInstance", i32, [P(InstanceCreateInfo), vp, P(Handle)]),
    ("vkDestroyInstance", None, [Handle, vp]),
    ("vkEnumeratePhysicalDevices", i32, [Handle, P(u32), P(Handle)]),
    ("vkGetPhysicalDeviceProperties", None, [Handle, P(PhysicalDeviceProperties)]),
    ("vkGetPhysicalDeviceProperties2", None, [Handle, P(PhysicalDeviceProperties2)]),
    ("vkGetPhysicalDeviceQueueFamilyProperties", None, [Handle, P(u32), P(QueueFamilyProperties)]),
    ("vkGetPhysicalDeviceMemoryProperties", None, [Handle, P(PhysicalDeviceMemoryProperties)]),
    ("vkCreateDevice", i32, [Handle, P(DeviceCreateInfo), vp, P(Handle)]),
    ("vkDestroyDevice", None, [Handle, vp]),
    ("vkDeviceWaitIdle", i32, [Handle]),
    ("vkGetDeviceQueue", None, [Handle, u32, u32, P(Handle)]),
    ("vkCreateImage", i32, [Handle, P(ImageCreateInfo), vp, P(NonDispatchable)]),
    ("vkGetImageMemoryRequirements", None, [Handle, NonDispatchable, P(MemoryRequirements)]),
    ("vkBindImageMemory", i32, [Handle, NonDispatchable, NonDispatchable, u64]),
    ("vkCreateImageView", i32, [Handle, P(ImageViewCreateInfo), vp, P(NonDispatchable)]),
    ("vkCreateBuffer", i32, [Handle, P(BufferCreateInfo), vp, P(NonDispatchable)]),
    ("vkGetBufferMemoryRequirements", None, [Handle, NonDispatchable, P(MemoryRequirements)]),
    ("vkBindBufferMemory", i32, [Handle, NonDispatchable, NonDispatchable, u64]),
    ("vkAllocateMemory", i32, [Handle, P(MemoryAllocateInfo), vp, P(NonDispatchable)]),
    ("vkMapMemory", i32, [Handle, NonDispatchable, u64, u64, u32, P(vp)]),
    ("vkUnmapMemory", None, [Handle, NonDispatchable]),
    ("vkCreateRenderPass", i32, [Handle, P(RenderPassCreateInfo), vp, P(NonDispatchable)]),
    ("vkCreateFramebuffer", i32, [Handle, P(FramebufferCreateInfo), vp, P(NonDispatchable)]),
    ("vkCreateShaderModule", i32, [Handle, P(ShaderModuleCreateInfo), vp, P(NonDispatchable)]),
    ("vkCreatePipelineLayout", i32, [Handle, P(PipelineLayoutCreateInfo), vp, P(NonDispatchable)]),
    ("vkCreateGraphicsPipelines", i32, [Handle, NonDispatchable, u32, P(GraphicsPipelineCreateInfo),
                                        vp,
                                        P(NonDispatchable)]),
    ("vkCreateCommandPool", i32, [Handle, P(CommandPoolCreateInfo), vp, P(NonDispatchable)]),
    ("vkAllocateCommandBuffers", i32, [Handle, P(CommandBufferAllocateInfo), P(Handle)]),
    ("vkBeginCommandBuffer", i32, [Handle, P(CommandBufferBeginInfo)]),
    ("vkEndCommandBuffer", i32, [Handle]),
    ("vkCmdBeginRenderPass", None, [Handle, P(RenderPassBeginInfo), u32]),
    ("vkCmdEndRenderPass", None, [Handle]),
    ("vkCmdBindPipeline", None, [Handle, u32, NonDispatchable]),
    ("vkCmdBindVertexBuffers", None, [Handle, u32, u32, P(NonDispatchable), P(u64)]),
    ("vkCmdDraw", None, [Handle, u32, u32, u32, u32]),
    ("vkCmdCopyImageToBuffer", None, [Handle, NonDispatchable, u32, NonDispatchable, u32,
                                      P(BufferImageCopy)]),
    ("vkCreateFence", i32, [Handle, P(FenceCreateInfo), vp, P(NonDispatchable)]),
    ("vkWaitForFences", i32, [Handle, u32, P(NonDispatchable), u32, u64]),
    ("vkResetFences", i32, [Handle, u32, P(NonDispatchable)]),
    ("vkQueueSubmit", i32, [Handle, u32, P(SubmitInfo), NonDispatchable]),
]


def result_name(code):
    return RESULTS.get(code, "VkResult %d" % code)


def version_text(version):
    return "%d.%d.%d" % (version >> 22 & 0x7F, version >> 12 & 0x3FF, version & 0xFFF)


class Vulkan:
    """The loader's commands, each call checked: a failure raises with its step and VkResult."""

    def __init__(self, step, capsule=None):
        self.step = step
        try:
            lib = capsule.library("libvulkan.so.1") if capsule else ctypes.CDLL("libvulkan.so.1")
        except OSError as exc:
            raise ProbeError("cannot load the Vulkan loader libvulkan.so.1: %s" % exc) from None
        self.fn = {}
        for name, restype, argtypes in COMMANDS:
            if hasattr(lib, name):
                self.fn[name] = self.stepped(name, declare(lib, name, restype, *argtypes))

    def stepped(self, name, fn):
        def call(*args):
            # Every command is a step of its own: a void one that never returns is named too.
            self.step(name)
            return fn(*args)

        # Named after the command: a crash's traceback (faulthandler) then says which one.
        call.__code__ = call.__code__.replace(co_name=name)
        return call

    def __getattr__(self, name):
        fn = self.fn.get("vk" + name)
        if fn is None:
            raise ProbeError("the Vulkan loader has no vk%s" % name, step="vk" + name)
        return fn

    def check(self, step, call, *args):
        self.step(step)
        result = call(*args)
        if result != 0:
            raise ProbeError("%s failed: %s" % (step, result_name(result)), step=step,
                             code=result_name(result))

    def has(self, name):
        return "vk" + name in self.fn
