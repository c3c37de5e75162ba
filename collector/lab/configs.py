"""Pure builders for every file the lab writes: the router's nftables ruleset (from the zones
file's policy), Apache + ModSecurity, nginx, snmpd and sshd configurations, and the zones file
with the lab's own paths and namespace names filled in.

Each builder is a function of its inputs returning text, so the configurations are tested without
root; `daemons.py` and `network.py` write them under the lab folder (`LabPaths`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from collector.lab import topology as t


class LabConfigError(ValueError):
    """The zones file or a template the lab builds from is malformed; the message names it."""


@dataclass(frozen=True)
class LabPaths:
    """Every path the lab uses, all inside one folder (namespaces isolate only the network)."""

    root: Path

    @property
    def marker(self) -> Path:
        """Proves the folder is a lab folder before `down` removes it."""
        return self.root / ".medsec-lab"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def zones(self) -> Path:
        return self.root / "zones.yaml"

    @property
    def snmp_secrets(self) -> Path:
        return self.root / "snmp.json"

    @property
    def run(self) -> Path:
        """Pid files, runtime and lock files."""
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def apache(self) -> Path:
        return self.root / "apache"

    @property
    def nginx(self) -> Path:
        return self.root / "nginx"

    @property
    def snmp(self) -> Path:
        return self.root / "snmp"

    @property
    def probe_key(self) -> Path:
        return self.ssh / "probe_key"

    @property
    def known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    @property
    def client_cert(self) -> Path:
        return self.pki / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.pki / "client.key"

    @property
    def ca_cert(self) -> Path:
        return self.pki / "ca.crt"

    def pidfile(self, daemon: str) -> Path:
        return self.run / f"{daemon}.pid"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


# --- the zones file -------------------------------------------------------------------------


@dataclass(frozen=True)
class Allow:
    """One allowed flow of the policy: new connections from a zone to a zone on one port."""

    source: str
    target: str
    proto: str
    port: int


def parse_policy(zones_text: str) -> tuple[Allow, ...]:
    """The `policy.allow` entries of a zones file, one `Allow` per port; zones must be the lab's."""
    document = _load_yaml(zones_text)
    policy = document.get("policy")
    if not isinstance(policy, dict) or policy.get("default") != "deny":
        raise LabConfigError("zones file: policy.default must be 'deny'")
    entries = policy.get("allow")
    if not isinstance(entries, list):
        raise LabConfigError("zones file: policy.allow must be a list")
    rules: list[Allow] = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise LabConfigError(f"zones file: policy.allow #{number} is not a mapping")
        source, target, ports = entry.get("from"), entry.get("to"), entry.get("ports")
        for key, value in (("from", source), ("to", target)):
            if value not in t.ZONE_NAMES:
                raise LabConfigError(
                    f"zones file: policy.allow #{number}: unknown zone {key}={value!r}"
                )
        if not isinstance(ports, list) or not ports:
            raise LabConfigError(f"zones file: policy.allow #{number}: ports must be a list")
        for port in ports:
            match = re.fullmatch(r"(tcp|udp)/(\d{1,5})", str(port))
            if match is None or not 0 < int(match.group(2)) < 65536:
                raise LabConfigError(f"zones file: policy.allow #{number}: bad port {port!r}")
            rules.append(Allow(str(source), str(target), match.group(1), int(match.group(2))))
    return tuple(rules)


def check_zones(zones_text: str) -> None:
    """Fail unless the zones file declares exactly the lab's zones with the lab's CIDRs."""
    document = _load_yaml(zones_text)
    declared = {
        str(entry.get("name")): entry.get("cidrs")
        for entry in document.get("zones") or []
        if isinstance(entry, dict)
    }
    expected = {zone.name: [zone.cidr] for zone in t.ZONES}
    if declared != expected:
        raise LabConfigError(f"zones file: zones must be {expected}, found {declared}")


