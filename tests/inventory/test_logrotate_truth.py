"""medsec's reading of logrotate configuration against logrotate's own (`logrotate -d`), on every
logrotate file that Debian packages ship and on generated variations of them.

The truth is what `logrotate -d` prints for each block it keeps ("rotating pattern: PATTERNS
CRITERION (N rotations) ... only log files >= MIN bytes ..., log files >= MAX are rotated
earlier ..."), read by the small parser below, which shares nothing with medsec's. The rule
compared: medsec keeps the same blocks, in the same order, with the same patterns, rotation
criterion (interval, or size threshold in bytes), rotate count, minsize and maxsize. `maxage` is
not printed by `-d`: it is compared by what logrotate does (`-d -f` over a real rotated file
whose age is known).
"""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from checks.facts.logs import LogrotateRule
from inventory.host.logs.logrotate_config import (
    DEFAULT_SIZE_BYTES,
    LogrotateCrash,
    NotUnderstood,
    accepted,
    read_logrotate_config,
)
from inventory.host.logs.logrotate_values import Accounts, logrotate_bytes, parse_accounts
from inventory.runner import LocalRunner
from tests.inventory.debian_files import cache_dir, tools_missing, unpack

# The packages the issue names, then others that ship a logrotate file in Debian 12.
CORE_PACKAGES = ("rsyslog", "nginx-common", "apache2", "postgresql-common", "mariadb-server")
MORE_PACKAGES = (
    "logrotate",
    "apt",
    "dpkg",
    "redis-server",
    "mosquitto",
    "rabbitmq-server",
    "squid",
    "fail2ban",
    "exim4-base",
    "ufw",
    "unattended-upgrades",
    "samba",
    "haproxy",
    "lighttpd",
    "php8.2-fpm",
    "syslog-ng-core",
    "cups-daemon",
    "chrony",
    "sssd-common",
    "ppp",
    "vsftpd",
    "proftpd-core",
    "privoxy",
    "freeradius",
    "aptitude",
    "libvirt-daemon-system",
    "speech-dispatcher",
    "zabbix-agent",
    "varnish",
    "munin-node",
)
GENERATED = 500


def _logrotate() -> str:
    path = shutil.which("logrotate") or (
        "/usr/sbin/logrotate" if os.access("/usr/sbin/logrotate", os.X_OK) else None
    )
    if path is None:
        pytest.skip("logrotate is not installed (Debian package logrotate)")
    return path


# ----------------------------------------------------------------------------- logrotate's reading


@dataclass(frozen=True)
class Block:
    """One block as logrotate -d describes it, or as medsec reads it, in the same terms."""

    patterns: tuple[str, ...]
    criterion: str
    """hourly, daily, weekly, monthly, yearly, or `N bytes`."""
    rotate: int
    """-1: logrotate printed no count (rotate -1)."""
    minsize: int
    maxsize: int


_HEAD = "\nrotating pattern: "
_REST = re.compile(
    r"(?P<pattern>.*?) "
    r"(?:(?P<interval>hourly|weekly|monthly|yearly) |after (?P<days>\d+) days "
    r"|(?P<bytes>\d+) bytes )"
    r"(?:\((?P<count>\d+) rotations\)\n|(?P<none>\(no old logs will be kept\)\n))?"
    r"(?:olddir is .*?, )?"
    r"empty log files are (?:not )?rotated, "
    r"(?:only log files >= (?P<minsize>\d+) bytes are rotated, )?"
    r"(?:log files >= (?P<maxsize>\d+) are rotated earlier, )?",
    re.S,
)


