"""JSON printed by a host's tools (lsblk, cryptsetup, nvme, nft, ip, restic, borg, psql,
journalctl), read so that any damage is a `ValueError` — what every gatherer turns into
`Unavailable(reason)`. Python's json raises `RecursionError`, not `ValueError`, for nesting
deeper than the interpreter's recursion limit.
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str) -> Any:
    """`json.loads`, raising ValueError (json.JSONDecodeError is one) for any unreadable text."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def raw_decode(text: str, index: int) -> tuple[Any, int]:
    """`json.JSONDecoder().raw_decode`: the JSON value at `index` and where it ends."""
    try:
        return json.JSONDecoder().raw_decode(text, index)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
