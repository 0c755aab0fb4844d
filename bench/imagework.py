"""One in-process image worker: `python -m bench.imagework IMPL FILE COUNT`.

IMPL is `server` (contactcard.images.normalise, the server's pipeline) or `vips` (the
baseline: pyvips thumbnail to a 1024 square centre crop, saved as the same JPEG: quality 85,
metadata stripped; on Debian's libvips42, see `system_pyvips`). Each worker is a fresh
process that loads only its own side, so its memory figures are its own (the server's side
loads libvips too: it decodes PNG and WebP with it). One warm-up image first (codecs, thread
pools), then COUNT timed images. For each image: RSS before, the peak RSS while it ran (VmHWM after
resetting it through /proc/self/clear_refs), wall and CPU seconds. Prints one JSON line.

Memory growth per image is that peak above the RSS of the process once the library is
imported and before its first image: it counts the image's working set plus whatever the
images before it left resident (pools, caches, leaks), so neither side's allocator strategy
hides memory from the comparison.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

SIDE = 1024


def _status() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                values[name] = int(value.split()[0])
    return values


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _server():
    from contactcard.images import normalise

    def run(data: bytes) -> tuple[int, int, int]:
        image = normalise(data)
        return image.width, image.height, len(image.data)

    return run, {}


def system_pyvips():
    """pyvips on the system's libvips (Debian's libvips42), not the PyPI build the server
    uses for PNG and WebP: that build has no HEVC decoder, so it cannot read HEIC, and the
    baseline must read all four formats. Blocking pyvips-binary's module makes pyvips fall
    back to loading libvips.so.42 from the system."""
    sys.modules.setdefault("_libvips", None)  # `import _libvips` now raises ImportError
    import pyvips

    if pyvips.API_mode:
        raise RuntimeError("pyvips loaded its bundled libvips, not the system's")
    return pyvips


def _vips():
    pyvips = system_pyvips()
    pyvips.cache_set_max(0)  # distinct images in a server: never answer from libvips's cache

    def run(data: bytes) -> tuple[int, int, int]:
        thumb = pyvips.Image.thumbnail_buffer(data, SIDE, height=SIDE, crop="centre")
        out = thumb.jpegsave_buffer(Q=85, optimize_coding=True, strip=True)
        hashlib.sha256(out).hexdigest()  # as the server names its blob
        return thumb.width, thumb.height, len(out)

    info = {
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "vips_concurrency": pyvips.vips_lib.vips_concurrency_get(),
    }
    return run, info


def main(impl: str, path: str, count: int) -> dict:
    with open(path, "rb") as source:
        data = source.read()
    idle = _status()
    run, info = {"server": _server, "vips": _vips}[impl]()
    loaded = _status()
    warm_started = time.perf_counter()
    dims = run(data)
    warmup_s = time.perf_counter() - warm_started
    if dims[:2] != (SIDE, SIDE):
        raise SystemExit(f"{impl} made a {dims[0]}x{dims[1]} image from {path}, expected {SIDE}x{SIDE}")
    after_warmup = _status()
    peak_ok = True
    images = []
    for _ in range(count):
        before = _status()["VmRSS"]
        peak_ok = _reset_peak() and peak_ok
        wall, cpu = time.perf_counter(), time.process_time()
        _, _, size = run(data)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        now = _status()
        images.append(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "rss_before_kib": before,
                # Memory growth per image: the peak RSS while this image ran, above the
                # process with its library loaded but before any image, so whatever earlier
                # images left behind (allocator pools, caches, leaks) counts too.
                "peak_above_loaded_kib": max(0, now["VmHWM"] - loaded["VmRSS"]),
                # The image's own working set: the peak above the RSS just before it.
                "peak_growth_kib": max(0, now["VmHWM"] - before),
                "rss_after_kib": now["VmRSS"],
                "output_bytes": size,
            }
        )
    end = _status()
    return {
        "impl": impl,
        "file": path,
        "input_bytes": len(data),
        "count": count,
        "images": images,
        "warmup_s": warmup_s,
        "rss_idle_kib": idle["VmRSS"],
        "rss_loaded_kib": loaded["VmRSS"],
        "rss_after_warmup_kib": after_warmup["VmRSS"],
        "rss_end_kib": end["VmRSS"],
        "vm_hwm_kib": end["VmHWM"],
        "retained_per_image_kib": (end["VmRSS"] - after_warmup["VmRSS"]) / max(1, count),
        "peak_reset_works": peak_ok,
        **info,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
