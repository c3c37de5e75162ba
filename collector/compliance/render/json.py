"""The JSON report (`medsec.compliance/v1`): the contract other tools read. Both messages of each
result are kept (`message`, `message_zh`), so the JSON is the same in either language."""

from __future__ import annotations

import msgspec

from collector.compliance.model import Compliance


def render_json(compliance: Compliance, lang: str = "zh") -> bytes:
    return msgspec.json.encode(compliance) + b"\n"
