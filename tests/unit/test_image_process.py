import hashlib
import io
import struct
import zlib

import pytest
from PIL import ExifTags, Image, ImageCms

from contactcard.images import ImageError, RenditionImage, normalise

RED = (220, 20, 20)
GREEN = (20, 200, 20)
BLUE = (20, 20, 220)
GREY = (128, 128, 128)


# ---------------------------------------------------------------- helpers


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **params)
    return out.getvalue()


def decode(rendition: RenditionImage) -> Image.Image:
    im = Image.open(io.BytesIO(rendition.data))
    im.load()
    return im


def close_to(pixel, expected, tolerance=40):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def jpeg_markers(data: bytes) -> list[int]:
    """Marker codes of the segments before the scan data."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return markers


def png_chunks(header: bytes, pixel_data: bytes) -> bytes:
    """A PNG file from a raw IHDR body and already-compressed IDAT data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixel_data) + chunk(b"IEND", b"")


def png_with_declared_size(width: int, height: int) -> bytes:
    """A PNG whose header claims the given size but carries one tiny IDAT."""
    return png_chunks(struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0), zlib.compress(b"\x00" * 64))


def quadrants(side: int = 96) -> Image.Image:
    """Stored top-left red, top-right green, bottom-left blue, bottom-right grey."""
    im = Image.new("RGB", (side, side), GREY)
    half = side // 2
    im.paste(RED, (0, 0, half, half))
    im.paste(GREEN, (half, 0, side, half))
    im.paste(BLUE, (0, half, half, side))
    return im


def corner_colour(im: Image.Image, corner: str):
    quarter = im.width // 4
    x = quarter if corner.endswith("left") else im.width - quarter
    y = quarter if corner.startswith("top") else im.height - quarter
    return im.getpixel((x, y))


# ---------------------------------------------------------------- output


def test_rendition_is_a_jpeg_described_by_its_fields():
    rendition = normalise(encode(quadrants(), "PNG"))
    assert rendition.content_type == "image/jpeg"
    assert rendition.extension == "jpg"
    assert rendition.digest == hashlib.sha256(rendition.data).hexdigest()
    im = decode(rendition)
    assert im.format == "JPEG" and im.mode == "RGB"
    assert im.size == (rendition.width, rendition.height) == (96, 96)


def test_same_input_gives_same_bytes():
    data = encode(quadrants(), "PNG")
    assert normalise(data).digest == normalise(data).digest


# PNG and WebP pixels come from libvips (images/vips.py), the others from Pillow: the
# behaviour tests run on both paths.
LOSSY = {"JPEG": {"quality": 90}, "PNG": {}, "WEBP": {"quality": 90}}


@pytest.mark.parametrize("fmt", sorted(LOSSY))
def test_large_landscape_is_center_cropped_and_shrunk_to_1024(fmt):
    im = Image.new("RGB", (3000, 2000), BLUE)
    im.paste(RED, (500, 0, 2500, 2000))  # the middle square is red
    rendition = normalise(encode(im, fmt, **LOSSY[fmt]))
    out = decode(rendition)
    assert out.size == (1024, 1024)
    for corner in ("top-left", "top-right", "bottom-left", "bottom-right"):
        assert close_to(corner_colour(out, corner), RED)


@pytest.mark.parametrize("fmt", sorted(LOSSY))
def test_portrait_is_center_cropped_vertically(fmt):
    im = Image.new("RGB", (200, 600), BLUE)
    im.paste(GREEN, (0, 200, 200, 400))
    out = decode(normalise(encode(im, fmt, **LOSSY[fmt])))
    assert out.size == (200, 200)
    assert close_to(out.getpixel((100, 5)), GREEN) and close_to(out.getpixel((100, 194)), GREEN)


@pytest.mark.parametrize("fmt", sorted(LOSSY))
def test_max_side_is_configurable(fmt):
    assert normalise(encode(quadrants(400), fmt), max_side=128).width == 128


@pytest.mark.parametrize("fmt", sorted(LOSSY))
def test_small_images_are_never_upscaled(fmt):
    assert normalise(encode(quadrants(300), fmt)).width == 300


def test_one_by_one_pixel_works():
    rendition = normalise(encode(Image.new("RGB", (1, 1), RED), "PNG"))
    assert (rendition.width, rendition.height) == (1, 1)
    assert close_to(decode(rendition).getpixel((0, 0)), RED)


