"""Hypothesis strategies for text a parser reads from outside: arbitrary text and bytes, and real
captured outputs (`tests/fixtures/raw/`) damaged the ways real damage looks — cut short, a byte
flipped, a NUL or a stray character inserted, a slice dropped or doubled, a number made huge,
negative, fractional or non-ASCII, brackets nested thousands deep — and, for JSON, one value
anywhere replaced by JSON of another shape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
RAW = REPO / "tests" / "fixtures"

_NUMBER = re.compile(r"\d+")
_HUGE_NUMBERS = (
    "9" * 40,
    "9" * 5000,  # past int()'s 4300-digit limit: int() itself raises ValueError
    "18446744073709551616",
    "-1",
    "0x7fffffff",
    "1e999",
    "NaN",
    "٣",  # an Arabic-Indic digit: str.isdigit() says yes, int() accepts it
    "²",  # a superscript: str.isdigit() says yes, int() refuses it
    "1.5",
    "",
)
_STRAY = ("\x00", "\ufeff", "\r", "\n", "\t", "\\", '"', "'", "{", "}", "[", "]", "<", ">", "=",
          ":", ",", "#", "&", "%", "\u2028", "\ufffd", "é", "中")  # fmt: skip


def fixture_texts(*patterns: str) -> list[str]:
    """The texts of the fixture files matching `patterns` (globs under tests/fixtures/)."""
    found = sorted({p for pattern in patterns for p in RAW.glob(pattern) if p.is_file()})
    assert found, f"no fixture matches {patterns}"
    return [p.read_text(encoding="utf-8", errors="surrogateescape") for p in found]


def _deep(depth: int, kind: str) -> str:
    opener, closer = {"json": ("[", "]"), "object": ('{"a":', "}"), "xml": ("<a>", "</a>")}[kind]
    return opener * depth + closer * depth


_KINDS = ("cut", "stray", "text", "drop", "double", "nest", "flip", "number", "move")


@st.composite
def damaged(draw: st.DrawFn, seed: str) -> str:
    """`seed` with one to three kinds of damage. Each is a handful of draws, whatever the size
    of the text: hypothesis spends its time calling the parser, not building inputs."""
    text = seed
    for _ in range(draw(st.integers(1, 3))):
        text = _damage(draw, text, draw(st.sampled_from(_KINDS)))
    return text


def _damage(draw: st.DrawFn, text: str, kind: str) -> str:  # noqa: PLR0911 — one return per kind
    at = draw(st.integers(0, len(text)))
    if kind == "cut":
        return text[:at]
    if kind == "stray":
        return text[:at] + draw(st.sampled_from(_STRAY)) + text[at:]
    if kind == "text":
        return text[:at] + draw(st.text(max_size=8)) + text[at:]
    if kind == "drop":
        return text[:at] + text[at + draw(st.integers(1, 64)) :]
    if kind == "double":
        return text[:at] + text[at : at + draw(st.integers(1, 200))] + text[at:]
    if kind == "nest":
        nested = _deep(draw(st.integers(1, 3000)), draw(st.sampled_from(["json", "object", "xml"])))
        return text[:at] + nested + text[at:]
    if kind == "flip" and text:
        at = min(at, len(text) - 1)
        return text[:at] + draw(st.characters()) + text[at + 1 :]
    if kind == "number":
        # The first number from `at` on: any number, found without listing them all.
        found = _NUMBER.search(text, at) or _NUMBER.search(text)
        if found:
            number = draw(st.sampled_from(_HUGE_NUMBERS))
            return text[: found.start()] + number + text[found.end() :]
    if kind == "move":  # a line moved elsewhere: a section's body before its heading, say
        lines = text.splitlines(keepends=True)
        if len(lines) > 1:
            line = lines.pop(draw(st.integers(0, len(lines) - 1)))
            lines.insert(draw(st.integers(0, len(lines))), line)
            return "".join(lines)
    return text[:at]


def damaged_fixtures(seeds: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(seeds).flatmap(damaged)


# --------------------------------------------------------------------------- JSON

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**80)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", "0", "-1", "dynamic", "crypt", "luks2", "aes-xts-plain64", "tcp"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def reshaped(draw: st.DrawFn, document: Any) -> str:
    """`document` (parsed JSON) with one to three values anywhere replaced by other JSON, or
    removed, serialised again. Each value is reached by a random walk from the top (a few draws,
    however large the document). Non-finite floats come out as NaN/Infinity, which Python's
    json reads and strict parsers refuse."""
    doc = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        parent: Any = None
        key: Any = None
        node = doc
        while isinstance(node, dict | list) and node and draw(st.integers(0, 4)):
            keys = list(node) if isinstance(node, dict) else range(len(node))
            parent, key = node, draw(st.sampled_from(keys))
            node = node[key]
        if parent is None:
            doc = draw(json_values)
        elif isinstance(parent, dict) and draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(json_values)
    return json.dumps(doc)


def reshaped_fixtures(seeds: list[str]) -> st.SearchStrategy[str]:
    """JSON fixtures with values of other shapes; seeds that are not JSON are left out."""
    documents = []
    for seed in seeds:
        try:
            documents.append(json.loads(seed))
        except ValueError:
            continue
    assert documents, "no JSON seed"
    return st.sampled_from(documents).flatmap(reshaped)


def outside_text(seeds: list[str], *, is_json: bool = False) -> st.SearchStrategy[str]:
    """What a parser of `seeds`' kind may be handed: the seeds as they are, damaged, reshaped
    (JSON), or arbitrary text."""
    options = [st.sampled_from(seeds), damaged_fixtures(seeds), st.text(max_size=400)]
    if is_json:
        options.append(reshaped_fixtures(seeds))
        options.append(reshaped_fixtures(seeds))  # twice: the shape errors are the rich seam
    return st.one_of(options)
