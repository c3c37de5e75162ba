"""Runs the gatherers the selected checks need — each once — and assembles `HostFacts`.

This is the gatherers' runner boundary: a gatherer that raises costs only its own fact, which
becomes `Unavailable` naming the exception, and every check that needs it reports `error`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from agent.config import AgentConfig
from checks.facts import HostFacts
from checks.model import Unavailable
from inventory.runner import Runner

Gatherer = Callable[[Runner, AgentConfig], Any]


def _hardware(runner: Runner, config: AgentConfig) -> Any:
    from inventory.host.hardware import collect_hardware

    return collect_hardware(runner)


def _tpm(runner: Runner, config: AgentConfig) -> Any:
    from inventory.host.tpm import collect_tpm

    return collect_tpm(runner, config.tpm.tcti)


# Fact name (a HostFacts field, the `needs=` of checks) → its gatherer.
GATHERERS: dict[str, Gatherer] = {
    "hardware": _hardware,
    "tpm": _tpm,
}


def gather(runner: Runner, config: AgentConfig, needs: Iterable[str]) -> HostFacts:
    """Gather the hardware inventory (always: it names the host) and every needed fact."""
    facts = HostFacts()
    for name in ["hardware", *sorted(set(needs) - {"hardware"})]:
        gatherer = GATHERERS.get(name)
        if gatherer is None:
            setattr(facts, name, Unavailable(f"no gatherer for fact {name!r}"))
            continue
        try:
            value = gatherer(runner, config)
        except Exception as exc:  # gatherer boundary: a bug costs one fact only
            value = Unavailable(f"gatherer failed: {type(exc).__name__}: {exc}")
        setattr(facts, name, value)
    return facts
