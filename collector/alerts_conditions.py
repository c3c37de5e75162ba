"""The alert conditions one stored scan shows, read through its `ScanView`: every policy violation
(an address of another zone open on a port the zones file's policy does not allow), every web
application whose required WAF no longer blocks attacks, every critical system its ZTNA gateway
no longer covers — and what the scan could not evaluate, which must neither raise nor clear an
alert.

Each condition has a key that names it across scans and zones files (`<zones>/<kind>/<what>`):
the same violation found by the next scan has the same key, so it stays one open alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collector.scan_view import SEGMENTATION, WAF, ZTNA, OpenPath, ScanView

VIOLATION, WAF_GONE, ZTNA_GONE = "violation", "waf_gone", "ztna_gone"
KINDS = (VIOLATION, WAF_GONE, ZTNA_GONE)
_MESSAGE_CHARS = 500


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
    """Every violation raises. A zone pair's violations can clear only where net.segmentation
    judged the pair from complete measurements: passed (nothing outside the policy open), or
    failed with the view listing that pair's violations."""
    found = sorted(view.violations)
    for path in found:
        out.present[_path_key(view.zones, path)] = (VIOLATION, _path_detail(path))
    with_violations = {path.pair for path in found}
    judged: set[str] = set()
    for result in results:
        pair, status = result.get("target"), result.get("status")
        if not isinstance(pair, str):
            continue
        if pair in view.unmeasured:
            out.notes.append(f"{pair}: not measured completely: {view.unmeasured[pair]}")
        elif status == "pass" or (status == "fail" and pair in with_violations):
            judged.add(pair)
            continue
        else:
            out.notes.append(f"{pair}: {SEGMENTATION} {status}: {_clip(result.get('message'))}")
        out.unevaluated.append(alert_key(view.zones, VIOLATION, pair) + "/")
    # A pair with no result once the check ran is one the zones file no longer has: its
    # alerts clear. A zone without vantage (not_applicable) sent nothing: nothing clears there.
    if not _whole_check_ran(results):
        out.unevaluated.append(alert_key(view.zones, VIOLATION) + "/")
        out.notes.append(f"{SEGMENTATION} did not run: no violation is known to be gone")
    for pair in sorted(view.unmeasured):
        key = alert_key(view.zones, VIOLATION, pair) + "/"
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


def _path_key(zones: str, path: OpenPath) -> str:
    return alert_key(zones, VIOLATION, path.pair, path.address, path.spec)


def _path_detail(path: OpenPath) -> dict[str, Any]:
    return {
        "text": f"{path.pair} {path.address} {path.spec}",
        "from": path.source,
        "to": path.target,
        "address": path.address,
        "proto": path.proto,
        "port": path.port,
        "state": path.state,
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
