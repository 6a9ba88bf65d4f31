"""The SSRF guard's rules, for every address form an attacker might use."""

from __future__ import annotations

import ipaddress

import pytest

from postback.core.netguard import blocked_reason, literal_address, parse_networks


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[::1]", "::1"),
        ("169.254.169.254", "169.254.169.254"),
        ("example.com", None),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("0x1g.0.0.1", None),
    ],
)
def test_literal_forms(host: str, expected: str | None) -> None:
    address = literal_address(host)
    assert (str(address) if address is not None else None) == expected


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "'this network'"),
        ("::1", "loopback"),
        ("fd00::1", "unique local"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_forbidden_addresses(address: str, reason: str) -> None:
    verdict = blocked_reason(ipaddress.ip_address(address))
    assert verdict is not None and reason in verdict


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "172.32.0.1"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


def test_allow_list_opens_ranges_including_mapped_forms() -> None:
    allowed = parse_networks("127.0.0.0/8, 10.0.0.0/8")
    assert blocked_reason(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert blocked_reason(ipaddress.ip_address("10.9.9.9"), allowed) is None
    assert blocked_reason(ipaddress.ip_address("192.168.0.1"), allowed) is not None


def test_bad_allow_list_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_networks("127.0.0.0/8, nonsense")


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.1.2.3", "fd00::1"])
def test_refusal_names_the_setting_that_would_allow_it(address: str) -> None:
    """The hint is exact: the CIDR it suggests, once configured, lets the address through."""
    verdict = blocked_reason(ipaddress.ip_address(address))
    assert verdict is not None and "POSTBACK_ALLOW_NETWORKS=" in verdict
    suggested = verdict.rsplit("POSTBACK_ALLOW_NETWORKS=", 1)[1]
    assert blocked_reason(ipaddress.ip_address(address), parse_networks(suggested)) is None


def test_metadata_refusal_suggests_nothing() -> None:
    verdict = blocked_reason(ipaddress.ip_address("169.254.169.254"))
    assert verdict is not None and "POSTBACK_ALLOW_NETWORKS" not in verdict
