"""PNG and WebP through libvips: shrink while decoding, never the whole picture.

Pillow decodes a 12-megapixel PNG into one 36 MB buffer and a WebP into RGBA copies of
about 190 MB before anything can be shrunk. libvips streams PNG rows through the shrink
and asks libwebp for a scaled decode, so an image costs a few megabytes. Pillow still
identifies the file, checks its size and reads its orientation (process.py); this module
turns the bytes into the rendition: the small centre square, upright, as a fresh JPEG.

Hardened once per process: every libvips loader is blocked except the PNG and WebP
buffer loaders, libvips's operation cache is off (each caller image is distinct, and a
cache would keep their pixels alive), and one thread per image, as Pillow uses.
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType

_ALLOWED_LOADERS = ("VipsForeignLoadPngBuffer", "VipsForeignLoadWebpBuffer")
_SETUP_LOCK = threading.Lock()
_vips: ModuleType | None = None


def _library() -> ModuleType:
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


# EXIF orientation -> what turns the stored picture upright (EXIF 2.32, 4.6.4), as the
# libvips operations applied in order; process.py has the same table for Pillow.
_UPRIGHT: dict[int, tuple[tuple[str, str], ...]] = {
    2: (("flip", "horizontal"),),
    3: (("rot", "d180"),),
    4: (("flip", "vertical"),),
    5: (("rot", "d90"), ("flip", "horizontal")),  # transpose
    6: (("rot", "d90"),),
    7: (("rot", "d270"), ("flip", "horizontal")),  # transverse
    8: (("rot", "d270"),),
}


def square_jpeg(data: bytes, side: int, orientation: int | None, quality: int) -> tuple[bytes, int, int]:
    """The centre square of the picture, `side` pixels wide, upright, on white, as a fresh
    JPEG without any metadata; with its width and height.

    The orientation is the one Pillow read (process.py), applied to the small square.
    """
    vips = _library()
    try:
        square = vips.Image.thumbnail_buffer(
            # fail_on reaches the loader only through the option string.
            data,
            side,
            height=side,
            crop="centre",
            size="down",
            no_rotate=True,
            option_string="fail_on=error",
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
        if square.bands != 3:
            raise VipsFailure(f"unexpected libvips output: {square.bands} bands")
        for operation, direction in _UPRIGHT.get(orientation or 1, ()):
            square = getattr(square, operation)(direction)
        # Encoded from pixels only: keep="none" writes no EXIF, XMP, ICC or comment.
        out = square.jpegsave_buffer(Q=quality, optimize_coding=True, keep="none")
    except vips.Error as exc:
        raise VipsFailure(str(exc).strip().splitlines()[0] if str(exc).strip() else "libvips error") from None
    return out, square.width, square.height
