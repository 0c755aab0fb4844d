import ipaddress

import pytest

from contactcard.images import HostPolicy, is_public_address, parse_image_url


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "::ffff:8.8.8.8",  # mapped public v4
        "2002:0808:0808::1",  # 6to4 around 8.8.8.8
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    ],
)
def test_public_addresses(address):
    assert is_public_address(ipaddress.ip_address(address)) is True


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "169.254.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "100.127.255.254",
        "192.0.0.8",
        "192.0.2.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.7",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
        "100::1",
        "::ffff:127.0.0.1",  # mapped loopback
        "::ffff:7f00:1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "2002:7f00:0001::1",  # 6to4 around 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 around 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "::127.0.0.1",  # IPv4-compatible
        "::10.0.0.1",
        "2001::1",  # Teredo
    ],
)
def test_non_public_addresses(address):
    assert is_public_address(ipaddress.ip_address(address)) is False


def _url(raw):
    return parse_image_url(raw, allow_http=True)


LOOPBACK = ipaddress.ip_address("127.0.0.1")
PUBLIC = ipaddress.ip_address("93.184.216.34")


def test_default_policy_permits_only_public_addresses():
    policy = HostPolicy()
    assert policy.permits(_url("https://img.test/a.png"), PUBLIC)
    assert not policy.permits(_url("https://img.test/a.png"), LOOPBACK)
    assert policy.allow_http is False


def test_allow_private_permits_everything():
    policy = HostPolicy(allow_private=True)
    assert policy.permits(_url("http://img.test:9/a.png"), LOOPBACK)
    assert policy.permits(_url("http://img.test/a"), ipaddress.ip_address("169.254.169.254"))
    assert policy.allow_http is True


def test_allowlist_matches_host_and_port_exactly():
    policy = HostPolicy(allowed_hosts=frozenset({"127.0.0.1:8081", "LocalHost:9000"}))
    assert policy.allow_http is True
    assert policy.permits(_url("http://127.0.0.1:8081/a.png"), LOOPBACK)
    assert policy.permits(_url("http://localhost:9000/a.png"), LOOPBACK)
    assert not policy.permits(_url("http://127.0.0.1:8082/a.png"), LOOPBACK)
    assert not policy.permits(_url("http://localhost:9001/a.png"), LOOPBACK)
    # A name that resolves to an allowlisted address is not itself allowlisted.
    assert not policy.permits(_url("http://evil.test:8081/a.png"), LOOPBACK)
    assert policy.allowed_hosts == frozenset({"127.0.0.1:8081", "localhost:9000"})


def test_allowlist_entry_without_port_covers_every_port():
    policy = HostPolicy(allowed_hosts=frozenset({"media.local", "[::1]"}))
    assert policy.permits(_url("http://media.local:1234/a"), LOOPBACK)
    assert policy.permits(_url("https://[::1]:8443/a"), ipaddress.ip_address("::1"))
    assert not policy.permits(_url("http://other.local:1234/a"), LOOPBACK)


def test_ipv6_allowlist_key_is_bracketed():
    policy = HostPolicy(allowed_hosts=frozenset({"[::1]:8443"}))
    assert policy.permits(_url("https://[::1]:8443/a"), ipaddress.ip_address("::1"))
    assert not policy.permits(_url("https://[::1]:8444/a"), ipaddress.ip_address("::1"))
