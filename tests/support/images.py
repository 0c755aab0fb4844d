"""Real image files, made with Pillow, for the API tests."""

from __future__ import annotations

import io

from PIL import Image


def jpeg(
    width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 30, 30), exif_orientation: int | None = None
) -> bytes:
    image = Image.new("RGB", (width, height), colour)
    out = io.BytesIO()
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(out, "JPEG", exif=exif.tobytes())
    else:
        image.save(out, "JPEG")
    return out.getvalue()


def png(width: int = 40, height: int = 40, colour: tuple[int, int, int, int] = (10, 200, 10, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
