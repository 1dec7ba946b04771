"""Judging a display server's capture: blank or not, where the probe's frame is on the screen,
and whether what the screen shows there matches the golden.

The probe reads its last frame back before it presents it; that readback is searched in the
capture byte for byte (its middle row, then the whole block), then the golden's, and failing
both the one region that differs from the background. The region found is compared with the
golden (the offscreen probe's: gl.png, vulkan.png) within the scenario's tolerance, and the
cut-out window and a diff image are written beside the capture for the report."""
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
from PIL import Image

from ..scenario import imagecompare
from ..scenario.imagecompare import PathLike, UnreadableImage
from ..scenario.model import Tolerance

KINDS = ("match", "mismatch", "blank", "not-found")
BLANKS = ("black", "uniform", "flat-window")
ONE_COLOUR = 0.995  # a share of pixels at or above which a screen (or its rest) is one colour
MAX_CANDIDATES = 64  # rows where the middle row was found whose block is compared


@dataclass
class ScreenJudgement:
    kind: str  # match | mismatch | blank | not-found
    reason: str
    capture_size: Tuple[int, int]  # width, height
    blank: Optional[str] = None  # black | uniform | flat-window; None where the screen has content
    window: Optional[Tuple[int, int, int, int]] = None  # left, top, width, height in the capture
    found_by: Optional[str] = None  # readback | golden | region
    mismatched_pixels: Optional[int] = None  # in the window, beyond the tolerance of the golden
    max_channel_diff: Optional[int] = None  # the window's largest difference from the golden
    readback_differs: Optional[int] = None  # window pixels not exactly the probe's readback
    artifacts: Dict[str, str] = field(default_factory=dict)  # capture, window, diff

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("capture_size", "window"):
            data[key] = list(data[key]) if data[key] is not None else None
        return data


def load(path: PathLike) -> np.ndarray:
    """An image as height x width x 3 bytes (RGB)."""
    return np.ascontiguousarray(np.asarray(imagecompare.open_rgb(path), dtype=np.uint8))


