"""What the SSH runner may run on a host it does not own: the read-only commands the gatherers in
`inventory/host/` use, each with the argument forms they use, and nothing else.

The agent runs on a host whose owner installed it; agentless collection logs into a hospital's
server with a key that may be root's, so a bug in a gatherer must never become a write. Every
argv and environment is judged here before it is sent: the program (by name, or an absolute path
in a system folder), then its arguments against the forms that program's gatherer uses. Tools that
can erase (shred, blkdiscard, nwipe, sg_sanitize, hdparm) may only print their version or an
identify page; tools with a writing mode (nft, ip, sysctl, journalctl, find, ipset, dmsetup,
cryptsetup, restic, borg, psql, pg_waldump) only their listing forms. The one helper that writes is
borg's private base folder: `mktemp -d` of a fixed template, removed by `rm -rf` of exactly the
folder this runner made. A gatherer that needs a new command adds its form here, with a test.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Collection, Mapping, Sequence

from inventory.host.backup.postgres import POSTGRES_QUERY, WRITE_POSITION_QUERY

SYSTEM_DIRS = frozenset(
    ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
)
_POSTGRES_DIRS = (
    re.compile(r"/usr/lib/postgresql/\d+/bin"),  # Debian, Ubuntu
    re.compile(r"/usr/pgsql-\d+/bin"),  # PGDG RPMs
)
TEMP_TEMPLATE = "medsec-backup.XXXXXXXXXX"
"""The only folder `mktemp` may make (borg's BORG_BASE_DIR, `inventory/host/backup/common.py`)."""
TEMP_MADE = re.compile(r"/tmp/medsec-backup\.[A-Za-z0-9]{10}")  # noqa: S108 — a pattern
"""What that `mktemp -d -t` prints with the environment the runner gives (no TMPDIR)."""

_DEVICE = re.compile(r"/dev/[A-Za-z0-9._/+:-]+")
_SYSCTL_KEY = re.compile(r"[A-Za-z0-9_.\-/]+")
_NAME = re.compile(r"[A-Za-z0-9_.:@-]+")

# Environment a gatherer may set beyond LC_ALL/LANG/PATH, and how its value must look.
_ENV_VALUES: dict[str, re.Pattern[str]] = {
    "TZ": re.compile(r"UTC0?"),
    "PGCONNECT_TIMEOUT": re.compile(r"\d{1,4}"),
    "PGAPPNAME": re.compile(r"medsec-agent"),
    "BORG_BASE_DIR": TEMP_MADE,
    "BORG_RELOCATED_REPO_ACCESS_IS_OK": re.compile(r"no"),
    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": re.compile(r"no"),
    "BORG_PASSPHRASE": re.compile(r""),
    # BORG_PASSCOMMAND runs a command: only `cat FILE` (checked apart, below).
}

Rule = Callable[[list[str], Collection[str]], str | None]
"""(arguments, folders this runner made) → None when allowed, else why not."""


def _exactly(*forms: Sequence[str]) -> Rule:
    allowed = [list(form) for form in forms]

    def rule(args: list[str], made: Collection[str]) -> str | None:
        return None if args in allowed else "not one of the forms medsec uses"

    return rule


def _version_only(args: list[str], made: Collection[str]) -> str | None:
    # Erasing tools: the wipe gatherer only asks their version.
    return None if args in (["--version"], ["-V"], ["version"]) else "only --version is allowed"


def _device_forms(*forms: Sequence[str]) -> Rule:
    """`forms` with their last argument a /dev path ("DEV" in the form), or exact forms."""

    def rule(args: list[str], made: Collection[str]) -> str | None:
        for form in forms:
            if list(form[:-1]) == args[:-1] and len(form) == len(args):
                if form[-1] == "DEV" and _DEVICE.fullmatch(args[-1]):
                    return None
                if form[-1] == args[-1]:
                    return None
        return "not one of the forms medsec uses"

    return rule


def _any(args: list[str], made: Collection[str]) -> str | None:
    return None


def _lsblk(args: list[str], made: Collection[str]) -> str | None:
    # lsblk only lists; `--sysroot` would read another tree but not write.
    return None


def _cryptsetup(args: list[str], made: Collection[str]) -> str | None:
    if args == ["--version"]:
        return None
    if (
        len(args) == 5
        and args[:3] == ["token", "export", "--token-id"]
        and args[3].isdigit()
        and _DEVICE.fullmatch(args[4])
    ):
        return None
    if args and args[0] == "luksDump" and len(args) in (2, 3):
        options = args[1:-1]
        # Never --dump-volume-key/--dump-master-key: the key is a secret, not evidence.
        if set(options) <= {"--dump-json-metadata", "--debug-json"} and _DEVICE.fullmatch(args[-1]):
            return None
    return "only --version, luksDump [--dump-json-metadata|--debug-json] DEV, token export"


def _dmsetup(args: list[str], made: Collection[str]) -> str | None:
    # `table` without --showkeys prints no key material.
    if args in (["table"], ["table", "--target", "crypt"], ["--version"], ["version"]):
        return None
    return "only `dmsetup table [--target crypt]`"


def _nft(args: list[str], made: Collection[str]) -> str | None:
    rest = args[1:] if args[:1] in (["-j"], ["--json"]) else args
    if rest[:1] == ["list"] and all(_NAME.fullmatch(a) for a in rest[1:]):
        return None
    return "only `nft [-j] list ...`"


def _xtables_save(args: list[str], made: Collection[str]) -> str | None:
    if not args or args == ["-c"]:
        return None
    if len(args) == 2 and args[0] == "-t" and _NAME.fullmatch(args[1]):
        return None
    return "only the plain listing"


def _ipset(args: list[str], made: Collection[str]) -> str | None:
    if args in (["save"], ["list"], ["-o", "save", "list"]):
        return None
    return "only `ipset save` or `ipset list`"


_IP_WORDS = frozenset(
    {"-j", "-json", "-o", "-oneline", "-4", "-6", "-d", "-details"}
    | {"addr", "address", "a", "route", "r", "link", "l", "show", "list"}
)


def _ip(args: list[str], made: Collection[str]) -> str | None:
    if args and set(args) <= _IP_WORDS and ({"show", "list"} & set(args)):
        return None
    return "only `ip [-j|-o|-4|-6] addr|route|link show`"


def _sysctl(args: list[str], made: Collection[str]) -> str | None:
    keys = [a for a in args if a not in ("-n", "-e")]
    if keys and all(_SYSCTL_KEY.fullmatch(k) and not k.startswith("-") for k in keys):
        return None
    return "only `sysctl -n KEY` (reading a key, never KEY=VALUE, -w or -p)"


_JOURNALCTL_FLAGS = frozenset(
    {"--no-pager", "--quiet", "-q", "--reverse", "-r", "--header", "--disk-usage"}
    | {"--list-boots", "--utc", "--no-hostname", "--all", "-a", "--merge", "-m"}
)
_JOURNALCTL_VALUED: tuple[str, ...] = (
    *("--output=", "--since=", "--until=", "--lines=", "--unit="),
    *("--identifier=", "--priority=", "--boot=", "--output-fields="),
)
_JOURNAL_MATCH = re.compile(r"[A-Z0-9_]+=.*")


def _journalctl(args: list[str], made: Collection[str]) -> str | None:
    # Listed options only: --vacuum-*, --rotate, --flush, --sync, --setup-keys and
    # --relinquish-var change the journal.
    for arg in args:
        if arg in _JOURNALCTL_FLAGS or arg.startswith(_JOURNALCTL_VALUED):
            continue
        if _JOURNAL_MATCH.fullmatch(arg):
            continue
        return f"option {arg!r} is not one medsec reads the journal with"
    return None


_FIND_ACTIONS = frozenset(
    ("-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls")
)


def _find(args: list[str], made: Collection[str]) -> str | None:
    acting = _FIND_ACTIONS & set(args)
    return f"{sorted(acting)[0]} is not allowed" if acting else None


def _openssl(args: list[str], made: Collection[str]) -> str | None:
    if args == ["version"]:
        return None
    if len(args) == 2 and args[0] == "list" and re.fullmatch(r"-[a-z-]+-algorithms", args[1]):
        return None
    if len(args) == 1 and re.fullmatch(r"list-[a-z-]+-algorithms", args[0]):
        return None  # OpenSSL 1.0
    return "only `openssl version` and `openssl list -...-algorithms`"


def _options(
    args: list[str], flags: Collection[str], valued: Collection[str]
) -> tuple[list[str], str | None]:
    """The positional arguments, or why an option is refused."""
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in flags:
            i += 1
        elif arg in valued:
            if i + 1 >= len(args):
                return [], f"{arg} needs a value"
            i += 2
        elif arg.startswith("-") and arg.split("=", 1)[0] in valued and "=" in arg:
            i += 1
        elif arg.startswith("-"):
            return [], f"option {arg!r} is not one medsec uses"
        else:
            positional.append(arg)
            i += 1
    return positional, None


def _restic(args: list[str], made: Collection[str]) -> str | None:
    if args in (["version"], ["--version"]):
        return None
    # Never --password-command (it runs a program); --no-lock so nothing is written.
    positional, problem = _options(
        args,
        flags={"--no-lock", "--no-cache", "--json", "--quiet", "-q"},
        valued={"--repo", "-r", "--password-file", "-p"},
    )
    if problem:
        return problem
    if positional != ["snapshots"] or "--no-lock" not in args:
        return "only `restic --no-lock ... snapshots`"
    return None


def _borg(args: list[str], made: Collection[str]) -> str | None:
    if args == ["--version"]:
        return None
    if args[:1] != ["list"]:
        return "only `borg list --bypass-lock REPO`"
    positional, problem = _options(
        args[1:], flags={"--json", "--bypass-lock", "--short"}, valued={"--last"}
    )
    if problem:
        return problem
    if len(positional) != 1 or "--bypass-lock" not in args:
        return "only `borg list --bypass-lock REPO`"
    return None


_PSQL_QUERIES = frozenset((POSTGRES_QUERY, WRITE_POSITION_QUERY))
_PSQL_FLAGS = frozenset(
    {"--no-psqlrc", "--no-password", "--quiet", "--no-align", "--tuples-only"}
    | {"--set=ON_ERROR_STOP=1"}
)


def _psql(args: list[str], made: Collection[str]) -> str | None:
    # The backup gatherer's own queries only: psql runs whatever SQL it is given.
    commands = [a for a in args if a.startswith("--command=")]
    if len(commands) != 1 or commands[0].removeprefix("--command=") not in _PSQL_QUERIES:
        return "only the backup gatherer's own queries"
    for arg in args:
        if arg in _PSQL_FLAGS or arg.startswith(("--command=", "--dbname=")):
            continue
        return f"option {arg!r} is not one medsec uses"
    return None


def _pg_waldump(args: list[str], made: Collection[str]) -> str | None:
    # Reads WAL files; --save-fullpage (PostgreSQL 16) would write page images.
    if any(a.startswith("--save-fullpage") for a in args):
        return "--save-fullpage writes files"
    return None


def _mktemp(args: list[str], made: Collection[str]) -> str | None:
    return None if args == ["-d", "-t", TEMP_TEMPLATE] else f"only `mktemp -d -t {TEMP_TEMPLATE}`"


def _rm(args: list[str], made: Collection[str]) -> str | None:
    if len(args) == 3 and args[:2] == ["-rf", "--"] and args[2] in made:
        return None
    return "only the folder this runner's mktemp made"


def _true(args: list[str], made: Collection[str]) -> str | None:
    return None if not args else "no arguments"


RULES: dict[str, Rule] = {
    # hardware, firewall
    "ip": _ip,
    "sysctl": _sysctl,
    "nft": _nft,
    "iptables-save": _xtables_save,
    "ip6tables-save": _xtables_save,
    "iptables-legacy-save": _xtables_save,
    "ip6tables-legacy-save": _xtables_save,
    "iptables-nft-save": _xtables_save,
    "ip6tables-nft-save": _xtables_save,
    "ipset": _ipset,
    # disks and encryption
    "lsblk": _lsblk,
    "blkid": _device_forms(["-p", "-o", "export", "DEV"]),
    "cryptsetup": _cryptsetup,
    "dmsetup": _dmsetup,
    # wipe tooling: versions and identify pages
    "shred": _version_only,
    "nwipe": _version_only,
    "blkdiscard": _version_only,
    "sg_sanitize": _version_only,
    "hdparm": _device_forms(["-V"], ["-I", "DEV"]),
    "nvme": _device_forms(["version"], ["--version"], ["id-ctrl", "-o", "json", "DEV"]),
    "sg_opcodes": _device_forms(["--version"], ["--compact", "DEV"]),
    # crypto
    "openssl": _openssl,
    # logs
    "journalctl": _journalctl,
    "stat": _any,
    # backups
    "restic": _restic,
    "borg": _borg,
    "psql": _psql,
    "pg_waldump": _pg_waldump,
    "find": _find,
    "mktemp": _mktemp,
    "rm": _rm,
    # the runner's own check that it can run commands at all
    "true": _true,
}
"""Program name → the argument forms allowed. Documented in docs/agentless.md."""


class NotReadOnly(ValueError):
    """An argv or environment the SSH runner refuses to send; one line naming it."""


def program_of(argv0: str) -> str:
    """The allow-listed program `argv0` names; `NotReadOnly` when it is not one, or when a path
    does not lie in a system folder (a program of the same name elsewhere is not the tool)."""
    if "/" in argv0:
        folder, name = posixpath.split(argv0)
        trusted = folder in SYSTEM_DIRS or (
            name in ("pg_waldump", "psql") and any(p.fullmatch(folder) for p in _POSTGRES_DIRS)
        )
        if not trusted:
            raise NotReadOnly(f"{argv0}: not in a system folder; refused")
    else:
        name = argv0
    if name not in RULES:
        raise NotReadOnly(f"{name} is not on medsec's read-only allow-list; refused")
    return name


def check_read_only(
    argv: Sequence[str], env: Mapping[str, str] | None = None, made: Collection[str] = ()
) -> str:
    """The program name when `argv` (with `env`) is a read-only form a gatherer uses; else
    `NotReadOnly` naming the command and why. `made`: folders this runner's mktemp made."""
    if not argv:
        raise NotReadOnly("empty argv")
    name = program_of(argv[0])
    problem = RULES[name](list(argv[1:]), made)
    if problem is not None:
        raise NotReadOnly(f"{shlex.join(argv)}: {problem}; refused")
    for key, value in (env or {}).items():
        if key == "BORG_PASSCOMMAND":
            words = shlex.split(value)
            if len(words) == 2 and words[0] == "cat" and words[1].startswith("/"):
                continue
            raise NotReadOnly("BORG_PASSCOMMAND: only `cat FILE`; refused")
        pattern = _ENV_VALUES.get(key)
        if key == "BORG_BASE_DIR" and value not in made:
            raise NotReadOnly("BORG_BASE_DIR: not a folder this runner made; refused")
        if pattern is None or not pattern.fullmatch(value):
            raise NotReadOnly(f"environment {key}: not a value medsec sets; refused")
    return name
