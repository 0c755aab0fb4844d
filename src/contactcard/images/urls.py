"""One strict parser for caller-supplied image URLs (docs/security.md, rules 1-3).

Every URL the fetcher touches -- the caller's and every redirect target -- goes
through `parse_image_url`, and the fetcher only ever uses the parsed pieces, so
what was checked is what gets fetched.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
MAX_HOSTNAME_LENGTH = 253
MAX_LABEL_LENGTH = 63

_DEFAULT_PORTS = {"https": 443, "http": 80}
_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_HEX = frozenset("0123456789abcdef")


class ImageUrlError(ValueError):
    """The image URL is not one we are willing to fetch; the message says why."""


@dataclass(frozen=True)
class ImageUrl:
    raw: str
    scheme: str
    host: str  # lowercased; IPv6 without brackets
    port: int
    path_and_query: str
    is_ip: bool

    @property
    def host_literal(self) -> str:
        """The host as it is written in a URL (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def host_port(self) -> str:
        """Allowlist key, always with the port: `127.0.0.1:8081`, `[::1]:443`."""
        return f"{self.host_literal}:{self.port}"

    @property
    def host_header(self) -> str:
        """The `Host` header a browser would send (port only when not default)."""
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return self.host_literal
        return self.host_port

    @property
    def canonical(self) -> str:
        """The URL rebuilt from the parsed pieces, fragment dropped."""
        return f"{self.scheme}://{self.host_header}{self.path_and_query}"

    def __str__(self) -> str:
        return self.canonical


def parse_image_url(raw: str, *, allow_http: bool) -> ImageUrl:
    if not isinstance(raw, str):
        raise ImageUrlError("image_url must be a string")
    if len(raw) > MAX_URL_LENGTH:
        raise ImageUrlError(f"image_url is longer than {MAX_URL_LENGTH} characters")
    # Printable ASCII only: whitespace, control characters and non-ASCII are
    # where parsers disagree (urllib silently strips tabs and newlines).
    if not raw or any(not ("!" <= ch <= "~") for ch in raw):
        raise ImageUrlError("image_url must be printable ASCII without spaces or control characters")
    if "\\" in raw:
        raise ImageUrlError("image_url must not contain backslashes")

    scheme, _, rest = raw.partition(":")
    scheme = scheme.lower()
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed or not rest.startswith("//"):
        if allow_http:
            raise ImageUrlError("image_url must be an absolute http or https URL")
        raise ImageUrlError("image_url must be an absolute https URL")

    try:
        parts = urlsplit(raw)
    except ValueError:
        raise ImageUrlError("image_url is not a valid URL") from None
    netloc = parts.netloc
    if not netloc:
        raise ImageUrlError("image_url must have a host")
    if "@" in netloc:
        raise ImageUrlError("image_url must not contain credentials (user:pass@)")

    host, is_ip, port_text = _split_host(netloc)
    port = _parse_port(port_text, default=_DEFAULT_PORTS[scheme])

    path = parts.path or "/"
    path_and_query = f"{path}?{parts.query}" if parts.query else path
    return ImageUrl(
        raw=raw,
        scheme=scheme,
        host=host,
        port=port,
        path_and_query=path_and_query,
        is_ip=is_ip,
    )


def _split_host(netloc: str) -> tuple[str, bool, str | None]:
    """Return (host, is_ip, port text or None) from `host[:port]`."""
    if netloc.startswith("["):
        literal, bracket, after = netloc[1:].partition("]")
        if not bracket:
            raise ImageUrlError("image_url has an unterminated IPv6 address")
        if after and not after.startswith(":"):
            raise ImageUrlError("image_url has an invalid host")
        return _parse_ipv6(literal), True, after[1:] if after else None

    host, colon, port_text = netloc.partition(":")
    host = host.lower()
    if not host:
        raise ImageUrlError("image_url must have a host")
    if host.endswith("."):
        raise ImageUrlError("image_url host must not end with a dot")
    labels = host.split(".")
    if _looks_numeric(labels[-1]):
        # WHATWG parsers read such a host as an IPv4 address in some notation
        # (decimal, octal, hex, short form); only the canonical one is accepted.
        return _parse_ipv4(host), True, port_text if colon else None
    _check_hostname(host, labels)
    return host, False, port_text if colon else None


def _looks_numeric(label: str) -> bool:
    if label.isdigit():
        return True
    return label.startswith("0x") and all(ch in _HEX for ch in label[2:])


def _parse_ipv4(host: str) -> str:
    parts = host.split(".")
    canonical = (
        len(parts) == 4
        and all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts)
        and all(int(p) <= 255 for p in parts)
    )
    if not canonical:
        raise ImageUrlError(
            "image_url IP address must be a dotted-quad IPv4 (like 203.0.113.7) or a bracketed IPv6 address"
        )
    return str(ipaddress.IPv4Address(host))


def _parse_ipv6(literal: str) -> str:
    if "%" in literal:
        raise ImageUrlError("image_url IPv6 address must not have a zone id")
    try:
        address = ipaddress.IPv6Address(literal)
    except ValueError:
        raise ImageUrlError("image_url has an invalid IPv6 address") from None
    return address.compressed


def _check_hostname(host: str, labels: list[str]) -> None:
    if len(host) > MAX_HOSTNAME_LENGTH:
        raise ImageUrlError("image_url host name is too long")
    for label in labels:
        valid = (
            0 < len(label) <= MAX_LABEL_LENGTH
            and set(label) <= _LDH
            and not label.startswith("-")
            and not label.endswith("-")
        )
        if not valid:
            raise ImageUrlError(f"image_url host {host!r} is not a valid host name")


def _parse_port(text: str | None, *, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise ImageUrlError("image_url port must be a number from 1 to 65535")
    return int(text)
