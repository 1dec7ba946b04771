"""The buffer path read from real clients' WAYLAND_DEBUG=1 traces, in both of libwayland's trace
formats, and from an X11 probe's own facts.

tests/files/traces/ holds excerpts of traces captured on weston 10.0.1 (headless, pixman, the
desktop shell, started by harness/launch/displayservers.py) with WAYLAND_DEBUG=1: each is the
trace from its first line to its fourth wl_surface.attach (three frames) and its last lines (the
teardown), cut and nothing else changed. libwayland 1.21.0 (Debian 12): weston-simple-shm,
weston-simple-egl and weston-simple-egl -s (16 bpp) on Mesa 22.3.6, and the display prototype's
presenting probe (10 frames, GL and Vulkan on llvmpipe/lavapipe 22.3.6); libwayland 1.23.1 with
Mesa 25.0.7 (the trixie runtime, under bwrap): the same probe, GL and Vulkan.
x11-probe-facts.json: that probe's own report fields on Xvfb 21.1.7, host and trixie.

No trace with dma-bufs could be captured here: neither weston renderer offers
zwp_linux_dmabuf_v1 (or wl_drm) on a machine with no render node. The dma-buf test below takes
a real Mesa 25 trace and puts, in the same trace grammar, the requests zwp_linux_dmabuf_v1's
protocol defines where wl_shm's were: it checks the reader's handling of that path, not what a
real driver sends."""
import json
import re
from pathlib import Path

import pytest

from harness.judging import bufferpath

TRACES = Path(__file__).parent / "files" / "traces"
WESTON_GLOBALS = {"wl_compositor": 4, "wl_subcompositor": 1, "wp_viewporter": 1,
                  "zxdg_output_manager_v1": 2, "wp_presentation": 1,
                  "zwp_relative_pointer_manager_v1": 1, "zwp_pointer_constraints_v1": 1,
                  "zwp_input_timestamps_manager_v1": 1, "wl_data_device_manager": 3, "wl_shm": 1,
                  "weston_debug_v1": 1, "zwp_linux_explicit_synchronization_v1": 2,
                  "wl_output": 3, "zwp_input_panel_v1": 1, "zwp_text_input_manager_v1": 1,
                  "xdg_wm_base": 3, "weston_desktop_shell": 1, "weston_screenshooter": 1}


def trace(name: str) -> bufferpath.BufferPath:
    return bufferpath.read_trace(TRACES / name)


def test_weston_simple_shm_shows_one_xrgb_size_through_shm():
    path = trace("weston-simple-shm.txt")
    assert (path.display, path.source, path.trace_format) == ("wayland", "trace", "1.21")
    assert path.paths == ["shm"] and path.created == {"shm": 2} and path.attached == {"shm": 3}
    assert path.sizes == [(250, 250)] and path.formats == ["XRGB8888"]
    # each frame: a frame callback asked, the buffer attached, a commit; the first commit is
    # the empty one that asks for the toplevel's configure
    assert (path.attaches, path.commits, path.frame_callbacks, path.pools) == (3, 4, 3, 2)
    assert path.releases == 2 and path.dmabuf_planes == 0
    assert path.offered == WESTON_GLOBALS
    assert path.bound == {"wl_compositor": 1, "wl_shm": 1, "xdg_wm_base": 1}


def test_a_pool_never_attached_is_no_path_of_the_frames():
    """weston-simple-egl's cursor theme makes a wl_shm pool (resized to 2 MB) with no buffer that
    is ever attached: the frames are the swrast driver's own ARGB buffers."""
    path = trace("weston-simple-egl.txt")
    assert path.pools == 4 and path.created == {"shm": 3} and path.attached == {"shm": 3}
    assert path.sizes == [(250, 250)] and path.formats == ["ARGB8888"]
    assert trace("weston-simple-egl-16bpp.txt").formats == ["RGB565"]


