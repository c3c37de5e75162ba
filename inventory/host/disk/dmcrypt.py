"""Headerless dm-crypt mappings (plain, TrueCrypt, BitLocker, ...): the cipher of every crypt target
of each open mapping from one `dmsetup table --target crypt`, and the ranges no crypt target
covers.

A dm-crypt table line carries the volume key. `parse_dmsetup_crypt_table` keeps only the cipher
name and the key's length and never puts the line (or any part of the key) in an error message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from checks.facts.disk import Cipher, DataSegment
from checks.model import Unavailable
from inventory.host.disk.ciphers import make_cipher
from inventory.runner import AccessDenied, CommandFailed, CommandTimeout, Runner, ToolMissing

DMSETUP_TIMEOUT_S = 5.0
_DENIED = ("ermission denied", "access denied", "Operation not permitted", "must be run as root")


def key_field_bits(key: str) -> int:
    """Length in bits of a dm-crypt table key field: hex digits × 4 (dmsetup prints zeros in
    place of the key unless --showkeys), `:<bytes>:<type>:<description>` for a kernel keyring
    key, or `-` for no key. Raises ValueError without quoting the field."""
    if key == "-":
        return 0
    if key.startswith(":"):
        size = key.split(":")[1]
        if size.isdigit():
            return int(size) * 8
        raise ValueError("keyring reference without a key size")
    if re.fullmatch(r"[0-9a-fA-F]+", key):
        return len(key) * 4
    raise ValueError("key field is neither hex nor a keyring reference")


@dataclass(frozen=True)
class CryptTarget:
    """One crypt target of a dm table: a byte range of the mapping and its cipher."""

    start: int
    """Bytes from the start of the mapping (the table's start sector × 512)."""
    length: int
    """Bytes (the table's length in sectors × 512)."""
    cipher: Cipher


def parse_dmsetup_crypt_targets(text: str) -> dict[str, tuple[CryptTarget, ...]]:
    """`dmsetup table --target crypt`: mapping name → every crypt target, in table order. Each
    line is `<name>: <start> <length> crypt <cipher> <key> <iv_offset> <device> <offset>
    [<#opt> <opt>…]`; the key is reduced to its length on the spot and never kept."""
    targets: dict[str, list[CryptTarget]] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(": ")
        fields = rest.split()
        if not sep or len(fields) < 7 or fields[2] != "crypt":
            continue  # "No devices found", or a line that is not a crypt target
        if not fields[0].isdigit() or not fields[1].isdigit():
            raise ValueError(f"dm-crypt table of {name}: start or length is not a number")
        spec = fields[3]
        try:
            key_bits = key_field_bits(fields[4])
        except ValueError as exc:
            raise ValueError(f"dm-crypt table of {name}: {exc}") from None
        integrity = None
        for option in fields[8:]:
            if option.startswith("integrity:"):  # integrity:<tag bytes>:<aead|hmac(sha256)>
                integrity = option.split(":", 2)[-1]
        targets.setdefault(name.strip(), []).append(
            CryptTarget(
                start=int(fields[0]) * 512,
                length=int(fields[1]) * 512,
                cipher=make_cipher(spec, key_bits, integrity),
            )
        )
    return {name: tuple(found) for name, found in targets.items()}


def parse_dmsetup_crypt_table(text: str) -> dict[str, Cipher]:
    """`dmsetup table --target crypt`: mapping name → the cipher of its first crypt target."""
    return {name: found[0].cipher for name, found in parse_dmsetup_crypt_targets(text).items()}


def mapping_segments(
    targets: Sequence[CryptTarget], size_bytes: int | None
) -> tuple[DataSegment, ...]:
    """The byte ranges of a headerless mapping: each crypt target, and each range between or
    after them that no crypt target covers (another target type holds it: linear would keep its
    data in clear), which cannot be judged."""
    segments: list[DataSegment] = []
    position = 0

    def uncovered(start: int, end: int) -> None:
        segments.append(
            DataSegment(
                id=f"gap {len(segments)}",
                offset=start,
                length=end - start,
                cipher=Unavailable(
                    f"bytes {start}–{end - 1} of the mapping are not a crypt target (dmsetup "
                    "table --target crypt lists none there): they may hold data in clear"
                ),
            )
        )

    for index, target in enumerate(sorted(targets, key=lambda t: t.start)):
        if target.start > position:
            uncovered(position, target.start)
        segments.append(DataSegment(str(index), target.start, target.length, target.cipher))
        position = max(position, target.start + target.length)
    if size_bytes is not None and size_bytes > position:
        uncovered(position, size_bytes)
    return tuple(segments)


def read_dm_crypt_tables(runner: Runner) -> dict[str, tuple[CryptTarget, ...]] | Unavailable:
    dmsetup = runner.which("dmsetup")
    if dmsetup is None:
        return Unavailable("dmsetup is not installed")
    try:
        result = runner.run([dmsetup, "table", "--target", "crypt"], timeout=DMSETUP_TIMEOUT_S)
        return parse_dmsetup_crypt_targets(result.stdout)
    except CommandFailed as exc:
        detail = exc.stderr
        if any(word in detail for word in _DENIED):
            return Unavailable("dmsetup table: permission denied (the agent must run as root)")
        return Unavailable(f"dmsetup table: {exc}")
    except (CommandTimeout, AccessDenied, ToolMissing, ValueError) as exc:
        return Unavailable(f"dmsetup table: {exc}")
