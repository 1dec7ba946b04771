"""Judging real captures of a display server: the probe's frame found and compared with the
golden, the blank classes, a window that is not the probe's.

tests/files/screens/ holds captures taken through harness/launch/displayservers.py (640x480;
weston 10.0.1 headless with pixman and the desktop shell, by weston-screenshooter; Xvfb 21.1.7
from its -fbdir file) of the display prototype's presenting probe (256x256, 10 frames, Mesa
22.3.6 llvmpipe and lavapipe; the same captures came out of the trixie runtime's Mesa 25, byte
for byte): wayland-gl, wayland-vulkan, x11-gl, x11-vulkan; the probe presenting black while its
readback had the scene (its --fault=black: wayland-black, x11-black); the probe with an alpha-less
EGL config (its XRGB buffer's X byte 0 where glClear wrote, which weston-screenshooter turns into
transparent black: wayland-xrgb); weston's desktop alone (wayland-desktop); weston-simple-shm's
window (wayland-simple-shm). The probe's readback was, in every one of those runs, byte for byte
the golden file (harness/goldens/gl.png, vulkan.png): the goldens stand for it here."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.judging import screen
from harness.scenario.model import Tolerance

SCREENS = Path(__file__).parent / "files" / "screens"
GOLDENS = Path(__file__).parents[1] / "harness" / "goldens"
WESTON_WINDOW = (103, 102, 256, 256)  # where weston's desktop shell placed it, every run


def capture(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copy(SCREENS / f"{name}.png", tmp_path / "capture.png"))


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("name, golden, window", [
    ("wayland-gl", "gl", WESTON_WINDOW), ("wayland-vulkan", "vulkan", WESTON_WINDOW),
    ("x11-gl", "gl", (0, 0, 256, 256)), ("x11-vulkan", "vulkan", (0, 0, 256, 256))])
def test_the_probes_frame_on_screen_matches_the_golden(tmp_path, name, golden, window):
    shot = capture(tmp_path, name)
    golden_path = GOLDENS / f"{golden}.png"
    judged = screen.judge(shot, golden_path, Tolerance(), readback_path=golden_path)
    assert (judged.kind, judged.window, judged.found_by) == ("match", window, "readback")
    assert (judged.mismatched_pixels, judged.readback_differs, judged.max_channel_diff) == (0, 0, 0)
    assert judged.blank is None and judged.capture_size == (640, 480)
    cut = pixels(Path(judged.artifacts["window"]))
    assert np.array_equal(cut, pixels(golden_path))
    assert judged.artifacts["window"] == str(tmp_path / "capture-window.png")
    assert Image.open(judged.artifacts["diff"]).size == (256, 256)
    assert json.loads(json.dumps(judged.to_dict()))["window"] == list(window)


def test_without_a_readback_the_golden_finds_the_window(tmp_path):
    judged = screen.judge(capture(tmp_path, "wayland-gl"), GOLDENS / "gl.png", Tolerance())
    assert (judged.kind, judged.found_by, judged.readback_differs) == ("match", "golden", None)


@pytest.mark.parametrize("name, blank", [("wayland-black", "flat-window"),
                                         ("x11-black", "black"), ("wayland-desktop", "uniform")])
def test_a_screen_that_shows_nothing_is_blank(tmp_path, name, blank):
    """The probe's readback had the scene; the screen showed its black frame: a flat window on
    weston's background, all black on Xvfb's black root."""
    judged = screen.judge(capture(tmp_path, name), GOLDENS / "gl.png", Tolerance(),
                          readback_path=GOLDENS / "gl.png")
    assert (judged.kind, judged.blank, judged.window) == ("blank", blank, None)
    assert "capture" in judged.artifacts and "window" not in judged.artifacts


def test_a_frame_the_display_changed_is_found_by_its_region_and_mismatches(tmp_path):
    """XRGB's X byte 0 became alpha 0 in the screenshot: the cleared pixels are black. The
    readback is nowhere byte for byte; the one region apart from the background is compared."""
    judged = screen.judge(capture(tmp_path, "wayland-xrgb"), GOLDENS / "gl.png", Tolerance(),
                          readback_path=GOLDENS / "gl.png")
    assert (judged.kind, judged.window, judged.found_by) == ("mismatch", WESTON_WINDOW, "region")
    assert judged.mismatched_pixels == judged.readback_differs
    # the scene's clear colour is dark: black differs from it by 46 at most
    assert 0.5 < judged.mismatched_pixels / 256 ** 2 < 0.65 and judged.max_channel_diff == 46
    assert "57.5" in judged.reason and "at (103, 102)" in judged.reason


def test_another_programs_window_is_not_found(tmp_path):
    judged = screen.judge(capture(tmp_path, "wayland-simple-shm"), GOLDENS / "gl.png",
                          Tolerance())
    assert (judged.kind, judged.blank, judged.window) == ("not-found", None, None)
    assert "256x256" in judged.reason


def test_the_wrong_scene_in_the_window_is_a_mismatch(tmp_path):
    judged = screen.judge(capture(tmp_path, "wayland-gl"), GOLDENS / "vulkan.png", Tolerance())
    assert (judged.kind, judged.found_by, judged.window) == ("mismatch", "region", WESTON_WINDOW)
    assert judged.mismatched_pixels > 1000


def edited(tmp_path: Path, name: str, edit) -> Path:
    """A real capture changed where a test says (the edit's subject), as a new capture."""
    image = pixels(SCREENS / f"{name}.png").copy()
    edit(image)
    path = tmp_path / f"{name}-edited.png"
    Image.fromarray(image, "RGB").save(path)
    return path


def test_a_window_over_part_of_the_frame_is_where_the_middle_row_is(tmp_path):
    """Another window covers the frame's bottom quarter: its middle row is still found, and the
    covered pixels are the mismatch."""
    left, top = WESTON_WINDOW[:2]

    def cover(image):
        image[top + 192:top + 256, left:left + 256] = (255, 255, 255)

    judged = screen.judge(edited(tmp_path, "wayland-gl", cover), GOLDENS / "gl.png",
                          Tolerance(), readback_path=GOLDENS / "gl.png")
    assert (judged.kind, judged.window, judged.found_by) == ("mismatch", WESTON_WINDOW, "readback")
    assert judged.readback_differs == 64 * 256  # the scene's white-ish pixels are within 32
    assert 0.99 * 64 * 256 < judged.mismatched_pixels < 64 * 256


def test_a_frame_off_the_golden_within_the_tolerance_matches(tmp_path):
    """The probe rendered a few pixels otherwise (its readback says so, and the screen shows
    them): found by the readback, still a match within the tolerance."""
    left, top = WESTON_WINDOW[:2]
    readback = pixels(GOLDENS / "gl.png").copy()
    readback[10:12, 10:50] = 255 - readback[10:12, 10:50]  # 80 pixels, 0.12%
    readback_path = tmp_path / "readback.png"
    Image.fromarray(readback, "RGB").save(readback_path)

    def show(image):
        image[top:top + 256, left:left + 256] = readback

    judged = screen.judge(edited(tmp_path, "wayland-gl", show), GOLDENS / "gl.png", Tolerance(),
                          readback_path=readback_path)
    assert (judged.kind, judged.found_by, judged.readback_differs) == ("match", "readback", 0)
    assert 0 < judged.mismatched_pixels <= 80
    strict = screen.judge(tmp_path / "wayland-gl-edited.png", GOLDENS / "gl.png",
                          Tolerance(channel=32, fraction=0.0), readback_path=readback_path)
    assert strict.kind == "mismatch" and strict.mismatched_pixels == judged.mismatched_pixels


def test_the_blank_classes_of_a_census():
    weston = pixels(SCREENS / "wayland-desktop.png")
    assert screen.blank_class(weston) == "uniform"
    assert screen.blank_class(np.zeros((48, 64, 3), np.uint8)) == "black"
    assert screen.blank_class(pixels(SCREENS / "wayland-gl.png")) is None
    assert screen.blank_class(pixels(SCREENS / "wayland-black.png")) == "flat-window"
