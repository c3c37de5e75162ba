"""The check registry: `@check` turns a pure function into a described `Check`.

The decorator only attaches metadata; it registers nothing globally. A `Registry` is built
explicitly from the modules that define checks (`builtin_registry()`), so tests and sites can
assemble their own without leaking state between each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from checks.model import Outcome, Severity

CHECK_ID = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")

CheckFunc = Callable[..., Iterable[Outcome]]
# Returns None when the check applies, else the reason it does not.
Applicability = Callable[[Any], str | None]


class RegistryError(ValueError):
    """A check was declared or looked up wrongly (programming error, or a bad id in config)."""


@dataclass(frozen=True)
class Check:
    """A check: its stable id, bilingual title, severity, the facts it needs and its parameters."""

    id: str
    title_en: str
    title_zh: str
    severity: Severity
    func: CheckFunc
    needs: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    applies_to: Applicability | None = None
    aliases: tuple[str, ...] = ()

    def __call__(self, facts: Any, **params: Any) -> Iterable[Outcome]:
        return self.func(facts, **params)


def check(
    check_id: str,
    *,
    title_en: str,
    title_zh: str,
    severity: Severity,
    needs: tuple[str, ...] = (),
    params: Mapping[str, Any] | None = None,
    applies_to: Applicability | None = None,
    aliases: tuple[str, ...] = (),
) -> Callable[[CheckFunc], Check]:
    """Declare a check. The id is `<domain>.<subject>` in lower snake case and never changes."""
    if not CHECK_ID.match(check_id):
        raise RegistryError(f"check id {check_id!r} is not <domain>.<subject> in lower snake case")

    def wrap(func: CheckFunc) -> Check:
        return Check(
            id=check_id,
            title_en=title_en,
            title_zh=title_zh,
            severity=severity,
            func=func,
            needs=needs,
            params=dict(params or {}),
            applies_to=applies_to,
            aliases=aliases,
        )

    return wrap


class Registry:
    """An immutable set of checks, looked up by id or alias."""

    def __init__(self, checks: Iterable[Check]) -> None:
        self._by_id: dict[str, Check] = {}
        self._aliases: dict[str, str] = {}
        for c in checks:
            if c.id in self._by_id or c.id in self._aliases:
                raise RegistryError(f"check id {c.id!r} is declared twice")
            self._by_id[c.id] = c
            for alias in c.aliases:
                self._aliases[alias] = c.id

    @classmethod
    def from_modules(cls, modules: Iterable[ModuleType]) -> Registry:
        found: list[Check] = []
        for module in modules:
            found.extend(v for v in vars(module).values() if isinstance(v, Check))
        return cls(found)

    def __iter__(self) -> Iterator[Check]:
        return iter(sorted(self._by_id.values(), key=lambda c: c.id))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._by_id or check_id in self._aliases

    def get(self, check_id: str) -> Check:
        resolved = self._aliases.get(check_id, check_id)
        try:
            return self._by_id[resolved]
        except KeyError:
            raise RegistryError(f"unknown check id {check_id!r}") from None

    def ids(self) -> list[str]:
        return sorted(self._by_id)

    def needs(self, check_ids: Iterable[str] | None = None) -> set[str]:
        """The facts the selected checks need, so the agent gathers only those."""
        chosen = self if check_ids is None else (self.get(i) for i in check_ids)
        return {n for c in chosen for n in c.needs}


def builtin_registry() -> Registry:
    """Every check medsec ships. Imported lazily so `import checks` stays free of work."""
    from checks.host import backup, boot, crypto, disk, firewall, logs, tpm, wipe

    return Registry.from_modules([backup, boot, crypto, disk, firewall, logs, tpm, wipe])
