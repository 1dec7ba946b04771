"""A runtime's Mesa as a Flatpak GL extension, without flatpak: the ELF reader, the split of a
fixture runtime into driver and platform (which libraries move with the driver), the extension's
tree and rewritten vendor/ICD files, the platform's metadata, the stripped /usr, and the matrix
setting that names the extension's runtime."""
import configparser
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harness.host import elfdeps
from harness.runtimes import glext
from harness import matrix
from harness.core.errors import InputError
from harness.launch.families import flatpak

from .files import write

LIB = "usr/lib/x86_64-linux-gnu"
BASE = 0x1000  # the fixture's one PT_LOAD maps the file at this address


def elf(needed=(), soname=None) -> bytes:
    """A minimal 64-bit little-endian shared object: one PT_LOAD over the whole file, a PT_DYNAMIC
    with DT_NEEDED/DT_SONAME entries into its string table."""
    strings = b"\0"
    offsets = []
    for name in (*needed, *([soname] if soname else [])):
        offsets.append(len(strings))
        strings += name.encode() + b"\0"
    header_size, phdr_size = 64, 56
    dyn_offset = header_size + 2 * phdr_size
    tags = [(1, offsets[i]) for i in range(len(needed))] + ([(14, offsets[-1])] if soname else [])
    dyn_entries = [*tags, (5, 0), (0, 0)]  # DT_STRTAB filled below
    str_offset = dyn_offset + 16 * len(dyn_entries)
    dyn_entries[-2] = (5, BASE + str_offset)
    size = str_offset + len(strings)
    head = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0,
                                                           header_size, 0, 0,
                                                                 header_size, phdr_size, 2, 64, 0,
                                                           0)
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, size, size, 0x1000)
    dynamic = struct.pack("<IIQQQQQQ", 2, 6, dyn_offset, BASE + dyn_offset, BASE + dyn_offset,
                          16 * len(dyn_entries),
                          16 * len(dyn_entries), 8)
    return head + load + dynamic + b"".join(struct.pack("<qQ", t, v) for t,
                                            v in dyn_entries) + strings


def library(root: Path, name: str, *needed: str) -> Path:
    """lib<name>: the real file name.so.1.0 and its soname link, as Debian installs them."""
    path = write(root, f"{LIB}/{name}.1.0", elf(needed, name))
    (root / LIB / name).symlink_to(f"{name}.1.0")
    return path


@pytest.fixture
def runtime(tmp_path):
    """A merged-/usr runtime: python3 and glvnd in the platform; Mesa's EGL vendor, a Vulkan ICD and
    a DRI driver, whose closure reaches libraries some of which the platform needs too."""
    root = tmp_path / "runtime"
    for name in ("bin", "lib", "lib64", "sbin"):
        (root / "usr" / name).mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(f"usr/{name}")
    write(root, f"{LIB}/libc.so.6", elf((), "libc.so.6"))
    write(root, "usr/bin/python3", elf(("libz.so.1", "libexpat.so.1", "libc.so.6")))
    library(root, "libz.so.1")
    library(root, "libexpat.so.1")
    library(root, "libGLdispatch.so.0")
    library(root, "libEGL.so.1", "libGLdispatch.so.0")
    library(root, "libicuuc.so.72")
    library(root, "libicui18n.so.72", "libicuuc.so.72")  # the platform's: keeps libicuuc there
    library(root, "libxml2.so.2", "libicuuc.so.72", "libz.so.1")
    library(root, "libLLVM.so.1", "libxml2.so.2", "libz.so.1")
    library(root, "libdrm.so.2")
    # nothing needs it, but it needs libdrm: libdrm stays
    library(root, "libkms.so.1", "libdrm.so.2")
    library(root, "libgallium.so", "libLLVM.so.1", "libdrm.so.2", "libexpat.so.1", "libc.so.6")
    library(root, "libEGL_mesa.so.0", "libgallium.so", "libc.so.6")
    write(root, f"{LIB}/libvulkan_lvp.so", elf(("libgallium.so", "libc.so.6")))
    write(root, "usr/share/glvnd/egl_vendor.d/50_mesa.json",
          {"file_format_version": "1.0.0", "ICD": {"library_path": "libEGL_mesa.so.0"}})
    write(root, "usr/share/vulkan/icd.d/lvp_icd.json",
          {"file_format_version": "1.0.0", "ICD": {"api_version": "1.4.305",
                                                   "library_path": "libvulkan_lvp.so"}})
    swrast = write(root, f"{LIB}/dri/swrast_dri.so", elf(("libgallium.so",)))
    # Mesa's megadriver: hard links of one file
    os.link(swrast, root / LIB / "dri" / "kms_swrast_dri.so")
    return root