def render_zones(
    zones_text: str, prefix: str, paths: LabPaths, extras: Mapping[str, Any] | None = None
) -> str:
    """The zones file for one running lab: prefixed namespace names, absolute LAB/ paths, and
    `extras` — the SNMP section, the gateway client certificate for each critical system with a
    ZTNA gateway, and scan timing merged into `scan`."""
    document = _load_yaml(zones_text)
    extras = extras or {}
    if "snmp" in extras:
        document.setdefault("snmp", dict(extras["snmp"]))
    for system in document.get("critical_systems") or []:
        if isinstance(system, dict) and system.get("ztna_gateway") and "client_cert_file" in extras:
            system.setdefault("client_cert_file", extras["client_cert_file"])
            system.setdefault("client_key_file", extras["client_key_file"])
    if "scan" in extras:
        scan = document.setdefault("scan", {})
        for key, value in extras["scan"].items():
            scan.setdefault(key, value)
    for entry in document.get("zones") or []:
        vantage = entry.get("vantage") if isinstance(entry, dict) else None
        if not isinstance(vantage, dict):
            continue
        for key in ("netns", "via_netns"):
            if isinstance(vantage.get(key), str):
                vantage[key] = prefix + vantage[key].removeprefix(t.DEFAULT_PREFIX)
        for key in ("key_file", "known_hosts"):
            if isinstance(vantage.get(key), str) and vantage[key].startswith("LAB/"):
                vantage[key] = str(paths.root / vantage[key].removeprefix("LAB/"))
    header = (
        "# Written by `medsec lab up` from collector/lab/zones.yaml for the lab in "
        f"{paths.root}\n# (namespace prefix {prefix!r}); `medsec lab down` removes it.\n"
    )
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=120)
    return header + body


