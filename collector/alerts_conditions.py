"""The alert conditions one stored scan shows, read through its `ScanView`: every policy violation
(an address of another zone open on a port the zones file's policy does not allow), every web
application whose required WAF no longer blocks attacks, every critical system its ZTNA gateway
no longer covers — and what the scan could not evaluate, which must neither raise nor clear an
alert.

Each condition has a key that names it across scans and zones files (`<zones>/<kind>/<what>`:
`hospital/violation/office->his`, `hospital/waf_gone/portal`, `hospital/ztna_gone/his-web`): the
same condition found by the next scan has the same key, so it stays one open alert. Violations
are counted per zone pair, as net.segmentation judges them: the paths found open outside the
policy are the alert's detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collector.scan_view import SEGMENTATION, WAF, ZTNA, OpenPath, ScanView

VIOLATION, WAF_GONE, ZTNA_GONE = "violation", "waf_gone", "ztna_gone"
KINDS = (VIOLATION, WAF_GONE, ZTNA_GONE)
_MESSAGE_CHARS = 500
_PATHS_NAMED = 5
_PATHS_KEPT = 100


@dataclass(frozen=True)
class Conditions:
    """What a scan says about the alert conditions of its zones file."""

    present: dict[str, tuple[str, dict[str, Any]]]
    """key -> (kind, detail) of every condition the scan found."""
    unevaluated: list[str]
    """Keys, or key prefixes ending in "/", the scan could not evaluate: an open alert there
    stays open, whatever `present` says."""
    notes: list[str]
    """Why each of those could not be evaluated, one line each."""


def alert_key(zones: str, kind: str, *what: str) -> str:
    return "/".join((zones, kind, *what))


def conditions_of(view: ScanView, report: Mapping[str, Any]) -> Conditions:
    """The conditions of `view` (the view of `report`, the scan's stored document)."""
    results = report.get("results")
    if not isinstance(results, list):
        return Conditions({}, [alert_key(view.zones, "")], ["the report has no results"])
    by_check: dict[str, list[Mapping[str, Any]]] = {}
    for item in results:
        if isinstance(item, Mapping) and isinstance(item.get("check_id"), str):
            by_check.setdefault(item["check_id"], []).append(item)
    out = Conditions({}, [], [])
    _violations(view, by_check.get(SEGMENTATION, []), out)
    _verdicts(view, WAF_GONE, view.wafs, by_check.get(WAF, []), out)
    ztna = [r for r in by_check.get(ZTNA, []) if r.get("target") != "coverage"]
    _verdicts(view, ZTNA_GONE, view.ztna, ztna, out)
    return out


def _violations(view: ScanView, results: list[Mapping[str, Any]], out: Conditions) -> None:
    """One alert per zone pair with paths outside the policy (as net.segmentation fails one
    result per pair): a rule flushed on the router is one alert, not one per host and port.
    A pair's alert can clear only where net.segmentation judged the pair from complete
    measurements: passed (nothing outside the policy open), or failed with the view listing
    that pair's violations."""
    by_pair: dict[str, list[OpenPath]] = {}
    for path in sorted(view.violations):
        by_pair.setdefault(path.pair, []).append(path)
    for name, paths in by_pair.items():
        out.present[alert_key(view.zones, VIOLATION, name)] = (VIOLATION, _pair_detail(paths))
    judged: set[str] = set()
    for result in results:
        pair, status = result.get("target"), result.get("status")
        if not isinstance(pair, str):
            continue
        if pair in view.unmeasured:
            out.notes.append(f"{pair}: not measured completely: {view.unmeasured[pair]}")
        elif status == "pass" or (status == "fail" and pair in by_pair):
            judged.add(pair)
            continue
        else:
            out.notes.append(f"{pair}: {SEGMENTATION} {status}: {_clip(result.get('message'))}")
        out.unevaluated.append(alert_key(view.zones, VIOLATION, pair))
    # A pair with no result once the check ran is one the zones file no longer has: its
    # alert clears. A zone without vantage (not_applicable) sent nothing: nothing clears there.
    if not _whole_check_ran(results):
        out.unevaluated.append(alert_key(view.zones, VIOLATION) + "/")
        out.notes.append(f"{SEGMENTATION} did not run: no violation is known to be gone")
    for pair in sorted(view.unmeasured):
        key = alert_key(view.zones, VIOLATION, pair)
        if pair not in judged and key not in out.unevaluated:
            out.unevaluated.append(key)
            out.notes.append(f"{pair}: not measured completely: {view.unmeasured[pair]}")


def _whole_check_ran(results: list[Mapping[str, Any]]) -> bool:
    """The check gave its verdicts: at least one result, none an error of the check as a whole
    (no target: it could not run at all)."""
    if not results:
        return False
    return not any(
        not isinstance(r.get("target"), str) and r.get("status") == "error" for r in results
    )


def _verdicts(
    view: ScanView,
    kind: str,
    verdicts: Mapping[str, bool | None],
    results: list[Mapping[str, Any]],
    out: Conditions,
) -> None:
    """A False verdict (WAF gone, not covered) raises; True or not required clears; an error
    neither. A target the zones file no longer lists clears, once the check ran as a whole."""
    by_target = {r["target"]: r for r in results if isinstance(r.get("target"), str)}
    whole = [r for r in results if not isinstance(r.get("target"), str)]
    if not results or any(r.get("status") == "error" for r in whole):
        out.unevaluated.append(alert_key(view.zones, kind) + "/")
        why = next((_clip(r.get("message")) for r in whole), "no result in the report")
        out.notes.append(f"{kind}: the check did not run: {why}")
    for target in sorted(verdicts):
        verdict = verdicts[target]
        result = by_target.get(target, {})
        key = alert_key(view.zones, kind, target)
        if verdict is False:
            out.present[key] = (kind, _verdict_detail(kind, target, result))
        elif verdict is None and result.get("status") != "not_applicable":
            out.unevaluated.append(key)
            out.notes.append(
                f"{target}: {kind}: {result.get('status')}: {_clip(result.get('message'))}"
            )


def _pair_detail(paths: list[OpenPath]) -> dict[str, Any]:
    """What the channels show of a pair's violations: `office->his 198.18.2.10 tcp/1433`, the
    first few paths named, and each path (up to `_PATHS_KEPT`)."""
    named = ", ".join(f"{p.address} {p.spec}" for p in paths[:_PATHS_NAMED])
    more = f" (+{len(paths) - _PATHS_NAMED} more)" if len(paths) > _PATHS_NAMED else ""
    first = paths[0]
    return {
        "text": f"{first.pair} {named}{more}",
        "from": first.source,
        "to": first.target,
        "count": len(paths),
        "paths": [
            {"address": p.address, "proto": p.proto, "port": p.port, "state": p.state}
            for p in paths[:_PATHS_KEPT]
        ],
    }


def _verdict_detail(kind: str, target: str, result: Mapping[str, Any]) -> dict[str, Any]:
    what = (
        "no WAF blocks attacks in front of it"
        if kind == WAF_GONE
        else "not covered by its ZTNA gateway"
    )
    field = "application" if kind == WAF_GONE else "system"
    return {"text": f"{target}: {what}", field: target, "message": _clip(result.get("message"))}


def _clip(message: object) -> str:
    text = " ".join(str(message or "").split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
