"""logrotate's own reading of its configuration, character by character as logrotate 3.21 reads it
(`readConfigFile` and `readConfigPath` in its config.c), for what decides retention: the rotation
criterion, `rotate`, `maxage`, `size`/`minsize`/`maxsize`, `olddir`, and which blocks logrotate
keeps or skips.

logrotate's reading has consequences a line-based reading gets wrong, and each one moves a
retention verdict: directives are case-sensitive (`Daily` is an unknown option, ignored); a value
runs to the end of its line (`rotate 4 # four` is an error); numbers are C numbers (`rotate 010` is
eight, `rotate 08` an error); a size unit is `k`, `K`, `M` or `G` (`10m` is an error); a block with
an error is skipped, and the skipping ends only at a `}` in the first column; an error outside a
block abandons the rest of the file; global directives carry into later included files unless the
file that set them had an error. What depends on the host rather than on the text — whether a
user or group of `create`/`su` exists (given as `Accounts`), which files a glob matches, whether
an `olddir` exists — is either given or left out, and said so in the README.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Literal, Protocol

from checks.facts.logs import LogrotateRule
from inventory.host.logs.logrotate_values import (
    Accounts,
    as_int,
    as_long,
    as_ulong,
    c_strtol,
    logrotate_bytes,
    popt_split,
    printable,
    scan_owner,
    taboo_match,
    weekday,
)
from inventory.runner import SourceMissing

Criterium = Literal["hourly", "daily", "weekly", "monthly", "yearly", "size"]
_INTERVALS: tuple[Criterium, ...] = ("hourly", "daily", "weekly", "monthly", "yearly")
DEFAULT_SIZE_BYTES = 1024 * 1024
"""The size logrotate rotates at when a block sets neither an interval nor a size."""
MAX_NESTING = 16
# logrotate's built-in `tabooext` list: files of an included folder ending so are skipped.
DEFAULT_TABOO = (
    ",v",
    ".bak",
    ".cfsaved",
    ".disabled",
    ".dpkg-bak",
    ".dpkg-del",
    ".dpkg-dist",
    ".dpkg-new",
    ".dpkg-old",
    ".dpkg-tmp",
    ".rhn-cfg-tmp-*",
    ".rpmnew",
    ".rpmorig",
    ".rpmsave",
    ".swp",
    ".ucf-dist",
    ".ucf-new",
    ".ucf-old",
    "~",
)
_SCRIPTS = frozenset({"postrotate", "prerotate", "firstaction", "lastaction", "preremove"})
_FLAGS = frozenset(
    [
        "compress",
        "nocompress",
        "delaycompress",
        "nodelaycompress",
        "shred",
        "noshred",
        "allowhardlink",
        "noallowhardlink",
        "sharedscripts",
        "nosharedscripts",
        "copytruncate",
        "nocopytruncate",
        "renamecopy",
        "norenamecopy",
        "copy",
        "nocopy",
        "ifempty",
        "notifempty",
        "dateext",
        "nodateext",
        "dateyesterday",
        "datehourago",
        "mailfirst",
        "maillast",
        "nocreateolddir",
        "nocreate",
        "nomail",
        "missingok",
        "nomissingok",
        "ignoreduplicates",
        "errors",
    ]
)
# Directives whose value runs to the end of the line and is an error when missing.
_REQUIRED_VALUE = frozenset({"extension", "addextension"})
_PATH_VALUE = frozenset({"compresscmd", "uncompresscmd", "compressext"})
_BLANK = " \t"
_SPACE = " \t\n\v\f\r"
_ULONG = 1 << 64


class NotUnderstood(ValueError):
    """A construct whose effect depends on something the agent cannot know."""


class LogrotateCrash(NotUnderstood):
    """A configuration logrotate 3.21 crashes on: it then rotates nothing at all."""


class LogrotateFiles(Protocol):
    """The part of `inventory.runner.Runner` the reader needs."""

    def read_text(self, path: str) -> str: ...

    def list_dir(self, path: str) -> list[str]: ...

    def exists(self, path: str) -> bool: ...


@dataclass
class LogrotateDefaults:
    """logrotate's `struct logInfo`, the fields that bear on retention: the global options in
    force at a point of a configuration, and a block's own options (a copy taken at its `{`)."""

    criterium: Criterium = "size"
    size: str | None = None
    """The `size` threshold as written; None: logrotate's built-in 1M."""
    rotate: int = 0
    maxage: int = 0
    minsize: str | None = None
    maxsize: str | None = None
    olddir: str | None = None
    su_user: bool = False
    su_group: bool = False

    def copy(self) -> LogrotateDefaults:
        return replace(self)

    def restore(self, backup: LogrotateDefaults) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(backup, f.name))


