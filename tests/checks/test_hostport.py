"""`parse_host_port`, the one host:port reading of the log check and the log gatherer: fixed cases
for each form and for garbage, and a comparison with the standard library's URL authority parser
over generated well-formed addresses."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.hostport import parse_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.18.4.50", ("198.18.4.50", None)),
        ("198.18.4.50:514", ("198.18.4.50", 514)),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("[2001:db8::1]:6514", ("2001:db8::1", 6514)),
        ("[::1]:60", ("::1", 60)),
        ("2001:db8::1", ("2001:db8::1", None)),  # bare IPv6: its colons are no port
        ("logs.hospital.example", ("logs.hospital.example", None)),
        ("logs.hospital.example:20514", ("logs.hospital.example", 20514)),
        ("LogHost:514", ("LogHost", 514)),  # case kept: the caller decides how to compare
    ],
)
def test_each_form(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("", None)),
        (":", ("", None)),
        ("loghost:", ("loghost", None)),
        (":514", ("", 514)),
        ("loghost:tcp", ("loghost", None)),
        ("loghost:-1", ("loghost", None)),
        ("loghost: 514", ("loghost", None)),
        ("loghost:²", ("loghost", None)),  # a Unicode digit int() refuses
        ("loghost:5a14", ("loghost", None)),
        ("a:b:c", ("a:b:c", None)),
        ("[2001:db8::1", ("2001:db8::1", None)),  # unclosed bracket
        ("[2001:db8::1]junk", ("2001:db8::1", None)),
        ("[]:514", ("", 514)),
    ],
)
def test_garbage_never_raises(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_host_port(text) == expected


_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,14}[A-Za-z0-9])?", fullmatch=True)
_HOSTNAME = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_IPV4 = st.ip_addresses(v=4).map(str)
_IPV6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")


@given(host=st.one_of(_HOSTNAME, _IPV4, _IPV6), port=st.none() | st.integers(0, 65535))
def test_agrees_with_urlsplit(host: str, port: int | None) -> None:
    text = host if port is None else f"{host}:{port}"
    ours = parse_host_port(text)
    theirs = urlsplit(f"//{text}")
    assert (ours[0].lower(), ours[1]) == (theirs.hostname, theirs.port)
    if host.startswith("["):
        assert ipaddress.ip_address(ours[0]) == ipaddress.ip_address(host[1:-1])