def census(pixels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The capture's colours (as 0xRRGGBB) and how many pixels each covers, most first."""
    packed = (pixels[..., 0].astype(np.uint32) << 16 | pixels[..., 1].astype(np.uint32) << 8
              | pixels[..., 2])
    colours, counts = np.unique(packed, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return colours[order], counts[order]


def blank_class(pixels: np.ndarray) -> Optional[str]:
    """black or uniform: (nearly) one colour, nothing drawn on the background; flat-window:
    everything but the background is one colour, a window that shows nothing; None: content."""
    colours, counts = census(pixels)
    total = int(counts.sum())
    if len(colours) == 1 or counts[0] >= ONE_COLOUR * total:
        return "black" if colours[0] == 0 else "uniform"
    if counts[1] >= ONE_COLOUR * (total - counts[0]):
        return "flat-window"
    return None


def background(pixels: np.ndarray) -> np.ndarray:
    colour = int(census(pixels)[0][0])
    return np.array([colour >> 16, colour >> 8 & 0xFF, colour & 0xFF], dtype=np.uint8)


def locate(capture: np.ndarray, image: np.ndarray) -> Optional[Tuple[int, int]]:
    """Where `image` is in `capture` byte for byte, as (left, top): its middle row searched in
    every row it can be in (pixel-aligned), then the block there compared. A middle row found
    whose block differs (another window over a part) is where it is, failing an exact one."""
    height, width = image.shape[:2]
    if height > capture.shape[0] or width > capture.shape[1]:
        return None
    middle = height // 2
    needle = image[middle].tobytes()
    first, candidates = None, 0
    for y in range(middle, capture.shape[0] - (height - middle) + 1):
        row = capture[y].tobytes()
        at = row.find(needle)
        while at >= 0 and candidates < MAX_CANDIDATES:
            if at % 3 == 0:
                left, top = at // 3, y - middle
                candidates += 1
                if np.array_equal(capture[top:top + height, left:left + width], image):
                    return left, top
                first = first or (left, top)
            at = row.find(needle, at + 1)
    return first


def differing_region(capture: np.ndarray,
                     size: Tuple[int, int]) -> Optional[Tuple[int, int]]:
    """(left, top) of what differs from the background, where that is exactly `size` (width,
    height): a window found without the readback (colours the display changed)."""
    covered = (capture != background(capture)).any(axis=2)
    rows, cols = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
    if not rows.size or (cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1) != size:
        return None
    return int(cols[0]), int(rows[0])


def readable(path: Optional[PathLike]) -> Optional[np.ndarray]:
    if path is None or not Path(path).is_file():
        return None
    try:
        return load(path)
    except UnreadableImage:
        return None


def find_window(capture: np.ndarray, readback: Optional[np.ndarray], golden: Optional[np.ndarray],
                blank: Optional[str]) -> Optional[Tuple[str, int, int, int, int]]:
    """(found by, left, top, width, height) of the probe's window, or None: by its readback or
    the golden byte for byte, else (on a screen with content) the region of the golden's size."""
    for found_by, image in (("readback", readback), ("golden", golden)):
        if image is not None:
            at = locate(capture, image)
            if at:
                return (found_by, *at, image.shape[1], image.shape[0])
    reference = golden if golden is not None else readback
    if reference is not None and blank is None:
        at = differing_region(capture, (reference.shape[1], reference.shape[0]))
        if at:
            return ("region", *at, reference.shape[1], reference.shape[0])
    return None


def judge(capture_path: PathLike, golden_path: PathLike, tolerance: Tolerance,
          readback_path: Optional[PathLike] = None) -> ScreenJudgement:
    """The capture judged against the golden; `readback_path`: the probe's own image of the
    frame it presented, to find its window by. Writes <capture>-window.png and <capture>-diff.png
    beside the capture where the window is found."""
    capture_path = Path(capture_path)
    pixels = load(capture_path)
    size = (pixels.shape[1], pixels.shape[0])
    blank = blank_class(pixels)
    readback, golden = readable(readback_path), readable(golden_path)
    artifacts = {"capture": str(capture_path)}
    found = find_window(pixels, readback, golden, blank)
    if found is None:
        kind = "blank" if blank else "not-found"
        what = ("the probe's frame" if readback is not None
                else f"an image of the golden's size {shape(golden)}")
        why = (f"the screen is {describe_blank(blank)}" if blank
               else f"the screen shows something, but not {what}")
        return ScreenJudgement(kind, f"{why} ({size[0]}x{size[1]} capture)", size, blank,
                               artifacts=artifacts)
    found_by, left, top, width, height = found
    window = pixels[top:top + height, left:left + width]
    window_path = capture_path.with_name(f"{capture_path.stem}-window.png")
    Image.fromarray(window, "RGB").save(window_path)
    artifacts["window"] = str(window_path)
    comparison = imagecompare.compare(window_path, golden_path, tolerance,
                                      capture_path.with_name(f"{capture_path.stem}-diff.png"))
    if comparison.diff_path:
        artifacts["diff"] = comparison.diff_path
    mismatched = (round(comparison.differing_fraction * width * height)
                  if comparison.differing_fraction is not None else None)
    exact = (int((window != readback).any(axis=2).sum())
             if readback is not None and readback.shape == window.shape else None)
    where = f"at ({left}, {top}), found by its {FOUND_BY[found_by]}"
    return ScreenJudgement("match" if comparison.matched else "mismatch",
                           f"the window {width}x{height} {where}: {comparison.reason}", size,
                           blank, (left, top, width, height), found_by, mismatched,
                           comparison.max_channel_diff, exact, artifacts)


FOUND_BY = {"readback": "readback, byte for byte", "golden": "golden, byte for byte",
            "region": "region apart from the background"}


def shape(image: Optional[np.ndarray]) -> str:
    return f"{image.shape[1]}x{image.shape[0]}" if image is not None else "(no golden)"


def describe_blank(blank: str) -> str:
    return {"black": "all black", "uniform": "one colour",
            "flat-window": "the background and one flat colour (a window that shows "
                           "nothing)"}[blank]


MIN_WINDOW_SHARE = 0.01  # an app's window: at least this share of the screen differs from the rest
SHADOW_CHANNEL = 48  # a channel within this of the background's is shadow or background


def judge_shown(capture_path: PathLike) -> ScreenJudgement:
    """An app's capture (no golden: what an app draws changes, a clock's digits): a window is
    shown where the screen has content beyond its background over at least MIN_WINDOW_SHARE of
    it (a window's soft shadow not counted)."""
    capture = load(capture_path)
    size = (capture.shape[1], capture.shape[0])
    artifacts = {"capture": str(capture_path)}
    blank = blank_class(capture)
    if blank is not None:
        return ScreenJudgement("blank", f"the screen is {describe_blank(blank)} "
                               f"({size[0]}x{size[1]} capture)", size, blank,
                               artifacts=artifacts)
    distance = np.abs(capture.astype(np.int16) - background(capture).astype(np.int16))
    share = float((distance > SHADOW_CHANNEL).any(axis=2).mean())
    if share < MIN_WINDOW_SHARE:
        return ScreenJudgement("not-found", f"only {share:.2%} of the screen differs from its "
                               "background: no window shown", size, artifacts=artifacts)
    return ScreenJudgement("match", f"a window is shown ({share:.0%} of the screen differs from "
                           "its background)", size, found_by="region", artifacts=artifacts)
