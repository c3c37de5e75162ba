"""How values are made fit for both databases alike: aware UTC times, text without U+0000 (which
PostgreSQL cannot hold), and page bounds both accept."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MAX_ROWS = 2**62


def utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must not be negative (got {limit}, {offset})")


def bounded(n: int) -> int:
    """A LIMIT or OFFSET both databases accept (a BIGINT); no table comes near it."""
    return min(n, MAX_ROWS)


def strip_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold U+0000; replace it (SQLite gets the same data)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    return value


def safe_text(value: str) -> str:
    """`strip_nul` for one string, cheap when it holds no U+0000 (nearly always)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def storable(*values: str | None) -> bool:
    """No U+0000 in any value: PostgreSQL refuses it even in a WHERE clause. Such a key cannot
    name anything stored, so lookups answer "not found" on both backends instead of failing."""
    return not any(value is not None and "\x00" in value for value in values)


def refuse_nul(what: str, value: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")


_MAX_SITE = 200
_MAX_ADDRESSES = 256


def host_place(inventory: Any) -> tuple[str | None, list[str]]:
    """Where a report's inventory says its host stands: the agent's `site`, and the addresses of
    its interfaces without prefix length (`hardware.nics[].addresses`); what is malformed or
    missing is left out. Stored on the host row, so compliance filters need no inventory read."""
    if not isinstance(inventory, dict):
        return None, []
    site = inventory.get("site")
    site = safe_text(site)[:_MAX_SITE] if isinstance(site, str) and site else None
    hardware = inventory.get("hardware")
    nics = hardware.get("nics") if isinstance(hardware, dict) else None
    found: list[str] = []
    for nic in nics if isinstance(nics, list) else ():
        listed = nic.get("addresses") if isinstance(nic, dict) else None
        for text in listed if isinstance(listed, list) else ():
            if isinstance(text, str) and text and len(found) < _MAX_ADDRESSES:
                address = safe_text(text.split("/", 1)[0])
                if address not in found:
                    found.append(address)
    return site, found
