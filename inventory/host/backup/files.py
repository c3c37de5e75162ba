"""Backups as files: the newest regular file matching an absolute glob, listed with `find` and
matched with Python's `fnmatch`, component by component."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from checks.facts.backup import BackupSource, PathFiles, RecoveryPoint
from inventory.host.backup.common import (
    PLAUSIBLE_SINCE,
    ConfigMissing,
    ToolSaid,
    age,
    first_line,
)
from inventory.runner import CommandFailed, Runner

# ----------------------------------------------------------------------------- path

_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True)
class GlobPlan:
    """How one glob is listed: the literal directory it starts from and the components below."""

    prefix: str
    """The longest leading run of components without wildcards."""
    parts: tuple[str, ...]
    """The remaining components; each matched with `fnmatch.fnmatchcase`. Empty: a literal file."""


def plan_glob(pattern: str) -> GlobPlan:
    """Split an absolute glob at its first wildcard component. Raises ValueError."""
    if not pattern.startswith("/"):
        raise ValueError(f"glob {pattern!r} is not an absolute path")
    components = [c for c in pattern.split("/") if c]
    if "**" in components:
        raise ValueError(f"glob {pattern!r}: '**' is not supported, one level per component")
    fixed: list[str] = []
    for component in components:
        if _MAGIC.search(component):
            break
        fixed.append(component)
    return GlobPlan("/" + "/".join(fixed), tuple(components[len(fixed) :]))


def find_argv(plan: GlobPlan) -> list[str]:
    """`find` lists candidates with their mtimes; `parse_find_output` applies the glob exactly.

    `-H` follows a symlinked starting directory (a /backup link to a mount), nothing below it.
    `-name` narrows the listing by the last component when fnmatch(3) agrees with Python's
    fnmatch on it (no backslash, which only fnmatch(3) treats as an escape).
    """
    argv = ["find", "-H", plan.prefix]
    depth = str(len(plan.parts))
    argv += ["-mindepth", depth, "-maxdepth", depth, "-type", "f"]
    if plan.parts and "\\" not in plan.parts[-1]:
        argv += ["-name", plan.parts[-1]]
    return [*argv, "-printf", "%T@ %p\\0"]


def parse_find_output(text: str, plan: GlobPlan) -> list[tuple[str, datetime]]:
    """`%T@ %p\\0` records → (path, mtime UTC) of the files whose path matches the glob."""
    matched: list[tuple[str, datetime]] = []
    base = plan.prefix.rstrip("/")
    for record in text.split("\0"):
        if not record:
            continue
        stamp, sep, path = record.partition(" ")
        if not sep:
            raise ValueError(f"unexpected find output {record[:80]!r}")
        if plan.parts:
            if not path.startswith(base + "/"):
                continue
            rest = path[len(base) + 1 :].split("/")
            if len(rest) != len(plan.parts) or not all(
                fnmatch.fnmatchcase(c, p) for c, p in zip(rest, plan.parts, strict=True)
            ):
                continue
        elif path != plan.prefix:
            continue
        mtime = datetime.fromtimestamp(float(stamp), UTC)
        if mtime >= PLAUSIBLE_SINCE:
            matched.append((path, mtime))
    return matched


def read_path(
    runner: Runner, source: BackupSource, now: Callable[[], datetime], timeout: float
) -> RecoveryPoint:
    if not source.glob:
        raise ConfigMissing("no glob configured")
    try:
        plan = plan_glob(source.glob)
    except ValueError as exc:
        raise ConfigMissing(str(exc)) from None
    if not runner.exists(plan.prefix):
        return RecoveryPoint(
            None, None, PathFiles(0), missing_reason=f"{plan.prefix} does not exist"
        )
    try:
        result = runner.run(find_argv(plan), timeout=timeout)
    except CommandFailed as exc:
        raise ToolSaid(first_line(exc.stderr)) from None
    files = parse_find_output(result.stdout, plan)
    if not files:
        return RecoveryPoint(
            None, None, PathFiles(0), missing_reason=f"no file matches {source.glob}"
        )
    path, mtime = max(files, key=lambda f: f[1])
    return RecoveryPoint(mtime, age(mtime, now()), PathFiles(len(files), newest_file=path))
