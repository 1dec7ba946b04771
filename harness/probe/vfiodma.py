"""VFIO type1 DMA through QEMU's edu device: the container, the device's registers, the round trip.

Runs inside the nested tier's L1 guest with the standard library and ctypes only, beside
vfio_nested.py and the harness's own vfio module (the harness puts them in one folder). The
container is what a VMM sets up: one group, one device, the mappings made here; edu then moves
the test image into its buffer and back out, chunk by chunk, both ways through the IOMMU.
"""
import ctypes
import mmap
import os
import struct
import time

import probelib
import vfio

VFIO_TYPE, VFIO_BASE = ord(";"), 100
VFIO_API_VERSION, VFIO_TYPE1_IOMMU = 0, 1
GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU, GROUP_GET_STATUS, GROUP_SET_CONTAINER = (
    (VFIO_TYPE << 8) | (VFIO_BASE + n) for n in range(5))
GROUP_GET_DEVICE_FD = (VFIO_TYPE << 8) | (VFIO_BASE + 6)
DEVICE_GET_REGION_INFO = (VFIO_TYPE << 8) | (VFIO_BASE + 8)
IOMMU_MAP_DMA, IOMMU_UNMAP_DMA = ((VFIO_TYPE << 8) | (VFIO_BASE + n) for n in (13, 14))
GROUP_FLAGS_VIABLE = 1
DMA_READ, DMA_WRITE = 1, 2
BAR0, CONFIG_REGION = 0, 7
PCI_COMMAND, COMMAND_MEMORY, COMMAND_MASTER = 0x04, 0x2, 0x4

# QEMU's edu device (docs/specs/edu.rst): DMA between guest memory and its 4 KiB buffer.
EDU_IDENTIFICATION, EDU_LIVENESS = 0x00, 0x04
EDU_DMA_SRC, EDU_DMA_DST, EDU_DMA_COUNT, EDU_DMA_CMD = 0x80, 0x88, 0x90, 0x98
EDU_DMA_RUN, EDU_DMA_TO_RAM = 0x1, 0x2
EDU_BUFFER = 0x40000
# A DMA that ends exactly at the buffer's end kills QEMU 7.2 (its range check wants end < end).
EDU_CHUNK = 4032
IOVA_OUT, IOVA_BACK = 0x100000, 0x200000  # below edu's 28-bit DMA mask

libc = ctypes.CDLL(None, use_errno=True)


class RegionInfo(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("index", ctypes.c_uint32),
                ("cap_offset", ctypes.c_uint32), ("size", ctypes.c_uint64), ("offset",
                                                                             ctypes.c_uint64)]


class GroupStatus(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class DmaMap(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("vaddr", ctypes.c_uint64),
                ("iova", ctypes.c_uint64), ("size", ctypes.c_uint64)]


class DmaUnmap(ctypes.Structure):
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("iova", ctypes.c_uint64),
                ("size", ctypes.c_uint64)]


def ioctl(step, fd, request, arg=None):
    result = libc.ioctl(fd, ctypes.c_ulong(request), arg)
    if result < 0:
        number = ctypes.get_errno()
        hint = (" (no interrupt remapping: intremap=on on the IOMMU)" if step == "set-iommu"
                and number == 1 else "")
        raise probelib.ProbeError("vfio %s: %s%s" % (step, os.strerror(number), hint))
    return result


