"""Fetching a caller's image without letting the caller reach our network
(docs/security.md, rules 2, 4-7, 9-14).

`NetworkFetcher` resolves the host itself, checks every address, connects to
exactly the checked address (original Host header and TLS SNI kept, so the
certificate is still verified against the host name), follows redirects by
hand, and bounds the whole exchange in time and size. Whatever goes wrong
leaves as a `FetchError` whose reason can be shown to the caller.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import socket
import ssl
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urljoin

import anyio
import anyio.to_thread
import httpx

from .addresses import HostPolicy, IPAddress
from .urls import ImageUrl, ImageUrlError, parse_image_url

Resolver = Callable[[str, int], list[str]]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MIB = 1024 * 1024


class FetchError(Exception):
    """The image could not be fetched; `reason` says why, in caller terms."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageFetcher(Protocol):
    async def fetch(self, url: ImageUrl) -> bytes: ...


def system_resolver(host: str, port: int) -> list[str]:
    """Blocking DNS lookup; the fetcher runs it in a worker thread."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _size_text(limit: int) -> str:
    return f"{limit // _MIB} MB" if limit % _MIB == 0 else f"{limit} bytes"


class NetworkFetcher:
    def __init__(
        self,
        policy: HostPolicy,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        deadline: float = 10.0,
        max_redirects: int = 3,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport`: what sends each hop's request instead of httpx's own connection
        pool, for tests (`httpx.MockTransport`); the address policy is applied before it
        is asked, the deadline and the size limit to what it answers."""
        self._policy = policy
        self._transport = transport
        self._max_bytes = max_bytes
        self._deadline = deadline
        self._max_redirects = max_redirects
        self._resolver = resolver or system_resolver
        self._verify = verify
        self._tls_context: ssl.SSLContext | None = None

    async def fetch(self, url: ImageUrl) -> bytes:
        # httpx's timeout applies per read; only an outer deadline stops a
        # server that trickles one byte at a time.
        try:
            with anyio.fail_after(self._deadline):
                return await self._follow(url)
        except FetchError:
            raise
        except (TimeoutError, httpx.TimeoutException):
            raise FetchError(self._timeout_reason()) from None
        except Exception as exc:  # every failure must reach the caller as a reason
            raise FetchError(self._describe(exc)) from exc

    async def _follow(self, url: ImageUrl) -> bytes:
        current = url
        for _ in range(self._max_redirects + 1):
            outcome = await self._fetch_once(current)
            if isinstance(outcome, bytes):
                return outcome
            current = outcome
        raise FetchError(f"too many redirects (more than {self._max_redirects})")

    async def _fetch_once(self, url: ImageUrl) -> bytes | ImageUrl:
        addresses = await self._checked_addresses(url)
        for index, ip in enumerate(addresses):
            try:
                return await self._request(url, ip)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                # Another checked address of the same host may answer.
                if index == len(addresses) - 1:
                    raise
        raise FetchError("image host could not be resolved")  # unreachable: addresses is non-empty

    async def _checked_addresses(self, url: ImageUrl) -> list[IPAddress]:
        if url.is_ip:
            addresses = [ipaddress.ip_address(url.host)]
        else:
            addresses = await self._resolve(url)
        # One bad address is enough to refuse: the resolver's order is not ours
        # to trust, and a rebinding host mixes public and private answers.
        if not all(self._policy.permits(url, ip) for ip in addresses):
            if url.is_ip:
                raise FetchError("image URL points to a non-public address")
            raise FetchError("image host resolved to a non-public address")
        return addresses

    async def _resolve(self, url: ImageUrl) -> list[IPAddress]:
        try:
            # abandon_on_cancel: a hanging lookup must not outlive the deadline.
            answers = await anyio.to_thread.run_sync(self._resolver, url.host, url.port, abandon_on_cancel=True)
        except Exception:
            raise FetchError("image host could not be resolved") from None
        try:
            addresses = [ipaddress.ip_address(answer) for answer in answers]
        except (TypeError, ValueError):
            raise FetchError("image host resolved to an invalid address") from None
        if not addresses:
            raise FetchError("image host could not be resolved")
        return addresses

    async def _request(self, url: ImageUrl, ip: IPAddress) -> bytes | ImageUrl:
        literal = f"[{ip.compressed}]" if ip.version == 6 else str(ip)
        target = f"{url.scheme}://{literal}:{url.port}{url.path_and_query}"
        headers = {
            "Host": url.host_header,
            "Accept": "image/*",
            "Accept-Encoding": "identity",
            "User-Agent": "contactcard-image-fetcher",
        }
        extensions = {}
        if url.scheme == "https" and not url.is_ip:
            extensions["sni_hostname"] = url.host
        # A fresh client per hop: no cookie jar, pool or auth carried between hosts.
        async with (
            httpx.AsyncClient(
                verify=self._tls(),
                trust_env=False,
                follow_redirects=False,
                timeout=self._deadline,
                transport=self._transport,
            ) as client,
            client.stream("GET", target, headers=headers, extensions=extensions) as response,
        ):
            return await self._read(url, response)

    def _tls(self) -> ssl.SSLContext:
        # Built once: loading the CA bundle for every hop costs milliseconds.
        if self._tls_context is None:
            if isinstance(self._verify, ssl.SSLContext):
                self._tls_context = self._verify
            else:
                self._tls_context = httpx.create_ssl_context(verify=self._verify, trust_env=False)
        return self._tls_context

    async def _read(self, url: ImageUrl, response: httpx.Response) -> bytes | ImageUrl:
        status = response.status_code
        if status in _REDIRECT_STATUSES:
            return self._next_hop(url, response.headers.get("location"), status)
        if status != 200:
            raise FetchError(f"image host answered HTTP {status}")

        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchError(f"image host sent Content-Encoding {encoding}")
        too_large = FetchError(f"image is larger than {_size_text(self._max_bytes)}")
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise too_large

        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > self._max_bytes:
                raise too_large
        return bytes(body)

    def _next_hop(self, url: ImageUrl, location: str | None, status: int) -> ImageUrl:
        if not location:
            raise FetchError(f"image host answered HTTP {status} without a Location")
        try:
            absolute = urljoin(url.canonical, location)
            return parse_image_url(absolute, allow_http=self._policy.allow_http)
        except ImageUrlError as exc:
            raise FetchError(f"image host redirected to a refused URL: {exc}") from None
        except ValueError:
            raise FetchError("image host redirected to an invalid URL") from None

    def _timeout_reason(self) -> str:
        return f"image fetch timed out after {self._deadline:g} s"

    def _describe(self, exc: Exception) -> str:
        tls = _find_cause(exc, ssl.SSLError)
        if isinstance(tls, ssl.SSLCertVerificationError):
            return "image host's TLS certificate could not be verified"
        if tls is not None:
            return "TLS handshake with image host failed"
        if isinstance(exc, httpx.ConnectError):
            return "could not connect to image host"
        if isinstance(exc, httpx.RemoteProtocolError):
            return "image host closed the connection or sent a malformed response"
        if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.CloseError)):
            return "connection to image host failed"
        if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
            return "image URL could not be fetched"
        return f"image fetch failed ({type(exc).__name__})"


