"""Image comparison against goldens, with a diff image a person can read."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .model import Tolerance
from ..core.errors import InputError

PathLike = Union[str, Path]


@dataclass
class Comparison:
    matched: bool
    reason: str
    differing_fraction: Optional[float] = None
    max_channel_diff: Optional[int] = None
    diff_path: Optional[str] = None
    # the images behind it: image, golden, diff
    artifacts: Dict[str, str] = field(default_factory=dict)


class UnreadableImage(InputError):
    """An image file that is missing, truncated or not an image; the message names it."""


def open_rgb(path: PathLike) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise UnreadableImage(f"{Path(path).name} cannot be read as an image "
                              f"({type(exc).__name__}: {exc})") from None


def load_rgb(path: PathLike) -> np.ndarray:
    return np.asarray(open_rgb(path), dtype=np.int16)


def diff_image(actual: np.ndarray, differing: np.ndarray) -> Image.Image:
    """The actual image dimmed to grey, with differing pixels in magenta."""
    grey = (actual.mean(axis=2) * 0.35).astype(np.uint8)
    out = np.stack([grey, grey, grey], axis=2)
    out[differing] = (255, 0, 255)
    return Image.fromarray(out, "RGB")


def compare(actual_path: PathLike, golden_path: PathLike, tolerance: Tolerance,
            diff_path: Optional[PathLike] = None) -> Comparison:
    golden_path = Path(golden_path)
    artifacts = {"image": str(actual_path)}
    if not golden_path.exists():
        return Comparison(False,
                          f"no golden image {golden_path.name} (make one: gpu-harness goldens "
                          "update)",
                          artifacts=artifacts)
    try:
        golden = load_rgb(golden_path)
    except UnreadableImage as exc:
        return Comparison(False, f"golden {golden_path}: {exc}", artifacts=artifacts)
    try:
        actual = load_rgb(actual_path)
    except UnreadableImage as exc:
        return Comparison(False, f"the probe's image {exc}", artifacts=artifacts)
    if actual.shape != golden.shape:
        return Comparison(False, f"image is {actual.shape[1]}x{actual.shape[0]}, "
                                 f"golden is {golden.shape[1]}x{golden.shape[0]}",
                          artifacts=artifacts)
    delta = np.abs(actual - golden).max(axis=2)
    differing = delta > tolerance.channel
    fraction = float(differing.mean())
    max_diff = int(delta.max())
    saved = None
    if diff_path is not None:
        diff_image(actual, differing).save(diff_path)
        saved = str(diff_path)
        artifacts["diff"] = saved
    matched = fraction <= tolerance.fraction
    detail = (f"{fraction:.4%} of pixels differ by more than {tolerance.channel} "
              f"(allowed {tolerance.fraction:.2%}; largest difference {max_diff})")
    return Comparison(matched, ("image matches golden: " if matched
                                else "image differs from golden: ") + detail,
                      fraction, max_diff, saved, artifacts)


# A compositor scales the image to its output (weston-image in a kiosk shell: 256 px to 800 and
# filtered); scaled back, its edges differ from the golden by more than a pixel-exact copy's.
# measured: 0.93% beyond 48 on the real capture
SHOWN_TOLERANCE = Tolerance(channel=48, fraction=0.02)


def shown_pixels(captured: Image.Image) -> np.ndarray:
    """The coordinates of what differs from the display's border (its top-left pixel's colour)."""
    screen = np.asarray(captured, dtype=np.int16)
    return np.argwhere(np.abs(screen - screen[0, 0]).max(axis=2) > 8)


def shows_nothing(captured_path: PathLike) -> bool:
    """A capture of a display with nothing on it but its border (or no readable capture)."""
    try:
        return not len(shown_pixels(open_rgb(captured_path)))
    except UnreadableImage:
        return True


def compare_shown(captured_path: PathLike, golden_path: PathLike, tolerance: Tolerance,
                  result_dir: Path) -> Comparison:
    """A display captured from outside, where a compositor showed the image scaled on a plain
    border: the part that is not the border, scaled to the golden's size, against it.
    Files: scanout-crop.png and scanout-diff.png in result_dir."""
    golden_path = Path(golden_path)
    artifacts = {"scanout": str(captured_path)}
    if not golden_path.exists():
        return Comparison(False, f"no golden image {golden_path.name}", artifacts=artifacts)
    try:
        reference, captured = open_rgb(golden_path), open_rgb(captured_path)
    except UnreadableImage as exc:
        return Comparison(False, str(exc), artifacts=artifacts)
    shown = shown_pixels(captured)
    if not len(shown):
        return Comparison(False, "the display shows nothing but its border", artifacts=artifacts)
    (top, left), (bottom, right) = shown.min(axis=0), shown.max(axis=0)
    crop = result_dir / "scanout-crop.png"
    captured.crop((int(left), int(top), int(right) + 1, int(bottom) + 1)).resize(
        reference.size, Image.Resampling.BOX).save(crop)
    comparison = compare(crop, golden_path, tolerance, result_dir / "scanout-diff.png")
    comparison.artifacts = {"scanout": str(captured_path), "scanout_crop": str(crop),
                            **({"scanout_diff": comparison.diff_path} if comparison.diff_path
                               else {})}
    return comparison


def compare_region(captured_path: PathLike, golden_path: PathLike, tolerance: Tolerance,
                   result_dir: Path) -> Comparison:
    """A display captured from outside, whose top-left shows the image: crop that and compare.
    Files: scanout-crop.png and scanout-diff.png in result_dir."""
    golden_path = Path(golden_path)
    artifacts = {"scanout": str(captured_path)}
    if not golden_path.exists():
        return Comparison(False, f"no golden image {golden_path.name}", artifacts=artifacts)
    try:
        reference, captured = open_rgb(golden_path), open_rgb(captured_path)
    except UnreadableImage as exc:
        return Comparison(False, str(exc), artifacts=artifacts)
    width, height = reference.size
    if captured.size[0] < width or captured.size[1] < height:
        return Comparison(False,
                          f"captured display {captured.size[0]}x{captured.size[1]} is smaller "
                                 f"than the image {width}x{height}", artifacts=artifacts)
    crop = result_dir / "scanout-crop.png"
    captured.crop((0, 0, width, height)).save(crop)
    comparison = compare(crop, golden_path, tolerance, result_dir / "scanout-diff.png")
    comparison.artifacts = {"scanout": str(captured_path), "scanout_crop": str(crop),
                            **({"scanout_diff": comparison.diff_path} if comparison.diff_path
                               else {})}
    return comparison
