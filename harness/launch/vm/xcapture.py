"""Reads an Xvfb screen (the XWD file Xvfb keeps under -fbdir) as an RGB array. Used where
QMP screendump has no surface to read: QEMU's GL display on Xvfb."""
import struct

import numpy as np
from ...core.errors import ComponentError

HEADER_FIELDS = 25


def read_xwd(path) -> np.ndarray:
    with open(path, "rb") as handle:
        data = handle.read()
    fields = struct.unpack(">%dI" % HEADER_FIELDS, data[:HEADER_FIELDS * 4])
    header_size, version = fields[0], fields[1]
    width, height = fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line = fields[7], fields[11], fields[12]
    ncolors = fields[19]
    if version != 7 or bits_per_pixel != 32:
        raise ComponentError(f"unsupported XWD (version {version}, {bits_per_pixel} bpp)")
    start = header_size + ncolors * 12
    pixels = np.frombuffer(data, dtype=np.uint8, count=bytes_per_line * height, offset=start)
    pixels = pixels.reshape(height, bytes_per_line)[:, :width * 4].reshape(height, width, 4)
    # LSBFirst 32 bpp TrueColor: bytes are B, G, R, X.
    order = [2, 1, 0] if byte_order == 0 else [1, 2, 3]
    return np.ascontiguousarray(pixels[:, :, order])


def window_region(screen: np.ndarray) -> np.ndarray:
    """The part of the screen covered by the (only) window: Xvfb runs with a white root
    (-wr) and no window manager, so the window is the bounding box of non-white pixels."""
    covered = (screen != 255).any(axis=2)
    rows, cols = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
    if rows.size == 0:
        return screen
    return screen[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
