"""The JSON report (`medsec.compliance/v1`): the contract other tools read. Both messages of each
result are kept (`message`, `message_zh`), so the JSON is the same in either language.

At 10,000 hosts the document is hundreds of megabytes; `write_json` streams it clause by clause
to a file, so only one clause's encoding is held at a time."""

from __future__ import annotations

from typing import BinaryIO

import msgspec

from collector.compliance.model import Compliance

_CLAUSES = b'"clauses":[]'


def render_json(compliance: Compliance, lang: str = "zh") -> bytes:
    return msgspec.json.encode(compliance) + b"\n"


def write_json(compliance: Compliance, out: BinaryIO) -> None:
    """The same bytes as `render_json`, written a clause at a time. The document is encoded
    without its clauses, and they are written where the empty list stood: a key is never
    escaped, and a string value holding those characters would hold `\\"`, so the sequence
    occurs once."""
    encoder = msgspec.json.Encoder()
    frame = encoder.encode(msgspec.structs.replace(compliance, clauses=[]))
    head, found, tail = frame.partition(_CLAUSES)
    if not found:  # the model changed shape: never write a document without its clauses
        raise RuntimeError("the compliance document has no clauses field")
    out.write(head + b'"clauses":[')
    buffer = bytearray()
    for index, clause in enumerate(compliance.clauses):
        buffer.clear()
        if index:
            buffer += b","
        encoder.encode_into(clause, buffer, -1)
        out.write(buffer)
    out.write(b"]" + tail + b"\n")
