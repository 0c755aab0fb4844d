"""Turning untrusted image bytes into our contact-card rendition
(docs/security.md, rules 15-22): decode for real, orient, square, shrink, and
re-encode from a fresh image so no metadata of the original survives.

Synchronous and pure: the caller runs it in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from dataclasses import dataclass

import pillow_heif
from PIL import Image, UnidentifiedImageError

from contactcard.images import vips
from contactcard.images.allocator import fix_mmap_threshold

pillow_heif.register_heif_opener()
# Loaded with the decoder: only a process that handles pictures needs it.
fix_mmap_threshold()

# Only these decoders ever see caller bytes; EPS (Ghostscript), PSD, TIFF and
# the rest of Pillow's formats are never tried.
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "HEIF")
NOT_AN_IMAGE = "not a supported image (accepted: JPEG, PNG, GIF, WebP, HEIC)"
CORRUPT = "image data is truncated or corrupt"
WHITE = (255, 255, 255)
JPEG_QUALITY = 85

# Decoded, shrunk and encoded by libvips (vips.py); Pillow only identifies them and reads
# their orientation. Their pixels never exist at full size.
_STREAMED_FORMATS = frozenset({"PNG", "WEBP"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Modes Pillow resamples as they are (alpha premultiplied); others become RGB first.
_RESIZABLE_MODES = frozenset({"RGB", "L", "RGBA", "LA"})
_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that shows the picture upright (EXIF 2.32, 4.6.4).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})

# warnings.catch_warnings swaps a process-wide filter list and is not
# thread-safe, so the open step (cheap: headers only) that can warn is
# serialised. The explicit size check after it is the main guard anyway.
_OPEN_LOCK = threading.Lock()


class ImageError(Exception):
    """The bytes are not an image we can use; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RenditionImage:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    digest: str  # sha256 hex of data; the content address


def normalise(
    data: bytes,
    *,
    max_side: int = 1024,
    max_pixels: int = 50_000_000,
    max_dimension: int = 16_384,
) -> RenditionImage:
    try:
        return _rendition(data, max_side, max_pixels, max_dimension)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image is too large (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageError(NOT_AN_IMAGE) from None
    except MemoryError:
        raise ImageError("image is too large to decode") from None
    except Exception as exc:  # Pillow raises far more than OSError on bad input
        raise ImageError(CORRUPT) from exc


def _rendition(data: bytes, max_side: int, max_pixels: int, max_dimension: int) -> RenditionImage:
    im = _open(data)
    width, height = im.size
    if width < 1 or height < 1:
        raise ImageError("image has no pixels")
    if width * height > max_pixels or max(width, height) > max_dimension:
        raise ImageError(f"image is too large: {width}×{height} pixels")

    im.seek(0)  # first frame only of an animation
    orientation = _orientation(im)
    if im.format in _STREAMED_FORMATS:
        target = min(width, height, max_side)  # never upscale; >= 1 so never 0 pixels
        # Pillow's copy of the file (and, for WebP, its demuxer) go before libvips starts.
        im.close()
        del im
        jpeg, side, _ = vips.square_jpeg(data, target, orientation, JPEG_QUALITY)
        return _described(jpeg, side, side)
    square = _pillow_square(im, max_side)
    method = _TRANSPOSE.get(orientation or 1)  # 1 (or none read): already upright
    return _encode(square.transpose(method) if method is not None else square)


def _pillow_square(im: Image.Image, max_side: int) -> Image.Image:
    # JPEG decodes straight at a power-of-two reduction that keeps both sides
    # at least max_side; other formats ignore the request.
    im.draft("RGB", (max_side, max_side))
    im.load()
    if im.mode not in _RESIZABLE_MODES:
        im = _to_rgb(im)

    # The centre square is the same region whichever way the picture is turned,
    # so crop and shrink first and orient the small square: far less memory
    # and time than turning the whole decoded picture.
    side = min(im.size)
    left = (im.width - side) // 2
    top = (im.height - side) // 2
    box = (left, top, left + side, top + side)
    target = min(side, max_side)  # never upscale; side >= 1 so never 0 pixels
    if target == side:
        square = im.crop(box)
    else:
        # reducing_gap=1: first average whole blocks of pixels (exact for a downscale), then
        # Lanczos over at most a 2x step; a third of the time of Lanczos over the full step.
        square = im.resize((target, target), Image.Resampling.LANCZOS, box=box, reducing_gap=1.0)
    return _to_rgb(square)


def _open(data: bytes) -> Image.Image:
    with _OPEN_LOCK, warnings.catch_warnings():
        # Pillow's other warnings (corrupt EXIF and the like) are about caller
        # data, not our code: silence them whatever the process-wide filters say.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))


def _orientation(im: Image.Image) -> int | None:
    try:
        return im.getexif().get(_ORIENTATION_TAG)
    except Exception:
        # Corrupt EXIF is common in the wild; the picture is still usable.
        return None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in _WIDE_GREY_MODES:
        # convert("L") clips 16-bit values instead of scaling them.
        transparency = im.info.get("transparency")
        im = im.convert("I").point(lambda v: v / 257).convert("L")
        if isinstance(transparency, int):
            im.info["transparency"] = transparency // 257
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return im if im.mode == "RGB" else im.convert("RGB")


def _encode(im: Image.Image) -> RenditionImage:
    # A fresh image has an empty `info`, so nothing of the original (EXIF,
    # GPS, XMP, ICC, comments) can ride along into the saved file.
    fresh = Image.frombytes("RGB", im.size, im.tobytes())
    out = io.BytesIO()
    fresh.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return _described(out.getvalue(), fresh.width, fresh.height)


def _described(data: bytes, width: int, height: int) -> RenditionImage:
    return RenditionImage(
        data=data,
        content_type="image/jpeg",
        extension="jpg",
        width=width,
        height=height,
        digest=hashlib.sha256(data).hexdigest(),
    )
