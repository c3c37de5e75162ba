"""Placeholder DMI values: real dmidecode outputs from public inventory projects (serials that are
real stay, fillers are recognised), values seen in public posts of dmidecode output, and property
tests over generated fillers and generated real serials.

The dmidecode outputs live in tests/fixtures/raw/dmidecode/ with their source in PROVENANCE.md.
The agent reads /sys/class/dmi/id, which holds the same SMBIOS strings dmidecode prints;
`read_dmidecode` below maps one onto the other. Truth for the fixtures is the table `REAL`, the
identifier values a person reading each output judged to name that machine and no other.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.facts import DmiInfo
from inventory.host.hardware import DMI_FIELDS, anchor_id, derive_identity, parse_dmi
from inventory.host.placeholders import is_placeholder, placeholder_reason

DMIDECODE = Path(__file__).resolve().parent.parent / "fixtures" / "raw" / "dmidecode"
IDENTIFIERS = ("product_serial", "product_uuid", "board_serial")

# ----------------------------------------------------------------------------- dmidecode outputs

_SYSFS_NAMES = {
    ("0", "Vendor"): "bios_vendor",
    ("0", "Version"): "bios_version",
    ("0", "Release Date"): "bios_date",
    ("1", "Manufacturer"): "sys_vendor",
    ("1", "Product Name"): "product_name",
    ("1", "Serial Number"): "product_serial",
    ("1", "UUID"): "product_uuid",
    ("2", "Serial Number"): "board_serial",
}


def read_dmidecode(text: str) -> dict[str, str | None]:
    """The /sys/class/dmi/id attributes a kernel would show for this dmidecode output (2.x and
    3.x layouts): the first structure of each type, strings as printed. dmidecode prints an
    all-0xFF UUID as "Not Present" and an all-zero one as "Not Settable"; the kernel then creates
    no product_uuid at all, hence None."""
    values: dict[str, str | None] = {}
    for block in re.split(r"\n(?=Handle 0x)", text):
        kind = re.search(r"DMI type (\d+),", block)
        if kind is None:
            continue
        for line in block.splitlines():
            field = re.match(r"\s+([A-Za-z][A-Za-z -]*?):(?: (.*))?$", line)
            if field and (kind.group(1), field.group(1)) in _SYSFS_NAMES:
                values.setdefault(_SYSFS_NAMES[kind.group(1), field.group(1)], field.group(2) or "")
    if values.get("product_uuid") in ("Not Present", "Not Settable"):
        values["product_uuid"] = None
    return {name: values.get(name) for name in DMI_FIELDS}


def fixture_dmi(name: str) -> DmiInfo:
    return parse_dmi(read_dmidecode((DMIDECODE / f"{name}.txt").read_text(errors="replace")))


# Each output's identifier values that name the machine (UUIDs as the kernel prints them, lower
# case); every other identifier field of that output is a placeholder or absent.
REAL: dict[str, dict[str, str]] = {
    "checkbox_LENOVO_SYSTEMX": {
        "product_serial": "06EEEAR",
        "product_uuid": "7b75005c-d029-11e4-9aa6-40f2e9b938a0",
        "board_serial": "51W03H",
    },
    # VirtualBox: serial "0" on system and board.
    "facter_dmi_decode_virtualbox": {"product_uuid": "784198ec-5827-476e-9e24-b0e98e8958f5"},
    # VMware: board serial "None".
    "facter_dmi_decode_vmware": {
        "product_serial": "VMware-42 1a ee 9a 8e 13 ee e5-fc ec 82 3d cd 74 76 94",
        "product_uuid": "9aee1a42-138e-e5ee-fcec-823dcd747694",
    },
    # Intel S3000AHLX: system serial "Not Specified".
    "glpi-agent_S3000AHLX": {
        "product_uuid": "d7aff990-4871-11db-a6c6-0007e994f7c3",
        "board_serial": "AZAX63801455",
    },
    # Intel S5000VSA: system serial ".........".
    "glpi-agent_S5000VSA": {
        "product_uuid": "ccf82081-7966-11db-bdb3-00151716fbac",
        "board_serial": "QSSA64700622",
    },
    "glpi-agent_dell-r640": {
        "product_serial": "2RJF153",
        "product_uuid": "4c4c4544-0052-4a10-8046-b2c04f313533",
        "board_serial": ".2RJF153.CNIVC0005G0184.",
    },
    "glpi-agent_freebsd-8.1": {
        "product_serial": "CNF01207X6",
        "product_uuid": "30464e43-3231-3730-5836-c80aa93f35fa",
        "board_serial": "CNF01207X6",
    },
    # HP's UUID is the serial in ASCII: a low-variety UUID that is real.
    "glpi-agent_hp-dl360-gen8": {
        "product_serial": "USE2236835",
        "product_uuid": "30343536-3138-5355-4532-323336383335",
    },
    # Wistron-built HP DL120 G6: "XXXXXXXXXX", an all-E UUID and board "0123456789".
    "glpi-agent_hp-proLiant-DL120-G6": {},
    "glpi-agent_lenovo-thinkpad": {
        "product_serial": "LR9NKZ7",
        "product_uuid": "725ba801-507b-11cb-95e6-c66052aac597",
        "board_serial": "1ZJJC21G0N6",
    },
    # ASUS P5Q: "System Serial Number".
    "glpi-agent_linux-1": {
        "product_uuid": "40eb001e-8c00-01ce-8e2c-00248c590a84",
        "board_serial": "MS1C93BB0H00980",
    },
    # Oracle's UUID is mostly F with the MAC at the end: real.
    "glpi-agent_oracle-server-x5-2": {
        "product_serial": "1634NM1107",
        "product_uuid": "080020ff-ffff-ffff-ffff-0010e0bccbbc",
        "board_serial": "489089M+16324B2191",
    },
    # Hyper-V: a serial of digit groups that is not a sequence.
    "glpi-agent_windows-hyperV-2019": {
        "product_serial": "3135-4298-3414-7021-8716-7514-85",
        "product_uuid": "f78a0579-5bf5-4de9-a5c7-b5ad2023449b",
        "board_serial": "3135-4298-3414-7021-8716-7514-85",
    },
    "glpi-agent_windows": {
        "product_serial": "X2735244G",
        "product_uuid": "7fb4ea00-07cb-18f3-8041-cad582735244",
        "board_serial": "$$T02XB1K9",
    },
    "netbox-agent_HP_ProLiant_m710x": {
        "product_serial": "CN66480BLA",
        "product_uuid": "cf6d6de0-a5ab-512c-bcd4-5cf40ec490c1",
        "board_serial": "CN66480ANY",
    },
    "netbox-agent_QCT_X10E-9N": {
        "product_serial": "QTFCQ57140285",
        "product_uuid": "e1a3d1c8-0809-e711-b48a-a81e84729878",
        "board_serial": "CQ571000415",
    },
    # Supermicro's UUID is zeros and the MAC: real.
    "netbox-agent_SM_SSG-6028R": {
        "product_serial": "S212101X7A18218",
        "product_uuid": "00000000-0000-0000-0000-ac1f6b05e596",
        "board_serial": "NM175S004964",
    },
    "netbox-agent_SM_SYS-6018R": {
        "product_serial": "A177950X7709591",
        "product_uuid": "00000000-0000-0000-0000-0cc47a4b18c0",
        "board_serial": "ZM152S007866",
    },
    # Online Labs (Scaleway): serial "42" everywhere, the Insyde template UUID
    # 12345678-1234-5678-90AB-CDDEEFAABBCC.
    "netbox-agent_unknown": {},
    # "SYS-1234567890", board "xxxxxxxxxxx", UUID "Not Settable".
    "parse-dmidecode_arwen.tfb.net": {},
    # Empty serials, "Unknown" vendor, UUID "Not Settable".
    "parse-dmidecode_dmidecode.admin": {},
    "parse-dmidecode_iapetus.prod.spamlab.co.uk": {
        "product_serial": "1CB9K1J",
        "product_uuid": "44454c4c-4300-1042-8039-b1c04f4b314a",
        "board_serial": "..CN1374052400ID.",
    },
    "parse-dmidecode_phoebe.prod.spamlab.co.uk": {
        "product_serial": "7DB9K1J",
        "product_uuid": "44454c4c-4400-1042-8039-b7c04f4b314a",
        "board_serial": "..CN1374052400AZ.",
    },
    # Four Supermicro P8SCT servers of one hosting company: serial "1234567890" on every one.
    "parse-dmidecode_mail1a.host-my-mail.com": {
        "product_uuid": "64837263-8462-7493-1212-003048893452"
    },
    "parse-dmidecode_mail2a.host-my-mail.com": {
        "product_uuid": "64837263-8462-7493-1212-00304889372c"
    },
    "parse-dmidecode_mail3.host-my-mail.com": {
        "product_uuid": "64837263-8462-7493-1212-00304886de0e"
    },
    "parse-dmidecode_trap20.prolocation.net": {
        "product_uuid": "64837263-8462-7493-1212-00304886e158"
    },
}
P8SCT = [name for name in REAL if "mail" in name or "trap20" in name]


def test_every_stored_dmidecode_output_has_a_verdict_and_a_source() -> None:
    stored = {path.stem for path in DMIDECODE.glob("*.txt")}
    provenance = (DMIDECODE / "PROVENANCE.md").read_text()
    assert stored == set(REAL)
    assert all(f"`{name}.txt`" in provenance for name in stored)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_serials_stay_and_fillers_are_recognised(name: str) -> None:
    dmi = fixture_dmi(name)
    raw = read_dmidecode((DMIDECODE / f"{name}.txt").read_text(errors="replace"))

    kept = {field: getattr(dmi, field) for field in IDENTIFIERS if getattr(dmi, field)}

    assert kept == REAL[name]
    for field in set(IDENTIFIERS) - set(REAL[name]):
        assert raw[field] is None or field in dmi.placeholders, field


@pytest.mark.parametrize("name", sorted(REAL))
def test_the_host_id_comes_from_the_best_real_value(name: str) -> None:
    identity = derive_identity(fixture_dmi(name), "3e6a9d0c1b2f48d7a5c4e3f2d1b0a998", ())
    real = REAL[name]

    expected = (
        "dmi-serial"
        if "product_serial" in real
        else "dmi-uuid"
        if "product_uuid" in real
        else "machine-id"
    )
    assert identity.source == expected


def test_four_servers_sharing_a_filler_serial_get_four_host_ids() -> None:
    """The P8SCT boards all say "1234567890": trusted, that serial would make them one host."""
    dmis = [fixture_dmi(name) for name in P8SCT]
    trusted = {anchor_id("dmi-serial", ("Supermicro", "P8SCT", "1234567890")) for _ in dmis}

    ids = {derive_identity(dmi, None, ()).id for dmi in dmis}

    assert len(trusted) == 1
    assert len(ids) == len(P8SCT)


# ----------------------------------------------------------------------------- known values


@pytest.mark.parametrize(
    "value",
    [
        "Default string",
        "DEFAULT STRING",
        "  default string \n",
        "To be filled by O.E.M.",
        "To Be Filled By O.E.M.",
        "System Serial Number",
        "System Product Name",
        "Not Specified",
        "Not Applicable",
        "None",
        "N/A",
        "OEM",
        "O.E.M.",
        "Chassis Serial Number",
        "Base Board Serial Number",
        "Type1ProductConfigId",
        "Default",
        "123456789",
        "0123456789",
        "1234567890",
        "00000000",
        "xxxxxxxx",
        "",
        "   ",
        "0",
        "000000000000000000",
        "FFFFFFFFFFFF",
        "XXXXXXXXXX",
        "..........",
        "----------",
        "00000000-0000-0000-0000-000000000000",
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        "03000200-0400-0500-0006-000700080009",
        "00020003-0004-0005-0006-000700080009",
    ],
)
@pytest.mark.parametrize("kind", ["text", "identifier"])
def test_vendor_placeholders_are_recognised_in_any_field(value: str, kind: str) -> None:
    assert is_placeholder(value, "text" if kind == "text" else "identifier")


# Seen in dmidecode output that users posted publicly (forums, kernel mailing lists): fillers a
# list of known strings missed.
SEEN_IN_THE_WILD = [
    "TBD by OEM",  # Loongson 3A5000 (GEIT UT6000-LB5), system serial
    "00112233-4455-6677-8899-aabbccddeeff",  # the same machine's UUID
    "Type1 - TBD by OEM",  # Insyde BayTrail tablets, system version
    "Type2 - Board Serial Number",  # the same tablets, board serial
    "Type2 - Board Asset Tag",
    "12345678-1234-5678-90AB-CDDEEFAABBCC",  # Insyde template UUID, many vendors
    "11111111-2222-3333-4444-555555555555",  # an arm64 QEMU virt machine's firmware
    "Chassis Manufacture",
    "System Name",
    "Not Settable",
    "SYS-1234567890",
    "OEM_Define3",
    "Type1Family",
]


@pytest.mark.parametrize("value", SEEN_IN_THE_WILD)
def test_fillers_seen_in_the_wild_are_recognised(value: str) -> None:
    assert is_placeholder(value, "identifier")


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("219823476", "identifier"),
        ("2102312TLR10M5000193", "identifier"),
        ("VMware-42 1a 5b 9c 3d 2e 4f 60-71 82 93 a4 b5 c6 d7 e8", "identifier"),
        ("7a3f1c2e-5b8d-11ec-9f2a-b4055d3e8c10", "identifier"),
        ("4242", "identifier"),
        ("Inspur", "text"),
        ("Standard PC (i440FX + PIIX, 1996)", "text"),
        ("System76", "text"),
        ("HuronRiver Platform", "text"),
        ("Loongson_SKU", "text"),
        ("1.1", "text"),
        ("00000001", "text"),  # a version, not an identifier
    ],
)
def test_real_dmi_values_are_not_placeholders(value: str, kind: str) -> None:
    assert placeholder_reason(value, "text" if kind == "text" else "identifier") is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("42", "too short to tell machines apart"),
        ("00000001", "a zero-padded counter"),
        ("121212", "one short unit repeated"),
        ("abcdefgh", "a counting sequence"),
        ("9876543210", "a counting sequence"),
        ("SN987654", "a digit sequence after a prefix"),
        ("X10DRH 1234567890", "a digit sequence after a prefix"),
        ("OEM-7731", "names a field or a filler"),
    ],
)
def test_identifier_sequences_say_why(value: str, reason: str) -> None:
    assert placeholder_reason(value, "identifier") == reason


# ----------------------------------------------------------------------------- generated fillers
# Truth: a value built from a template — a counting run, a field's own name, a UUID whose bytes
# count — is the same on every board the firmware ships on, so it names no machine.

_PREFIXES = ["", "SYS-", "SN", "S/N ", "Dell", "MB-", "P8SCT-", "X10DRH ", "NF5280M6-", "TaiShan "]


@given(
    start=st.integers(0, 9),
    length=st.integers(6, 24),
    down=st.booleans(),
    prefix=st.sampled_from(_PREFIXES),
)
def test_generated_digit_runs_are_placeholders(
    start: int, length: int, down: bool, prefix: str
) -> None:
    step = -1 if down else 1
    run = "".join(str((start + step * i) % 10) for i in range(length))
    assert is_placeholder(prefix + run, "identifier")


_CASES: list[Callable[[str], str]] = [str, str.upper, str.lower, str.title]


@given(
    number=st.integers(0, 4),
    owner=st.sampled_from(["Board", "System", "Chassis", "Base Board", "Product", ""]),
    field=st.sampled_from(["Serial Number", "Asset Tag", "Version", "Product Name", "SKU"]),
    case=st.sampled_from(_CASES),
    pad=st.sampled_from(["", " ", "  \t"]),
)
def test_generated_field_name_templates_are_placeholders(
    number: int, owner: str, field: str, case: Callable[[str], str], pad: str
) -> None:
    for template in (f"Type{number} - {owner} {field}", f"{owner} {field}"):
        assert is_placeholder(pad + case(template) + pad, "identifier"), template
    # Run together, the words are told apart by their capitals, as in "Type1ProductConfigId".
    together = f"Type{number}{owner}{field}".replace(" ", "")
    assert is_placeholder(pad + together + pad, "identifier"), together


@given(
    template=st.sampled_from(["TBD by OEM", "To Be Filled By O.E.M.", "Default string", "OEM"]),
    number=st.integers(0, 9),
    case=st.sampled_from(_CASES),
)
def test_generated_filler_phrases_are_placeholders(
    template: str, number: int, case: Callable[[str], str]
) -> None:
    assert is_placeholder(case(template), "identifier")
    assert is_placeholder(case(f"Type{number} - {template}"), "identifier")
    assert is_placeholder(case(f"{template} {number}"), "identifier")


@given(
    width=st.sampled_from([1, 2, 4]),
    start=st.integers(0, 2**32 - 1),
    step=st.integers(0, 2**32 - 1),
    swapped=st.booleans(),
)
def test_generated_counting_uuids_are_placeholders(
    width: int, start: int, step: int, swapped: bool
) -> None:
    modulus = 1 << (8 * width)
    words = [(start + step * i) % modulus for i in range(16 // width)]
    data = b"".join(word.to_bytes(width, "big") for word in words)
    text = str(uuid.UUID(bytes_le=data) if swapped else uuid.UUID(bytes=data))
    assert is_placeholder(text, "identifier")


@given(
    first=st.integers(0, 15),
    steps=st.lists(st.integers(0, 1), min_size=31, max_size=31),
    breaks=st.dictionaries(st.integers(0, 30), st.integers(0, 15), max_size=4),
    swapped=st.booleans(),
)
def test_generated_template_uuids_walking_their_digits_are_placeholders(
    first: int, steps: list[int], breaks: dict[int, int], swapped: bool
) -> None:
    nibbles = [first]
    for i, step in enumerate(steps):
        nibbles.append(breaks[i] if i in breaks else (nibbles[-1] + step) % 16)
    data = bytes.fromhex("".join(f"{n:x}" for n in nibbles))
    text = str(uuid.UUID(bytes_le=data) if swapped else uuid.UUID(bytes=data))
    assert is_placeholder(text, "identifier")


@given(unit=st.text("0123456789ABCDEFX", min_size=1, max_size=4), repeats=st.integers(3, 8))
def test_generated_repeated_units_are_placeholders(unit: str, repeats: int) -> None:
    assert is_placeholder(unit * repeats, "identifier")


@given(width=st.integers(6, 16), number=st.integers(0, 99))
def test_generated_zero_padded_counters_are_placeholders(width: int, number: int) -> None:
    assert is_placeholder(str(number).zfill(width), "identifier")


@given(value=st.text(), kind=st.sampled_from(["text", "identifier"]))
def test_any_string_gets_an_answer(value: str, kind: str) -> None:
    """Firmware strings are bytes the kernel passes on as they are: nothing in them may crash
    the gatherer (unicode digits, lone marks, control characters)."""
    reason = placeholder_reason(value, "text" if kind == "text" else "identifier")
    assert reason is None or isinstance(reason, str)
    assert placeholder_reason(value, "identifier") is not None or reason is None


# ----------------------------------------------------------------------------- generated real ones
# Truth: a value with tens of random bits in the layout a vendor uses names one machine. Drawn
# from a fixed seed, so the set is the same on every run; none may be taken for a filler.

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DELL = "0123456789BCDFGHJKLMNPQRSTVWXYZ"


def _dell_uuid(tag: str) -> str:
    """Dell's UUID carries its service tag: 4C4C4544 ("DELL"), then the tag's characters."""
    c = [ord(ch) for ch in tag]
    return (
        f"4c4c4544-00{c[1]:02x}-{c[2]:02x}10-80{c[3]:02x}-"
        f"{c[0] | 0x80:02x}c04f{c[4]:02x}{c[5]:02x}{c[6]:02x}"
    )


def _hp_uuid(serial: str) -> str:
    """HP's UUID spells a 16-character serial in ASCII."""
    return str(uuid.UUID(bytes=serial.encode("ascii")))


