"""Rulesets for the firewall differential test, generated from a seed: nft tables of every IP
family on the ingress, prerouting and input hooks at assorted priorities, dormant or not, with
jumps, gotos, conditional returns and verdict maps; iptables rulesets for the nf_tables and the
legacy backend (raw, mangle and filter tables, user chains, `addrtype` returns); ufw with every
default, with and without IPv6, on both backends; DNAT and REDIRECT publishing a port to a
container namespace behind the host, with forwarding on and off.

What the generator promises, so that the probed port stands for "a port no rule names" (the
truth rule of the test): no rule names the probed port (`fwlab.PORT`) or the prober's addresses;
every port range wider than 1024 ports that a rule names contains the probed port, every
narrower one leaves it out; no rule matches a source port; named sources come from
198.18.250.0/24 and fd00:198:18:fa::/64, where no probe comes from.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from tests.inventory.fwlab import CONTAINER_PORT, PUBLISHED, Case

# ----------------------------------------------------------------------------- nft


def _both(rule: str) -> dict[str, str]:
    return {"inet": rule, "ip": rule, "ip6": rule}


# Rules that end in a verdict or change nothing, per table family (None: not in that family).
_NFT_VERDICT_RULES: list[dict[str, str]] = [
    _both("ct state established,related accept"),
    _both("ct state invalid drop"),
    _both('iif "lo" accept'),
    _both("tcp dport { 22, 443 } accept"),
    _both("udp dport 53 accept"),
    _both("meta l4proto tcp th dport 9000-9100 accept"),
    {"inet": "ip saddr 198.18.250.0/24 accept", "ip": "ip saddr 198.18.250.0/24 accept"},
    {"inet": "ip6 saddr fd00:198:18:fa::/64 accept", "ip6": "ip6 saddr fd00:198:18:fa::/64 accept"},
    {"inet": "ip saddr != 198.18.250.0/24 accept", "ip": "ip saddr != 198.18.250.0/24 accept"},
    {
        "inet": "ip6 saddr != fd00:198:18:fa::/64 drop",
        "ip6": "ip6 saddr != fd00:198:18:fa::/64 drop",
    },
    _both('iifname "eth0" accept'),
    _both('iif "eth0" drop'),
    _both('iifname "eth*" drop'),
    _both('iifname "wg*" accept'),
    {"inet": "meta nfproto ipv4 accept"},
    {"inet": "meta nfproto ipv6 drop"},
    _both("meta l4proto tcp accept"),
    _both("meta l4proto udp drop"),
    _both("tcp dport != 22 accept"),
    _both("udp dport != 53 drop"),
    _both("meta l4proto { tcp, udp } th dport 1024-65535 accept"),
    _both("tcp dport < 1024 accept"),
    _both("fib daddr type local accept"),
    _both("fib daddr type { broadcast, multicast } drop"),
    _both("meta pkttype host drop"),
    _both("ct state new accept"),
    _both("ct state new drop"),
    _both("tcp flags syn accept"),
    _both("tcp flags & (fin|syn|rst|ack) == syn drop"),
    _both("meta mark 0x1 accept"),
    _both("meta mark 0x0 drop"),
    _both("meta mark set 0x1"),
    {"inet": "ip daddr 198.19.0.0/16 accept", "ip": "ip daddr 198.19.0.0/16 accept"},
    {"inet": "ip6 daddr fd00:198:19::/48 drop", "ip6": "ip6 daddr fd00:198:19::/48 drop"},
    {"inet": "ip protocol tcp accept", "ip": "ip protocol tcp accept"},
    {"inet": "ip6 nexthdr udp accept", "ip6": "ip6 nexthdr udp accept"},
    _both("meta l4proto { tcp, udp } th dport vmap { 22 : accept, 53 : drop }"),
    _both("meta l4proto vmap { tcp : accept, udp : drop }"),
    _both("meta l4proto vmap { udp : accept }"),
    _both("ct state vmap { established : accept, related : accept, invalid : drop }"),
    _both('iifname vmap { "lo" : accept, "eth0" : drop }'),
    _both("limit rate 200/second burst 100 packets accept"),
    _both("reject"),
    _both("drop"),
    _both("accept"),
    _both("counter"),
]
_NFT_RETURNS: list[dict[str, str]] = [
    _both("return"),
    _both("meta l4proto udp return"),
    _both("fib daddr type local return"),
    {"inet": "ip6 saddr fd00:198:18:fa::/64 return", "ip6": "ip6 saddr fd00:198:18:fa::/64 return"},
    {"inet": "meta nfproto ipv4 return"},
    _both('iifname "eth0" return'),
]
_NFT_INGRESS_RULES: dict[str, list[str]] = {
    "netdev": [
        "ip saddr 198.18.250.0/24 drop",
        "meta protocol ip6 drop",
        "meta protocol ip drop",
        "ip protocol udp drop",
        "ip6 nexthdr tcp drop",
        "tcp dport 22 accept",
        "udp dport 53 drop",
        "drop",
        "accept",
        "counter",
    ],
}
_NFT_INGRESS_RULES["inet"] = _NFT_INGRESS_RULES["netdev"]


def _nft_jumps(family: str, targets: Sequence[str], rng: random.Random) -> str:
    a = rng.choice(targets)
    b = rng.choice(targets)
    choices = [
        f"jump {a}",
        f"goto {a}",
        f"meta l4proto tcp jump {a}",
        f'iifname "eth0" goto {a}',
        f"tcp dport 22 jump {a}",
    ]
    if family == "inet":
        choices.append(f"meta nfproto vmap {{ ipv4 : jump {a}, ipv6 : jump {b} }}")
        choices.append(f"meta nfproto ipv6 jump {a}")
    return rng.choice(choices)


def _nft_rules(
    family: str, pool: Sequence[dict[str, str]], count: int, rng: random.Random
) -> list[str]:
    usable = [r[family] for r in pool if family in r]
    return [rng.choice(usable) for _ in range(count)]


def nft_case(rng: random.Random, index: int) -> Case:
    tables = []
    for t in range(rng.choice([1, 1, 2, 2, 3])):
        family = rng.choice(["inet", "inet", "ip", "ip6", "netdev"])
        dormant = rng.random() < 0.2
        lines = [f"table {family} t{t} {{"]
        if dormant:
            lines.append("  flags dormant")
        if family == "netdev" or (family == "inet" and rng.random() < 0.1):
            device = rng.choice(["eth0", "eth0", "lo"])
            policy = rng.choice(["accept", "drop"])
            rules = [rng.choice(_NFT_INGRESS_RULES[family]) for _ in range(rng.randint(0, 3))]
            lines.append(
                f"  chain ing {{ type filter hook ingress device {device} priority "
                f"{rng.choice([-10, 0, 10])}; policy {policy};"
            )
            lines += [f"    {r}" for r in rules]
            lines.append("  }")
            if family == "netdev":
                lines.append("}")
                tables.append("\n".join(lines))
                continue
        regular = [f"c{t}{n}" for n in range(rng.randint(0, 2))]
        for n, name in enumerate(regular):
            later = regular[n + 1 :]
            rules = _nft_rules(family, _NFT_VERDICT_RULES + _NFT_RETURNS, rng.randint(1, 4), rng)
            if later and rng.random() < 0.4:
                rules.insert(rng.randint(0, len(rules)), _nft_jumps(family, later, rng))
            lines.append(f"  chain {name} {{")
            lines += [f"    {r}" for r in rules]
            lines.append("  }")
        for b in range(rng.choice([1, 1, 2])):
            hook = rng.choice(["input", "input", "input", "prerouting"])
            priority = rng.choice(
                [-300, -150, -10, 0, 10] if hook == "prerouting" else [-10, 0, 0, 10]
            )
            policy = rng.choice(["accept", "drop"])
            rules = _nft_rules(family, _NFT_VERDICT_RULES, rng.randint(0, 5), rng)
            if regular and rng.random() < 0.7:
                rules.insert(rng.randint(0, len(rules)), _nft_jumps(family, regular, rng))
            lines.append(
                f"  chain b{b} {{ type filter hook {hook} priority {priority}; policy {policy};"
            )
            lines += [f"    {r}" for r in rules]
            lines.append("  }")
        lines.append("}")
        tables.append("\n".join(lines))
    return Case(f"nft-{index}", (("nft", "\n".join(tables) + "\n"),))


# ----------------------------------------------------------------------------- iptables

_XT_INPUT: dict[str, list[str]] = {
    "both": [
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-m conntrack --ctstate INVALID -j DROP",
        "-i lo -j ACCEPT",
        "-p tcp -m tcp --dport 22 -j ACCEPT",
        "-p tcp -m multiport --dports 22,443 -j ACCEPT",
        "-p udp -m udp --dport 53 -j ACCEPT",
        "-i eth0 -j ACCEPT",
        "-i eth+ -j DROP",
        "-i wg+ -j ACCEPT",
        "-p tcp -j ACCEPT",
        "-p udp -j DROP",
        "-p tcp -m tcp ! --dport 22 -j ACCEPT",
        "-p tcp -m tcp --dport 1024:65535 -j ACCEPT",
        "-p udp -m udp --dport 9000:9100 -j ACCEPT",
        "-m addrtype --dst-type LOCAL -j ACCEPT",
        "-m pkttype --pkt-type unicast -j DROP",
        "-m conntrack --ctstate NEW -j ACCEPT",
        "-m state --state NEW -j DROP",
        "-m conntrack --ctstate UNTRACKED -j ACCEPT",
        "-p tcp --syn -j ACCEPT",
        "-p tcp -m tcp --tcp-flags SYN,RST,ACK,FIN SYN -j DROP",
        "-m mark --mark 0x1 -j ACCEPT",
        "-j MARK --set-mark 0x1",
        "-m limit --limit 3/min -j LOG --log-prefix probe",
        "-j REJECT",
        "-j DROP",
        "-j ACCEPT",
    ],
    "ip": [
        "-s 198.18.250.0/24 -j ACCEPT",
        "-m addrtype --dst-type BROADCAST -j DROP",
        "! -s 198.18.250.0/24 -j ACCEPT",
        "-d 198.19.0.0/16 -j DROP",
        "-p icmp -m icmp --icmp-type 8 -j ACCEPT",
        "-m set --match-set office4 src -j ACCEPT",
        "-m set --match-set blocked4 src -j DROP",
        "-m set ! --match-set office4 src -j DROP",
        "-m set --match-set local4 dst -j ACCEPT",
        "-m set ! --match-set local4 dst -j ACCEPT",
    ],
    "ip6": [
        "-s fd00:198:18:fa::/64 -j ACCEPT",
        "! -s fd00:198:18:fa::/64 -j DROP",
        "-d fd00:198:19::/48 -j ACCEPT",
        "-m rt --rt-type 0 -j DROP",
        "-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT",
        "-m set --match-set office6 src -j ACCEPT",
        "-m set ! --match-set blocked6 src -j DROP",
        "-m set --match-set local6 dst -j DROP",
    ],
}
_XT_RETURNS = [
    "-j RETURN",
    "-m addrtype --dst-type LOCAL -j RETURN",
    "-m addrtype --dst-type MULTICAST -j RETURN",
    "-p udp -j RETURN",
    "-i eth0 -j RETURN",
]
_XT_PREROUTING = [
    "-p udp -j DROP",
    "-p tcp -m tcp --dport 22 -j ACCEPT",
    "-i eth0 -p tcp -j DROP",
    "-i lo -j DROP",
    "-j ACCEPT",
    "-j MARK --set-mark 0x1",
]
_XT_RAW_ONLY = ["-p tcp -j CT --notrack", "-p udp -j NOTRACK"]


def _xt_pick(family: str, pool: Sequence[str], rng: random.Random, count: int) -> list[str]:
    return [rng.choice(pool) for _ in range(count)]


def xt_text(family: str, rng: random.Random) -> str:
    input_pool = _XT_INPUT["both"] + _XT_INPUT[family]
    lines = []
    if rng.random() < 0.4:
        table = rng.choice(["raw", "mangle"])
        lines += [f"*{table}", f":PREROUTING {rng.choice(['ACCEPT', 'DROP'])} [0:0]"]
        if table == "mangle":
            lines.append(":INPUT ACCEPT [0:0]")
        pool = _XT_PREROUTING + (_XT_RAW_ONLY if table == "raw" else [])
        lines += [f"-A PREROUTING {r}" for r in _xt_pick(family, pool, rng, rng.randint(1, 3))]
        if table == "mangle":
            mangle_input = [r for r in input_pool if "REJECT" not in r]
            lines += [
                f"-A INPUT {r}" for r in _xt_pick(family, mangle_input, rng, rng.randint(0, 2))
            ]
        lines.append("COMMIT")
    user = [f"u{n}" for n in range(rng.randint(0, 2))]
    lines += ["*filter", f":INPUT {rng.choice(['ACCEPT', 'DROP'])} [0:0]", ":FORWARD DROP [0:0]"]
    lines += [f":{u} - [0:0]" for u in user]
    body = _xt_pick(family, input_pool, rng, rng.randint(0, 5))
    if user:
        at = rng.randint(0, len(body))
        jump = rng.choice(["-j", "-j", "-g"])
        body.insert(
            at,
            rng.choice(
                [f"{jump} {user[0]}", f"-p tcp {jump} {user[0]}", f"-i eth0 {jump} {user[0]}"]
            ),
        )
    lines += [f"-A INPUT {r}" for r in body]
    for n, u in enumerate(user):
        rules = _xt_pick(family, input_pool + _XT_RETURNS, rng, rng.randint(1, 4))
        if n + 1 < len(user) and rng.random() < 0.5:
            rules.insert(0, f"-j {user[n + 1]}")
        lines += [f"-A {u} {r}" for r in rules]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# Static sets only: a set filled at run time (timeouts, `-j SET`) may hold any source later,
# which packets sent now cannot show.
IPSETS = """create office4 hash:ip family inet
add office4 198.18.250.9
create blocked4 hash:net family inet
add blocked4 198.18.250.0/24
create local4 hash:net family inet
add local4 198.19.0.0/16
create office6 hash:ip family inet6
add office6 fd00:198:18:fa::9
create blocked6 hash:net family inet6
add blocked6 fd00:198:18:fa::/64
create local6 hash:net family inet6
add local6 fd00:198:19::/48
"""


def xt_case(rng: random.Random, index: int, backend: str) -> Case:
    suffix = "-legacy" if backend == "legacy" else ""
    steps: list[tuple[str, ...]] = [("ipset", IPSETS)]
    for family, tool in (("ip", "iptables"), ("ip6", "ip6tables")):
        if rng.random() < 0.85:
            steps.append(("restore", f"{tool}{suffix}-restore", xt_text(family, rng)))
    return Case(f"xt-{backend}-{index}", tuple(steps))


def mixed_case(rng: random.Random, index: int) -> Case:
    """nft tables and legacy iptables in one namespace: both hook, both filter."""
    nft = nft_case(rng, index).steps
    legacy = xt_case(rng, index, "legacy").steps
    return Case(f"mixed-{index}", (*nft, *legacy))


# ----------------------------------------------------------------------------- ufw


def ufw_cases() -> list[Case]:
    cases = []
    rules_variants = {"none": (), "ssh": ("allow 22/tcp",), "eth0": ("allow in on eth0",)}
    for backend in ("nft", "legacy"):
        for ipv6 in ("yes", "no"):
            for default in ("allow", "deny", "reject"):
                for name, rules in rules_variants.items():
                    if backend == "legacy" and (default == "reject" or name == "ssh"):
                        continue
                    cases.append(
                        Case(
                            f"ufw-{backend}-ipv6={ipv6}-{default}-{name}",
                            (("ufw", backend, ipv6, default, *rules),),
                        )
                    )
    return cases


# ----------------------------------------------------------------------------- DNAT


def _docker(backend: str, forward_policy: str, forward_rule: bool, forwarding: bool) -> Case:
    suffix = "-legacy" if backend == "legacy" else ""
    steps = []
    for family, tool in (("ip", "iptables"), ("ip6", "ip6tables")):
        target = "CTR4" if family == "ip" else "[CTR6]"
        nat = "\n".join(
            [
                "*nat",
                ":PREROUTING ACCEPT [0:0]",
                ":POSTROUTING ACCEPT [0:0]",
                ":DOCKER - [0:0]",
                "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
                "-A DOCKER -i ctr0 -j RETURN",
                f"-A DOCKER ! -i ctr0 -p tcp -m tcp --dport {PUBLISHED} -j DNAT "
                f"--to-destination {target}:{CONTAINER_PORT}",
                "COMMIT",
            ]
        )
        filt = [
            "*filter",
            ":INPUT DROP [0:0]",
            f":FORWARD {forward_policy} [0:0]",
            "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ]
        if forward_rule:
            dest = "CTR4/32" if family == "ip" else "CTR6/128"
            filt.append(
                f"-A FORWARD -d {dest} ! -i ctr0 -o ctr0 -p tcp -m tcp --dport {CONTAINER_PORT} "
                "-j ACCEPT"
            )
        filt.append("COMMIT")
        steps.append(("restore", f"{tool}{suffix}-restore", nat + "\n" + "\n".join(filt) + "\n"))
    value = "1" if forwarding else "0"
    steps += [
        ("sysctl", "net.ipv4.ip_forward", value),
        ("sysctl", "net.ipv6.conf.all.forwarding", value),
    ]
    name = f"docker-{backend}-fwd{forward_policy.lower()}-rule{int(forward_rule)}-ipfwd{value}"
    return Case(name, tuple(steps), container=True)


def _nft_dnat(variant: str, forward_policy: str, forwarding: bool) -> Case:
    value = "1" if forwarding else "0"
    nat = {
        "port": f"tcp dport {PUBLISHED} dnat ip to CTR4:{CONTAINER_PORT}\n"
        f"    tcp dport {PUBLISHED} dnat ip6 to [CTR6]:{CONTAINER_PORT}",
        "all": 'iifname "eth0" dnat ip to CTR4\n    iifname "eth0" dnat ip6 to CTR6',
        "redirect": f"tcp dport {PUBLISHED} redirect to :{{PORT}}",
    }[variant]
    text = f"""
