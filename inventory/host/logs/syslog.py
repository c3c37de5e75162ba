"""Syslog daemons: which records rsyslog and syslog-ng forward to another host. Classic selectors
(`*.*;auth,authpriv.none`), rsyslog's legacy and RainerScript configuration (forwarding actions,
file outputs, imfile inputs, imjournal) and syslog-ng's network destinations used by a log path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from checks.facts.logs import LogForwarding
from checks.hostport import parse_host_port
from checks.model import Unavailable
from inventory.runner import GatherError, Runner, SourceMissing

# ------------------------------------------------------------------- selectors

_SEVERITIES = {
    "emerg": 0,
    "panic": 0,
    "alert": 1,
    "crit": 2,
    "err": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}
FACILITIES = {
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "security",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    *(f"local{i}" for i in range(8)),
}
_SELECTOR = re.compile(r"^[A-Za-z0-9*,]+\.!?=?[A-Za-z*]+(?:;[A-Za-z0-9*,]+\.!?=?[A-Za-z*]+)*$")


def selector_covers(selector: str, facility: str, severity: str = "info") -> bool:
    """Whether a classic syslog selector (`*.*;auth,authpriv.none`) passes `facility` messages of
    `severity`. Later parts override earlier ones for the facilities they name, as in rsyslog."""
    level = _SEVERITIES[severity]
    covered = False
    for part in selector.split(";"):
        facilities, _, priority = part.partition(".")
        names = {f.strip().lower() for f in facilities.split(",")}
        if "*" not in names and facility not in names:
            continue
        negate = priority.startswith("!")
        spec = priority.lstrip("!")
        exact = spec.startswith("=")
        spec = spec.lstrip("=").lower()
        if spec == "none":
            covered = False
            continue
        if spec == "*":
            matches = True
        elif spec in _SEVERITIES:
            matches = level == _SEVERITIES[spec] if exact else level <= _SEVERITIES[spec]
        else:
            continue
        covered = (covered and not matches) if negate else (covered or matches)
    return covered


def carries(rule: LogForwarding, facilities: Iterable[str]) -> bool:
    """A rule carries a stream when it applies to all of the stream's facilities."""
    if rule.condition is not None:
        return False
    if rule.selector is None:
        return True
    return all(selector_covers(rule.selector, f) for f in facilities)


# --------------------------------------------------------------------- rsyslog

RSYSLOG_CONF = "/etc/rsyslog.conf"
RSYSLOG_DIR = "/etc/rsyslog.d"


@dataclass(frozen=True)
class FileInput:
    """An rsyslog imfile input: a file rsyslog reads and passes on."""

    pattern: str
    facility: str
    ruleset: str | None


@dataclass(frozen=True)
class FileOutput:
    """An rsyslog rule writing to a file."""

    path: str
    selector: str | None
    condition: str | None


@dataclass
class RsyslogConfig:
    """What rsyslog's configuration says about forwarding, files written and files read."""

    forwards: list[LogForwarding] = field(default_factory=list)
    outputs: list[FileOutput] = field(default_factory=list)
    inputs: list[FileInput] = field(default_factory=list)
    imjournal: bool = False
    """rsyslog reads the journal itself (RHEL): no ForwardToSyslog needed."""


_PARAM = re.compile(
    r"([A-Za-z_][\w.]*)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\[[^\]]*\]|[^\s,)]+)"
)
_OBJECTS = {"action", "input", "module", "ruleset", "template", "global", "main_queue", "include"}


def _params(text: str) -> dict[str, str]:
    return {k.lower(): v.strip("\"'") for k, v in _PARAM.findall(text)}