@pytest.mark.parametrize("name, fmt, made, trace_format", [
    ("probe-gl.txt", "ARGB8888", 3, "1.21"), ("probe-vulkan.txt", "XRGB8888", 4, "1.21"),
    ("probe-gl-trixie.txt", "ARGB8888", 3, "1.23"),
    ("probe-vulkan-trixie.txt", "XRGB8888", 4, "1.23")])
def test_the_probe_presents_through_shm_in_both_trace_formats(name, fmt, made, trace_format):
    """GL's swrast makes three buffers (ARGB: the probe asks for alpha); lavapipe's swapchain has
    four images, XRGB for an opaque composite alpha."""
    path = trace(name)
    assert path.trace_format == trace_format and path.paths == ["shm"]
    assert path.created == {"shm": made} and path.attached == {"shm": 3}
    assert path.sizes == [(256, 256)] and path.formats == [fmt]
    # Mesa's EGL asks for a frame's callback before it attaches: the fourth one before the cut
    assert path.frame_callbacks == (4 if "gl" in name else 3) and path.discarded == 0
    # a frame's wp_presentation_feedback.presented comes a repaint later: some after the cut
    assert 1 <= path.presented < 3
    assert path.offered == WESTON_GLOBALS and path.bound["wp_presentation"] == 1
    assert path.other_lines == 0


def test_libwayland_1_23_names_the_queue_of_each_buffer_request():
    """The queue tells the driver's requests from the application's own."""
    assert trace("probe-gl-trixie.txt").queues == {
        "wl_shm.create_pool": ["mesa egl swrast display queue"],
        "wl_shm_pool.create_buffer": ["mesa egl surface queue"],
        "wl_surface.attach": ["mesa egl surface queue"]}
    assert set(trace("probe-vulkan-trixie.txt").queues["wl_surface.attach"]) == {
        "mesa vk display queue"}
    assert trace("probe-gl.txt").queues == {}  # 1.21 names none


def test_lines_that_are_not_protocol_are_counted_apart():
    lines = (TRACES / "probe-gl.txt").read_text().splitlines(True)
    mixed = lines[:60] + ["MESA: warning: a driver's own line\n", "\n"] + lines[60:]
    path = bufferpath.from_trace(mixed)
    assert path.other_lines == 1 and path.attached == {"shm": 3}


def test_the_json_form_has_every_field():
    data = json.loads(json.dumps(trace("probe-gl.txt").to_dict()))
    assert data["sizes"] == [[256, 256]] and data["paths"] == ["shm"]
    assert set(data) == set(bufferpath.BufferPath.__dataclass_fields__)


def as_dmabuf(lines):
    """A real trace's wl_shm requests replaced, line for line in its grammar (timestamps, queue,
    ids), by the requests zwp_linux_dmabuf_v1 v4 defines: create_params on a bound
    zwp_linux_dmabuf_v1, one add per plane, create_immed of the same size in XRGB8888's fourcc."""
    out = []
    for line in lines:
        pool = re.match(r"(\[[^]]*\] \{[^}]*\}  -> )wl_shm#\d+\.create_pool\(new id "
                        r"wl_shm_pool#(\d+), fd (\d+), \d+\)", line)
        buffer = re.match(r"(\[[^]]*\] \{[^}]*\}  -> )wl_shm_pool#(\d+)\.create_buffer\(new id "
                          r"wl_buffer#(\d+), 0, (\d+), (\d+), (\d+), \d+\)", line)
        if pool:
            head, params, fd = pool.groups()
            out.append(f"{head}zwp_linux_dmabuf_v1#90.create_params(new id "
                       f"zwp_linux_buffer_params_v1#{params})\n")
            out.append(f"{head}zwp_linux_buffer_params_v1#{params}.add(fd {fd}, 0, 0, 1024, 0, "
                       f"0)\n")
        elif buffer:
            head, params, made, width, height, _ = buffer.groups()
            out.append(f"{head}zwp_linux_buffer_params_v1#{params}.create_immed(new id "
                       f"wl_buffer#{made}, {width}, {height}, 875713112, 0)\n")
        elif "wl_shm_pool#" not in line:
            out.append(line)
    return out


