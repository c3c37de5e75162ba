"""journald retention against the real tools: systemd's own reading of time spans
(`systemd-analyze timespan`), real journal files of known age (systemd-journal-remote) read by
journalctl, and journalctl's own size vacuum deleting old entries whatever MaxRetentionSec says.

The truth rule, stated here and computed without medsec: a journal keeps the required 183 days
only if journald writes it to disk (Storage=persistent, or auto with /var/log/journal present),
its oldest entry — as this test wrote it — is at least 183 days old, and MaxRetentionSec, as
systemd reads it, is unset, unreadable (journald ignores it) or at least 183 days. Nothing else
in the configuration can make it pass: MaxRetentionSec is a ceiling, and the size limits
(SystemMaxUse and its defaults) delete regardless.
"""

from __future__ import annotations

import functools
import itertools
import math
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from checks.facts import HostFacts
from checks.host.logs import log_retention
from checks.model import Status
from checks.runner import run_check
from inventory.host.logs import collect_logs, parse_timespan
from tests.inventory.log_trees import TreeRunner, journal_remote, need_journalctl, write_journal

MINIMUM_DAYS = 183
MACHINE = "0123456789abcdef0123456789abcdef"

_NUMBERS = ["1", "6", "183", "1.5", "0.5", "3600", "0", "-5", "1e3", ".5"]
_UNITS = [
    "",
    "s",
    "sec",
    "seconds",
    "m",
    "min",
    "minutes",
    "h",
    "hr",
    "hours",
    "d",
    "day",
    "days",
    "w",
    "week",
    "weeks",
    "M",
    "month",
    "months",
    "y",
    "year",
    "years",
    "Y",
    "mo",
    "yr",
    "ms",
    "us",
    "µs",
    "fortnight",
    "D",
]
_FORMS = ["{n}{u}", "{n} {u}", " {n}{u} ", "{n}{u} 2w", "{n}{u}2d", "{n}{u}  3h"]


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return path