def _strip_comments(text: str) -> str:
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
            out.append(c)
        elif c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i) and (i == 0 or text[i - 1].isspace()):
            # A comment, not a glob such as `$IncludeConfig /etc/rsyslog.d/*.conf`.
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _balanced(text: str, start: int) -> int:
    """Index just past the `)` that closes the `(` at `start`, quotes respected."""
    depth = 0
    quote: str | None = None
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def parse_legacy_forward(action: str) -> tuple[str, int | None, str] | None:
    """(host, port, protocol) of a legacy forwarding action: `@@(o)host:port;Template`,
    `@[2001:db8::1]:514`, `:omrelp:host:port`; None for any other action."""
    action = action.split(";", 1)[0].strip()
    if action.startswith(":omrelp:"):
        host, port = parse_host_port(action[len(":omrelp:") :])
        return host, port, "relp"
    if not action.startswith("@"):
        return None
    protocol = "tcp" if action.startswith("@@") else "udp"
    target = re.sub(r"^\([^)]*\)", "", action.lstrip("@"))
    host, port = parse_host_port(target)
    return (host, port, protocol) if host else None


def _open_condition(prefix: str) -> bool:
    """Whether the text since the last statement is an `if ... then` or `else` still waiting for
    its statement or block (which may follow on a later line)."""
    words = prefix.split()
    if not words:
        return False
    if words[-1] in {"then", "else"}:
        return True
    return words[0] == "if" and "then" not in words