def _find_cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class SimulatedFetcher:
    """For local work without internet: hosts the policy lets us fetch for
    real locally (IP literals, allowlisted hosts) go to the network fetcher,
    which applies every rule; any other host gets a generated picture that
    depends only on the URL, and the network is never touched."""

    def __init__(self, policy: HostPolicy, network: NetworkFetcher) -> None:
        self._policy = policy
        self._network = network

    async def fetch(self, url: ImageUrl) -> bytes:
        if url.is_ip or self._policy.is_allowlisted(url):
            return await self._network.fetch(url)
        try:
            return await anyio.to_thread.run_sync(simulated_image, url.canonical)
        except Exception as exc:
            raise FetchError(f"simulated image could not be made ({type(exc).__name__})") from exc


def simulated_image(seed: str, side: int = 512) -> bytes:
    """A deterministic PNG: background, stripes and a disc in colours taken
    from sha256(seed)."""
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    background = tuple(digest[0:3])
    stripe = tuple(digest[3:6])
    disc = tuple(255 - c for c in background)
    image = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(image)
    width = 16 + digest[6] % 48
    for offset in range(-side, side, width * 2):
        draw.polygon(
            [(offset, 0), (offset + width, 0), (offset + width + side, side), (offset + side, side)],
            fill=stripe,
        )
    radius = side // 4 + digest[7] % (side // 8)
    centre = side // 2
    draw.ellipse((centre - radius, centre - radius, centre + radius, centre + radius), fill=disc)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
