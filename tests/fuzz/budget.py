"""The fuzz folder's time bounds: the `medsec-fuzz` hypothesis profile (examples per property,
no per-example deadline: a loaded CI machine stalls now and then) and a wall-clock budget for the
folder, shared out between the properties as they run, so the folder stays well under a minute
on two busy cores however slow the machine is. A property past its share stops calling the
parser; its remaining examples are counted and the summary says so (skipped, not failed: on an
idle machine every property runs all its examples within the budget). `MEDSEC_FUZZ_EXAMPLES`
and `MEDSEC_FUZZ_SECONDS` raise both for a long hunt
(`MEDSEC_FUZZ_EXAMPLES=20000 MEDSEC_FUZZ_SECONDS=3600 pytest tests/fuzz`).
"""

from __future__ import annotations

import os
import time
from collections import Counter

from hypothesis import HealthCheck, event, settings

EXAMPLES = int(os.environ.get("MEDSEC_FUZZ_EXAMPLES", "200"))
SECONDS = float(os.environ.get("MEDSEC_FUZZ_SECONDS", "30"))

settings.register_profile(
    "medsec-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the checkout: crashes found are kept as @example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("medsec-fuzz")
"""For the parsers the issue names: the full number of examples."""
FUZZ_LIGHT = settings(FUZZ, max_examples=max(EXAMPLES // 4, 10))
"""For the other parsers of outside text: a quarter."""


class Budget:
    """A deadline for the folder, shared out as it goes: a property starting gets an equal part
    of the time left among those still to run, so time a quick one leaves over goes to the
    slower ones after it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.remaining = 0
        self.folder_started: float | None = None
        self.shares: dict[str, tuple[float, float]] = {}
        """test id → (when it started, its share in seconds)"""
        self.skipped: Counter[str] = Counter()

    def collected(self, properties: int) -> None:
        self.remaining = properties

    def starting(self) -> None:
        """A test of the folder starts (its examples, if any, are drawn next)."""
        now = time.monotonic()
        if self.folder_started is None:
            self.folder_started = now
        self.remaining = max(self.remaining - 1, 0)

    def spent(self) -> bool:
        """True once the running property has used its share (it then skips the example)."""
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
        now = time.monotonic()
        if test not in self.shares:
            left = self.seconds - (now - (self.folder_started or now))
            self.shares[test] = (now, max(left, 0.0) / (self.remaining + 1))
        started, share = self.shares[test]
        if now - started <= share:
            return False
        self.skipped[test] += 1
        event("time budget spent: example skipped")
        return True


BUDGET = Budget(SECONDS)