@dataclass
class _Block:
    patterns: tuple[str, ...]
    source: str
    line: int
    options: LogrotateDefaults
    error: str | None = None
    """The first error inside the block: logrotate drops the block when it next meets a `}` in
    the first column, and keeps it (as read up to the error) when the file ends first."""
    rejected: str | None = None


@dataclass
class LogrotateConfig:
    """Every block in the order logrotate creates them, and what logrotate complains about."""

    rules: list[LogrotateRule] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- one file

_DEFAULT, _SKIP_LINE, _ERROR, _SKIP_CONFIG, _LOAD_SCRIPT, _DEFINITION_END = 0, 1, 2, 4, 8, 16


class _Raise(Exception):
    """logrotate's RAISE_ERROR: the open block is skipped, or outside a block the file is.
    `position` is where logrotate's cursor stands when it gives up (it skips one more
    character from there)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class _Abort(Exception):
    """logrotate's `goto error`: the rest of the file is abandoned."""


class _File:
    """The state machine of logrotate's readConfigFile over one file's text."""

    def __init__(self, reader: Reader, path: str, text: str, defaults: LogrotateDefaults) -> None:
        self.reader, self.path, self.buf, self.defaults = reader, path, text, defaults
        self.block: _Block | None = None
        self.line = 1
        self.failed = False
        self.script_open = False

    def at(self, i: int) -> str:
        # The file is read through mmap: past its end logrotate sees NUL bytes.
        return self.buf[i] if 0 <= i < len(self.buf) else "\0"

    def complain(self, message: str) -> str:
        text = f"{self.path}:{self.line} {message}"
        self.reader.errors.append(text)
        return text

    def key(self, i: int) -> tuple[str, int]:
        """isolateWord: blanks, then letters."""
        while i < len(self.buf) and self.buf[i] in _BLANK:
            i += 1
        end = i
        while end < len(self.buf) and self.buf[end].isascii() and self.buf[end].isalpha():
            end += 1
        return self.buf[i:end], end

    def rest_of_line(self, i: int) -> tuple[str, int]:
        """isolateLine: from `i` to the end of the line without trailing space; the position
        left is the last character before the newline."""
        end = self.buf.find("\n", i)
        if end < 0:  # no newline: the NUL after the mapped text ends the value, untrimmed
            return self.buf[i:], len(self.buf) - 1
        k = end
        while k >= 0 and self.buf[k] in _SPACE:
            k -= 1
        length = k - i + 1
        # A value that is all space makes logrotate's length negative: strndup then copies on
        # to the end of the file.
        return (self.buf[i:] if length < 0 else self.buf[i : i + length]), end - 1

    def value(self, i: int, what: str) -> tuple[str | None, int]:
        """isolateValue: blanks, an optional `=`, then the rest of the line."""
        j = i
        while j < len(self.buf) and self.buf[j] in _BLANK:
            j += 1
        if j < len(self.buf) and self.buf[j] == "=":
            j += 1
            while j < len(self.buf) and self.buf[j] in _BLANK:
                j += 1
        if j < len(self.buf) and self.buf[j] == "\n":
            self.complain(f"argument expected after {what}")
            return None, i
        return self.rest_of_line(j)

    def options(self) -> LogrotateDefaults:
        return self.block.options if self.block is not None else self.defaults

    def drop(self, why: str | None) -> None:
        """logrotate's freeTailLogs: it frees the block created last, which is the open one
        unless a file included inside it created others."""
        if self.block is None:
            return
        last = next(b for b in reversed(self.reader.blocks) if b.rejected is None)
        last.rejected = why or self.block.error or "an error in the block"
        self.block = None

    # ------------------------------------------------------------------ directives

    def number(self, i: int, key: str) -> int:
        """`rotate`, `maxage` and the other counts. logrotate stores the number it read before
        it checks it, so a block that survives its error (no `}` follows) keeps it."""
        text, at = self.value(i, key)
        if text is None:
            raise _Raise(f"argument expected after {key}", at)
        value, rest = c_strtol(text)
        number = as_int(as_long(value) if key == "rotate" else as_ulong(value))
        options = self.options()
        if key == "rotate":
            options.rotate = number
        elif key == "maxage":
            options.maxage = number
        if rest or number < (-1 if key == "rotate" else 0):
            raise _Raise(self.complain(f"bad {key} '{text}'"), at)
        return at

    def size(self, i: int, key: str) -> int:
        text, i = self.value(i, key)
        if not text:
            return i
        count = logrotate_bytes(text)
        if count is None:
            raise _Raise(self.complain(f"bad {key} '{text}'"), i)
        options = self.options()
        if key == "size":
            options.criterium, options.size = "size", text
        elif key == "maxsize":
            options.maxsize = text if count else None
        else:
            options.minsize = text if count else None
        return i

    def owner(self, i: int, key: str) -> int:
        text, i = self.rest_of_line(i)
        count, user, group = scan_owner(text, with_mode=key != "su")
        accounts = self.reader.accounts
        if count == 4:
            raise _Raise(self.complain(f"extra arguments for {key}"), i)
        if count > 1 and accounts is not None and not accounts.user(user):
            raise _Raise(self.complain(f"unknown user '{user}'"), i)
        if count > 2 and accounts is not None and not accounts.group(group):
            raise _Raise(self.complain(f"unknown group '{group}'"), i)
        if key == "su":
            options = self.options()
            options.su_user = options.su_user or count > 1
            options.su_group = options.su_group or count > 2
            if not options.su_user:
                raise _Raise(self.complain("no user for su"), i)
            if not options.su_group:
                raise _Raise(self.complain("no group for su"), i)
        return i

    def path_value(self, i: int, key: str) -> tuple[str, int]:
        text, i = self.value(i, key)
        if text is None or any(not ch.isprintable() or ch in _BLANK for ch in text):
            raise _Raise(self.complain(f"bad {key} path {text}"), i)
        return text, i

    def taboo(self, i: int, key: str) -> int:
        text, i = self.value(i, key)
        if text is None:
            return i
        taboo = self.reader.taboo
        rest = text
        if rest.startswith("+"):
            rest = rest[1:].lstrip(_SPACE)
        else:
            taboo.clear()
        for word in rest.replace(",", " ").split():
            taboo.append(f"*{word}" if key == "tabooext" else word)
        return i

    def include(self, i: int) -> int:
        target, i = self.value(i, "include")
        if target is None:
            raise _Raise("argument expected after include", i)
        if self.block is not None:
            # logrotate then reads the included file with the open block as its defaults and
            # frees blocks by position, not by identity: what it keeps is not defined.
            raise NotUnderstood(
                f"{self.path}:{self.line} include {target} inside a block (often a `}}` eaten "
                "by the value before it)"
            )
        if target.startswith("~/"):
            raise NotUnderstood(
                f"{self.path}:{self.line} include {target}: the home folder of the user "
                "running logrotate"
            )
        if not target.startswith("/"):
            if self.reader.cwd is None:
                raise NotUnderstood(
                    f"{self.path}:{self.line} include {target}: a relative path, resolved "
                    "against the folder logrotate is started in"
                )
            target = posixpath.join(self.reader.cwd, target)
        if self.reader.depth >= MAX_NESTING:
            self.complain("include nesting too deep")
            self.failed = True
            return i
        self.reader.depth += 1
        try:
            if self.reader.read_path(target, self.options()):
                self.failed = True
        finally:
            self.reader.depth -= 1
        return i

    def directive(self, key: str, i: int) -> tuple[int, int]:  # noqa: PLR0911, PLR0912 — one branch per directive kind
        """Apply one directive; (position, next state)."""
        options = self.options()
        if key in _FLAGS:
            return i, _DEFAULT
        if key in _INTERVALS:
            options.criterium = key
            if key != "weekly":
                return i, _DEFAULT
            text, i = self.rest_of_line(i)
            if text and weekday(text) is None:
                self.complain(f"bad weekly directive '{text}'")
                raise _Abort
            return i, _DEFAULT
        if key in {"size", "minsize", "maxsize"}:
            return self.size(i, key), _DEFAULT
        if key in {"rotate", "maxage", "start", "minage", "shredcycles"}:
            return self.number(i, key), _DEFAULT
        if key in {"su", "create", "createolddir"}:
            return self.owner(i, key), _DEFAULT
        if key in _SCRIPTS:
            self.script_open = True
            return i, _LOAD_SCRIPT
        if key in {"tabooext", "taboopat"}:
            if self.block is not None:
                self.complain(f"{key} may not appear inside of log file definition")
                raise _Raise(f"{key} inside a block")
            return self.taboo(i, key), _DEFAULT
        if key == "include":
            return self.include(i), _DEFAULT
        if key == "olddir":
            options.olddir, i = self.path_value(i, key)
            return i, _DEFAULT
        if key == "noolddir":
            options.olddir = None
            return i, _DEFAULT
        if key in _PATH_VALUE:
            return self.path_value(i, key)[1], _DEFAULT
        if key in _REQUIRED_VALUE or key == "mail":
            word, i = self.value(i, key)
            if word is None or (key == "mail" and any(not printable(ch) for ch in word)):
                raise _Raise(self.complain(f"bad {key} '{word}'"), i)
            return i, _DEFAULT
        if key == "dateformat":
            return self.value(i, key)[1], _DEFAULT
        if key == "compressoptions":
            text, i = self.rest_of_line(i)
            if popt_split(text) is None:
                raise _Raise(self.complain("invalid compression options"), i)
            return i, _DEFAULT
        self.complain(f"unknown option '{key}' -- ignoring line")
        return i, _DEFAULT if self.at(i) == "\n" else _SKIP_LINE

    def patterns(self, i: int) -> tuple[list[str], int]:
        """parseGlobString: everything up to `{`, comment lines left out, then popt's words."""
        out: list[str] = []
        comment = False
        data = False
        j = i
        while j < len(self.buf) and self.buf[j] != "\0":
            ch = self.buf[j]
            if not data and not comment:
                if ch == "#":
                    comment = True
                elif ch not in _SPACE:
                    data = True
            elif ch == "\n":
                comment = data = False
            if comment:
                j += 1
                continue
            if ch == "}":
                self.complain("unexpected } (missing previous '{')")
                raise _Abort
            if ch == "{":
                words = popt_split("".join(out))
                if words is None:
                    self.complain("error parsing filename")
                    raise _Abort
                return words, j
            out.append(ch)
            j += 1
        self.complain("missing '{' after log files definition")
        raise _Abort

    # ------------------------------------------------------------------ the loop

    def default(self, ch: str, i: int) -> tuple[int, int]:
        """A character read between directives: (position, next state)."""
        if ch.isascii() and ch.isalpha():
            key, i = self.key(i)
            after = self.at(i)
            if after not in _SPACE and after != "=":
                raise _Raise(self.complain(f"keyword '{key}' not properly separated"))
            return self.directive(key, i)
        if ch in "/\"'~":
            if self.block is not None:
                raise _Raise(self.complain("unexpected log filename"))
            words, i = self.patterns(i)
            block = _Block(tuple(words), self.path, self.line, self.options().copy())
            self.reader.blocks.append(block)
            self.block = block
            return i, _DEFAULT
        if ch == "}":
            if self.block is None:
                self.complain("unexpected }")
                raise _Abort
            self.block = None
            return i, _DEFINITION_END
        if ch != "\n":
            raise _Raise(self.complain("lines must begin with a keyword or a filename"))
        return i, _DEFAULT

    def script(self, i: int, state: int) -> tuple[int, int]:
        """The first word of a script line: only `endscript` ends the script."""
        key, i = self.key(i)
        skipping = state & _SKIP_CONFIG
        if key != "endscript":
            return i, (0 if self.at(i) == "\n" else _SKIP_LINE) | _LOAD_SCRIPT | skipping
        if not skipping:
            self.script_open = False
            # logrotate looks back from `endscript` for the newline that starts its line; with
            # none before it in the file it reads outside the file.
            if "\n" not in self.buf[: max(i - 9, 0) + 1]:
                raise LogrotateCrash(
                    f"logrotate crashes reading {self.path}: `endscript` on its first line"
                )
        return i, _SKIP_CONFIG if skipping else _DEFAULT

    def skipped(self, ch: str, i: int) -> tuple[int, int]:
        """Inside a block with an error: only a `}` met first on its line ends the skipping."""
        if ch == "}":
            self.drop(None)
            return i, _DEFAULT
        key, i = self.key(i)
        if key in _SCRIPTS:
            return i, _LOAD_SCRIPT | _SKIP_CONFIG
        return i, _SKIP_CONFIG if self.at(i) == "\n" else _SKIP_LINE | _SKIP_CONFIG

    def step(self, ch: str, i: int, state: int) -> tuple[int, int, bool]:  # noqa: PLR0911 — one return per state
        """One turn of logrotate's loop: (position, state, whether the line count may move)."""
        if state == _DEFAULT:
            if ch in _BLANK:
                return i, state, False
            if ch == "#":
                return i, _SKIP_LINE, False
            try:
                i, state = self.default(ch, i)
            except _Raise as exc:
                if self.block is None:
                    raise _Abort from None
                self.block.error = self.block.error or str(exc)
                return (i if exc.position is None else exc.position), _ERROR, False
            return i, state, True
        if state & _LOAD_SCRIPT and not state & _SKIP_LINE:
            return (*self.script(i, state), True)
        if state & _SKIP_LINE:
            return i, state & ~_SKIP_LINE if ch == "\n" else state, True
        if state & _DEFINITION_END:
            if ch in _BLANK:
                return i, state, False
            if ch != "\n":
                self.complain("unexpected text after }")
                return i, _SKIP_LINE | (state & _SKIP_CONFIG), True
            return i, state & _SKIP_CONFIG or _DEFAULT, True
        if state == _ERROR:
            self.failed = True
            return i, _SKIP_CONFIG, True
        return (*self.skipped(ch, i), True)

    def run(self) -> bool:
        """Read the file; True when logrotate would report an error for it."""
        state = _DEFAULT
        i = 0
        try:
            while i < len(self.buf):
                i, state, counted = self.step(self.buf[i], i, state)
                if counted and self.at(i) == "\n":
                    self.line += 1
                i += 1
            if self.script_open:
                self.complain("prerotate, postrotate or preremove without endscript")
                raise _Abort
        except _Abort:
            last = self.reader.errors[-1] if self.reader.errors else "an error"
            self.drop(f"{last}: logrotate abandons the rest of the file")
            return True
        return self.failed


