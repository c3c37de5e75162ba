"""Backup checks: every source's newest recovery point is within its RPO, and a recent copy lives
at a site other than the host's. Pure functions of `BackupFacts`; one result per source for the
RPO, one per host for the off-site copy.

Decisions: an unreadable source is `error`, never `pass`; a source with no recovery point at all
fails; a PostgreSQL primary whose last archiving failure is newer than its last success fails
however recent that success is, because the WAL chain has a gap from the failed segment on; a
recovery point more than five minutes in the future is `error` (a clock is wrong, the age means
nothing). A PostgreSQL primary is judged by what it wrote after its last archived segment: the
oldest transaction committed since and not archived must be within the RPO; an idle server (no
commit since, only records holding no data) passes however old its last segment is; when what
was written since could not be read, a last archived segment older than the RPO is `error`, not
`fail`, because an idle server and a stalled archive look alike from there. For the off-site
check the whole host is one dataset: it passes when at least one source declared at another
site has a recovery point within its RPO.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from checks.facts import HostFacts
from checks.facts.backup import (
    BackupFacts,
    BackupStatus,
    BorgArchives,
    PathFiles,
    PostgresArchiving,
    RecoveryPoint,
    ResticSnapshots,
    UnarchivedWal,
    WalRecords,
)
from checks.model import (
    Msg,
    Outcome,
    Severity,
    Status,
    Unavailable,
    errored,
    failed,
    outcome,
    passed,
    require,
)
from checks.registry import check

FUTURE_TOLERANCE_S = 300
"""A recovery point this far ahead of the agent's clock is still taken at face value."""


def _backups(facts: Any) -> BackupFacts:
    return require(facts.backups, BackupFacts)


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """A short human duration: 45 s, 4 min 59 s, 2 h 5 min, 3 d 4 h."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Unavailable):
        return {"unavailable": value.reason}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _evidence(status: BackupStatus, rpo_minutes: int | None = None) -> dict[str, Any]:
    source = status.source
    evidence: dict[str, Any] = {"kind": source.kind, "site": source.site}
    if rpo_minutes is not None:
        evidence["rpo_seconds"] = rpo_minutes * 60
    reading = status.reading
    if isinstance(reading, Unavailable):
        evidence["unavailable"] = reading.reason
        return evidence
    evidence["timestamp"] = rfc3339(reading.newest) if reading.newest else None
    evidence["age_seconds"] = (
        round(reading.age_seconds, 3) if reading.age_seconds is not None else None
    )
    if reading.missing_reason:
        evidence["missing_reason"] = reading.missing_reason
    for f in dataclasses.fields(reading.detail):
        evidence[f.name] = _plain(getattr(reading.detail, f.name))
    return evidence


def _newest(reading: RecoveryPoint) -> Msg:
    """The newest recovery point in a sysadmin's words ("newest restic snapshot 3f2a1b7c")."""
    detail = reading.detail
    if isinstance(detail, ResticSnapshots):
        snapshot = (detail.snapshot_id or "?")[:8]
        return Msg(f"newest restic snapshot {snapshot}", f"最新 restic 快照 {snapshot}")
    if isinstance(detail, BorgArchives):
        return Msg(f"newest borg archive {detail.archive}", f"最新 borg 归档 {detail.archive}")
    if isinstance(detail, PostgresArchiving):
        if detail.role == "standby":
            return Msg("newest transaction replayed on the standby", "备库最近回放的事务")
        records = _records(detail)
        if records is not None and records.first_commit_time == reading.newest:
            return Msg("oldest transaction not yet archived", "尚未归档的最早事务")
        wal = detail.last_archived_wal
        return Msg(f"newest archived WAL segment {wal}", f"最新归档的 WAL 段 {wal}")
    if isinstance(detail, PathFiles):
        return Msg(f"newest file {detail.newest_file}", f"最新文件 {detail.newest_file}")
    raise TypeError(f"unknown source detail {type(detail).__name__}")


def _broken_archiving(detail: PostgresArchiving) -> Msg:
    since = rfc3339(detail.last_failed_time) if detail.last_failed_time else "?"
    failed_wal, count = detail.last_failed_wal, detail.failed_count
    if detail.last_archived_time:
        ok_wal, ok_at = detail.last_archived_wal, rfc3339(detail.last_archived_time)
        last_ok = Msg(f"last success {ok_wal} at {ok_at}", f"最近一次成功为 {ok_wal}，于 {ok_at}")
    else:
        last_ok = Msg("no success since the statistics reset", "统计重置以来无成功归档")
    return Msg(
        f"WAL archiving is failing: {failed_wal} could not be archived at {since} "
        f"({count} failures; {last_ok.en}); the archive has a gap from there on",
        f"WAL 归档失败：{failed_wal} 于 {since} 归档失败（累计失败 {count} 次；{last_ok.zh}），"
        "归档自该处起存在缺口",
    )


