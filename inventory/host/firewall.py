"""Host firewall: the chains on the input hook and the verdict each gives a packet that no rule
accepts, from `nft -j list ruleset` and `iptables-save`/`ip6tables-save`.

`nft` shows every nf_tables table, including those iptables-nft (Debian's default `iptables`)
writes, so the iptables tools are read only for what nft cannot see: the legacy (x_tables)
backend, through `iptables-legacy-save`/`ip6tables-legacy-save`, and — on hosts without nft —
whatever `iptables-save` shows. `parse_nft_json()` and `parse_iptables_save()` are pure and are
tested on rulesets loaded into a real kernel inside a network namespace.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from checks.facts.firewall import FirewallFacts, FirewallSource, InputChain, Verdict
from checks.model import Unavailable
from inventory.runner import GatherError, Runner, SourceMissing

COMMAND_TIMEOUT_S = 15.0
MAX_JUMP_DEPTH = 16
UFW_CONF = "/etc/ufw/ufw.conf"

Proto = Literal["ipv4", "ipv6"]


class RulesetError(ValueError):
    """A ruleset listing that does not parse."""


@dataclass(frozen=True)
class _Step:
    """What one rule does to a packet of one protocol that reaches it."""

    kind: Literal["skip", "continue", "verdict", "jump", "goto", "return"]
    """skip: conditional (or not for this protocol); continue: unconditional, non-terminal."""
    verdict: Verdict | None = None
    target: str | None = None
    text: str = ""


_Walk = tuple[Verdict | None, str | None]


def _walk(chains: Mapping[str, Sequence[_Step]], name: str, depth: int = 0) -> _Walk:
    """The verdict a packet no conditional rule took reaches in chain `name` (or in the chains
    it calls), with the rule that gave it; (None, None) when control returns to the caller —
    for a base chain, its policy then applies. A `goto`'s chain returns to our caller, not to
    us; a `jump`'s chain returns to the next rule."""
    if depth > MAX_JUMP_DEPTH or name not in chains:
        return None, None
    for step in chains[name]:
        if step.kind == "verdict":
            return step.verdict, step.text
        if step.kind == "return":
            return None, None
        if step.kind in {"jump", "goto"} and step.target is not None:
            verdict, text = _walk(chains, step.target, depth + 1)
            if verdict is not None:
                return verdict, f"{step.text} → {text}"
            if step.kind == "goto":
                return None, None
    return None, None


def _default(
    chains: Mapping[str, Sequence[_Step]], name: str, policy: str
) -> tuple[Verdict, str | None]:
    verdict, text = _walk(chains, name)
    if verdict is not None:
        return verdict, text
    return ("drop" if policy == "drop" else "accept"), None


# ============================================================================= nftables

_NEUTRAL = {"counter", "log", "comment", "meta"}  # statements that do not select packets
_VERDICTS: Mapping[str, Verdict] = {"accept": "accept", "drop": "drop", "reject": "reject"}
_FAMILIES: Mapping[str, Literal["ip", "ip6", "inet"]] = {"ip": "ip", "ip6": "ip6", "inet": "inet"}
_XT_VERDICTS: Mapping[str, Verdict] = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject"}


def _nfproto(match: Mapping[str, Any]) -> str | None:
    """ "ipv4"/"ipv6" when the match is `meta nfproto ipv4` (inet tables), else None."""
    left = match.get("left")
    if (
        isinstance(left, dict)
        and left.get("meta", {}).get("key") == "nfproto"
        and match.get("op") in {"==", "in"}
    ):
        right = match.get("right")
        return right if right in {"ipv4", "ipv6"} else None
    return None


def _nft_step(  # noqa: PLR0911 — one return per kind of statement
    exprs: Sequence[Mapping[str, Any]], handle: object, proto: Proto
) -> _Step:
    names: list[str] = []
    for expr in exprs:
        (key, value), *_ = expr.items()
        if key == "match":
            only = _nfproto(value)
            if only is None:
                return _Step("skip")
            if only != proto:
                return _Step("skip")
            names.append(f"meta nfproto {only}")
            continue
        if key in _VERDICTS:
            names.append(key)
            return _Step("verdict", _VERDICTS[key], text=f"handle {handle}: {' '.join(names)}")
        if key in {"jump", "goto"}:
            names.append(f"{key} {value['target']}")
            kind: Literal["jump", "goto"] = "jump" if key == "jump" else "goto"
            return _Step(kind, target=value["target"], text=f"handle {handle}: {' '.join(names)}")
        if key == "return":
            return _Step("return")
        if key == "xt":
            verdict = (
                _XT_VERDICTS.get(value.get("name", "")) if value.get("type") == "target" else None
            )
            if verdict is None:
                return _Step("skip")
            names.append(f"xt {value['name']}")
            return _Step("verdict", verdict, text=f"handle {handle}: {' '.join(names)}")
        if key not in _NEUTRAL:
            return _Step("skip")
        names.append(key)
    return _Step("continue")