def _load_yaml(text: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LabConfigError(f"zones file: not YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise LabConfigError("zones file: the top level must be a mapping")
    return document


# --- router ---------------------------------------------------------------------------------

_SYN_NEW = "tcp flags & (fin | syn | rst | ack) == syn ct state new"
"""New TCP connections only: a lone ACK finds no rule, so `nmap -sA` says filtered."""


def nft_ruleset(rules: Iterable[Allow], faults: Iterable[str]) -> str:
    """The router's ruleset: default drop, the policy's flows, and the router faults switched on.

    Loaded with `nft -f` as one transaction that replaces the lab table (the leading `add` +
    `delete` makes the file idempotent), so a fault switch never opens a window without rules.
    """
    active = set(faults)
    mgmt = t.zone("mgmt")
    lines = [
        f"add table inet {t.NFT_TABLE}",
        f"delete table inet {t.NFT_TABLE}",
        f"table inet {t.NFT_TABLE} {{",
        "  chain input_filter {",
        "    type filter hook input priority filter; policy drop;",
        '    iif "lo" accept',
        "    ct state established,related accept",
        f'    iifname "{mgmt.bridge}" ip daddr {t.SNMP_AGENT[0]} udp dport {t.SNMP_AGENT[1]} '
        'accept comment "the firewall\'s SNMP agent, from mgmt only"',
        f'    iifname "{mgmt.bridge}" icmp type echo-request accept',
        "  }",
        "  chain forward_filter {",
        # Fault router-unfiltered: no rule at all, the router only routes.
        "    type filter hook forward priority filter; policy "
        + ("accept;" if t.FAULT_ROUTER_UNFILTERED in active else "drop;"),
        "    ct state established,related accept",
    ]
    grouped: dict[tuple[str, str, str], list[int]] = {}
    for rule in rules:
        grouped.setdefault((rule.source, rule.target, rule.proto), []).append(rule.port)
    for (source, target, proto), ports in grouped.items():
        port_set = ", ".join(str(port) for port in sorted(set(ports)))
        match = _SYN_NEW if proto == "tcp" else "ct state new"
        lines.append(
            f'    iifname "{t.zone(source).bridge}" oifname "{t.zone(target).bridge}" '
            f"{proto} dport {{ {port_set} }} {match} accept "
            f'comment "policy {source} -> {target}"'
        )
    office, his, internet = t.zone("office"), t.zone("his"), t.zone("internet")
    if t.FAULT_OFFICE_HIS_OPEN in active:
        lines.append(
            f'    iifname "{office.bridge}" oifname "{his.bridge}" {_SYN_NEW} accept '
            f'comment "fault {t.FAULT_OFFICE_HIS_OPEN}"'
        )
    if t.FAULT_HIS_DB_LEAK in active:
        address, port = t.DATABASE_SQLSERVER
        lines.append(
            f'    iifname "{office.bridge}" oifname "{his.bridge}" ip daddr {address} '
            f'tcp dport {port} {_SYN_NEW} accept comment "fault {t.FAULT_HIS_DB_LEAK}"'
        )
    if t.FAULT_ZTNA_BYPASS in active:
        lines.append(
            f'    iifname {{ "{office.bridge}", "{internet.bridge}" }} oifname "{his.bridge}" '
            f"ip daddr {t.HIS_WEB[0]} tcp dport {t.HIS_WEB[1]} {_SYN_NEW} accept "
            f'comment "fault {t.FAULT_ZTNA_BYPASS}"'
        )
    if t.FAULT_ROUTER_RESET in active:
        # Reject instead of drop: the router answers in the hosts' place, as a closed port would.
        lines += [
            f'    meta l4proto tcp reject with tcp reset comment "fault {t.FAULT_ROUTER_RESET}"',
            "    meta l4proto udp reject with icmpx port-unreachable "
            f'comment "fault {t.FAULT_ROUTER_RESET}"',
        ]
    lines += ["  }", "}", ""]
    return "\n".join(lines)


# --- WAF: Apache + ModSecurity + CRS ----------------------------------------------------------

APACHE_MODULES = "/usr/lib/apache2/modules"
CRS_LOAD = "/usr/share/modsecurity-crs/owasp-crs.load"
MODSECURITY_RECOMMENDED = "/etc/modsecurity/modsecurity.conf-recommended"
UNICODE_MAPPING = "/etc/modsecurity/unicode.mapping"


def apache_conf(paths: LabPaths) -> str:
    """Apache as the portal's WAF: a reverse proxy whose every request passes ModSecurity + CRS."""
    apache, run, logs = paths.apache, paths.run, paths.logs
    modules = ("mpm_event", "authz_core", "unique_id", "proxy", "proxy_http", "headers")
    load = "\n".join(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so" for name in modules)
    backend = f"http://{t.PORTAL_BACKEND[0]}:{t.PORTAL_BACKEND[1]}/"
    block_page = (
        "<!DOCTYPE html><html><head><title>Request blocked</title></head><body>"
        "<h1>Request blocked</h1><p>The web application firewall rejected this request.</p>"
        f"<p>Support ID: %{{reqenv:UNIQUE_ID}}</p><!-- {t.WAF_BLOCK_MARKER} --></body></html>"
    )
    return f"""# medsec lab: the portal's WAF (generated; `medsec lab down` removes it)
ServerRoot "{apache}"
ServerName portal.hospital.lab
Listen {t.PORTAL[0]}:{t.PORTAL[1]}
PidFile "{paths.pidfile("waf")}"
DefaultRuntimeDir "{run}/apache"
Mutex file:{run}/apache default
ErrorLog "{logs}/apache-error.log"
LogLevel warn
User www-data
Group www-data
{load}
LoadModule security2_module {APACHE_MODULES}/mod_security2.so

StartServers 1
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
MinSpareThreads 4
MaxSpareThreads 32
ServerTokens Full
ServerSignature Off
TraceEnable Off
Timeout 30

LogFormat "%h %t \\"%r\\" %>s %b \\"%{{User-Agent}}i\\" id=%{{UNIQUE_ID}}e" lab
CustomLog "{logs}/apache-access.log" lab

SecDataDir "{apache}/modsec-data"
Include "{apache}/modsecurity.conf"
Include "{apache}/engine.conf"
Include {CRS_LOAD}
SecServerSignature "{t.WAF_SERVER}"

Header always set {t.WAF_REQUEST_ID_HEADER} "%{{UNIQUE_ID}}e"
ErrorDocument 403 "{block_page}"
ProxyRequests Off
ProxyPreserveHost On
ProxyTimeout 10
ProxyPass / {backend}
ProxyPassReverse / {backend}
"""


def modsecurity_conf(recommended: str, paths: LabPaths) -> str:
    """Debian's recommended ModSecurity settings with lab paths; the engine mode lives apart."""
    replacements = {
        "SecRuleEngine": None,
        "SecUnicodeMapFile": f"SecUnicodeMapFile {UNICODE_MAPPING} 20127",
        "SecTmpDir": f"SecTmpDir {paths.apache}/modsec-tmp",
        "SecDataDir": f"SecDataDir {paths.apache}/modsec-data",
        "SecAuditLog": f"SecAuditLog {paths.logs}/modsec-audit.log",
    }
    seen: set[str] = set()
    out: list[str] = []
    for line in recommended.splitlines():
        directive = line.split(maxsplit=1)[0] if line.strip() else ""
        if directive in replacements:
            seen.add(directive)
            replacement = replacements[directive]
            if replacement is not None:
                out.append(replacement)
            continue
        out.append(line)
    missing = set(replacements) - seen
    if missing:
        raise LabConfigError(
            f"{MODSECURITY_RECOMMENDED}: directives not found: {', '.join(sorted(missing))}"
        )
    return "\n".join(out) + "\n"


def modsecurity_engine_conf(waf_bypass: bool, *, app_filter: bool = False) -> str:
    mode = "DetectionOnly" if waf_bypass else "Off" if app_filter else "On"
    note = f"fault {t.FAULT_WAF_BYPASS}: log only" if waf_bypass else "blocking"
    if app_filter and not waf_bypass:
        note = f"fault {t.FAULT_APP_FILTER}: no WAF, the application filters itself"
    return f"# {note}\nSecRuleEngine {mode}\n"


# --- ZTNA gateway: nginx with client certificates ---------------------------------------------


def nginx_conf(paths: LabPaths) -> str:
    nginx, pki, logs = paths.nginx, paths.pki, paths.logs
    temp = "\n".join(
        f"    {kind}_temp_path {nginx}/temp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# medsec lab: the ZTNA gateway in front of his-web (generated)
user www-data;
worker_processes 1;
pid {paths.pidfile("gateway")};
error_log {logs}/nginx-error.log warn;
events {{
    worker_connections 256;
}}
http {{
    access_log {logs}/nginx-access.log;
{temp}
    server_tokens off;
    server {{
        listen {t.GATEWAY[0]}:{t.GATEWAY[1]} ssl;
        server_name ztna.hospital.lab;
        ssl_certificate {pki}/gateway.crt;
        ssl_certificate_key {pki}/gateway.key;
        ssl_client_certificate {pki}/ca.crt;
        # Judged per location by client-verify.conf, which answers as `ssl_verify_client on`
        # does (400 "No required SSL certificate was sent" / "The SSL certificate error"), so
        # the faults ztna-any-cert and ztna-open-path can each loosen one part of it.
        ssl_verify_client optional_no_ca;
        include {nginx}/tls.conf;
        include {nginx}/locations.conf;
    }}
}}
"""


def nginx_proxy_conf(paths: LabPaths) -> str:
    """LAB/nginx/proxy.conf: how a location of the gateway passes a request on to his-web."""
    return f"""proxy_pass https://{t.HIS_WEB[0]}:{t.HIS_WEB[1]};
proxy_ssl_verify on;
proxy_ssl_trusted_certificate {paths.pki}/ca.crt;
proxy_ssl_name his-web.hospital.lab;
proxy_connect_timeout 5s;
proxy_set_header X-Client-Verify $ssl_client_verify;
proxy_set_header X-Client-DN $ssl_client_s_dn;
"""


def nginx_client_verify_conf(any_cert: bool) -> str:
    """LAB/nginx/client-verify.conf: the client certificate check of a protected location;
    with the fault ztna-any-cert only its presence is checked, not its issuer or dates."""
    if any_cert:
        return (
            f"# fault {t.FAULT_ZTNA_ANY_CERT}\nif ($ssl_client_verify = NONE) {{ return 496; }}\n"
        )
    return (
        "if ($ssl_client_verify = NONE) { return 496; }\n"
        "if ($ssl_client_verify != SUCCESS) { return 495; }\n"
    )


def nginx_locations_conf(open_path: bool) -> str:
    """LAB/nginx/locations.conf: every path checks the client certificate; with the fault
    ztna-open-path a later-added /api/ location proxies without the check. (Relative includes
    are read from nginx.conf's folder, LAB/nginx.)"""
    text = "location / {\n    include client-verify.conf;\n    include proxy.conf;\n}\n"
    if open_path:
        text = (
            f"# fault {t.FAULT_ZTNA_OPEN_PATH}\n{text}"
            "location /api/ {\n    include proxy.conf;\n}\n"
        )
    return text


def nginx_tls_conf(tls10: bool) -> str:
    if tls10:
        return (
            f"# fault {t.FAULT_TLS10}\n"
            "ssl_protocols TLSv1 TLSv1.2 TLSv1.3;\nssl_ciphers DEFAULT:@SECLEVEL=0;\n"
        )
    return "ssl_protocols TLSv1.2 TLSv1.3;\n"


# --- the border firewall's SNMP agent ---------------------------------------------------------


@dataclass(frozen=True)
class SnmpSecrets:
    community: str
    auth_password: str
    priv_password: str

    def as_json(self, netns: str, persona: t.Persona) -> dict[str, Any]:
        """LAB/snmp.json: what a scanner needs to query the agent."""
        return {
            "address": t.SNMP_AGENT[0],
            "port": t.SNMP_AGENT[1],
            "from_netns": netns,
            "v2c": {"community": self.community},
            "v3": {
                "user": t.SNMP_V3_USER,
                "level": "authPriv",
                "auth_protocol": "SHA",
                "auth_password": self.auth_password,
                "priv_protocol": "AES",
                "priv_password": self.priv_password,
            },
            "sys_object_id": persona.sys_object_id,
            "sys_descr": persona.sys_descr,
        }


def snmpd_conf(persona: t.Persona, secrets: SnmpSecrets) -> str:
    for value in (secrets.community, secrets.auth_password, secrets.priv_password):
        if not re.fullmatch(r"[A-Za-z0-9]{8,64}", value):
            raise LabConfigError("SNMP secrets must be 8-64 letters or digits")
    mgmt = t.zone("mgmt")
    return f"""# medsec lab: the border firewall's management agent (generated; holds secrets)
agentAddress udp:{t.SNMP_AGENT[0]}:{t.SNMP_AGENT[1]}
sysDescr {persona.sys_descr}
sysObjectID {persona.sys_object_id}
sysName border-fw-01
sysLocation Hospital data centre, rack B2
sysContact netops@hospital.lab
sysServices 76
rocommunity {secrets.community} {mgmt.cidr}
createUser {t.SNMP_V3_USER} SHA {secrets.auth_password} AES {secrets.priv_password}
rouser {t.SNMP_V3_USER} priv
"""


# --- the office SSH vantage -------------------------------------------------------------------


def sshd_conf(paths: LabPaths) -> str:
    return f"""# medsec lab: the office SSH vantage (generated)
ListenAddress {t.SSH_VANTAGE[0]}:{t.SSH_VANTAGE[1]}
HostKey {paths.ssh}/host_ed25519_key
PidFile {paths.pidfile("sshd")}
AuthorizedKeysFile {paths.ssh}/authorized_keys
AllowUsers {t.PROBE_USER}
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding local
PermitTunnel no
PrintMotd no
Banner none
LogLevel INFO
"""


def render_all(
    paths: LabPaths,
    *,
    recommended_modsecurity: str,
    persona: t.Persona,
    secrets: SnmpSecrets,
    faults: Iterable[str],
) -> Mapping[Path, str]:
    """Every daemon configuration file, by path."""
    active = set(faults)
    return {
        paths.apache / "httpd.conf": apache_conf(paths),
        paths.apache / "modsecurity.conf": modsecurity_conf(recommended_modsecurity, paths),
        paths.apache / "engine.conf": modsecurity_engine_conf(
            bool(active & {t.FAULT_WAF_BYPASS, t.FAULT_WAF_DETECTION_ONLY}),
            app_filter=t.FAULT_APP_FILTER in active,
        ),
        paths.nginx / "nginx.conf": nginx_conf(paths),
        paths.nginx / "tls.conf": nginx_tls_conf(t.FAULT_TLS10 in active),
        paths.nginx / "proxy.conf": nginx_proxy_conf(paths),
        paths.nginx / "client-verify.conf": nginx_client_verify_conf(
            t.FAULT_ZTNA_ANY_CERT in active
        ),
        paths.nginx / "locations.conf": nginx_locations_conf(t.FAULT_ZTNA_OPEN_PATH in active),
        paths.snmp / "snmpd.conf": snmpd_conf(persona, secrets),
        paths.ssh / "sshd_config": sshd_conf(paths),
    }