# ----------------------------------------------------------------------------- paths


class Reader:
    """logrotate's readConfigPath over a configuration tree: folders read in name order
    without the taboo names, the defaults put back after a file with an error."""

    def __init__(self, files: LogrotateFiles, accounts: Accounts | None) -> None:
        self.files = files
        self.accounts = accounts
        self.taboo = [f"*{ext}" for ext in DEFAULT_TABOO]
        self.blocks: list[_Block] = []
        self.errors: list[str] = []
        self.depth = 0
        self.cwd: str | None = None

    def read_file(self, path: str, text: str, defaults: LogrotateDefaults) -> bool:
        if not text:
            return False
        backup = defaults.copy()
        if _File(self, path, text, defaults).run():
            defaults.restore(backup)
            return True
        return False

    def read_path(self, path: str, defaults: LogrotateDefaults) -> bool:
        """True when logrotate would report an error reading `path`."""
        if not self.files.exists(path):
            self.errors.append(f"cannot stat {path}")
            return True
        try:
            names: list[str] | None = self.files.list_dir(path)
        except SourceMissing:
            names = None
        if names is None:
            return self.read_file(path, self.files.read_text(path), defaults)
        failed = False
        saved, self.cwd = self.cwd, path
        try:
            for name in sorted(n for n in names if n not in {".", ".."}):
                if any(taboo_match(p, name) for p in self.taboo):
                    continue
                child = posixpath.join(path, name)
                try:
                    text = self.files.read_text(child)
                except SourceMissing:
                    continue  # a folder or a vanished file: logrotate ignores what is not a file
                if self.read_file(child, text, defaults):
                    self.errors.append(f"found error in file {child}, skipping")
                    failed = True
        finally:
            self.cwd = saved
        return failed

    def rules(self) -> list[LogrotateRule]:
        return [_rule(block) for block in self.blocks]