def test_very_wide_strip_becomes_a_small_square():
    rendition = normalise(encode(Image.new("RGB", (4000, 10), GREEN), "PNG"))
    assert (rendition.width, rendition.height) == (10, 10)


def test_very_tall_strip_becomes_a_small_square():
    rendition = normalise(encode(Image.new("RGB", (1, 3000), GREEN), "JPEG"))
    assert (rendition.width, rendition.height) == (1, 1)


# ---------------------------------------------------------------- orientation

# Where the stored first pixel (row 0, column 0) and the stored end of row 0
# must appear once displayed, read straight from the EXIF 2.3 definition of
# tag 0x0112 ("row 0 is at the <side>, column 0 is at the <side>").
ORIENTATION_CORNERS = {
    1: ("top-left", "top-right"),
    2: ("top-right", "top-left"),
    3: ("bottom-right", "bottom-left"),
    4: ("bottom-left", "bottom-right"),
    5: ("top-left", "bottom-left"),
    6: ("top-right", "bottom-right"),
    7: ("bottom-right", "top-right"),
    8: ("bottom-left", "top-left"),
}


@pytest.mark.parametrize("fmt", sorted(LOSSY))
@pytest.mark.parametrize("orientation", sorted(ORIENTATION_CORNERS))
def test_exif_orientation_is_applied(orientation, fmt):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    data = encode(quadrants(), fmt, exif=exif.tobytes(), **LOSSY[fmt])
    out = decode(normalise(data))
    red_corner, green_corner = ORIENTATION_CORNERS[orientation]
    assert close_to(corner_colour(out, red_corner), RED)
    assert close_to(corner_colour(out, green_corner), GREEN)


@pytest.mark.parametrize("fmt", sorted(LOSSY))
def test_orientation_of_non_square_image_is_applied_before_cropping(fmt):
    # Stored 300x100 with orientation 6 displays as 100x300: the crop must
    # then take the vertical middle of the displayed picture.
    im = Image.new("RGB", (300, 100), BLUE)
    im.paste(RED, (0, 0, 100, 100))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    out = decode(normalise(encode(im, fmt, exif=exif.tobytes(), **LOSSY[fmt])))
    assert out.size == (100, 100)
    assert close_to(out.getpixel((50, 50)), BLUE)


def test_large_rotated_png_is_shrunk_then_turned():
    # The libvips path shrinks the stored picture and process.py turns the small square.
    im = Image.new("RGB", (2400, 1600), GREY)
    im.paste(RED, (400, 0, 1200, 800))  # top-left of the centre square, as stored
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # displayed: that corner is top-right
    out = decode(normalise(encode(im, "PNG", exif=exif.tobytes())))
    assert out.size == (1024, 1024)
    assert close_to(corner_colour(out, "top-right"), RED)
    assert close_to(corner_colour(out, "top-left"), GREY)


def test_corrupt_exif_is_ignored():
    garbage = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff\x01\x12\x00\x03"
    data = encode(quadrants(), "JPEG", exif=garbage)
    out = decode(normalise(data))
    assert close_to(corner_colour(out, "top-left"), RED)


def test_orientation_failure_keeps_the_unrotated_picture(monkeypatch):
    from contactcard.images import process

    def broken(self):
        raise SyntaxError("bad EXIF")

    monkeypatch.setattr(process.Image.Image, "getexif", broken)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 3
    out = decode(normalise(encode(quadrants(), "JPEG", exif=exif.tobytes())))
    assert close_to(corner_colour(out, "top-left"), RED)


# ---------------------------------------------------------------- modes and formats


def test_png_alpha_is_composited_onto_white():
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    im.paste((200, 0, 0, 255), (0, 0, 32, 64))
    out = decode(normalise(encode(im, "PNG")))
    assert close_to(out.getpixel((8, 32)), (200, 0, 0))
    assert close_to(out.getpixel((56, 32)), (255, 255, 255), tolerance=3)


def test_half_transparent_pixels_blend_with_white():
    out = decode(normalise(encode(Image.new("RGBA", (16, 16), (0, 0, 0, 128)), "PNG")))
    assert close_to(out.getpixel((8, 8)), (127, 127, 127), tolerance=6)


