"""The webhook targets' host policy: the image rules, plus the developer's loopback
receivers in an open sandbox that listens on loopback (and only there)."""

from __future__ import annotations

import ipaddress

import pytest

from contactcard.bootstrap import webhook_policy
from contactcard.images import HostPolicy
from contactcard.images.urls import parse_image_url
from contactcard.settings import Settings

IMAGES = HostPolicy(allowed_hosts=frozenset({"images.partner.example:8443"}))


def _permits(policy: HostPolicy, url: str, address: str) -> bool:
    return policy.permits(parse_image_url(url, allow_http=True), ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:3000/webhooks", "127.0.0.1"),
        ("http://localhost:8080/", "127.0.0.1"),
        ("http://[::1]:3000/", "::1"),
    ],
)
def test_an_open_sandbox_on_loopback_allows_the_developers_receivers(tmp_path, url, address):
    policy = webhook_policy(Settings(data_dir=tmp_path, open_sandbox=True), IMAGES)
    assert _permits(policy, url, address)
    assert policy.is_allowlisted(parse_image_url(url, allow_http=True))
    assert "images.partner.example:8443" in policy.allowed_hosts  # the operator's entries kept
    # Loopback by name only for those names: another name pointing there is still refused.
    assert not _permits(policy, "http://rebind.partner.example/", "127.0.0.1")
    assert not _permits(policy, "https://10.0.0.1/", "10.0.0.1")


@pytest.mark.parametrize(
    "settings", [{"open_sandbox": False}, {"open_sandbox": True, "open_sandbox_loopback_receivers": False}]
)
def test_loopback_receivers_are_refused_elsewhere(tmp_path, settings):
    policy = webhook_policy(Settings(data_dir=tmp_path, **settings), IMAGES)
    assert policy == IMAGES
    assert not _permits(policy, "http://127.0.0.1:3000/webhooks", "127.0.0.1")