def _rule(block: _Block) -> LogrotateRule:
    options = block.options
    interval = None if options.criterium == "size" else options.criterium
    return LogrotateRule(
        patterns=block.patterns,
        source=block.source,
        interval=interval,
        rotate=options.rotate,
        maxage=options.maxage or None,
        size=options.size if interval is None else None,
        maxsize=options.maxsize,
        minsize=options.minsize,
        olddir=options.olddir,
        line=block.line,
        rejected=block.rejected,
    )


def read_logrotate_config(
    files: LogrotateFiles, path: str, *, accounts: Accounts | None = None
) -> LogrotateConfig:
    """Every block of the configuration rooted at `path` as logrotate reads it. Raises
    `NotUnderstood` for an include the agent cannot resolve, `GatherError` for a file it cannot
    read (a non-root agent)."""
    reader = Reader(files, accounts)
    reader.read_path(path, LogrotateDefaults())
    return LogrotateConfig(reader.rules(), reader.errors)


def parse_logrotate_text(
    text: str, source: str = "logrotate.conf", *, accounts: Accounts | None = None
) -> LogrotateConfig:
    """One file on its own, with logrotate's built-in defaults. No include can be followed: an
    included path reads as an empty folder (were it this file again, two includes would read it
    2**MAX_NESTING times)."""

    class _One:
        opened = False

        def read_text(self, path: str) -> str:
            return text

        def list_dir(self, path: str) -> list[str]:
            if self.opened:
                return []  # an included path
            self.opened = True
            raise SourceMissing(path)  # not a folder: the file itself

        def exists(self, path: str) -> bool:
            return True

    return read_logrotate_config(_One(), source, accounts=accounts)


def accepted(rules: Iterable[LogrotateRule]) -> list[LogrotateRule]:
    """The blocks logrotate keeps."""
    return [r for r in rules if r.rejected is None]