class Container:
    """A VFIO type1 container with one group and one device in it: what a VMM sets up."""

    def __init__(self, bdf):
        self.fds, self.mapped = [], []
        try:
            self.set_up(bdf)
        except BaseException:
            self.close()  # the group must not stay attached while the device is given back
            raise

    def set_up(self, bdf):
        self.container = self.open("/dev/vfio/vfio")
        version = ioctl("api-version", self.container, GET_API_VERSION)
        if version != VFIO_API_VERSION:
            raise probelib.ProbeError("vfio api-version: %d, expected %d" % (version,
                                                                             VFIO_API_VERSION))
        if not ioctl("check-extension", self.container, CHECK_EXTENSION, VFIO_TYPE1_IOMMU):
            raise probelib.ProbeError("vfio check-extension: no type1 IOMMU")
        group = vfio.Sysfs().group(bdf)
        self.group = self.open("/dev/vfio/%s" % group)
        status = GroupStatus(ctypes.sizeof(GroupStatus), 0)
        ioctl("group-status", self.group, GROUP_GET_STATUS, ctypes.byref(status))
        if not status.flags & GROUP_FLAGS_VIABLE:
            raise probelib.ProbeError("vfio group-status: group %s not viable" % group)
        ioctl("set-container", self.group, GROUP_SET_CONTAINER,
              ctypes.byref(ctypes.c_int(self.container)))
        ioctl("set-iommu", self.container, SET_IOMMU, VFIO_TYPE1_IOMMU)
        self.device = ioctl("device-fd", self.group, GROUP_GET_DEVICE_FD,
                            ctypes.c_char_p(bdf.encode()))
        self.fds.append(self.device)

    def open(self, path):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise probelib.ProbeError("vfio open %s: %s" % (path, exc.strerror)) from None
        self.fds.append(fd)
        return fd

    def region(self, index):
        info = RegionInfo(ctypes.sizeof(RegionInfo), 0, index, 0, 0, 0)
        ioctl("region-info", self.device, DEVICE_GET_REGION_INFO, ctypes.byref(info))
        return info.offset

    def map_dma(self, buffer, iova):
        vaddr = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        request = DmaMap(ctypes.sizeof(DmaMap), DMA_READ | DMA_WRITE, vaddr, iova, len(buffer))
        ioctl("map-dma", self.container, IOMMU_MAP_DMA, ctypes.byref(request))
        self.mapped.append((iova, len(buffer)))

    def close(self):
        for iova, size in self.mapped:
            request = DmaUnmap(ctypes.sizeof(DmaUnmap), 0, iova, size)
            libc.ioctl(self.container, ctypes.c_ulong(IOMMU_UNMAP_DMA), ctypes.byref(request))
        for fd in reversed(self.fds):
            os.close(fd)
        self.fds, self.mapped = [], []


class Edu:
    def __init__(self, container):
        self.fd, self.bar = container.device, container.region(BAR0)
        config = container.region(CONFIG_REGION)
        command = struct.unpack("<H", os.pread(self.fd, 2, config + PCI_COMMAND))[0]
        os.pwrite(self.fd, struct.pack("<H", command | COMMAND_MEMORY | COMMAND_MASTER),
                  config + PCI_COMMAND)

    def read(self, register):
        return struct.unpack("<I", os.pread(self.fd, 4, self.bar + register))[0]

    def write(self, register, value):
        os.pwrite(self.fd, struct.pack("<I", value), self.bar + register)

    def dma(self, source, destination, count, to_ram):
        self.write(EDU_DMA_SRC, source)
        self.write(EDU_DMA_DST, destination)
        self.write(EDU_DMA_COUNT, count)
        self.write(EDU_DMA_CMD, EDU_DMA_RUN | (EDU_DMA_TO_RAM if to_ram else 0))
        deadline = time.monotonic() + 10
        while self.read(EDU_DMA_CMD) & EDU_DMA_RUN:
            if time.monotonic() > deadline:
                raise probelib.ProbeError("edu dma: not finished after 10 s")
            time.sleep(0.005)


def page_buffer(size):
    return mmap.mmap(-1, (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)


def dma_round_trip(bdf, rows):
    """The image into edu's buffer and back out, chunk by chunk, both ways through the IOMMU."""
    data = b"".join(rows)
    container = Container(bdf)
    try:
        edu = Edu(container)
        identity = edu.read(EDU_IDENTIFICATION)
        if identity & 0xFF != 0xED:
            raise probelib.ProbeError("edu identification 0x%08x, expected 0x..ed" % identity)
        edu.write(EDU_LIVENESS, 0x12345678)
        if edu.read(EDU_LIVENESS) != (~0x12345678 & 0xFFFFFFFF):
            raise probelib.ProbeError("edu liveness check failed")
        out, back = page_buffer(len(data)), page_buffer(len(data))
        out[:len(data)] = data
        container.map_dma(out, IOVA_OUT)
        container.map_dma(back, IOVA_BACK)
        chunks = 0
        for start in range(0, len(data), EDU_CHUNK):
            count = min(EDU_CHUNK, len(data) - start)
            edu.dma(IOVA_OUT + start, EDU_BUFFER, count, to_ram=False)
            edu.dma(EDU_BUFFER, IOVA_BACK + start, count, to_ram=True)
            chunks += 1
        returned = bytes(back[:len(data)])
        return returned, {"identification": "0x%08x" % identity, "bytes": len(data),
                          "chunks": chunks,
                          "iova": [hex(IOVA_OUT), hex(IOVA_BACK)], "exact": returned == data}
    finally:
        container.close()
