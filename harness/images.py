"""Image comparison against goldens, with a diff image a person can read."""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from .matrix import Tolerance


@dataclass
class Comparison:
    matched: bool
    reason: str
    differing_fraction: Optional[float] = None
    max_channel_diff: Optional[int] = None
    diff_path: Optional[str] = None


def load_rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def diff_image(actual: np.ndarray, differing: np.ndarray) -> Image.Image:
    """The actual image dimmed to grey, with differing pixels in magenta."""
    grey = (actual.mean(axis=2) * 0.35).astype(np.uint8)
    out = np.stack([grey, grey, grey], axis=2)
    out[differing] = (255, 0, 255)
    return Image.fromarray(out, "RGB")


def compare(actual_path, golden_path, tolerance: Tolerance, diff_path=None) -> Comparison:
    golden_path = Path(golden_path)
    if not golden_path.exists():
        return Comparison(False, f"no golden image {golden_path.name} (make one: gpu-harness goldens update)")
    actual, golden = load_rgb(actual_path), load_rgb(golden_path)
    if actual.shape != golden.shape:
        return Comparison(False, f"image is {actual.shape[1]}x{actual.shape[0]}, "
                                 f"golden is {golden.shape[1]}x{golden.shape[0]}")
    delta = np.abs(actual - golden).max(axis=2)
    differing = delta > tolerance.channel
    fraction = float(differing.mean())
    max_diff = int(delta.max())
    saved = None
    if diff_path is not None:
        diff_image(actual, differing).save(diff_path)
        saved = str(diff_path)
    matched = fraction <= tolerance.fraction
    detail = (f"{fraction:.4%} of pixels differ by more than {tolerance.channel} "
              f"(allowed {tolerance.fraction:.2%}; largest difference {max_diff})")
    return Comparison(matched, ("image matches golden: " if matched else "image differs from golden: ") + detail,
                      fraction, max_diff, saved)
