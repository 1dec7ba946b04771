from pathlib import Path

import numpy as np
from PIL import Image

from harness.scenario.imagecompare import SHOWN_TOLERANCE, compare, compare_shown
from harness.scenario.probes import GOLDENS_DIR
from harness.scenario.model import Tolerance


def save(path, array):
    Image.fromarray(array.astype(np.uint8), "RGB").save(path)
    return path


def scene():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[16:48, 16:48] = (250, 160, 30)
    return image


def test_identical_images_match(tmp_path):
    golden = save(tmp_path / "g.png", scene())
    result = compare(save(tmp_path / "a.png", scene()), golden, Tolerance(0, 0.0),
                     tmp_path / "d.png")
    assert result.matched and result.differing_fraction == 0 and result.max_channel_diff == 0
    assert (tmp_path / "d.png").exists()


def test_small_channel_noise_within_tolerance(tmp_path):
    noisy = scene().astype(int)
    noisy[::2, ::2] += 3
    result = compare(save(tmp_path / "a.png", noisy.clip(0, 255)), save(tmp_path / "g.png",
                                                                        scene()), Tolerance(4, 0.0))
    assert result.matched and result.max_channel_diff == 3


def test_moved_geometry_fails_and_marks_diff(tmp_path):
    moved = np.roll(scene(), 8, axis=1)
    result = compare(save(tmp_path / "a.png", moved), save(tmp_path / "g.png", scene()),
                     Tolerance(16, 0.01),
                     tmp_path / "d.png")
    assert not result.matched
    assert abs(result.differing_fraction - 2 * 8 * 32 / 64 / 64) < 1e-9
    diff = np.asarray(Image.open(tmp_path / "d.png"))
    assert (diff == (255, 0, 255)).all(axis=2).sum() == 2 * 8 * 32


def test_fraction_boundary(tmp_path):
    one_pixel = scene()
    one_pixel[0, 0] = (255, 255, 255)
    golden = save(tmp_path / "g.png", scene())
    actual = save(tmp_path / "a.png", one_pixel)
    assert compare(actual, golden, Tolerance(16, 1 / 4096)).matched
    assert not compare(actual, golden, Tolerance(16, 0.5 / 4096)).matched


def test_size_mismatch_and_missing_golden(tmp_path):
    actual = save(tmp_path / "a.png", scene())
    small = save(tmp_path / "g.png", scene()[:32])
    assert "golden is 64x32" in compare(actual, small, Tolerance()).reason
    missing = compare(actual, tmp_path / "none.png", Tolerance())
    assert not missing.matched and "goldens update" in missing.reason


# --- a display captured from a virtual GPU machine ------------------------------------------------

# QMP screendump of weston showing the gl probe
SCANOUT = Path(__file__).parent / "files" / "kms-scanout.png"


def test_a_real_capture_of_the_shown_image_matches_its_golden_and_not_another(tmp_path):
    shown = compare_shown(SCANOUT, GOLDENS_DIR / "gl.png", SHOWN_TOLERANCE, tmp_path)
    assert shown.matched, shown.reason
    assert ((tmp_path / "scanout-crop.png").exists()
            and Image.open(tmp_path / "scanout-crop.png").size
            == Image.open(GOLDENS_DIR / "gl.png").size)
    for other in ("vulkan", "vfio"):
        assert not compare_shown(SCANOUT, GOLDENS_DIR / f"{other}.png", SHOWN_TOLERANCE,
                                 tmp_path).matched, other


def test_a_display_of_its_border_alone_shows_nothing(tmp_path):
    blank = save(tmp_path / "blank.png", np.full((48, 64, 3), 40))
    shown = compare_shown(blank, GOLDENS_DIR / "gl.png", SHOWN_TOLERANCE, tmp_path)
    assert not shown.matched and "nothing but its border" in shown.reason