class _RsyslogParser:
    def __init__(self, source: str, config: RsyslogConfig) -> None:
        self.source = source
        self.config = config
        self.last_filter: tuple[str | None, str | None] = (None, None)
        self.legacy_input: dict[str, str] = {}

    def filter_of(self, prefix: str, context: Sequence[str]) -> tuple[str | None, str | None]:
        """(selector, condition) of a statement from the text before it and its enclosing blocks."""
        conditions = [c for c in context if c]
        prefix = prefix.strip()
        selector: str | None = None
        if prefix == "&":
            selector, condition = self.last_filter
            if condition:
                conditions.append(condition)
        elif m := re.fullmatch(r"if\s+prifilt\(\s*[\"']([^\"']+)[\"']\s*\)\s+then", prefix):
            selector = m.group(1)
        elif _SELECTOR.match(prefix):
            selector = prefix
        elif prefix:
            conditions.append(prefix)
        condition = "; ".join(conditions) or None
        self.last_filter = (selector, condition)
        return selector, condition

    def action(
        self, params: Mapping[str, str], selector: str | None, condition: str | None
    ) -> None:
        kind = params.get("type", "").lower()
        if kind in {"omfwd", "omrelp"} and params.get("target"):
            port = params.get("port", "")
            protocol = "relp" if kind == "omrelp" else params.get("protocol", "udp").lower()
            if (
                params.get("streamdriver", "").lower() in {"gtls", "ossl"}
                or params.get("streamdrivermode") == "1"
            ):
                protocol = "tls"
            self.config.forwards.append(
                LogForwarding(
                    daemon="rsyslog",
                    host=params["target"],
                    port=int(port) if port.isdigit() else None,
                    protocol=protocol,
                    selector=selector,
                    condition=condition,
                    source=self.source,
                )
            )
        elif kind == "omfile" and params.get("file"):
            self.config.outputs.append(FileOutput(params["file"], selector, condition))

    def legacy_line(self, line: str, context: Sequence[str]) -> bool:
        """Handle a legacy directive or `selector action` line; False when it is neither."""
        if line.startswith("$"):
            words = line.split()
            key = words[0].lower()
            value = words[1] if len(words) > 1 else ""
            if key == "$modload" and value.removesuffix(".so") == "imjournal":
                self.config.imjournal = True
            elif key in {"$inputfilename", "$inputfilefacility"}:
                self.legacy_input[key] = value
            elif key == "$inputrunfilemonitor" and "$inputfilename" in self.legacy_input:
                self.config.inputs.append(
                    FileInput(
                        self.legacy_input["$inputfilename"],
                        self.legacy_input.get("$inputfilefacility", "local0").lower(),
                        None,
                    )
                )
                self.legacy_input = {}
            return True
        head, _, action = re.sub(r"\s+", " ", line, count=1).partition(" ")
        head, action = head.strip(), action.strip()
        if not action or not (_SELECTOR.match(head) or head == "&" or head.startswith(":")):
            return False
        if action.lower().startswith("action("):
            return False  # RainerScript action after a selector: the object scanner takes it
        if head.startswith(":"):
            # A property-based filter `:msg, contains, "x"  action`: its action follows the
            # last comma-separated argument, so split at the last whitespace instead.
            head, _, action = re.sub(r"\s+", " ", line).rpartition(" ")
        selector, condition = self.filter_of(head, context)
        forward = parse_legacy_forward(action)
        if forward is not None:
            host, port, protocol = forward
            self.config.forwards.append(
                LogForwarding("rsyslog", host, port, protocol, selector, condition, self.source)
            )
        elif action.lstrip("-").startswith("/"):
            path = action.lstrip("-").split(";", 1)[0]
            self.config.outputs.append(FileOutput(path, selector, condition))
        return True

    def object(self, name: str, body: str, prefix: str, context: Sequence[str]) -> None:
        params = _params(body)
        if name == "action":
            self.action(params, *self.filter_of(prefix, context))
        elif name == "module" and params.get("load", "").removesuffix(".so") == "imjournal":
            self.config.imjournal = True
        elif name == "input" and params.get("type", "").lower() == "imfile" and params.get("file"):
            self.config.inputs.append(
                FileInput(
                    params["file"],
                    params.get("facility", "local0").lower(),
                    params.get("ruleset"),
                )
            )

    def parse(self, text: str) -> None:  # noqa: PLR0912 — a hand-written scanner
        text = _strip_comments(text)
        context: list[str] = []
        prefix_start = 0
        i = 0
        while i < len(text):
            c = text[i]
            if c in "\"'":
                end = text.find(c, i + 1)
                i = len(text) if end < 0 else end + 1
                continue
            if c == "\n":
                line = text[max(prefix_start, text.rfind("\n", 0, i) + 1) : i].strip()
                handled = bool(line) and self.legacy_line(line, context)
                if handled or not _open_condition(text[prefix_start:i]):
                    prefix_start = i + 1
                i += 1
                continue
            if c == "{":
                label = text[prefix_start:i].strip()
                if m := re.match(r"ruleset\s*\((.*)\)\s*$", label, re.S):
                    label = f"ruleset {_params(m.group(1)).get('name', '?')}"
                context.append(label)
                prefix_start = i = i + 1
                continue
            if c == "}":
                if context:
                    context.pop()
                prefix_start = i = i + 1
                continue
            m = re.compile(r"([A-Za-z_]+)\s*\(").match(text, i)
            if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
                name = m.group(1).lower()
                end = _balanced(text, m.end() - 1)
                if name in _OBJECTS:
                    prefix = text[prefix_start:i]
                    # A selector may stand before an action on the same line; an if-condition
                    # may span lines. Keep the condition, drop earlier unrelated lines.
                    if "if" not in prefix.split():
                        prefix = prefix.rsplit("\n", 1)[-1]
                    if name == "ruleset":
                        i = end
                        continue  # its `{` follows; the label is taken from the prefix
                    self.object(name, text[m.end() : end - 1], prefix, context)
                    prefix_start = end
                i = end
                continue
            i += 1
        line = text[max(prefix_start, text.rfind("\n") + 1) :].strip()
        if line:
            self.legacy_line(line, context)


def parse_rsyslog(files: Sequence[tuple[str, str]]) -> RsyslogConfig:
    """rsyslog's forwarding rules, file outputs and imfile inputs from (path, text) pairs."""
    config = RsyslogConfig()
    for path, text in files:
        _RsyslogParser(path, config).parse(text)
    return config


def _read_conf_files(runner: Runner, main: str, folder: str) -> list[tuple[str, str]] | None:
    """(path, text) of `main` and `folder/*.conf`; None when `main` does not exist."""
    if not runner.exists(main):
        return None
    files = [(main, runner.read_text(main))]
    try:
        names = runner.list_dir(folder)
    except SourceMissing:
        names = []
    files.extend(
        (f"{folder}/{n}", runner.read_text(f"{folder}/{n}")) for n in names if n.endswith(".conf")
    )
    return files


