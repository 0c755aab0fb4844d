"""Figure 3's inputs and helpers: 12-megapixel test photos, a loopback image host, and the
in-process image workers (bench/imagework.py) run as fresh subprocesses."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench import HarnessError
from bench.config import CACHE_DIR, REPO
from bench.servers import HOST, clean_env

WIDTH, HEIGHT = 4000, 3000  # 12 megapixels, landscape as the sensor stores it
ORIENTATION = 6  # EXIF: rotate 90° clockwise to display (a phone held upright)
GENERATOR = "v1"  # bump when the pictures change, so the cache is rebuilt
FORMATS = {  # name: (file suffix, content type, Pillow format, save options)
    "JPEG": ("jpg", "image/jpeg", "JPEG", {"quality": 92}),
    "PNG": ("png", "image/png", "PNG", {"compress_level": 6}),
    "WebP": ("webp", "image/webp", "WEBP", {"quality": 90, "method": 4}),
    # x265's fastest preset keeps encoding at seconds; both sides decode the same file.
    "HEIC": ("heic", "image/heic", "HEIF", {"quality": 80, "enc_params": {"preset": "ultrafast"}}),
}


def _photo():
    """A photo-like picture: gradients, blurred shapes and sensor-like noise, so that it
    compresses like a photograph (neither flat nor random)."""
    from PIL import Image, ImageDraw, ImageFilter

    size = (WIDTH, HEIGHT)
    linear = Image.linear_gradient("L")
    base = Image.merge(
        "RGB",
        (linear.resize(size), Image.radial_gradient("L").resize(size), linear.rotate(90).resize(size)),
    )
    draw = ImageDraw.Draw(base)
    rng = random.Random(7)
    for _ in range(60):
        x, y, s = rng.randrange(WIDTH), rng.randrange(HEIGHT), rng.randrange(50, 600)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x, y, x + s, y + int(s * 0.7)), fill=colour)
    base = base.filter(ImageFilter.GaussianBlur(3))
    noise = Image.effect_noise(size, 40).convert("RGB")
    return Image.blend(base, noise, 0.12)


def test_images(log=print) -> dict[str, Path]:
    """The four test files (cached in bench/.cache: HEIC and PNG take seconds to encode)."""
    folder = CACHE_DIR / "images" / f"{GENERATOR}-{WIDTH}x{HEIGHT}"
    paths = {name: folder / f"photo.{suffix}" for name, (suffix, *_rest) in FORMATS.items()}
    if all(p.exists() and p.stat().st_size > 0 for p in paths.values()):
        return paths
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"making the 12-megapixel test images in {folder} (once; cached)")
    photo = _photo()
    exif = Image.Exif()
    exif[0x0112] = ORIENTATION
    exif[0x010F] = "contactcard-bench"
    for name, (_suffix, _type, pil_format, options) in FORMATS.items():
        out = io.BytesIO()
        photo.save(out, format=pil_format, exif=exif.tobytes(), **options)
        temporary = paths[name].with_suffix(".part")
        temporary.write_bytes(out.getvalue())
        temporary.replace(paths[name])
    log(f"test images made in {time.perf_counter() - started:.1f} s")
    return paths


def describe(paths: dict[str, Path]) -> dict[str, dict]:
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()

    described = {}
    for name, path in paths.items():
        entry = {"bytes": path.stat().st_size, "file": path.name}
        try:
            with Image.open(path) as im:
                entry["stored_size"] = list(im.size)
                entry["exif_orientation"] = im.getexif().get(0x0112)
        except Exception:  # HEIC without the opener registered: the size is enough
            pass
        described[name] = entry
    return described


class ImageHost:
    """Serves the test files over HTTP on 127.0.0.1 (the allow-listed image host of the
    POST figure), from memory, from a thread of the bench process."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.files = {f"/{p.name}": (p.read_bytes(), FORMATS[n][1]) for n, p in paths.items()}
        self.names = {n: f"/{p.name}" for n, p in paths.items()}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                found = files.get(self.path)
                if found is None:
                    self.send_error(404)
                    return
                body, content_type = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="image-host", daemon=True)

    @property
    def host_port(self) -> str:
        return f"{HOST}:{self.port}"

    def url(self, name: str) -> str:
        return f"http://{self.host_port}{self.names[name]}"

    def __enter__(self) -> ImageHost:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_worker(impl: str, path: Path, count: int) -> dict:
    """One fresh process timing `count` images with one implementation."""
    argv = [sys.executable, "-m", "bench.imagework", impl, str(path), str(count)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=clean_env({}), timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise HarnessError(f"image worker {impl} {path.name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])