def _rpo_of(status: BackupStatus, default_rpo_minutes: int) -> int:
    own = status.source.rpo_minutes
    return own if own is not None else default_rpo_minutes


Verdict = tuple[Status, Msg]


def _verdict(status: BackupStatus, rpo_minutes: int) -> Verdict:
    """One source against its RPO; the RPO and off-site checks both judge by it."""
    reading = status.reading
    if isinstance(reading, Unavailable):
        return Status.ERROR, Msg(
            f"source unreadable: {reading.reason}", f"备份源无法读取：{reading.reason}"
        )
    detail = reading.detail
    primary = isinstance(detail, PostgresArchiving) and detail.role == "primary"
    if isinstance(detail, PostgresArchiving) and primary and detail.archiving_broken:
        return Status.FAIL, _broken_archiving(detail)
    if reading.newest is None or reading.age_seconds is None:
        missing = reading.missing_reason
        return Status.FAIL, Msg(f"no backup found: {missing}", f"未找到备份：{missing}")
    if reading.age_seconds < -FUTURE_TOLERANCE_S:
        newest, when, ahead = (
            _newest(reading),
            rfc3339(reading.newest),
            duration(reading.age_seconds),
        )
        return Status.ERROR, Msg(
            f"{newest.en} ({when}) lies {ahead} in the future: a clock is wrong",
            f"{newest.zh}（{when}）比当前时间超前 {ahead}：时钟有误",
        )
    if isinstance(detail, PostgresArchiving) and primary:
        return _primary_verdict(detail, reading, rpo_minutes)
    return _age_verdict(reading, rpo_minutes)


def _age_verdict(reading: RecoveryPoint, rpo_minutes: int) -> Verdict:
    newest, when = _newest(reading), rfc3339(reading.newest) if reading.newest else "?"
    age = reading.age_seconds or 0.0
    rpo = duration(rpo_minutes * 60)
    if age > rpo_minutes * 60:
        old = duration(age)
        return Status.FAIL, Msg(
            f"{newest.en} ({when}) is {old} old, older than the RPO of {rpo}",
            f"{newest.zh}（{when}）距今 {old}，超过 RPO {rpo}",
        )
    old = duration(max(age, 0))
    return Status.PASS, Msg(
        f"{newest.en} ({when}) is {old} old, within the RPO of {rpo}",
        f"{newest.zh}（{when}）距今 {old}，在 RPO {rpo} 以内",
    )


def _records(detail: PostgresArchiving) -> WalRecords | None:
    unarchived = detail.unarchived
    if isinstance(unarchived, UnarchivedWal) and isinstance(unarchived.records, WalRecords):
        return unarchived.records
    return None


def _written(records: WalRecords) -> Msg:
    """What an idle server wrote, in words ("only records that hold no data (...)")."""
    kinds = ", ".join(f"{n} × {kind}" for kind, n in records.counts.items()) or "none read"
    if records.changes == 0:
        said = Msg(f"only records that hold no data ({kinds})", f"仅有不含数据的记录（{kinds}）")
    else:
        first = records.first_change
        said = Msg(
            f"{records.changes} changes of transactions not committed or of maintenance such "
            f"as VACUUM (first {first}) besides records that hold no data ({kinds})",
            f"{records.changes} 条未提交事务或 VACUUM 等维护操作的变更（首条 {first}），"
            f"其余为不含数据的记录（{kinds}）",
        )
    if records.unwritten_bytes:
        n = records.unwritten_bytes
        said = Msg(
            f"{said.en}; {n} bytes of open transactions' changes still in the server's buffers",
            f"{said.zh}；另有 {n} 字节未提交事务的变更仍在服务器缓冲区中",
        )
    return said


def _unknown_after(detail: PostgresArchiving) -> Msg:
    """Why what the primary wrote after its last archived segment is not known."""
    unarchived = detail.unarchived
    if unarchived is None:
        return Msg("it was not examined", "未检查归档之后写入的 WAL")
    if isinstance(unarchived, Unavailable):
        return Msg(unarchived.reason, unarchived.reason)
    records = unarchived.records
    if isinstance(records, Unavailable):
        return Msg(
            f"the WAL written since could not be read: {records.reason}",
            f"无法读取此后写入的 WAL：{records.reason}",
        )
    if records is not None and records.undated:
        undated = ", ".join(records.undated[:3])
        return Msg(
            f"records medsec cannot date ({undated})",
            f"存在 medsec 无法确定时间的记录（{undated}）",
        )
    reason = records.unread_reason if records is not None else None
    return Msg(f"not every record was read ({reason})", f"未能读取全部记录（{reason}）")


