"""The check registry: `@check` turns a pure function into a described `Check`.

The decorator only attaches metadata; it registers nothing globally. A `Registry` is built by
walking a package (`discover("checks.host")`): every `Check` defined in any of its modules is
found, so a new check module cannot be forgotten by a hand-kept list. Tests and sites can still
assemble their own registries without leaking state between each other.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from checks.model import Msg, Outcome, Severity

CHECK_ID = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")

CheckFunc = Callable[..., Iterable[Outcome]]
# Returns None when the check applies, else the reason it does not (a `Msg` in both languages).
Applicability = Callable[[Any], "Msg | str | None"]


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
    shares: Mapping[str, str] = field(default_factory=dict)
    """Parameters this check takes from another: {parameter: owning check id}. A site sets such
    a threshold once, on the owner, and both checks judge by it."""

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
    shares: Mapping[str, str] | None = None,
) -> Callable[[CheckFunc], Check]:
    """Declare a check. The id is `<domain>.<subject>` in lower snake case and never changes."""
    if not CHECK_ID.match(check_id):
        raise RegistryError(f"check id {check_id!r} is not <domain>.<subject> in lower snake case")
    for need in needs:
        if not all(part.isidentifier() for part in need.split(".")):
            raise RegistryError(f"check {check_id}: need {need!r} is not a (dotted) fact name")

    def wrap(func: CheckFunc) -> Check:
        _match_signature(check_id, func, params or {})
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
            shares=dict(shares or {}),
        )

    for name in shares or {}:
        if name not in (params or {}):
            raise RegistryError(f"check {check_id}: shared parameter {name!r} is not in params=")
    return wrap


def _match_signature(check_id: str, func: CheckFunc, params: Mapping[str, Any]) -> None:
    """A declared parameter the function does not take, or a parameter the function needs that is
    not declared, would only fail when the check first runs at a site; refuse it at declaration."""
    signature = inspect.signature(func)
    taken = list(signature.parameters.values())[1:]  # the first is the facts
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in taken):
        return
    names = {p.name for p in taken}
    unknown = sorted(set(params) - names)
    if unknown:
        raise RegistryError(
            f"check {check_id}: {func.__name__}() takes no parameter {unknown[0]!r}"
        )
    undeclared = sorted(
        p.name for p in taken if p.default is inspect.Parameter.empty and p.name not in params
    )
    if undeclared:
        raise RegistryError(
            f"check {check_id}: parameter {undeclared[0]!r} of {func.__name__}() is not declared "
            "in params="
        )


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
            # A check imported into another module is counted where it is defined, once.
            found.extend(
                v
                for v in vars(module).values()
                if isinstance(v, Check) and v.func.__module__ == module.__name__
            )
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
        return {n.split(".")[0] for c in chosen for n in c.needs}


def discover(package: str) -> Registry:
    """Every check defined in any module of `package` (walked recursively)."""
    root = importlib.import_module(package)
    modules = [root]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        modules.append(importlib.import_module(info.name))
    return Registry.from_modules(modules)


def builtin_registry() -> Registry:
    """Every host check medsec ships (the agent's). Found lazily so `import checks` stays light."""
    return discover("checks.host")
