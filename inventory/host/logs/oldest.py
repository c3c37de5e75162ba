"""The oldest record still kept in a log file and its rotated copies: rotated files are ordered
oldest first and dated by their first line's timestamp, by their modification time only when that
line carries none. Compressed copies (gzip, xz, bzip2) are read as they are.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import lzma
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from checks.facts.logs import OldestRecord
from checks.model import Unavailable
from inventory.host.logs.timestamps import iso_utc, parse_line_timestamp
from inventory.runner import GatherError, Runner, SourceMissing

_COMPRESSED: Mapping[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.decompress,
    ".xz": lzma.decompress,
    ".bz2": bz2.decompress,
}
_ROTATED = r"(?:[.-](\d+(?:-\d+)*|\d{4}-\d{2}-\d{2}(?:-\d+)?))?(\.gz|\.xz|\.bz2|\.zst|\.lz4)?"


def rotated_files(path: str, names: Iterable[str]) -> list[str]:
    """`path` and its rotated copies among `names` (files of its folder), oldest first:
    numbered copies by descending number, dated ones by ascending date, the live file last."""
    folder, base = posixpath.split(path)
    pattern = re.compile(re.escape(base) + _ROTATED + "$")
    ranked: list[tuple[tuple[int, int | str], str]] = []
    for name in names:
        m = pattern.fullmatch(name)
        if m is None:
            continue
        suffix = m.group(1)
        if suffix is None:
            rank: tuple[int, int | str] = (2, 0)
        elif suffix.isdigit() and len(suffix) < 8:
            rank = (0, -int(suffix))
        else:
            rank = (1, suffix)
        ranked.append((rank, posixpath.join(folder, name)))
    return [p for _, p in sorted(ranked)]


def first_line(data: bytes, name: str) -> str | None:
    """The first non-empty line of a (possibly compressed) log file; None when there is none."""
    for ext, decompress in _COMPRESSED.items():
        if name.endswith(ext):
            data = decompress(data)
            break
    else:
        if name.endswith((".zst", ".lz4")):
            raise ValueError(f"{name}: cannot decompress {posixpath.splitext(name)[1]}")
    for line in data[:65536].decode("utf-8", errors="replace").splitlines():
        if line.strip():
            return line
    return None


def _read_mtime(runner: Runner, path: str) -> datetime:
    result = runner.run(["stat", "--format=%Y", "--", path], timeout=5.0)
    return datetime.fromtimestamp(int(result.stdout.strip()), UTC)


def read_oldest_record(
    runner: Runner, files: Sequence[str], *, now: datetime
) -> OldestRecord | Unavailable | None:
    """The oldest record among `files` (oldest first): the first line with a timestamp; the
    modification time of the oldest file when no line has one; None when all are empty."""
    problems: list[str] = []
    for path in files:
        try:
            line = first_line(runner.read_bytes(path), path)
        except (GatherError, ValueError, OSError, EOFError) as exc:
            problems.append(str(exc))
            continue
        if line is None:
            continue
        moment = parse_line_timestamp(line, now=now)
        if moment is not None:
            return OldestRecord(iso_utc(moment), f"first line of {path}")
        problems.append(f"{path}: first line has no timestamp")
    if not problems:
        return None
    try:
        return OldestRecord(iso_utc(_read_mtime(runner, files[0])), f"mtime of {files[0]}")
    except (GatherError, ValueError) as exc:
        problems.append(f"mtime: {exc}")
    return Unavailable("; ".join(problems))


def _read_siblings(runner: Runner, path: str) -> list[str] | Unavailable:
    folder = posixpath.dirname(path) or "/"
    try:
        names = runner.list_dir(folder)
    except SourceMissing:
        return []
    except GatherError as exc:
        return Unavailable(str(exc))
    base = posixpath.basename(path)
    if any(ch in base for ch in "*?["):
        # Applications that name their own files (Tomcat's localhost_access_log.2024-05-01.txt)
        # put the date in the name, so the names sort oldest first.
        return sorted(posixpath.join(folder, n) for n in names if fnmatch.fnmatchcase(n, base))
    return rotated_files(path, names)


def _read_olddir(runner: Runner, path: str, olddir: str) -> list[str] | Unavailable:
    """Rotated copies logrotate moved to `olddir` (relative to the log's folder), oldest first."""
    folder = posixpath.join(posixpath.dirname(path), olddir)
    copy = posixpath.join(folder, posixpath.basename(path))
    try:
        names = runner.list_dir(folder)
    except SourceMissing:
        return []
    except GatherError as exc:
        return Unavailable(str(exc))
    return [f for f in rotated_files(copy, names) if f != copy]


def read_stream_files(
    runner: Runner, path: str, *, now: datetime, olddir: str | None = None
) -> tuple[list[str], OldestRecord | Unavailable | None]:
    """The files of the stream written to `path` (its rotated copies, oldest first, those in
    logrotate's `olddir` before the rest) and its oldest record. A folder that cannot be listed
    gives no files and the reason as the oldest record (/var/log/audit is 0700 root: an agent not
    running as root)."""
    files = _read_siblings(runner, path)
    if isinstance(files, Unavailable):
        return [], files
    if olddir is not None:
        moved = _read_olddir(runner, path, olddir)
        if isinstance(moved, Unavailable):
            return [], moved
        files = [*moved, *files]
    return files, read_oldest_record(runner, files, now=now) if files else None