def _primary_verdict(
    detail: PostgresArchiving, reading: RecoveryPoint, rpo_minutes: int
) -> Verdict:
    """A primary by what it wrote after its last archived segment (see the module docstring)."""
    wal = detail.last_archived_wal
    at = rfc3339(detail.last_archived_time) if detail.last_archived_time else "?"
    since = Msg(f"WAL segment {wal} was archived at {at}", f"WAL 段 {wal} 于 {at} 归档")
    unarchived = detail.unarchived
    if isinstance(unarchived, UnarchivedWal) and unarchived.records is None:
        return Status.PASS, Msg(
            f"nothing was written since {since.en}: no data waits for the archive",
            f"自 {since.zh} 以来未写入任何 WAL：没有等待归档的数据",
        )
    records = _records(detail)
    if records is not None and records.first_commit_time is not None:
        return _commit_verdict(detail, records, reading, rpo_minutes, since)
    if records is not None and records.unread_reason is None and not records.undated:
        written = _written(records)
        return Status.PASS, Msg(
            f"no transaction committed since {since.en}: {written.en}",
            f"自 {since.zh} 以来没有提交任何事务：{written.zh}",
        )
    # What was written since is unknown: the last archived segment's age bounds the exposure of
    # a busy server, but an idle one ages it with nothing at risk.
    age = reading.age_seconds or 0.0
    if age <= rpo_minutes * 60:
        return _age_verdict(reading, rpo_minutes)
    written_bytes = unarchived.bytes_written if isinstance(unarchived, UnarchivedWal) else None
    amount = (
        Msg(
            f"{written_bytes} bytes of WAL were written since, and ",
            f"此后写入了 {written_bytes} 字节 WAL，",
        )
        if written_bytes is not None
        else Msg("", "")
    )
    why, old, rpo = _unknown_after(detail), duration(age), duration(rpo_minutes * 60)
    return Status.ERROR, Msg(
        f"{since.en}, {old} ago, longer than the RPO of {rpo}; {amount.en}medsec cannot tell "
        f"whether transactions committed since wait for the archive: {why.en}",
        f"{since.zh}，距今 {old}，超过 RPO {rpo}；{amount.zh}无法判断此后是否有已提交的事务"
        f"等待归档：{why.zh}",
    )


def _commit_verdict(
    detail: PostgresArchiving,
    records: WalRecords,
    reading: RecoveryPoint,
    rpo_minutes: int,
    since: Msg,
) -> Verdict:
    """The oldest transaction committed after the last archived segment, against the RPO."""
    age = reading.age_seconds or 0.0
    when = rfc3339(records.first_commit_time) if records.first_commit_time else "?"
    old, rpo = duration(max(age, 0)), duration(rpo_minutes * 60)
    lead = Msg(
        f"transactions committed since {when} (the first at {records.first_commit_lsn}) are "
        f"not archived yet: {old} of commits at risk",
        f"自 {when} 起提交的事务（首条位于 {records.first_commit_lsn}）尚未归档："
        f"有 {old} 的已提交数据面临丢失风险",
    )
    last = Msg(f"last archived: {since.en}", f"最近归档：{since.zh}")
    if age > rpo_minutes * 60:
        return Status.FAIL, Msg(
            f"{lead.en}, longer than the RPO of {rpo} ({last.en})",
            f"{lead.zh}，超过 RPO {rpo}（{last.zh}）",
        )
    if records.undated:
        why = _unknown_after(detail)
        return Status.ERROR, Msg(
            f"{lead.en}, within the RPO of {rpo}, but {why.en} may hold older data",
            f"{lead.zh}，在 RPO {rpo} 以内，但{why.zh}，其中可能有更早的数据",
        )
    return Status.PASS, Msg(
        f"{lead.en}, within the RPO of {rpo} ({last.en})",
        f"{lead.zh}，在 RPO {rpo} 以内（{last.zh}）",
    )


def _fresh(status: BackupStatus, rpo_minutes: int) -> bool | None:
    """Within the RPO (True), not (False), or unknown (None)."""
    verdict, _ = _verdict(status, rpo_minutes)
    return {Status.PASS: True, Status.FAIL: False}.get(verdict)


def _rpo_outcome(status: BackupStatus, rpo_minutes: int) -> Outcome:
    verdict, message = _verdict(status, rpo_minutes)
    return outcome(verdict, message, _evidence(status, rpo_minutes), target=status.source.name)