def logrotate_reading(config: Path, state: Path) -> list[Block] | None:
    """The blocks `logrotate -d` keeps from `config`, as it prints them; None: it crashed."""
    done = subprocess.run(
        [_logrotate(), "-d", "-s", str(state), str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"},
    )
    if done.returncode < 0:
        return None
    blocks: list[Block] = []
    for chunk in done.stderr.split(_HEAD)[1:]:
        m = _REST.match(chunk)
        assert m is not None, f"logrotate -d printed a block this test cannot read:\n{chunk[:400]}"
        if m["interval"]:
            criterion = m["interval"]
        elif m["days"]:
            assert m["days"] == "1", chunk
            criterion = "daily"
        else:
            criterion = f"{m['bytes']} bytes"
        rotate = int(m["count"]) if m["count"] else 0 if m["none"] else -1
        blocks.append(
            Block(
                tuple(shlex.split(m["pattern"])),
                criterion,
                rotate,
                int(m["minsize"] or 0),
                int(m["maxsize"] or 0),
            )
        )
    return blocks


def _bytes(text: str | None) -> int:
    if text is None:
        return 0
    count = logrotate_bytes(text)
    assert count is not None, text
    return count


def medsec_reading(rules: list[LogrotateRule]) -> list[Block]:
    blocks: list[Block] = []
    for rule in accepted(rules):
        if rule.interval is not None:
            criterion = rule.interval
        else:
            criterion = f"{_bytes(rule.size) if rule.size else DEFAULT_SIZE_BYTES} bytes"
        blocks.append(
            Block(
                rule.patterns,
                criterion,
                # logrotate prints a count above 0, "no old logs" for 0, nothing below.
                max(rule.rotate, -1),
                _bytes(rule.minsize),
                _bytes(rule.maxsize),
            )
        )
    return blocks


def this_host_accounts() -> Accounts:
    return parse_accounts(Path("/etc/passwd").read_text(), Path("/etc/group").read_text())


REFUSED = "medsec refuses"


def compare(config: Path, state: Path) -> tuple[list[Block] | None, list[Block] | str | None]:
    """(logrotate's reading, medsec's). None for logrotate: it crashed; for medsec: it says
    logrotate crashes; REFUSED: medsec names a construct it does not evaluate."""
    truth = logrotate_reading(config, state)
    try:
        ours = read_logrotate_config(LocalRunner(), str(config), accounts=this_host_accounts())
    except LogrotateCrash:
        return truth, None
    except NotUnderstood:
        return truth, REFUSED
    return truth, medsec_reading(ours.rules)


# ----------------------------------------------------------------------------- Debian's files


@pytest.fixture(scope="module")
def debian_logrotate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """path inside the package → content, for every logrotate file of the packages above."""
    _logrotate()
    why = tools_missing()
    if why:
        pytest.skip(f"cannot fetch Debian packages: {why}")
    cache = cache_dir(tmp_path_factory.mktemp("debs"))
    try:
        got = unpack(
            cache, (*CORE_PACKAGES, *MORE_PACKAGES), ("etc/logrotate.d/", "etc/logrotate.conf")
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot fetch Debian packages: {exc}")
    lost = [p for p in CORE_PACKAGES if p in got.missing]
    if lost:
        pytest.skip(f"cannot fetch {', '.join(lost)}: {got.missing[lost[0]]}")
    files: dict[str, bytes] = {}
    for package in sorted(got.files):
        for name, data in got.files[package].items():
            files[name] = data
    return files


def test_every_debian_logrotate_file_reads_as_logrotate_reads_it(
    debian_logrotate: dict[str, bytes], tmp_path: Path
) -> None:
    snippets = {n: d for n, d in debian_logrotate.items() if n.startswith("etc/logrotate.d/")}
    assert {"etc/logrotate.d/rsyslog", "etc/logrotate.d/nginx", "etc/logrotate.d/apache2"} <= set(
        snippets
    )
    assert {"etc/logrotate.d/postgresql-common", "etc/logrotate.d/mariadb"} <= set(snippets)
    disagreements = []
    compared = 0
    for name, data in sorted(snippets.items()):
        config = tmp_path / name.replace("/", "_")
        config.write_bytes(data)
        truth, ours = compare(config, tmp_path / "state")
        compared += len(truth or ())
        if truth != ours:
            disagreements.append((name, truth, ours))
    assert disagreements == []
    assert compared >= len(snippets)


def test_debian_tree_with_its_logrotate_conf(
    debian_logrotate: dict[str, bytes], tmp_path: Path
) -> None:
    """The whole tree as installed: logrotate.conf's globals (weekly, rotate 4, su root adm)
    reach every included file, and two packages naming one log (rsyslog and syslog-ng) meet."""
    folder = tmp_path / "logrotate.d"
    folder.mkdir()
    for name, data in debian_logrotate.items():
        if name.startswith("etc/logrotate.d/"):
            (folder / Path(name).name).write_bytes(data)
    main = debian_logrotate["etc/logrotate.conf"].decode()
    assert "include /etc/logrotate.d" in main
    config = tmp_path / "logrotate.conf"
    config.write_text(main.replace("include /etc/logrotate.d", f"include {folder}"))
    truth, ours = compare(config, tmp_path / "state")
    assert truth is not None
    assert len(truth) > 40
    assert truth == ours
    assert ours is not None
    by_pattern = {b.patterns: b for b in ours}
    mariadb = next(b for p, b in by_pattern.items() if "/var/log/mysql/*.log" in p)
    assert (mariadb.criterion, mariadb.rotate, mariadb.maxsize) == ("monthly", 6, 500 * 1024**2)


# ----------------------------------------------------------------------------- generated variations

# Directives as real files write them, and the tricky spellings logrotate reads its own way.
_VALID = [
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "hourly",
    "weekly 3",
    "weekly 7",
    "rotate 4",
    "rotate 52",
    "rotate -1",
    "rotate 010",
    "rotate 0x10",
    "rotate=5",
    "rotate = 6",
    "rotate 7  ",
    "size 100k",
    "size 10M",
    "size=1G",
    "maxsize 100K",
    "maxsize 500M",
    "maxsize = 2G",
    "minsize 1M",
    "minsize 50M",
    "size 5",
    "maxsize 0",
    "minsize 010",
    "missingok",
    "notifempty",
    "compress",
    "delaycompress",
    "dateext",
    "copytruncate",
    "sharedscripts",
    "compress delaycompress",
    "missingok # quiet",
    "ifempty",
    "nomissingok",
    "create",
    "create 0640 root adm",
    "create 640 root root",
    "create root adm",
    "su root adm",
    "su 0 0",
    "maxage 30",
    "maxage 200",
    "mail root@localhost",
    "nomail",
    "dateformat -%Y%m%d",
    "extension .log",
    "compresscmd /usr/bin/xz",
    "compressoptions -9",
    "start 0",
    "minage 2",
    "tabooext + .keep",
    "postrotate\n    /bin/true\nendscript",
    "postrotate\n  if true; then\n    rotate 99\n  fi\nendscript",
    "prerotate\nendscript",
    "postrotate endscript",
    "# a comment",
    "",
]
_TRICKY = [
    "Daily",
    "WEEKLY",
    "Monthly",
    "weekly 9",
    "weekly x",
    "daily 5",
    "daily # every day",
    "rotate -2",
    "rotate 08",
    "rotate 4 # four",
    "rotate",
    "rotate x",
    "Rotate 9",
    "ROTATE 9",
    "size 10m",
    "maxsize 1g",
    "size 10MB",
    "maxsize 1.5M",
    "size k",
    "minsize -5",
    "maxsize 0x10k",
    "size 10 M",
    "Size 10M",
    "MAXSIZE 1G",
    "nocompress}",
    "errors root",
    "create 0640 nosuchuser adm",
    "create 0640 root nosuchgroup",
    "create 0640 root adm extra",
    "create 9 root adm",
    "su root",
    "su",
    "su nosuchuser adm",
    "maxage 030",
    "maxage -1",
    "maxage 30 # c",
    "Maxage 30",
    "frobnicate 3",
    "mail root @x",
    "extension",
    "5",
    "{",
    "=daily",
    "postrotate\n    /bin/true\n    endscript",
    "lastaction\n  /bin/true\nendscript}",
    "tabooext .x",
]


class Generator:
    """Random logrotate files built from the directives above, in the shapes real files take."""

    def __init__(self, seed: int, root: Path) -> None:
        self.rng = random.Random(seed)  # noqa: S311 — reproducible inputs, not secrets
        self.root = root
        self.count = 0

    def pattern(self) -> str:
        self.count += 1
        path = f"{self.root}/logs/f{self.count}.log"
        return self.rng.choice([path, f'"{path}"', f"{self.root}/logs/g{self.count}*.log"])

    def directive(self) -> str:
        return self.rng.choice(_TRICKY if self.rng.random() < 0.12 else _VALID)

    def block(self) -> str:
        rng = self.rng
        heads = [self.pattern() for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        if len(heads) > 1 and rng.random() < 0.5:
            head = "\n# a comment between patterns\n".join(heads) + "\n{"
        else:
            head = " ".join(heads) + rng.choice([" {", "{", "\n{"])
        body = [self.directive() for _ in range(rng.randint(0, 6))]
        shape = rng.random()
        if shape < 0.1 and len(body) <= 1:
            return f"{head} {' '.join(body)} }}"
        indent = rng.choice(["  ", "\t", "    "])
        close = rng.choice(["}", "}", "}", "}", "  }", "} # end", "}}"])
        return "\n".join([head, *(indent + line for line in body), close])

    def file(self, *, include: str | None = None) -> str:
        rng = self.rng
        parts: list[str] = []
        if rng.random() < 0.5:
            parts.append(rng.choice(["weekly", "daily", "monthly", "rotate 4", "maxsize 10M"]))
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.4:
                parts.append(self.directive())
            parts.append(self.block())
            if include is not None and rng.random() < 0.3:
                parts.append(f"include {include}")
                include = None
            elif rng.random() < 0.03:
                parts.append(f"include {self.root}/nonexistent.d")
        text = "\n".join(parts)
        ending = rng.random()
        if ending < 0.1:
            return text  # no final newline
        if ending < 0.15:
            return text.replace("\n", "\r\n") + "\r\n"
        return text + "\n"

    def tree(self, case: Path) -> Path:
        """A main file, and for some cases a folder it includes (with names logrotate skips)."""
        case.mkdir(parents=True)
        folder = None
        if self.rng.random() < 0.4:
            folder = case / "conf.d"
            folder.mkdir()
            names = ["a", "b.conf", "c.bak", ".hidden", "d.dpkg-old", "e~", "f.disabled"]
            for name in self.rng.sample(names, self.rng.randint(1, 4)):
                (folder / name).write_text(self.file())
        main = case / "main.conf"
        main.write_text(self.file(include=str(folder) if folder else None))
        return main


def _generated(root: Path) -> Iterator[tuple[int, Path]]:
    for seed in range(GENERATED):
        yield seed, Generator(seed, root / f"case{seed}").tree(root / f"case{seed}")


def test_generated_configurations_read_as_logrotate_reads_them(tmp_path: Path) -> None:
    _logrotate()
    disagreements: list[str] = []
    kept = refused = 0
    for seed, main in _generated(tmp_path):
        truth, ours = compare(main, tmp_path / "state")
        kept += len(truth or ())
        if ours == REFUSED:
            refused += 1
        elif truth != ours:
            text = main.read_text()
            disagreements.append(f"seed {seed}:\n{text}\nlogrotate: {truth}\nmedsec:    {ours}")
    assert disagreements == [], "\n\n".join(disagreements[:3]) + f"\n({len(disagreements)} in all)"
    # The generator must produce blocks logrotate keeps, not only ones it refuses; and medsec
    # may decline only the rare construct whose outcome logrotate leaves undefined.
    assert kept > GENERATED
    assert refused < GENERATED // 50


# ----------------------------------------------------------------------------- maxage, by behaviour

_MAXAGE = [
    "maxage 30",
    "maxage 030",
    "maxage 0x1e",
    "maxage 30 # c",
    "maxage -1",
    "Maxage 30",
    "maxage 0",
    "maxage 200",
    "",
]


@pytest.mark.parametrize("line", _MAXAGE)
def test_maxage_removes_what_medsec_says(line: str, tmp_path: Path) -> None:
    """logrotate -d -f over a real log whose rotated copy is a known number of days old: the
    copy is removed exactly when it is older than the maxage medsec read (strictly, in days)."""
    _logrotate()
    log = tmp_path / "app.log"
    log.write_text("x\n")
    config = tmp_path / "app.conf"
    config.write_text(f"{log} {{\n  daily\n  rotate 3\n  {line}\n}}\n")
    ours = accepted(read_logrotate_config(LocalRunner(), str(config)).rules)
    rotated = tmp_path / "app.log.1"
    rotated.write_text("old\n")
    maxage = ours[0].maxage if ours else None
    ages = (
        [10_000.0] if maxage is None else [maxage + 0.5, *([maxage - 0.5] if maxage >= 1 else [])]
    )
    for age in ages:
        stamp = time.time() - age * 86400
        os.utime(rotated, (stamp, stamp))
        done = subprocess.run(
            [_logrotate(), "-d", "-f", "-s", str(tmp_path / "state"), str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        removed = f"removing old log {rotated}" in done.stderr
        kept_block = "rotating pattern:" in done.stderr
        assert kept_block == bool(ours), done.stderr
        expected = maxage is not None and age > maxage
        assert removed == expected, (line, age, maxage, done.stderr)
