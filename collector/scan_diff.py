"""What changed on the network between two scans of one zones file: paths newly open or closed
(from zone, to zone, address, port), policy violations new or cleared, WAFs gone or back, ZTNA
coverage up or down, TLS floors changed — from the two scans' views (`collector.scan_view`).

Only what both scans measured is compared. A zone pair one scan did not measure completely (a
vantage that failed, hosts left unfinished, a zone without a vantage) has no "newly open" or
"newly closed" path: its differences are listed as not compared, with why. A verdict one scan
could not reach (None) is a change to or from "unknown", never "gone" or "back".

A UDP port known only by an ICMP port-unreachable (nmap: closed) proves the path in the scan
that got one, but its absence proves nothing: hosts rate-limit those answers (Linux sends about
one a second to a scanner), so the same closed port answers in one scan and not the next. Such a
port seen in one scan only is listed apart (`udp_unconfirmed`), not as a path opened or closed.

Two scans of different zones files (by name) are refused: their zones, policies and ports differ,
so every difference would be an artefact. Two scans of one zones name whose file changed between
them (another path, other zones) are compared, with a warning saying so.

Renderers: `render_table(diff)` (terminal text) and `to_json(diff)` (the API's and `--format
json`'s document), both over the one `ScanDiff`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from collector.scan_view import TLS_ORDER, OpenPath, ScanView

DIFF_SCHEMA = "medsec.scan-diff/v1"

VerdictChange = Literal["gone", "back", "unknown", "known", "added", "removed"]
"""gone: was True, now False; back: was False, now True; unknown: was decided, now None; known:
was None, now decided; added / removed: the name is new in / gone from the second scan."""
FloorChange = Literal["lowered", "raised", "unknown", "known", "added", "removed"]


class NotComparable(ValueError):
    """The two scans cannot be compared (one line, safe to show)."""


@dataclass(frozen=True)
class StateChange:
    """A path reachable in both scans whose port changed state (a service started or stopped)."""

    path: OpenPath
    before: str
    after: str


@dataclass(frozen=True)
class Verdict:
    """A WAF or ZTNA verdict that changed."""

    name: str
    before: bool | None
    after: bool | None
    change: VerdictChange


@dataclass(frozen=True)
class Floor:
    """A TLS service whose oldest accepted version changed."""

    endpoint: str
    before: str | None
    after: str | None
    change: FloorChange


@dataclass(frozen=True)
class ScanDiff:
    """What changed from scan `a` to scan `b` (each list sorted)."""

    a: ScanView
    b: ScanView
    opened: tuple[OpenPath, ...]
    closed: tuple[OpenPath, ...]
    state_changed: tuple[StateChange, ...]
    udp_unconfirmed: tuple[OpenPath, ...]
    """UDP ports that answered port-unreachable in one scan only: not a change (see above)."""
    not_compared: Mapping[str, str]
    """Zone pair -> why its paths were not compared."""
    violations_new: tuple[OpenPath, ...]
    violations_cleared: tuple[OpenPath, ...]
    wafs: tuple[Verdict, ...]
    ztna: tuple[Verdict, ...]
    tls_floors: tuple[Floor, ...]
    warnings: tuple[str, ...]

    @property
    def changed(self) -> bool:
        """Whether anything differs (a pair not compared counts: it may hide a change)."""
        return any(
            (
                self.opened,
                self.closed,
                self.state_changed,
                self.not_compared,
                self.violations_new,
                self.violations_cleared,
                self.wafs,
                self.ztna,
                self.tls_floors,
            )
        )

    def verdicts(self, kind: Literal["wafs", "ztna"], change: VerdictChange) -> list[str]:
        """Names whose WAF or ZTNA verdict changed this way (`diff.verdicts("wafs", "gone")`)."""
        return [v.name for v in getattr(self, kind) if v.change == change]


def diff(a: ScanView, b: ScanView) -> ScanDiff:
    """What changed from `a` to `b`; `NotComparable` when they are scans of different zones."""
    if a.zones != b.zones:
        raise NotComparable(
            f"scan {a.scan_id} is of the zones {a.zones!r} and scan {b.scan_id} of {b.zones!r}: "
            "only scans of one zones file can be compared"
        )
    warnings: list[str] = []
    if a.zones_file and b.zones_file and a.zones_file != b.zones_file:
        warnings.append(
            f"the zones {a.zones!r} were read from {a.zones_file} in the first scan and from "
            f"{b.zones_file} in the second: differences may come from the file"
        )
    if a.finished_at and b.finished_at and a.finished_at > b.finished_at:
        warnings.append(
            f"scan {a.scan_id} finished after scan {b.scan_id}: the differences read backwards"
        )
    not_compared = _not_compared(a, b)
    compared_a = {p for p in a.paths if p.pair not in not_compared}
    compared_b = {p for p in b.paths if p.pair not in not_compared}
    only_a, only_b = compared_a - compared_b, compared_b - compared_a
    before_state = {p: p.state for p in compared_a}
    after_state = {p: p.state for p in compared_b}
    state_changed = [
        StateChange(p, before_state[p], after_state[p])
        for p in sorted(compared_a & compared_b)
        if before_state[p] != after_state[p]
    ]
    kept_a = {p for p in a.violations if p.pair not in not_compared}
    kept_b = {p for p in b.violations if p.pair not in not_compared}
    return ScanDiff(
        a=a,
        b=b,
        opened=tuple(sorted(p for p in only_b if not _unconfirmed(p))),
        closed=tuple(sorted(p for p in only_a if not _unconfirmed(p))),
        udp_unconfirmed=tuple(sorted(p for p in only_a | only_b if _unconfirmed(p))),
        state_changed=tuple(state_changed),
        not_compared=not_compared,
        violations_new=tuple(sorted(kept_b - kept_a)),
        violations_cleared=tuple(sorted(kept_a - kept_b)),
        wafs=tuple(_verdicts(a.wafs, b.wafs)),
        ztna=tuple(_verdicts(a.ztna, b.ztna)),
        tls_floors=tuple(_floors(a.tls_floors, b.tls_floors)),
        warnings=tuple(warnings),
    )


def _not_compared(a: ScanView, b: ScanView) -> dict[str, str]:
    """Pairs measured in one scan only, or in neither with paths that differ."""
    states_a, states_b = {p: p.state for p in a.paths}, {p: p.state for p in b.paths}
    differing = {p.pair for p in a.paths ^ b.paths if not _unconfirmed(p)} | {
        p.pair for p in a.paths & b.paths if states_a[p] != states_b[p]
    }
    found: dict[str, str] = {}
    for name in sorted(set(a.unmeasured) | set(b.unmeasured)):
        why_a, why_b = a.unmeasured.get(name), b.unmeasured.get(name)
        if why_a is not None and why_b is not None and name not in differing:
            continue  # unmeasured alike in both (a zone without a vantage): nothing to say
        parts = [f"first scan: {why_a}"] if why_a else []
        parts += [f"second scan: {why_b}"] if why_b else []
        found[name] = "; ".join(parts)
    return found


def _unconfirmed(path: OpenPath) -> bool:
    """A UDP port whose only answer was a (rate-limited) ICMP port-unreachable."""
    return path.proto == "udp" and path.state == "closed"


def _verdicts(a: Mapping[str, bool | None], b: Mapping[str, bool | None]) -> Iterable[Verdict]:
    for name in sorted(set(a) | set(b)):
        if name not in b:
            yield Verdict(name, a[name], None, "removed")
        elif name not in a:
            yield Verdict(name, None, b[name], "added")
        elif a[name] != b[name]:
            before, after = a[name], b[name]
            change: VerdictChange = (
                "unknown"
                if after is None
                else "known"
                if before is None
                else "back"
                if after
                else "gone"
            )
            yield Verdict(name, before, after, change)


def _floors(a: Mapping[str, str | None], b: Mapping[str, str | None]) -> Iterable[Floor]:
    for endpoint in sorted(set(a) | set(b)):
        if endpoint not in b:
            yield Floor(endpoint, a[endpoint], None, "removed")
        elif endpoint not in a:
            yield Floor(endpoint, None, b[endpoint], "added")
        elif a[endpoint] != b[endpoint]:
            before, after = a[endpoint], b[endpoint]
            change: FloorChange
            if after is None:
                change = "unknown"
            elif before is None:
                change = "known"
            else:
                change = "lowered" if _rank(after) < _rank(before) else "raised"
            yield Floor(endpoint, before, after, change)


def _rank(version: str) -> int:
    return TLS_ORDER.index(version) if version in TLS_ORDER else len(TLS_ORDER)


# --- renderers ---------------------------------------------------------------------------------


def _scan(view: ScanView) -> dict[str, Any]:
    return {
        "id": view.scan_id,
        "zones": view.zones,
        "state": view.state,
        "finished_at": _iso(view.finished_at),
        "report_id": view.report_id,
        "zones_file": view.zones_file,
        "errors": list(view.errors),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _path(path: OpenPath) -> dict[str, Any]:
    return {
        "from": path.source,
        "to": path.target,
        "address": path.address,
        "proto": path.proto,
        "port": path.port,
        "state": path.state,
    }


def to_json(found: ScanDiff) -> dict[str, Any]:
    """The difference as a JSON document (`medsec.scan-diff/v1`)."""
    return {
        "schema": DIFF_SCHEMA,
        "from": _scan(found.a),
        "to": _scan(found.b),
        "changed": found.changed,
        "paths": {
            "opened": [_path(p) for p in found.opened],
            "closed": [_path(p) for p in found.closed],
            "state_changed": [
                {**_path(c.path), "before": c.before, "after": c.after} for c in found.state_changed
            ],
            "not_compared": dict(found.not_compared),
            "udp_unconfirmed": [_path(p) for p in found.udp_unconfirmed],
        },
        "violations": {
            "new": [_path(p) for p in found.violations_new],
            "cleared": [_path(p) for p in found.violations_cleared],
        },
        "wafs": [asdict(v) for v in found.wafs],
        "ztna": [asdict(v) for v in found.ztna],
        "ztna_coverage_percent": {
            "before": found.a.ztna_coverage_percent,
            "after": found.b.ztna_coverage_percent,
        },
        "tls_floors": [asdict(f) for f in found.tls_floors],
        "warnings": list(found.warnings),
    }


_WAF_WORDS = {
    "gone": "WAF gone",
    "back": "WAF back",
    "unknown": "WAF no longer decided",
    "known": "WAF decided again",
    "added": "new web application",
    "removed": "web application no longer listed",
}
_ZTNA_WORDS = {
    "gone": "ZTNA coverage down",
    "back": "ZTNA coverage up",
    "unknown": "ZTNA coverage no longer decided",
    "known": "ZTNA coverage decided again",
    "added": "new critical system",
    "removed": "critical system no longer listed",
}


def _verdict(change: Verdict, words: Mapping[str, str], yes: str, no: str) -> str:
    def said(value: bool | None) -> str:
        return "not decided" if value is None else yes if value else no

    if change.change == "added":
        how = said(change.after)
    elif change.change == "removed":
        how = f"was: {said(change.before)}"
    else:
        how = f"{said(change.before)} -> {said(change.after)}"
    return f"{change.name:<20} {words[change.change]} ({how})"


def render_table(found: ScanDiff) -> str:
    """The difference for a terminal: one section per kind of change, one line per change."""
    a, b = found.a, found.b
    lines = [
        f"scans of {a.zones!r}: {a.scan_id} ({_iso(a.finished_at) or '-'}) -> "
        f"{b.scan_id} ({_iso(b.finished_at) or '-'})",
    ]
    lines += [f"warning: {w}" for w in found.warnings]

    def section(title: str, rows: list[str]) -> None:
        if rows:
            lines.append("")
            lines.append(f"{title} ({len(rows)}):")
            lines.extend(f"  {row}" for row in rows)

    section("paths newly open", [_line(p) for p in found.opened])
    section("paths newly closed", [_line(p) for p in found.closed])
    section(
        "ports that changed state",
        [f"{c.path.line()}: {c.before} -> {c.after}" for c in found.state_changed],
    )
    section("policy violations new", [p.line() for p in found.violations_new])
    section("policy violations cleared", [p.line() for p in found.violations_cleared])
    section("WAFs", [_verdict(v, _WAF_WORDS, "WAF", "no WAF") for v in found.wafs])
    section("ZTNA", [_verdict(v, _ZTNA_WORDS, "covered", "not covered") for v in found.ztna])
    section(
        "TLS floors",
        [
            f"{f.endpoint:<22} {f.change:<8} {f.before or 'unknown'} -> {f.after or 'unknown'}"
            for f in found.tls_floors
        ],
    )
    section("zone pairs not compared", [f"{k}: {v}" for k, v in found.not_compared.items()])
    for which, view in (("first", a), ("second", b)):
        section(f"not read in the {which} scan", list(view.errors))
    if found.udp_unconfirmed:
        lines.append("")
        lines.append(
            f"({len(found.udp_unconfirmed)} UDP ports answered port-unreachable in one scan "
            "only: hosts rate-limit those answers, so this is not a change)"
        )
    if not found.changed:
        lines.append("")
        lines.append("no change")
    return "\n".join(lines) + "\n"


def _line(path: OpenPath) -> str:
    return f"{path.line()} ({path.state})"


__all__ = [
    "DIFF_SCHEMA",
    "Floor",
    "NotComparable",
    "ScanDiff",
    "StateChange",
    "Verdict",
    "diff",
    "render_table",
    "to_json",
]