@check(
    "backup.rpo",
    title_en="Each backup source's newest recovery point is within its RPO",
    title_zh="各备份源最近一次可恢复的备份时间满足恢复点目标（RPO）",
    severity=Severity.HIGH,
    needs=("backups",),
    params={"default_rpo_minutes": 15},
)
def backup_rpo(facts: HostFacts, default_rpo_minutes: int) -> Iterator[Outcome]:
    backups = _backups(facts)
    if not backups.sources:
        yield failed(
            Msg(
                "no backup source configured: list this host's backups under `backups:` in the "
                "config",
                "未配置备份源：请在配置文件的 `backups:` 下列出本主机的备份",
            ),
            {"sources": 0},
        )
        return
    for status in backups.sources:
        yield _rpo_outcome(status, _rpo_of(status, default_rpo_minutes))


def _same_site(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


@check(
    "backup.offsite",
    title_en="A recent copy of the host's data is kept at another site",
    title_zh="主机数据在异地备份场地有满足 RPO 的近期副本",
    severity=Severity.HIGH,
    needs=("backups",),
    params={"default_rpo_minutes": 15},
    shares={"default_rpo_minutes": "backup.rpo"},
)
def backup_offsite(facts: HostFacts, default_rpo_minutes: int) -> Iterator[Outcome]:
    backups = _backups(facts)
    host_site = backups.host_site
    if host_site is None or not host_site.strip():
        yield errored(
            Msg(
                "the host's site is not configured: set site in the agent config so off-site "
                "copies can be told apart",
                "未配置主机所在场地：请在 agent 配置中设置 site，以便识别异地副本",
            ),
            {"host_site": None},
            target="host",
        )
        return
    offsite = [
        s for s in backups.sources if s.source.site and not _same_site(s.source.site, host_site)
    ]
    evidence: dict[str, Any] = {
        "host_site": host_site,
        "sources": {s.source.name: _evidence(s, _rpo_of(s, default_rpo_minutes)) for s in offsite},
    }
    if not offsite:
        unsited = [s.source.name for s in backups.sources if not s.source.site]
        onsite = [s.source.name for s in backups.sources if s.source.site]
        evidence["on_site"] = onsite
        evidence["without_site"] = unsited
        if not backups.sources:
            reason = Msg("no backup source configured", "未配置备份源")
        elif unsited:
            reason = Msg(
                f"no backup source is declared at another site (sources without a site: "
                f"{', '.join(unsited)}; set site for each)",
                f"没有声明位于其他场地的备份源（未设置场地的备份源：{'、'.join(unsited)}；"
                "请逐一设置 site）",
            )
        else:
            reason = Msg(
                f"every backup source is at the host's own site {host_site}",
                f"所有备份源均位于主机所在场地 {host_site}",
            )
        yield failed(reason, evidence, target=host_site)
        return
    verdicts = {s.source.name: _fresh(s, _rpo_of(s, default_rpo_minutes)) for s in offsite}
    for status in offsite:
        reading = status.reading
        if verdicts[status.source.name] and isinstance(reading, RecoveryPoint):
            name, site = status.source.name, status.source.site
            old = duration(max(reading.age_seconds or 0, 0))
            yield passed(
                Msg(
                    f"{name} at site {site} holds a recovery point {old} old, within its RPO",
                    f"场地 {site} 的 {name} 有距今 {old} 的恢复点，在其 RPO 以内",
                ),
                evidence,
                target=host_site,
            )
            return
    unknown = [name for name, verdict in verdicts.items() if verdict is None]
    if unknown:
        yield errored(
            Msg(
                "no off-site copy is known to be within its RPO, and these off-site sources "
                f"could not be judged: {', '.join(unknown)}",
                f"无法确认任何异地副本在其 RPO 以内，以下异地备份源无法判定：{'、'.join(unknown)}",
            ),
            evidence,
            target=host_site,
        )
        return
    why = [(s.source.name, s.source.site, _why_stale(s)) for s in offsite]
    stale_en = "; ".join(f"{name} at {site}: {reason.en}" for name, site, reason in why)
    stale_zh = "；".join(f"{name}（{site}）：{reason.zh}" for name, site, reason in why)
    yield failed(
        Msg(
            f"off-site copies exist but none is within its RPO ({stale_en})",
            f"存在异地副本，但均不在其 RPO 以内（{stale_zh}）",
        ),
        evidence,
        target=host_site,
    )


def _why_stale(status: BackupStatus) -> Msg:
    reading = status.reading
    if isinstance(reading, Unavailable):  # not reached: unreadable sources make the check error
        return Msg(reading.reason, f"无法读取：{reading.reason}")
    detail = reading.detail
    if (
        isinstance(detail, PostgresArchiving)
        and detail.role == "primary"
        and detail.archiving_broken
    ):
        wal = detail.last_failed_wal
        return Msg(f"WAL archiving failing since {wal}", f"WAL 归档自 {wal} 起失败")
    if reading.age_seconds is None:
        missing = reading.missing_reason
        return Msg(f"no backup ({missing})", f"无备份（{missing}）")
    old = duration(reading.age_seconds)
    return Msg(f"{old} old", f"距今 {old}")
