import pytest

from contactcard.images import ImageUrl, ImageUrlError, parse_image_url


def test_plain_https_url_is_split_into_parts():
    url = parse_image_url("https://Cdn.Example.COM/photos/a.jpg?size=large#top", allow_http=False)
    assert url == ImageUrl(
        raw="https://Cdn.Example.COM/photos/a.jpg?size=large#top",
        scheme="https",
        host="cdn.example.com",
        port=443,
        path_and_query="/photos/a.jpg?size=large",
        is_ip=False,
    )
    assert url.host_port == "cdn.example.com:443"
    assert url.host_header == "cdn.example.com"
    assert url.canonical == "https://cdn.example.com/photos/a.jpg?size=large"


def test_missing_path_defaults_to_slash_and_explicit_port_is_kept():
    url = parse_image_url("https://img.example.com:8443", allow_http=False)
    assert (url.path_and_query, url.port) == ("/", 8443)
    assert url.host_header == "img.example.com:8443"


def test_uppercase_scheme_is_accepted_and_lowercased():
    assert parse_image_url("HTTPS://example.com/a", allow_http=False).scheme == "https"


def test_canonical_ipv4_is_an_ip_host():
    url = parse_image_url("http://127.0.0.1:8081/x.png", allow_http=True)
    assert url.is_ip and url.host == "127.0.0.1" and url.host_port == "127.0.0.1:8081"


def test_bracketed_ipv6_is_stored_without_brackets():
    url = parse_image_url("https://[::1]/a", allow_http=False)
    assert (url.host, url.is_ip, url.host_port) == ("::1", True, "[::1]:443")
    assert url.canonical == "https://[::1]/a"


@pytest.mark.parametrize(
    "host",
    ["[::ffff:127.0.0.1]", "[::ffff:7f00:1]"],
)
def test_ipv4_mapped_ipv6_parses_to_one_canonical_form(host):
    # Both spellings parse; the address policy then refuses them.
    url = parse_image_url(f"https://{host}/", allow_http=False)
    assert url.is_ip and url.host == "::ffff:7f00:1"


def test_punycode_host_is_fine():
    assert parse_image_url("https://xn--bcher-kva.example/", allow_http=False).host == ("xn--bcher-kva.example")


def test_http_only_when_allowed():
    with pytest.raises(ImageUrlError, match="absolute https URL"):
        parse_image_url("http://example.com/a.png", allow_http=False)
    assert parse_image_url("http://example.com/a.png", allow_http=True).port == 80


def test_url_of_2048_characters_is_accepted_and_2049_refused():
    base = "https://example.com/"
    assert parse_image_url(base + "a" * (2048 - len(base)), allow_http=False)
    with pytest.raises(ImageUrlError, match="longer than 2048"):
        parse_image_url(base + "a" * (2049 - len(base)), allow_http=False)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("https://2130706433/", "dotted-quad"),  # decimal
        ("https://0177.0.0.1/", "dotted-quad"),  # octal
        ("https://0x7f.0.0.1/", "dotted-quad"),  # hex
        ("https://0x7f.1/", "dotted-quad"),
        ("https://0x7f000001/", "dotted-quad"),
        ("https://127.1/", "dotted-quad"),  # short form
        ("https://127.000.000.001/", "dotted-quad"),
        ("https://256.1.1.1/", "dotted-quad"),
        ("https://1.2.3.4.5/", "dotted-quad"),
        ("https://[fe80::1%25eth0]/", "zone id"),
        ("https://[fe80::1%eth0]/", "zone id"),
        ("https://[::1/", "not a valid URL|IPv6"),
        ("https://[v1.abc]/", "IPv6"),
        ("https://[::1]x/", "invalid host"),
        ("https://example.com./a.jpg", "end with a dot"),
        ("https://127.0.0.1./", "end with a dot"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("https://example.com\\@evil.test/", "backslashes"),
        ("https:\\\\example.com/", "backslashes"),
        ("https://exa mple.com/", "printable ASCII"),
        (" https://example.com/", "printable ASCII"),
        ("https://example.com/a\tb", "printable ASCII"),
        ("https://example.com/\x00", "printable ASCII"),
        ("https://example.com/a\n", "printable ASCII"),
        ("https://exämple.com/", "printable ASCII"),
        ("ftp://example.com/a.png", "absolute https URL"),
        ("file:///etc/passwd", "absolute https URL"),
        ("gopher://example.com:70/_x", "absolute https URL"),
        ("javascript:alert(1)", "absolute https URL"),
        ("//example.com/a.png", "absolute https URL"),
        ("/a.png", "absolute https URL"),
        ("https:example.com/a.png", "absolute https URL"),
        ("https:/example.com/a.png", "absolute https URL"),
        ("https:///a.png", "must have a host"),
        ("https://:443/a.png", "must have a host"),
        ("https://example.com:0/", "port"),
        ("https://example.com:65536/", "port"),
        ("https://example.com:/", "port"),
        ("https://example.com:+443/", "port"),
        ("https://example.com:443a/", "port"),
        ("https://exa_mple.com/", "not a valid host name"),
        ("https://-example.com/", "not a valid host name"),
        ("https://example-.com/", "not a valid host name"),
        ("https://a..b/", "not a valid host name"),
        ("https://%65xample.com/", "not a valid host name"),
        ("https://" + "a" * 64 + ".com/", "not a valid host name"),
        ("", "printable ASCII"),
    ],
)
def test_refused_urls_name_the_reason(raw, reason):
    with pytest.raises(ImageUrlError, match=reason):
        parse_image_url(raw, allow_http=False)


def test_non_string_is_refused():
    with pytest.raises(ImageUrlError, match="string"):
        parse_image_url(b"https://example.com/", allow_http=False)  # type: ignore[arg-type]


def test_error_is_a_value_error():
    assert issubclass(ImageUrlError, ValueError)