@functools.cache
def systemd_seconds(span: str) -> float | None:
    """The span in seconds as systemd itself reads it; None: systemd refuses it."""
    done = subprocess.run(
        [_systemd_analyze(), "timespan", span],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        return None
    for line in done.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        if key in {"μs", "µs"}:
            # USEC_INFINITY, the most a 64-bit count of microseconds holds
            return math.inf if int(value) == 2**64 - 1 else int(value) / 1e6
    raise AssertionError(f"systemd-analyze printed no μs line:\n{done.stdout}")


def _ours(span: str) -> float | None:
    try:
        return parse_timespan(span)
    except ValueError:
        return None


def test_time_spans_read_as_systemd_reads_them() -> None:
    spans = sorted(
        {f"1{u}" for u in _UNITS}
        | {f"1.5 {u}" for u in _UNITS}
        | {f.format(n=n, u=u) for n, u, f in itertools.product(_NUMBERS, ["d", "y"], _FORMS[:3])}
        | {f.format(n="6", u="month") for f in _FORMS}
        | {"", " ", "infinity", "1y 2w 3d 4h 5min 6s", "1 year", "5.d", "1,5d"}
    )
    disagreements = []
    for span in spans:
        truth, ours = systemd_seconds(span), _ours(span)
        same = truth == ours or (
            truth is not None and ours is not None and abs(truth - ours) < 1e-6 * max(1, truth)
        )
        if not same:
            disagreements.append((span, truth, ours))
    assert disagreements == [], disagreements
    assert len(spans) > 120


# ---------------------------------------------------------------------- journals of known age


def _tree(root: Path, age_days: int | None, now: datetime) -> Path:
    """A host tree whose journal's oldest entry is `age_days` old (None: an empty journal)."""
    machine = root / "var/log/journal" / MACHINE
    machine.mkdir(parents=True)
    if age_days is not None:
        write_journal(
            machine / "system.journal",
            [(now - timedelta(days=age_days), "oldest"), (now - timedelta(hours=1), "newest")],
        )
    (root / "etc/systemd/journald.conf.d").mkdir(parents=True)
    return root


def _configure(tree: Path, storage: str | None, retention: str | None, max_use: str | None) -> None:
    main = "[Journal]\n#Storage=auto\n#ForwardToSyslog=yes\n"
    if storage is not None:
        main += f"Storage={storage}\n"
    (tree / "etc/systemd/journald.conf").write_text(main)
    dropin = "[Journal]\n"
    if retention is not None:
        dropin += f"MaxRetentionSec={retention}\n"
    if max_use is not None:
        dropin += f"SystemMaxUse={max_use}\n"
    (tree / "etc/systemd/journald.conf.d/50-site.conf").write_text(dropin)


def truth_passes(storage: str | None, retention: str | None, age_days: int | None) -> bool:
    if storage in {"volatile", "none"}:
        return False  # the trees all have /var/log/journal, so auto writes to disk
    if age_days is None or age_days < MINIMUM_DAYS:
        return False
    if retention is None:
        return True
    seconds = systemd_seconds(retention)
    return seconds is None or seconds == 0 or seconds / 86400 >= MINIMUM_DAYS


def _verdict(tree: Path, now: datetime) -> tuple[Status, str]:
    facts = collect_logs(TreeRunner(tree), (), now=now)
    (result,) = [
        r for r in run_check(log_retention, HostFacts(logs=facts), {}) if r.target == "journald"
    ]
    return result.status, result.message


def test_journald_verdicts_follow_the_oldest_entry_kept(tmp_path: Path) -> None:
    need_journalctl()
    journal_remote()
    now = datetime.now(UTC).replace(microsecond=0)
    trees = {age: _tree(tmp_path / f"age-{age}", age, now) for age in (None, 20, 200)}
    storages = [None, "persistent", "auto", "volatile", "none"]
    retentions = [None, "1month", "6month", "183d", "1y", "2y", "six months", "0"]
    cases = 0
    wrong = []
    for (age, tree), storage, retention, max_use in itertools.product(
        trees.items(), storages, retentions, [None, "50M"]
    ):
        _configure(tree, storage, retention, max_use)
        status, message = _verdict(tree, now)
        expected = Status.PASS if truth_passes(storage, retention, age) else Status.FAIL
        cases += 1
        if status is not expected:
            wrong.append((age, storage, retention, max_use, status, message))
    assert wrong == []
    assert cases == 240


def test_the_size_cap_deletes_whatever_max_retention_says(tmp_path: Path) -> None:
    """journalctl's own vacuum by size (what SystemMaxUse makes journald do) removes the oldest
    archived file although MaxRetentionSec=2y: the verdict moves from pass to fail with it."""
    need_journalctl()
    now = datetime.now(UTC).replace(microsecond=0)
    tree = _tree(tmp_path / "host", None, now)
    machine = tree / "var/log/journal" / MACHINE
    # Archived files are named system@SEQNUM_ID-HEAD_SEQNUM-HEAD_REALTIME.journal; vacuum
    # removes them oldest first.
    for n, age in ((1, 200), (2, 10)):
        write_journal(
            machine / f"system@{n:032x}-{1:016x}-{n:016x}.journal",
            [(now - timedelta(days=age), f"age {age}")],
        )
    _configure(tree, "persistent", "2y", "12M")
    before = _verdict(tree, now)
    assert before[0] is Status.PASS, before
    assert "the oldest record is 200 days old" in before[1]
    size = sum(f.stat().st_size for f in machine.iterdir())
    subprocess.run(
        [
            shutil.which("journalctl") or "journalctl",
            f"--directory={machine}",
            f"--vacuum-size={size - 1}",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    after = _verdict(tree, now)
    assert after[0] is Status.FAIL, after
    assert "the oldest record is 10 days old < 183" in after[1]
    assert "is a ceiling, not a floor" in after[1]