def test_palette_png_with_transparent_index_uses_white():
    im = Image.new("P", (32, 32), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(0, (0, 0, 16, 32))
    out = decode(normalise(encode(im, "PNG", transparency=0)))
    assert close_to(out.getpixel((4, 16)), (255, 255, 255), tolerance=3)
    assert close_to(out.getpixel((28, 16)), (255, 0, 0))


def test_grey_with_alpha_png():
    out = decode(normalise(encode(Image.new("LA", (8, 8), (0, 0)), "PNG")))
    assert close_to(out.getpixel((4, 4)), (255, 255, 255), tolerance=3)


def test_sixteen_bit_grey_png_is_scaled_not_clipped():
    im = Image.new("I;16", (32, 32), 32768)
    im.paste(65535, (16, 0, 32, 32))
    data = encode(im, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode(normalise(data))
    assert close_to(out.getpixel((4, 16)), (128, 128, 128), tolerance=4)
    assert close_to(out.getpixel((28, 16)), (255, 255, 255), tolerance=4)


def test_one_bit_png():
    im = Image.new("1", (16, 16), 0)
    im.paste(1, (0, 0, 16, 8))
    out = decode(normalise(encode(im, "PNG")))
    assert close_to(out.getpixel((8, 2)), (255, 255, 255)) and close_to(out.getpixel((8, 13)), (0, 0, 0))


def test_greyscale_jpeg():
    out = decode(normalise(encode(Image.new("L", (40, 40), 90), "JPEG")))
    assert out.mode == "RGB" and close_to(out.getpixel((20, 20)), (90, 90, 90), tolerance=4)


def test_cmyk_jpeg_is_converted_to_rgb():
    data = encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode(normalise(data))
    assert out.mode == "RGB" and close_to(out.getpixel((20, 20)), (255, 0, 0), tolerance=50)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    out = decode(normalise(data))
    assert close_to(out.getpixel((16, 16)), (255, 0, 0))


def test_animated_webp_uses_first_frame():
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    out = decode(normalise(data))
    assert close_to(out.getpixel((16, 16)), (0, 255, 0))


def test_webp_alpha_is_composited_onto_white():
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    im.paste((0, 0, 200, 255), (0, 0, 32, 64))
    out = decode(normalise(encode(im, "WEBP", lossless=True)))
    assert close_to(out.getpixel((8, 32)), (0, 0, 200))
    assert close_to(out.getpixel((56, 32)), (255, 255, 255), tolerance=3)


def test_sixteen_bit_grey_with_alpha_png_is_scaled_and_flattened():
    # 16x16, 16-bit grey + alpha (colour type 4): mid grey, the right half transparent.
    row = b"\x00" + b"".join(struct.pack(">HH", 0x8000, 0xFFFF if x < 8 else 0) for x in range(16))
    data = png_chunks(struct.pack(">IIBBBBB", 16, 16, 16, 4, 0, 0, 0), zlib.compress(row * 16))
    out = decode(normalise(data))
    assert close_to(out.getpixel((3, 8)), (128, 128, 128), tolerance=6)
    assert close_to(out.getpixel((13, 8)), (255, 255, 255), tolerance=3)


def test_libvips_reads_only_png_and_webp():
    # A file Pillow called PNG or WebP is the only thing handed to libvips; its other
    # loaders (JPEG, TIFF, SVG, ...) are blocked, so a mismatch cannot reach one.
    from contactcard.images import vips

    with pytest.raises(vips.VipsFailure):
        vips.square_jpeg(encode(quadrants(), "JPEG"), 32, None, 85)
    with pytest.raises(vips.VipsFailure):
        vips.square_jpeg(encode(quadrants(), "TIFF"), 32, None, 85)
    _, width, height = vips.square_jpeg(encode(quadrants(), "PNG"), 32, None, 85)
    assert (width, height) == (32, 32)


def test_webp():
    out = decode(normalise(encode(Image.new("RGB", (48, 30), GREEN), "WEBP", quality=90)))
    assert out.size == (30, 30) and close_to(out.getpixel((15, 15)), GREEN)


def test_heic():
    try:
        data = encode(Image.new("RGB", (64, 48), (200, 30, 30)), "HEIF", quality=90)
    except (KeyError, OSError, ValueError) as exc:  # pragma: no cover - no HEVC encoder
        pytest.skip(f"pillow-heif cannot encode here: {exc}")
    assert data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1")
    out = decode(normalise(data))
    assert out.size == (48, 48) and close_to(out.getpixel((24, 24)), (200, 30, 30))


# ---------------------------------------------------------------- metadata


def test_no_metadata_survives():
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({1: "N", 2: (37.0, 46.0, 30.0), 3: "W", 4: (122.0, 25.0, 10.0)})
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret-xmp</x:xmpmeta>'
    source = encode(
        quadrants(),
        "JPEG",
        exif=exif.tobytes(),
        icc_profile=icc,
        comment=b"secret-comment",
        xmp=xmp,
    )
    # The source really carries all of it...
    opened = Image.open(io.BytesIO(source))
    assert {"exif", "icc_profile", "comment", "xmp"} <= set(opened.info)
    assert opened.getexif().get_ifd(ExifTags.IFD.GPSInfo)

    data = normalise(source).data
    # ...and the output carries none of it.
    assert {0xE1, 0xE2, 0xED, 0xFE}.isdisjoint(jpeg_markers(data))  # APP1, APP2, APP13, COM
    for secret in (b"SecretCam", b"secret-comment", b"secret-xmp", b"Exif", b"ICC_PROFILE"):
        assert secret not in data
    out = Image.open(io.BytesIO(data))
    assert not ({"exif", "icc_profile", "comment", "xmp"} & set(out.info))
    assert not out.getexif()
    assert data.endswith(b"\xff\xd9")  # nothing after the end marker


def test_png_text_and_icc_do_not_survive():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret-png-text")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = normalise(encode(quadrants(), "PNG", pnginfo=info, icc_profile=icc)).data
    assert b"secret-png-text" not in data
    assert {0xE1, 0xE2, 0xFE}.isdisjoint(jpeg_markers(data))


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<rect width="10" height="10" fill="red"/></svg>',
        b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
        b"just some text, not a picture",
        b"",
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
        bytes(range(256)) * 4,
    ],
    ids=["svg", "html", "text", "empty", "eps", "noise"],
)
def test_non_images_are_refused(data):
    with pytest.raises(ImageError) as caught:
        normalise(data)
    assert caught.value.reason == "not a supported image (accepted: JPEG, PNG, GIF, WebP, HEIC)"


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "PPM", "ICO"])
def test_real_images_in_formats_we_do_not_accept_are_refused(fmt):
    data = encode(Image.new("RGB", (16, 16), RED), fmt)
    with pytest.raises(ImageError, match="not a supported image"):
        normalise(data)


