"""PNG and WebP pixels through libvips: shrink while decoding, never the whole picture.

Pillow decodes a 12-megapixel PNG into one 36 MB buffer and a WebP into RGBA copies of
about 190 MB before anything can be shrunk. libvips streams PNG rows through the shrink
and asks libwebp for a scaled decode, so an image costs a few megabytes. Pillow still
identifies the file, checks its size and reads its orientation (process.py); this module
only turns the bytes into the small centre square.

Hardened once per process: every libvips loader is blocked except the PNG and WebP
buffer loaders, libvips's operation cache is off (each caller image is distinct, and a
cache would keep their pixels alive), and one thread per image, as Pillow uses.
"""

from __future__ import annotations

import logging
import threading

from PIL import Image

_ALLOWED_LOADERS = ("VipsForeignLoadPngBuffer", "VipsForeignLoadWebpBuffer")
_SETUP_LOCK = threading.Lock()
_vips = None


def _library():
    global _vips
    with _SETUP_LOCK:
        if _vips is None:
            import pyvips

            # libvips reports each flaw of a caller's file as a warning; they are about
            # caller data, not the server, and a failure is raised anyway.
            logging.getLogger("pyvips").setLevel(logging.ERROR)
            pyvips.block_untrusted_set(True)
            pyvips.operation_block_set("VipsForeignLoad", True)
            for loader in _ALLOWED_LOADERS:
                pyvips.operation_block_set(loader, False)
            pyvips.cache_set_max(0)
            pyvips.concurrency_set(1)
            _vips = pyvips
    return _vips


# Loaded with the decoder rather than on the first PNG: the first caller's image should not
# pay for mapping the library, and a failing install shows at start-up of image work.
_library()


class VipsFailure(Exception):
    """libvips refused the bytes (truncated, corrupt, or not what Pillow said)."""


def centre_square(data: bytes, side: int) -> Image.Image:
    """The centre square of the picture, `side` pixels wide, in RGB on white.

    The picture is not turned: the caller orients the small square, as for the other
    formats, with the orientation Pillow read.
    """
    vips = _library()
    try:
        square = vips.Image.thumbnail_buffer(
            # fail_on reaches the loader only through the option string.
            data, side, height=side, crop="centre", size="down", no_rotate=True, option_string="fail_on=error"
        )
        if square.interpretation not in ("srgb", "b-w"):
            # 16-bit, CMYK or Lab input: scaled down to 8-bit sRGB, not clipped.
            square = square.colourspace("srgb")
        if square.hasalpha():
            square = square.flatten(background=[255] * (square.bands - 1))
        if square.format != "uchar":
            square = square.cast("uchar")
        if square.bands == 1:
            square = square.colourspace("srgb")
        pixels = square.write_to_memory()
    except vips.Error as exc:
        raise VipsFailure(str(exc).strip().splitlines()[0] if str(exc).strip() else "libvips error") from None
    if square.bands != 3 or len(pixels) != square.width * square.height * 3:
        raise VipsFailure(f"unexpected libvips output: {square.bands} bands")
    return Image.frombytes("RGB", (square.width, square.height), pixels)
