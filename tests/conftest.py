"""Fixtures the unit tests share: a Mesa and an NVIDIA driver tree (tests.driver_trees)."""
import os

import pytest

from .driver_trees import ELF32, ELF64, LIB, library
from .files import write


@pytest.fixture
def mesa_tree(tmp_path):
    root = tmp_path / "mesa"
    write(root, "usr/share/glvnd/egl_vendor.d/50_mesa.json",
          {"file_format_version": "1.0.0", "ICD": {"library_path": "libEGL_mesa.so.0"}})
    library(root, "libEGL_mesa.so.0", "libEGL_mesa.so.0.0.0")
    write(root, "usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
          {"ICD": {"api_version": "1.3.230", "library_path": f"/{LIB}/libvulkan_lvp.so"}})
    write(root, f"{LIB}/libvulkan_lvp.so", ELF64)
    write(root, "usr/share/vulkan/icd.d/lvp_icd.i686.json",
          {"ICD": {"library_path": "/usr/lib/i386-linux-gnu/libvulkan_lvp.so"}})
    write(root, "usr/lib/i386-linux-gnu/libvulkan_lvp.so", ELF32)
    write(root, "usr/share/vulkan/icd.d/radeon_icd.x86_64.json",
          {"ICD": {"library_path": "libvulkan_radeon.so"}})
    swrast = write(root, f"{LIB}/dri/swrast_dri.so", ELF64)
    # Mesa's megadriver: hard links of one file
    for name in ("kms_swrast_dri.so", "radeonsi_dri.so"):
        os.link(swrast, root / LIB / "dri" / name)
    library(root, "libEGL.so.1", "libEGL.so.1.1.0")
    library(root, "libGLESv2.so.2", "libGLESv2.so.2.1.0")
    return root


@pytest.fixture
def nvidia_tree(tmp_path):
    root = tmp_path / "nvidia"
    write(root, "usr/share/glvnd/egl_vendor.d/10_nvidia.json",
          {"file_format_version": "1.0.0", "ICD": {"library_path": "libEGL_nvidia.so.0"}})
    # What NVIDIA's vendor libraries open by name at run time (no DT_NEEDED: ldd never sees them):
    # the names are in their bytes, as dlopen() arguments are.
    library(root, "libEGL_nvidia.so.0", "libEGL_nvidia.so.580.95.05",
            ELF64 + b"\0libnvidia-eglcore.so.%s\0")
    write(root, "etc/vulkan/icd.d/nvidia_icd.json",
          {"file_format_version": "1.0.1", "ICD": {"library_path": "libGLX_nvidia.so.0",
                                                   "api_version": "1.4.312"}})
    library(root, "libGLX_nvidia.so.0", "libGLX_nvidia.so.580.95.05",
            ELF64 + b"\0libnvidia-glcore.so.580.95.05\0libnvidia-tls.so.580.95.05\0")
    # named in turn
    write(root, f"{LIB}/libnvidia-eglcore.so.580.95.05", ELF64 + b"\0libnvidia-glsi.so.%s\0")
    for private in ("glcore", "glsi", "tls"):
        write(root, f"{LIB}/libnvidia-{private}.so.580.95.05", ELF64)
    # The same release ships libraries no GL driver opens (nvidia-settings' GTK plugin, NVML).
    for unrelated in ("gtk3", "ml"):
        write(root, f"{LIB}/libnvidia-{unrelated}.so.580.95.05", ELF64)
    # another release's file: not this driver's
    write(root, f"{LIB}/libnvidia-ml.so.570.86.10", ELF64)
    write(root, "usr/lib/i386-linux-gnu/libnvidia-glcore.so.580.95.05", ELF32)
    return root