def test_truncated_jpeg_is_refused():
    data = encode(quadrants(256), "JPEG", quality=95)
    with pytest.raises(ImageError) as caught:
        normalise(data[: len(data) // 2])
    assert caught.value.reason == "image data is truncated or corrupt"


def test_png_with_broken_pixel_data_is_refused():
    with pytest.raises(ImageError, match="truncated or corrupt"):
        normalise(png_with_declared_size(64, 64))


def test_declared_size_over_pixel_limit_is_refused_before_decoding():
    with pytest.raises(ImageError) as caught:
        normalise(png_with_declared_size(8000, 8000))  # 64 Mpx: over ours, under Pillow's
    assert caught.value.reason == "image is too large: 8000×8000 pixels"


def test_side_over_dimension_limit_is_refused():
    with pytest.raises(ImageError, match=r"too large: 20000×10 pixels"):
        normalise(png_with_declared_size(20000, 10))


def test_decompression_bomb_warning_is_an_error():
    # 100 Mpx sits between Pillow's warning and error thresholds; with a
    # generous pixel limit only the warning can stop it.
    with pytest.raises(ImageError, match="decompression bomb"):
        normalise(png_with_declared_size(10000, 10000), max_pixels=10**9, max_dimension=10**6)


@pytest.mark.parametrize("side", [20000, 100000])
def test_decompression_bomb_png_is_refused(side):
    with pytest.raises(ImageError, match="too large"):
        normalise(png_with_declared_size(side, side))


def test_error_reason_is_also_the_message():
    with pytest.raises(ImageError) as caught:
        normalise(b"nope")
    assert str(caught.value) == caught.value.reason


def test_the_allocator_threshold_is_fixed_on_glibc_only(monkeypatch):
    import platform

    from contactcard.images import allocator

    assert allocator.fix_mmap_threshold() is (platform.libc_ver()[0] == "glibc")
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert allocator.fix_mmap_threshold() is False
