"""Headerless dm-crypt mappings (plain, TrueCrypt, BitLocker, ...): the cipher of each open crypt
target from one `dmsetup table --target crypt`.

A dm-crypt table line carries the volume key. `parse_dmsetup_crypt_table` keeps only the cipher
name and the key's length and never puts the line (or any part of the key) in an error message.
"""

from __future__ import annotations

import re

from checks.facts.disk import Cipher
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


def parse_dmsetup_crypt_table(text: str) -> dict[str, Cipher]:
    """`dmsetup table --target crypt`: mapping name → cipher and key size of its first crypt
    target. Each line is `<name>: <start> <length> crypt <cipher> <key> <iv_offset> <device>
    <offset> [<#opt> <opt>…]`; the key is reduced to its length on the spot and never kept."""
    ciphers: dict[str, Cipher] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(": ")
        fields = rest.split()
        if not sep or len(fields) < 7 or fields[2] != "crypt":
            continue  # "No devices found", or a line that is not a crypt target
        spec = fields[3]
        try:
            key_bits = key_field_bits(fields[4])
        except ValueError as exc:
            raise ValueError(f"dm-crypt table of {name}: {exc}") from None
        integrity = None
        for option in fields[8:]:
            if option.startswith("integrity:"):  # integrity:<tag bytes>:<aead|hmac(sha256)>
                integrity = option.split(":", 2)[-1]
        ciphers.setdefault(name.strip(), make_cipher(spec, key_bits, integrity))
    return ciphers


def read_dm_crypt_tables(runner: Runner) -> dict[str, Cipher] | Unavailable:
    dmsetup = runner.which("dmsetup")
    if dmsetup is None:
        return Unavailable("dmsetup is not installed")
    try:
        result = runner.run([dmsetup, "table", "--target", "crypt"], timeout=DMSETUP_TIMEOUT_S)
        return parse_dmsetup_crypt_table(result.stdout)
    except CommandFailed as exc:
        detail = exc.stderr
        if any(word in detail for word in _DENIED):
            return Unavailable("dmsetup table: permission denied (the agent must run as root)")
        return Unavailable(f"dmsetup table: {exc}")
    except (CommandTimeout, AccessDenied, ToolMissing, ValueError) as exc:
        return Unavailable(f"dmsetup table: {exc}")
