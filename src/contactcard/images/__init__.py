"""Caller images: URL checks, SSRF-safe fetching, and normalisation.

The fetcher (httpx, TLS) and the decoder (Pillow, libheif, libvips) load on first use: a server
that only answers GETs starts faster and stays smaller without them.
"""

from __future__ import annotations

import importlib
from typing import Any

from .addresses import HostPolicy, is_public_address
from .urls import ImageUrl, ImageUrlError, parse_image_url

_LAZY = {
    "FetchError": "fetch",
    "ImageFetcher": "fetch",
    "NetworkFetcher": "fetch",
    "SimulatedFetcher": "fetch",
    "simulated_image": "fetch",
    "system_resolver": "fetch",
    "ImageError": "process",
    "RenditionImage": "process",
    "normalise": "process",
}

__all__ = ["HostPolicy", "ImageUrl", "ImageUrlError", "is_public_address", "parse_image_url", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