def test_the_elf_reader_agrees_with_readelf_on_a_real_library():
    library_path = next(p for p in ("/usr/lib/x86_64-linux-gnu/libz.so.1",
                                    "/lib/x86_64-linux-gnu/libz.so.1",
                                    os.path.realpath(sys.executable)) if os.path.exists(p))
    found = elfdeps.dynamic(library_path)
    assert found is not None and found.elf_class == 64 and "libc.so.6" in found.needed
    if shutil.which("readelf"):
        listing = subprocess.run(["readelf", "-d", library_path], capture_output=True,
                                 text=True).stdout
        assert list(found.needed) == [line.split("[")[1].rstrip("]")
                                      for line in listing.splitlines() if "(NEEDED)" in line]


def test_the_elf_reader_reads_what_it_is_given_and_nothing_else(tmp_path):
    assert elfdeps.dynamic(str(write(tmp_path, "a.so", elf(("libb.so.1", "libc.so.6"),
                                                           "liba.so.1")))) == \
        elfdeps.Dynamic(64, ("libb.so.1", "libc.so.6"), "liba.so.1")
    assert elfdeps.dynamic(str(write(tmp_path, "text", "#!/bin/sh\n"))) is None
    assert elfdeps.dynamic(str(write(tmp_path, "cut.so", elf(("libb.so.1",))[:80]))) is None
    assert elfdeps.dynamic(str(tmp_path / "absent.so")) is None


def test_links_resolve_inside_the_root_not_on_the_host(runtime):
    # absolute: the root's own file, not the host's
    (runtime / LIB / "abs").symlink_to(f"/{LIB}/libz.so.1")
    assert glext.inside(str(runtime),
                        str(runtime / "lib/x86_64-linux-gnu/libz.so.1")) == f"/{LIB}/libz.so.1.1.0"
    assert glext.inside(str(runtime), str(runtime / LIB / "abs")) == f"/{LIB}/libz.so.1.1.0"


def test_the_driver_takes_what_only_it_needs_and_the_platform_keeps_the_rest(runtime):
    parts = glext.split(str(runtime))
    assert parts.multiarch == "x86_64-linux-gnu"
    # libgallium and LLVM only serve the driver; libxml2 only LLVM: they move with it.
    assert parts.only_driver == ["libLLVM.so.1", "libgallium.so", "libxml2.so.2"]
    # libdrm (libkms), libicuuc (the rest of ICU), libexpat and libz (python3) are the platform's.
    assert set(parts.libraries) == {"libEGL_mesa.so.0", "libvulkan_lvp.so", "libgallium.so",
                                    "libLLVM.so.1",
                                    "libxml2.so.2"}
    assert set(parts.dri) == {"swrast_dri.so", "kms_swrast_dri.so"} and parts.missing == []
    assert (f"/{LIB}/libEGL.so.1.1.0" not in parts.files
            and f"/{LIB}/libicuuc.so.72.1.0" not in parts.files)
    assert "/usr/share/glvnd/egl_vendor.d/50_mesa.json" in parts.files


def test_a_runtime_with_no_mesa_or_not_debian_is_said_so(tmp_path, runtime):
    with pytest.raises(glext.ExtensionError, match="no usr/lib/<multiarch>/libc.so.6"):
        glext.split(str(tmp_path))
    (runtime / "usr/share/glvnd/egl_vendor.d/50_mesa.json").unlink()
    with pytest.raises(glext.ExtensionError, match="no EGL vendor file"):
        glext.split(str(runtime))


def test_the_extension_tree_has_the_driver_and_loader_files_naming_where_it_is_mounted(runtime,
                                                                                       tmp_path):
    parts = glext.split(str(runtime))
    files = tmp_path / "files"
    size = glext.write_extension(parts, "trixie", str(files))
    mount = "/usr/lib/x86_64-linux-gnu/GL/trixie"
    egl = json.loads((files / "glvnd/egl_vendor.d/50_mesa.json").read_text())
    icd = json.loads((files / "vulkan/icd.d/lvp_icd.json").read_text())
    assert egl == {"file_format_version": "1.0.0",
                   "ICD": {"library_path": f"{mount}/lib/libEGL_mesa.so.0"}}
    assert icd["ICD"] == {"api_version": "1.4.305", "library_path": f"{mount}/lib/libvulkan_lvp.so"}
    assert sorted(os.listdir(files / "lib/dri")) == ["kms_swrast_dri.so", "swrast_dri.so"]
    assert ((files / "lib/libgallium.so").stat().st_ino
            == (runtime / LIB / "libgallium.so.1.0").stat().st_ino)
    assert all((files / folder).is_dir() for folder in glext.MERGE_DIRS)
    assert size == sum(os.stat(runtime / LIB / name).st_size for name in (
        "libEGL_mesa.so.0.1.0", "libvulkan_lvp.so", "libgallium.so.1.0", "libLLVM.so.1.1.0",
                                                                          "libxml2.so.2.1.0",
        "dri/swrast_dri.so"))