# ------------------------------------------------------------------- syslog-ng

SYSLOG_NG_CONF = "/etc/syslog-ng/syslog-ng.conf"
SYSLOG_NG_DIR = "/etc/syslog-ng/conf.d"
_NG_DRIVERS = {"network", "tcp", "udp", "tcp6", "udp6", "syslog"}


def _ng_blocks(text: str, keyword: str) -> Iterator[tuple[str, str]]:
    """(name, body) of each `keyword name { body };` (name empty for `log { ... };`)."""
    for m in re.finditer(rf"\b{keyword}\s+(\w*)\s*\{{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield m.group(1), text[m.end() : i - 1]


def parse_syslog_ng(files: Sequence[tuple[str, str]]) -> list[LogForwarding]:
    """Network destinations of syslog-ng that a `log` path uses; a path with a filter is
    conditional."""
    destinations: dict[str, list[tuple[str, int | None, str, str]]] = {}
    logs: list[tuple[str, str]] = []
    for path, raw in files:
        text = _strip_comments(raw)
        for name, body in _ng_blocks(text, "destination"):
            for m in re.finditer(r"\b(\w+)\s*\(", body):
                driver = m.group(1).lower()
                if driver not in _NG_DRIVERS:
                    continue
                args = body[m.end() : _balanced(body, m.end() - 1) - 1]
                host = re.match(r"\s*[\"']?([^\"'\s)]+)", args)
                if host is None:
                    continue
                port = re.search(r"\bport\s*\(\s*(\d+)\s*\)", args)
                transport = re.search(r"\btransport\s*\(\s*[\"']?(\w+)", args)
                default = driver.rstrip("6") if driver in {"tcp", "udp", "tcp6", "udp6"} else "tcp"
                destinations.setdefault(name, []).append(
                    (
                        host.group(1),
                        int(port.group(1)) if port else None,
                        transport.group(1).lower() if transport else default,
                        path,
                    )
                )
        logs.extend((path, body) for _, body in _ng_blocks(text, "log"))
    forwards: list[LogForwarding] = []
    for _, body in logs:
        used = re.findall(r"\bdestination\s*\(\s*(\w+)\s*\)", body)
        filters = re.findall(r"\bfilter\s*\(\s*(\w+)\s*\)", body)
        condition = "filter " + ", ".join(filters) if filters or " if " in body else None
        for name in used:
            for target, number, protocol, source in destinations.get(name, []):
                forwards.append(
                    LogForwarding("syslog-ng", target, number, protocol, None, condition, source)
                )
    return forwards


# ---------------------------------------------------------------- reading both


def read_syslog_forwarding(
    runner: Runner,
) -> tuple[RsyslogConfig | Unavailable | None, tuple[LogForwarding, ...] | Unavailable]:
    """rsyslog's configuration (None: not installed) and every forwarding rule of rsyslog and
    syslog-ng; both unavailable when rsyslog's configuration cannot be read."""
    try:
        files = _read_conf_files(runner, RSYSLOG_CONF, RSYSLOG_DIR)
        rsyslog: RsyslogConfig | Unavailable | None = (
            None if files is None else parse_rsyslog(files)
        )
    except GatherError as exc:
        rsyslog = Unavailable(f"rsyslog configuration unreadable: {exc}")
    try:
        syslog_ng = parse_syslog_ng(_read_conf_files(runner, SYSLOG_NG_CONF, SYSLOG_NG_DIR) or [])
    except GatherError as exc:
        return rsyslog, Unavailable(f"syslog-ng configuration unreadable: {exc}")
    if isinstance(rsyslog, Unavailable):
        return rsyslog, rsyslog
    return rsyslog, (*(rsyslog.forwards if rsyslog else ()), *syslog_ng)
