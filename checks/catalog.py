"""Clause catalogs: one YAML per standard and edition, joined with results at render time.

A catalog lists every clause of its scope — the ones no check covers too (`checks: []`,
`assessment: manual`) — so a report can say "manual" instead of staying silent. Check code never
names a clause; the mapping lives here. Catalogs are validated with msgspec: the agent loads them
on every run and must stay light.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec
import yaml

from checks.registry import CHECK_ID

BUILTIN_CATALOGS = ("gbt22239-2019-l3.yaml", "mnds.yaml")

# libyaml's parser where the system has it: the pure-Python one costs ~100 ms per run.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CatalogError(ValueError):
    """A catalog file is malformed."""


class Standard(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    """Prefix of clause ids in reports, e.g. 'GB/T 22239-2019' or 'MNDS'."""
    title_zh: str
    title_en: str
    edition: str
    scope: str
    source: str
    """Where the clause texts were taken from."""


class Clause(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    """Clause id verbatim, e.g. '8.1.4.9 b'."""
    family: str
    """The control family or chapter the clause sits in."""
    control: str
    """The control point or section title."""
    text_zh: str
    title_en: str
    provenance: Literal["V", "C", "C1", "U", "given"]
    assessment: Literal["automated", "manual"]
    obligation: Literal["shall", "may"] = "shall"
    checks: tuple[str, ...] = ()
    note: str | None = None

    def __post_init__(self) -> None:
        for cid in self.checks:
            if not CHECK_ID.match(cid):
                raise ValueError(f"{cid!r} is not a check id")


class Catalog(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    standard: Standard
    clauses: tuple[Clause, ...]

    def qualified(self, clause: Clause) -> str:
        return f"{self.standard.id} {clause.id}"

    def clauses_for(self, check_id: str) -> list[Clause]:
        return [c for c in self.clauses if check_id in c.checks]


def load_catalog(path: Path) -> Catalog:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 — safe loader
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot read catalog: {exc}") from exc
    try:
        catalog = msgspec.convert(data, Catalog)
    except msgspec.ValidationError as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    seen: set[str] = set()
    for clause in catalog.clauses:
        if clause.id in seen:
            raise CatalogError(f"{path}: clause {clause.id!r} is listed twice")
        seen.add(clause.id)
        if clause.assessment == "automated" and not clause.checks:
            raise CatalogError(f"{path}: clause {clause.id!r} is automated but names no check")
    return catalog


class Catalogs:
    """The catalogs a report is joined with; answers "which clauses does this check evidence"."""

    def __init__(self, catalogs: Iterable[Catalog]) -> None:
        self._catalogs = tuple(catalogs)
        self._index: dict[str, list[str]] = {}
        for cat in self._catalogs:
            for clause in cat.clauses:
                for cid in clause.checks:
                    self._index.setdefault(cid, []).append(cat.qualified(clause))

    def __iter__(self) -> Iterator[Catalog]:
        return iter(self._catalogs)

    def clause_ids(self, check_id: str) -> list[str]:
        return list(self._index.get(check_id, ()))

    def editions(self) -> list[dict[str, str]]:
        """Which catalogs a report was joined with: each standard's edition and a digest of the
        catalog's content, so a corrected mapping of the same edition is told apart."""
        return [dict(edition) for edition in self._editions]

    @functools.cached_property
    def _editions(self) -> tuple[dict[str, str], ...]:
        # Digested once: every report built or rendered with these catalogs names them.
        return tuple(
            {
                "standard": cat.standard.id,
                "edition": cat.standard.edition,
                "sha256": hashlib.sha256(msgspec.json.encode(cat)).hexdigest(),
            }
            for cat in self._catalogs
        )

    def mapped_check_ids(self) -> set[str]:
        return set(self._index)


def builtin_catalogs() -> Catalogs:
    base = resources.files("checks") / "standards"
    loaded = []
    for name in BUILTIN_CATALOGS:
        with resources.as_file(base / name) as path:
            loaded.append(load_catalog(path))
    return Catalogs(loaded)