def parse_nft_json(text: str) -> tuple[InputChain, ...]:
    """Filter chains on the input hook of ip, ip6 and inet tables in `nft -j list ruleset`."""
    try:
        items = json.loads(text)["nftables"] if text.strip() else []
    except (ValueError, KeyError, TypeError) as exc:
        raise RulesetError(f"nft -j printed no ruleset JSON: {exc}") from None
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            chains[(c["family"], c["table"], c["name"])] = c
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r)
    found: list[InputChain] = []
    for (family_name, table, name), chain in chains.items():
        family = _FAMILIES.get(family_name)
        if family is None or chain.get("hook") != "input":
            continue
        if chain.get("type", "filter") != "filter":
            continue
        policy: Literal["accept", "drop"] = "drop" if chain.get("policy") == "drop" else "accept"
        defaults: dict[Proto, tuple[Verdict, str | None] | None] = {}
        for proto in ("ipv4", "ipv6"):
            if (family, proto) in {("ip", "ipv6"), ("ip6", "ipv4")}:
                defaults[proto] = None
                continue
            steps: dict[str, list[_Step]] = {}
            for (fam, tab, chain_name), chain_rules in rules.items():
                if fam == family and tab == table:
                    steps[chain_name] = [
                        _nft_step(r.get("expr", []), r.get("handle"), proto) for r in chain_rules
                    ]
            defaults[proto] = _default(steps, name, policy)
        v4, v6 = defaults["ipv4"], defaults["ipv6"]
        final = next((d[1] for d in (v4, v6) if d is not None and d[1]), None)
        found.append(
            InputChain(
                source="nft",
                family=family,
                table=table,
                name=name,
                policy=policy,
                default_ipv4=v4[0] if v4 else None,
                default_ipv6=v6[0] if v6 else None,
                final_rule=final,
            )
        )
    return tuple(found)


def nft_version(text: str) -> str | None:
    try:
        for item in json.loads(text).get("nftables", []):
            if "metainfo" in item:
                return str(item["metainfo"].get("version"))
    except (ValueError, AttributeError):
        return None
    return None


# ============================================================================= iptables

_TERMINAL: Mapping[str, Verdict] = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject"}
_JUMP_OPTIONS = {"-j", "--jump", "-g", "--goto"}


def _strip_comment_match(words: list[str]) -> list[str]:
    """Drop `-m comment --comment TEXT`: a comment selects nothing."""
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] in {"-m", "--match"} and i + 1 < len(words) and words[i + 1] == "comment":
            i += 2
            continue
        if words[i] == "--comment":
            i += 2
            continue
        out.append(words[i])
        i += 1
    return out


def _iptables_step(words: list[str], user_chains: set[str]) -> _Step:
    text = " ".join(words)
    jump = next((i for i, w in enumerate(words) if w in _JUMP_OPTIONS), None)
    if jump is None or jump + 1 >= len(words):
        return _Step("continue")  # no target: counts packets only
    if _strip_comment_match(words[:jump]):
        return _Step("skip")
    target = words[jump + 1]
    if target in _TERMINAL:
        return _Step("verdict", _TERMINAL[target], text=text)
    if target == "RETURN":
        return _Step("return")
    if target in user_chains:
        kind: Literal["jump", "goto"] = "goto" if words[jump] in {"-g", "--goto"} else "jump"
        return _Step(kind, target=target, text=text)
    return _Step("continue")  # LOG, MARK, CT ...: non-terminating targets