def test_the_platform_declares_the_extension_point_and_points_the_loaders_into_it():
    metadata = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    metadata.optionxform = str  # type: ignore[assignment,method-assign]
    metadata.read_string(glext.platform_metadata("org.gpuharness.NoMesa.trixie", "x86_64-linux-gnu",
                                                 "1"))
    point = metadata[f"Extension {glext.EXTENSION_POINT}"]
    assert dict(point) == {"directory": "lib/x86_64-linux-gnu/GL", "version": "1",
                           "subdirectories": "true",
                           "no-autodownload": "true", "autodelete": "false", "add-ld-path": "lib",
                           "merge-dirs": "vulkan/icd.d;glvnd/egl_vendor.d;lib/dri;lib/gbm",
                           "download-if": "active-gl-driver", "enable-if": "active-gl-driver"}
    env = metadata["Environment"]
    assert (env["__EGL_VENDOR_LIBRARY_DIRS"].split(":")[0]
            == "/usr/lib/x86_64-linux-gnu/GL/glvnd/egl_vendor.d")
    assert env["LIBGL_DRIVERS_PATH"] == "/usr/lib/x86_64-linux-gnu/GL/lib/dri"
    assert env["VK_DRIVER_FILES"] == "/usr/lib/x86_64-linux-gnu/GL/vulkan/icd.d"
    assert metadata["Runtime"]["runtime"] == "org.gpuharness.NoMesa.trixie/x86_64/1"
    assert glext.extension_metadata("org.gpuharness.Platform.GL.trixie") == \
        "[Runtime]\nname=org.gpuharness.Platform.GL.trixie\n"


def test_stripping_removes_the_driver_and_links_to_it_and_leaves_the_mount_point(runtime, tmp_path):
    parts = glext.split(str(runtime))
    usr = tmp_path / "files"
    shutil.copytree(runtime / "usr", usr, symlinks=True)
    removed = glext.strip(parts, str(usr))
    left = {str(p.relative_to(usr)) for p in usr.rglob("*")}
    lib = "lib/x86_64-linux-gnu"
    assert f"{lib}/libgallium.so" not in left and f"{lib}/libgallium.so.1.0" not in left
    assert f"{lib}/libEGL_mesa.so.0" not in left and f"{lib}/dri/kms_swrast_dri.so" not in left
    assert "share/vulkan/icd.d/lvp_icd.json" not in left
    assert {f"{lib}/libEGL.so.1", f"{lib}/libdrm.so.2", f"{lib}/libicuuc.so.72",
            f"{lib}/GL"} <= left
    assert len(removed) == len(parts.files)


def test_flatpak_ids_from_runtime_names():
    assert flatpak.flatpak_id("org.gpuharness.Platform.GL",
                              "bookworm-i386") == "org.gpuharness.Platform.GL.bookworm-i386"
    assert flatpak.flatpak_id("org.x", "1.gl+x") == "org.x._1_gl_x"


def declaration(**defaults):
    return {"matrix": {"paths": ["flatpak-ext"], "runtimes": ["bookworm", "trixie"],
                       "probes": ["gl"]},
            "runtimes": {"bookworm": {"kind": "debootstrap"}, "trixie": {"kind": "debootstrap"}},
            "defaults": defaults}


def test_the_matrix_names_the_runtime_an_extension_is_built_from():
    scenarios = {s.runtime.name: s for s in matrix.expand(declaration(gl_extension="trixie"),
                                                          "t").scenarios}
    assert scenarios["bookworm"].gl_extension is not None
    assert (scenarios["bookworm"].gl_extension.name == "trixie"
            and scenarios["bookworm"].gl_extension.recipe == "trixie")
    assert scenarios["bookworm"].to_dict()["gl_extension"]["name"] == "trixie"
    assert matrix.expand(declaration(), "t").scenarios[0].gl_extension is None  # its own runtime's


@pytest.mark.parametrize("value, message", [("buster",
                                             "defaults.gl_extension: unknown runtime 'buster'"),
                                            (3, "defaults.gl_extension: must be a string")])
def test_an_extension_from_an_undeclared_runtime_is_an_input_error(value, message):
    with pytest.raises(InputError) as caught:
        matrix.expand(declaration(gl_extension=value), "t")
    assert message in str(caught.value)


def test_the_shipped_extension_grid_expands_with_its_expectations():
    grid = matrix.load(matrix.DEFAULT_MATRIX.parent / "flatpak-gl.toml")
    by_id = {s.id: s for s in grid.scenarios}
    cross = by_id["flatpak-ext/bookworm.gl-trixie/gl"]
    assert (cross.runtime.recipe == "bookworm" and cross.gl_extension
            and cross.gl_extension.name == "trixie")
    assert cross.expect.failure == "glibc-too-old"
    assert by_id["flatpak-ext-vtest/trixie.gl-bookworm/gl"].expect.failure == "missing-library"
    assert (not by_id["flatpak-ext/sid.gl-trixie/vulkan"].expect.fails
            and by_id["flatpak-ext/trixie/gl"].gl_extension is None)
