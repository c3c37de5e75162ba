"""How OCTET STRING values read: as the device meant them. Real agents pad fixed-size fields
with NULs (the deltaups recording's ifDescr), Chinese devices configured from Windows consoles
send GB18030/GBK, and some fields are binary; and which configured communities are guessable."""

from __future__ import annotations

import pytest

from inventory.network.snmp import WELL_KNOWN_COMMUNITIES, decode_text, guessable


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"lo" + b"\x00" * 14, "lo"),
        (bytes.fromhex("74756E6C300000000000000000000000"), "tunl0"),
        ("Hillstone SG-6000 机房 B2".encode(), "Hillstone SG-6000 机房 B2"),
        ("华为 USG6550 二楼机房".encode("gbk"), "华为 USG6550 二楼机房"),
        (b"Cisco IOS\r\nTechnical Support\r\n", "Cisco IOS\r\nTechnical Support"),
        (b"\x00\x1b\x21\xff\x00\x10", "0x001b21ff0010"),
        (b"\x01\x02\x03", "0x010203"),
        (b"", ""),
        (b"\x00\x00", ""),
    ],
)
def test_octet_strings_read_as_meant(raw: bytes, text: str) -> None:
    assert decode_text(raw) == text


@pytest.mark.parametrize(
    ("community", "expected"),
    [
        *((word, True) for word in WELL_KNOWN_COMMUNITIES),
        ("PUBLIC", True),
        ("s3cret", True),  # shorter than 8
        ("h0sp1tal-mgmt-2024", False),
    ],
)
def test_guessable_communities(community: str, expected: bool) -> None:
    assert guessable(community) is expected