def parse_iptables_save(
    text: str, *, source: FirewallSource, family: Literal["ip", "ip6"]
) -> tuple[InputChain, ...]:
    """The INPUT chain of the filter table in `iptables-save` (or `ip6tables-save`) output."""
    table: str | None = None
    policies: dict[str, str] = {}
    rules: dict[str, list[list[str]]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
        elif table != "filter" or not line or line.startswith("#"):
            continue
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            policies[name] = rest.split()[0] if rest.split() else "-"
        elif line.startswith(("-A ", "[")):
            try:
                words = shlex.split(re.sub(r"^\[\d+:\d+\]\s*", "", line))
            except ValueError as exc:
                raise RulesetError(f"unparsable rule {line!r}: {exc}") from None
            if len(words) >= 2 and words[0] == "-A":
                rules.setdefault(words[1], []).append(words[2:])
    if "INPUT" not in policies:
        return ()
    user = {n for n, p in policies.items() if p == "-"}
    steps = {name: [_iptables_step(w, user) for w in chain] for name, chain in rules.items()}
    policy: Literal["accept", "drop"] = "drop" if policies["INPUT"] == "DROP" else "accept"
    verdict, final = _default(steps, "INPUT", policy)
    return (
        InputChain(
            source=source,
            family=family,
            table="filter",
            name="INPUT",
            policy=policy,
            default_ipv4=verdict if family == "ip" else None,
            default_ipv6=verdict if family == "ip6" else None,
            final_rule=final,
        ),
    )


def iptables_backend(text: str) -> str:
    """ "nf_tables" or "legacy", from the `# Generated by iptables-save v1.8.9 (nf_tables)` line."""
    m = re.search(r"Generated by ip6?tables-save v[\d.]+(?: \((\w+)\))?", text)
    if m is None:
        return "unknown"
    return m.group(1) or "legacy"


# ============================================================================= collection


def parse_ufw_conf(text: str) -> bool:
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "ENABLED":
            return value.strip().strip("\"'").lower() == "yes"
    return False


def _read_iptables(
    runner: Runner,
    tools: Sequence[tuple[str, FirewallSource, Literal["ip", "ip6"]]],
    *,
    legacy_only: bool = False,
) -> tuple[list[InputChain], str | Unavailable | None]:
    """Chains from iptables-save-like tools; `legacy_only` drops what an nf_tables backend
    printed (nft has listed those already)."""
    chains: list[InputChain] = []
    seen: list[str] = []
    for tool, source, family in tools:
        if runner.which(tool) is None:
            continue
        try:
            out = runner.run([tool], timeout=COMMAND_TIMEOUT_S).stdout
            found = parse_iptables_save(out, source=source, family=family)
        except (GatherError, RulesetError) as exc:
            return chains, Unavailable(f"{tool}: {exc}")
        backend = iptables_backend(out)
        if legacy_only and backend == "nf_tables":
            seen.append(f"{tool}: backend nf_tables (listed by nft)")
            continue
        chains.extend(found)
        state = f"backend {backend}" if out.strip() else "no tables"
        seen.append(f"{tool}: {state}, {'INPUT chain' if found else 'no INPUT chain'}")
    return chains, ("; ".join(seen) if seen else None)


def collect_firewall(runner: Runner) -> FirewallFacts:
    chains: list[InputChain] = []
    nft: str | Unavailable | None = None
    if runner.which("nft") is not None:
        try:
            out = runner.run(["nft", "-j", "list", "ruleset"], timeout=COMMAND_TIMEOUT_S).stdout
            found = parse_nft_json(out)
            chains.extend(found)
            nft = f"nftables {nft_version(out) or '?'}: {len(found)} input filter chain(s)"
        except (GatherError, RulesetError) as exc:
            nft = Unavailable(f"nft -j list ruleset: {exc}")
    legacy_chains, legacy = _read_iptables(
        runner,
        [
            ("iptables-legacy-save", "iptables-legacy", "ip"),
            ("ip6tables-legacy-save", "ip6tables-legacy", "ip6"),
        ],
    )
    chains.extend(legacy_chains)
    iptables: str | Unavailable | None = None
    if nft is None or legacy is None:
        # Without nft, iptables-save shows the kernel's tables through its own backend. Without
        # the *-legacy-save names (iptables before 1.8), plain iptables-save is the legacy tool.
        plain_chains, iptables = _read_iptables(
            runner,
            [("iptables-save", "iptables", "ip"), ("ip6tables-save", "ip6tables", "ip6")],
            legacy_only=nft is not None,
        )
        chains.extend(plain_chains)
    try:
        ufw: bool | None = parse_ufw_conf(runner.read_text(UFW_CONF))
    except SourceMissing:
        ufw = None
    except GatherError:
        ufw = None  # evidence only: the verdict comes from the kernel's rules
    return FirewallFacts(
        chains=tuple(chains),
        nft=nft,
        iptables_legacy=legacy,
        iptables=iptables,
        ufw_enabled=ufw,
    )