table inet nat {{
  chain pre {{ type nat hook prerouting priority dstnat; policy accept;
    {nat}
  }}
}}
table inet filter {{
  chain forward_filter {{ type filter hook forward priority 0; policy {forward_policy};
    ct state established,related accept
  }}
  chain input {{ type filter hook input priority 0; policy drop;
    ct state established,related accept
    ct status dnat accept
  }}
}}
"""
    steps = (
        ("nft", text),
        ("sysctl", "net.ipv4.ip_forward", value),
        ("sysctl", "net.ipv6.conf.all.forwarding", value),
    )
    return Case(f"nft-dnat-{variant}-fwd{forward_policy}-ipfwd{value}", steps, container=True)


def dnat_cases() -> list[Case]:
    cases = []
    for backend in ("nft", "legacy"):
        for policy in ("ACCEPT", "DROP"):
            for rule in (False, True):
                for forwarding in (True, False):
                    if backend == "legacy" and not forwarding and rule:
                        continue
                    cases.append(_docker(backend, policy, rule, forwarding))
    for variant in ("port", "all", "redirect"):
        for policy in ("accept", "drop"):
            for forwarding in (True, False):
                cases.append(_nft_dnat(variant, policy, forwarding))
    return cases


# ----------------------------------------------------------------------------- all


def generate(seed: int, counts: dict[str, int]) -> list[Case]:
    rng = random.Random(seed)  # noqa: S311 — seeded so a disagreement can be replayed
    makers: dict[str, Callable[[random.Random, int], Case]] = {
        "nft": nft_case,
        "xt-nft": lambda r, i: xt_case(r, i, "nft"),
        "xt-legacy": lambda r, i: xt_case(r, i, "legacy"),
        "mixed": mixed_case,
    }
    cases: list[Case] = []
    for kind, count in counts.items():
        cases += [makers[kind](rng, i) for i in range(count)]
    return cases + ufw_cases() + dnat_cases()