def generated_real(rng: random.Random) -> dict[str, list[str]]:
    def pick(alphabet: str, size: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(size))

    def mac() -> str:
        return f"{rng.getrandbits(24):06x}"

    n = 1500
    tags = [pick(_DELL, 7) for _ in range(n)]
    return {
        "dell service tags": tags,
        "dell uuids": [_dell_uuid(tag) for tag in tags],
        "hp serials": ["CZ" + pick(_ALNUM, 8) for _ in range(n)],
        "hp uuids": [_hp_uuid("CZJ" + pick(_ALNUM, 13)) for _ in range(n)],
        "lenovo serials": ["PF" + pick(_ALNUM, 6) for _ in range(n)],
        "supermicro serials": [
            "S" + pick("0123456789", 6) + "X" + pick(_ALNUM, 7) for _ in range(n)
        ],
        "supermicro uuids": [
            f"00000000-0000-0000-0000-{rng.choice(['ac1f6b', '0cc47a', '3cecef'])}{mac()}"
            for _ in range(n)
        ],
        "oracle uuids": [f"080020ff-ffff-ffff-ffff-0010e0{mac()}" for _ in range(n)],
        "huawei serials": ["2102" + pick("0123456789", 6) + pick(_ALNUM, 10) for _ in range(n)],
        "inspur serials": [pick("0123456789", 9) for _ in range(n)],
        "board serials": [pick(_ALNUM, 12) for _ in range(n)],
        "random uuids": [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)],
        "time uuids": [
            str(
                uuid.UUID(
                    fields=(
                        rng.getrandbits(32),
                        rng.getrandbits(16),
                        0x11EC,
                        0x80 | rng.getrandbits(6),
                        rng.getrandbits(8),
                        rng.getrandbits(48),
                    )
                )
            )
            for _ in range(n)
        ],
    }


def seeded() -> random.Random:
    return random.Random(20250611)  # noqa: S311 — a fixed sample, not a secret


def test_generated_real_identifiers_are_not_placeholders() -> None:
    families = generated_real(seeded())
    assert sum(len(values) for values in families.values()) == 19_500

    flagged = {
        family: [v for v in values if is_placeholder(v, "identifier")]
        for family, values in families.items()
    }

    assert flagged == {family: [] for family in families}


def test_generated_real_serials_give_distinct_host_ids() -> None:
    tags = generated_real(seeded())["dell service tags"]
    dmis = [
        DmiInfo("Dell Inc.", "PowerEdge R640", tag, None, None, None, None, None) for tag in tags
    ]

    ids = {derive_identity(dmi, None, ()).id for dmi in dmis}

    assert len(ids) == len(set(tags))