def test_dmabuf_buffers_attached_are_the_dmabuf_path():
    lines = (TRACES / "probe-vulkan-trixie.txt").read_text().splitlines(True)
    path = bufferpath.from_trace(as_dmabuf(lines))
    assert path.paths == ["dmabuf"] and path.created == {"dmabuf": 4}
    assert path.attached == {"dmabuf": 3} and path.dmabuf_planes == 4 and path.pools == 0
    assert path.sizes == [(256, 256)] and path.formats == ["XRGB8888"]
    assert path.queues["zwp_linux_buffer_params_v1.create_immed"] == ["mesa vk display queue"]


def test_an_unknown_fourcc_is_shown_as_its_letters_or_number():
    assert bufferpath.format_name(0, shm=True) == "ARGB8888"
    assert bufferpath.format_name(0x34325241, shm=False) == "ARGB8888"
    assert bufferpath.format_name(int.from_bytes(b"YUYV", "little"), shm=False) == "YUYV"
    assert bufferpath.format_name(7, shm=False) == "0x00000007"


@pytest.mark.parametrize("run, paths", [("host-gl", ["putimage"]), ("host-vulkan", ["putimage"]),
                                        ("trixie-gl", ["shm"]), ("trixie-vulkan", ["putimage"])])
def test_an_x11_clients_own_facts_name_its_path(run, paths):
    """Mesa 22.3's EGL and lavapipe map no shared segment on Xvfb: XPutImage. Mesa 25's EGL maps
    one SysV segment: MIT-SHM. Mesa 25's lavapipe maps six memfds, all named "allocation fd" (seen
    in its /proc/PID/maps while it held its window): its device memory, also there on Wayland
    beside the wl_shm pools' "mesa-shared"; no SysV segment, so XPutImage. Xvfb has no DRI3."""
    facts = json.loads((TRACES / "x11-probe-facts.json").read_text())[run]
    path = bufferpath.from_x11_facts(facts["mappings"], facts["extensions"])
    assert (path.display, path.source, path.paths) == ("x11", "probe", paths)
    assert "DRI3" not in path.offered and "MIT-SHM" in path.offered
    assert path.mappings == facts["mappings"]


def test_the_present_probes_own_shape_of_the_facts_reads_alike():
    """windows.mapped_buffers(): memfds by name, and the extensions offered as names."""
    path = bufferpath.from_x11_facts({"sysv_segments": 0, "memfds": {"allocation fd": 6},
                                      "dmabufs": 0}, ["MIT-SHM", "Present"])
    assert path.paths == ["putimage"] and path.mappings == {"sysv": 0, "memfd": 6, "dmabuf": 0}
    assert bufferpath.from_x11_facts({"sysv_segments": 1}, ["MIT-SHM"]).paths == ["shm"]


def test_x11_segments_without_the_extension_are_not_its_path():
    assert bufferpath.from_x11_facts({"sysv": 3}, {"MIT-SHM": False}).paths == ["putimage"]
    assert bufferpath.from_x11_facts({"dmabuf": 2, "sysv": 1}).paths == ["dmabuf", "shm"]


def test_a_dri3_client_on_xwayland_is_told_by_its_fences():
    """The present probe's real report from sandbox-dri/trixie/gl+xwayland@virgl-guest: Xwayland
    offered DRI3 (glamor on the guest's render node); the client mapped no buffer (DRI3 hands the
    server dma-bufs) but Mesa's DRI3 loader's xshmfence memfds: the path is dri3."""
    presentation = json.loads((TRACES / "x11-xwayland-dri3-guest-presentation.json").read_text())
    found = bufferpath.from_x11_facts(presentation["buffers"], presentation["extensions"])
    assert found.paths == ["dri3"] and found.mappings["xshmfence"] == 2, found
    without = {**presentation["extensions"], "DRI3": False}
    assert bufferpath.from_x11_facts(presentation["buffers"], without).paths == ["putimage"]
