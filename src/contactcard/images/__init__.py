"""Caller images: URL checks, SSRF-safe fetching, and normalisation."""

from .addresses import HostPolicy, is_public_address
from .fetch import (
    FetchError,
    ImageFetcher,
    NetworkFetcher,
    SimulatedFetcher,
    simulated_image,
    system_resolver,
)
from .process import ImageError, RenditionImage, normalise
from .urls import ImageUrl, ImageUrlError, parse_image_url

__all__ = [
    "FetchError",
    "HostPolicy",
    "ImageError",
    "ImageFetcher",
    "ImageUrl",
    "ImageUrlError",
    "NetworkFetcher",
    "RenditionImage",
    "SimulatedFetcher",
    "is_public_address",
    "normalise",
    "parse_image_url",
    "simulated_image",
    "system_resolver",
]
