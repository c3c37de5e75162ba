"""Every parser of command output and configuration text the agent reads on a host, fed arbitrary
text and real captured outputs damaged (`tests.fuzz.mutate`): it returns a value, or raises the
error its caller turns into `Unavailable(reason)` — with a one-line message. Anything else (a
`TypeError` from JSON of another shape, a `RecursionError` from nesting, an `OverflowError` from
a huge number) escapes the parser's own handling and costs the whole fact at the gatherer
boundary with a message no sysadmin can act on.

The error each parser may raise is the one its caller catches (`except ... as exc: return
Unavailable(...)`), read from the code; "nothing" where the caller catches nothing from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import settings as Settings

from inventory.host import crypto, hardware, tpm, wipe
from inventory.host.backup import common, postgres, repos, wal
from inventory.host.disk import devices, dmcrypt, luks, mounts
from inventory.host.firewall import collect, nft, xtables
from inventory.host.logs import (
    auditd,
    journald,
    logrotate_config,
    logrotate_values,
    syslog,
    timestamps,
)
from tests.fuzz.budget import BUDGET, FUZZ, FUZZ_LIGHT
from tests.fuzz.mutate import fixture_texts, outside_text

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DEEP_JSON = "[" * 5000 + "]" * 5000
NOTHING: tuple[type[BaseException], ...] = ()


@dataclass(frozen=True)
class Parser:
    name: str
    parse: Callable[[str], object]
    seeds: tuple[str, ...]
    """Globs under tests/fixtures/ of real outputs to damage."""
    raises: tuple[type[BaseException], ...]
    """What the caller catches: the only exceptions the parser may let out."""
    json: bool = False
    regressions: tuple[str, ...] = ()
    """Inputs that once crashed the parser: always tried first."""
    named: bool = True
    """A parser the issue names: the full number of examples (else a quarter)."""


PARSERS = [
    # --- block devices and LUKS (inventory/host/disk)
    Parser(
        "lsblk --json",
        devices.parse_lsblk_json,
        ("raw/disk/his-db/lsblk*.json",),
        (ValueError,),
        json=True,
        regressions=(
            '{"blockdevices": [{"name": "sda", "children": 5}]}',
            DEEP_JSON,
        ),
    ),
    Parser(
        "lsblk --pairs",
        devices.parse_lsblk_pairs,
        ("raw/disk/his-db/lsblk*.json",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "cryptsetup luksDump --dump-json-metadata",
        luks.parse_luks_dump_json,
        ("raw/disk/luks2-*.json",),
        (ValueError,),
        json=True,
        regressions=(DEEP_JSON,),
    ),
    Parser(
        "cryptsetup luksDump --debug-json",
        luks.parse_luks_debug_json,
        ("raw/disk/*.debug-json.txt",),
        (ValueError,),
        regressions=("# " + '{"a":' * 5000 + "1" + "}" * 5000,),
    ),
    Parser(
        "cryptsetup luksDump (text)",
        luks.parse_luks_dump,
        ("raw/disk/luks*.txt",),
        (ValueError,),
    ),
    Parser(
        "dmsetup table --target crypt",
        dmcrypt.parse_dmsetup_crypt_targets,
        ("raw/disk/his-db/dmsetup-table-crypt.txt",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "/proc/self/mountinfo",
        mounts.parse_mountinfo,
        ("raw/disk/his-db/root/proc/self/mountinfo",),
        NOTHING,
        named=False,
    ),
    Parser(
        "/proc/swaps",
        mounts.parse_proc_swaps,
        ("raw/disk/his-db/root/proc/swaps",),
        NOTHING,
        regressions=("Filename Type Size Used Priority\n/dev/dm-2 partition \u00b2 0 -2\n",),
        named=False,
    ),
    Parser(
        "blkid -p -o export",
        devices.parse_blkid_export,
        ("raw/disk/his-db/commands.json",),
        NOTHING,
        named=False,
    ),
    # --- erase capabilities (inventory/host/wipe.py)
    Parser("hdparm -I", wipe.parse_hdparm_identify, ("raw/wipe/hdparm-I_*",), (ValueError,)),
    Parser(
        "nvme id-ctrl -o json",
        wipe.parse_nvme_id_ctrl,
        ("raw/wipe/nvme-id-ctrl_*.json",),
        (ValueError,),
        json=True,
        regressions=(DEEP_JSON,),
    ),
    Parser(
        "sg_opcodes --compact",
        wipe.parse_sg_opcodes,
        ("raw/wipe/sg_opcodes*",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "tool --version",
        lambda text: wipe.parse_tool_version("hdparm", text),
        ("raw/wipe/versions/*",),
        NOTHING,
        named=False,
    ),
    # --- logs (inventory/host/logs)
    Parser(
        "journald.conf",
        lambda text: journald.parse_journald_conf([("journald.conf", text)], persistent_dir=True),
        ("etc/*/etc/systemd/journald.conf", "etc/*/*/systemd/journald.conf.d/*"),
        (ValueError,),
    ),
    Parser(
        "journalctl --output=json (oldest entry)",
        journald.parse_journal_oldest,
        ("raw/backup/pg15-primary.json",),  # a JSON object per line, like journalctl's
        (ValueError, KeyError),
        json=True,
        regressions=("2\n", "[]\n", '{"__REALTIME_TIMESTAMP": "9' + "9" * 30 + '"}\n', DEEP_JSON),
        named=False,
    ),
    Parser(
        "logrotate.conf",
        logrotate_config.parse_logrotate_text,
        ("etc/*/etc/logrotate.conf", "etc/*/etc/logrotate.d/*"),
        (ValueError,),  # NotUnderstood is one
        regressions=("include /etc/logrotate.d\ninclude /etc/logrotate.d\n",),
    ),
    Parser(
        "auditd.conf",
        auditd.parse_auditd_conf,
        ("etc/*/etc/audit/auditd.conf",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "audit dispatcher plugin",
        auditd.parse_audit_plugin,
        ("etc/*/etc/audit/plugins.d/*",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "audisp-remote.conf",
        lambda text: auditd.parse_audisp_remote(text, "/etc/audit/audisp-remote.conf"),
        ("etc/*/etc/audit/plugins.d/*",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "rsyslog.conf",
        lambda text: syslog.parse_rsyslog([("/etc/rsyslog.conf", text)]),
        ("etc/*/etc/rsyslog.conf", "etc/*/etc/rsyslog.d/*"),
        NOTHING,
        named=False,
    ),
    Parser(
        "syslog-ng.conf",
        lambda text: syslog.parse_syslog_ng([("/etc/syslog-ng/syslog-ng.conf", text)]),
        ("etc/*/etc/rsyslog.conf",),
        NOTHING,
        named=False,
    ),
    Parser(
        "systemd time span",
        timestamps.parse_timespan,
        ("etc/*/etc/systemd/journald.conf.d/*",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "first line of a log file",
        lambda text: timestamps.parse_line_timestamp(text, now=NOW),
        ("etc/*/var/log/syslog", "etc/*/var/log/secure", "etc/*/var/log/audit/audit.log"),
        NOTHING,
        named=False,
    ),
    Parser(
        "/etc/passwd and /etc/group",
        lambda text: logrotate_values.parse_accounts(text, text),
        ("etc/*/etc/rsyslog.conf",),
        NOTHING,
        named=False,
    ),
    # --- firewall (inventory/host/firewall)
    Parser(
        "nft -j list ruleset",
        nft.parse_nft_json,
        ("raw/firewall/nft_-j_*.json",),
        # collect._read_nft also turns these three into Unavailable ("a shape nft never printed").
        (nft.RulesetError, KeyError, TypeError, AttributeError),
        json=True,
        regressions=('{"nftables": ' + DEEP_JSON + "}",),
    ),
    Parser(
        "nft list ruleset",
        nft.parse_nft_listing,
        ("raw/firewall/*.nft", "raw/firewall/nft_list_ruleset_*.txt"),
        (nft.RulesetError, KeyError, TypeError, AttributeError),
        named=False,
    ),
    Parser(
        "iptables-save",
        lambda text: xtables.tables_from_save(text, source="iptables", family="ip"),
        ("raw/firewall/*save*.txt",),
        (nft.RulesetError,),
    ),
    Parser(
        "ipset save",
        xtables.parse_ipset_save,
        ("raw/firewall/*save*.txt",),
        NOTHING,
        regressions=("create blocked hash:ip family\n",),
        named=False,
    ),
    Parser(
        "ip -j address show (firewall)",
        collect.parse_ip_address,
        ("sysfs/*/commands/ip_-json_addr_show",),
        (ValueError,),
        json=True,
        regressions=("0", "[3]", '{"lo": {}}', '[{"ifname": "eth0", "addr_info": [[]]}]'),
        named=False,
    ),
    Parser(
        "ip -j route show",
        lambda text: collect.parse_ip_route(text, "ipv4"),
        ("sysfs/*/commands/ip_-json_addr_show",),
        (ValueError,),
        json=True,
        regressions=("0", '"tcp"', DEEP_JSON),
        named=False,
    ),
    Parser(
        "/etc/ufw/ufw.conf",
        collect.parse_ufw_conf,
        ("etc/*/etc/rsyslog.conf",),
        NOTHING,
        named=False,
    ),
    # --- hardware and crypto (inventory/host)
    Parser(
        "ip -json addr show (inventory)",
        hardware.parse_ip_addr_json,
        ("sysfs/*/commands/ip_-json_addr_show",),
        (ValueError,),
        json=True,
        regressions=(DEEP_JSON,),
        named=False,
    ),
    Parser(
        "ip -o addr show",
        hardware.parse_ip_addr_oneline,
        ("sysfs/*/commands/ip_-o_addr_show",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "/etc/os-release",
        hardware.parse_os_release,
        ("sysfs/*/root/etc/os-release",),
        NOTHING,
        named=False,
    ),
    Parser(
        "/proc/cpuinfo",
        hardware.parse_cpuinfo,
        ("sysfs/*/root/proc/cpuinfo",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "/proc/meminfo",
        hardware.parse_meminfo,
        ("sysfs/*/root/proc/meminfo",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "tpm_version_major",
        tpm.parse_tpm_version_major,
        ("sysfs/*/root/sys/devices/**/tpm_version_major",),
        NOTHING,
        named=False,
    ),
    Parser(
        "openssl list",
        crypto.parse_openssl_list,
        ("raw/crypto/*/openssl_list_*",),
        NOTHING,
        named=False,
    ),
    Parser(
        "/proc/crypto",
        crypto.parse_proc_crypto,
        ("raw/crypto/*/proc_crypto.txt",),
        NOTHING,
        regressions=("name : xts(sm4)\npriority : " + "9" * 5000 + "\n",),
        named=False,
    ),
    # --- backups (inventory/host/backup): collect.py turns ValueError into Unavailable
    Parser(
        "restic snapshots --json",
        lambda text: repos.parse_restic_snapshots(text, NOW),
        ("raw/backup/restic-*.json",),
        (ValueError,),
        json=True,
        regressions=(DEEP_JSON,),
        named=False,
    ),
    Parser(
        "borg list --json",
        lambda text: repos.parse_borg_list(text, NOW),
        ("raw/backup/borg-*.json",),
        (ValueError,),
        json=True,
        regressions=(DEEP_JSON,),
        named=False,
    ),
    Parser(
        "psql pg_stat_archiver row",
        lambda text: postgres.parse_postgres_status(text, NOW),
        ("raw/backup/pg15-*.json",),
        (ValueError,),
        json=True,
        regressions=(DEEP_JSON,),
        named=False,
    ),
    Parser(
        "pg_waldump",
        wal.parse_waldump,
        ("raw/backup/pg15-waldump-*.txt",),
        (ValueError,),
        named=False,
    ),
    Parser(
        "backup timestamp",
        common.parse_timestamp,
        ("raw/backup/restic-*.json",),
        (ValueError,),
        named=False,
    ),
]


def assert_refused_clearly(parser: Parser, text: str) -> None:
    """The parser's contract on one input."""
    try:
        parser.parse(text)
    except parser.raises as exc:
        refused: BaseException = exc
    else:
        return
    message = str(refused)
    assert message.strip(), f"{parser.name}: {type(refused).__name__} without a message"
    assert "\n" not in message, f"{parser.name}: a message of several lines: {message!r}"


@pytest.mark.parametrize("parser", PARSERS, ids=[p.name for p in PARSERS])
def test_returns_or_raises_its_documented_error(parser: Parser) -> None:
    seeds = fixture_texts(*parser.seeds)
    settings: Settings = FUZZ if parser.named else FUZZ_LIGHT

    @settings
    @given(outside_text(seeds, is_json=parser.json))
    def run(text: str) -> None:
        if not BUDGET.spent():
            assert_refused_clearly(parser, text)

    for regression in parser.regressions:
        run = example(regression)(run)
    run()


@pytest.mark.timeout(60)
def test_logrotate_text_follows_no_include() -> None:
    """`parse_logrotate_text` reads one file: an include adds nothing. It used to read the same
    text again for every include, so three include lines meant 3**16 readings (a hang)."""
    config = logrotate_config.parse_logrotate_text(
        "include /etc/logrotate.d\n" * 3 + "/var/log/his.log {\n  rotate 9\n}\n"
    )
    assert [(r.patterns, r.rotate) for r in config.rules] == [(("/var/log/his.log",), 9)]
    assert config.errors == []
