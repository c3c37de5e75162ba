"""The gatherers' boundary: one broken gatherer costs one fact, never the run."""

from __future__ import annotations

from agent.config import parse_config
from agent.gather import gather
from checks.facts import HardwareFacts
from checks.model import Unavailable
from checks.registry import builtin_registry
from inventory.runner import LocalRunner


class ExplodingRunner(LocalRunner):
    """The real local runner, except that reading the kernel's hostname blows up unexpectedly."""

    def read_bytes(self, path: str) -> bytes:
        if path == "/proc/sys/kernel/hostname":
            raise RuntimeError("simulated driver bug")
        return super().read_bytes(path)


def config():
    return parse_config({}, "test.yaml", builtin_registry())


def test_a_raising_gatherer_costs_only_its_fact():
    facts = gather(ExplodingRunner(), config(), ["hardware", "crypto"])
    assert isinstance(facts.hardware, Unavailable)
    assert "RuntimeError: simulated driver bug" in facts.hardware.reason
    assert not isinstance(facts.crypto, Unavailable)  # the next gatherer still ran


def test_only_needed_facts_are_gathered():
    facts = gather(LocalRunner(), config(), ["crypto"])
    assert isinstance(facts.hardware, HardwareFacts)  # always: it names the host
    assert facts.tpm is None
    assert facts.disk is None
    assert facts.crypto is not None


def test_unknown_fact_is_unavailable_not_a_crash():
    facts = gather(LocalRunner(), config(), ["telepathy"])
    assert facts.telepathy == Unavailable("no gatherer for fact 'telepathy'")  # type: ignore[attr-defined]
