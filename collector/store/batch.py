"""Group commit: one writer thread per store writes everything queued while it was busy — reports
and audit entries from many concurrent requests — in one transaction, with one commit.

A commit waits for the disk (PostgreSQL's WAL flush, SQLite's fsync) and, for the audit log, for
the chain head's lock, which every collector process shares. One transaction per request makes
that wait the ceiling of the whole collector; one per batch shares it between everything that
arrived meanwhile, and the batch grows with the load on its own (no timer, no added latency when
idle: a lone request is written at once).

Every job carries a `concurrent.futures.Future` that is settled only after its batch commits (or
fails), so a caller — a thread with `result()`, or the event loop with `asyncio.wrap_future` —
never hears "stored" before the data is durable.

One job must never fail the others: a batch that fails for any reason but the database being
unreachable is written again job by job, so only the job that cannot be written gets the error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from collector.store.errors import StoreUnavailable

logger = logging.getLogger("medsec.collector.store")

MAX_BATCH = 128
"""Jobs per transaction at most: bounds one transaction's size and the latency of its last job."""


class Job(Protocol):
    @property
    def future(self) -> Future[Any]: ...


class WriterClosed(RuntimeError):
    """The store was closed; nothing more is written."""


class GroupWriter:
    """Runs `write(batch)` on its own thread for the jobs queued meanwhile, oldest first.

    `write` settles each job's future; a job it leaves unsettled (or every job, if it raises)
    gets the exception instead, so no caller waits forever. The thread starts on the first job
    and stops on `close`, after writing what is queued.
    """

    def __init__(self, write: Callable[[Sequence[Job]], None], name: str) -> None:
        self._write = write
        self._name = name
        self._cond = threading.Condition()
        self._queue: list[Job] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise WriterClosed("the store is closed")
            # Queued means it will be written: a caller that stops waiting (its request task
            # cancelled, which cancels the future it awaits) must not leave a cancelled future
            # that would raise when the batch is settled, failing the jobs after it.
            if not job.future.set_running_or_notify_cancel():
                return  # cancelled before it was queued: there is no one to tell
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:  # closed and drained
                    return
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
            self._write_settled(batch)

    def _write_settled(self, batch: list[Job]) -> None:
        failure = self._try_write(batch)
        if failure is None or not _retried(failure, batch):
            self._fail(batch, failure)
            return
        unsettled = [job for job in batch if not job.future.done()]
        logger.warning(
            "%s: a batch of %d failed (%s: %s); writing its jobs one by one",
            self._name,
            len(batch),
            type(failure).__name__,
            _one_line(failure),
        )
        for n, job in enumerate(unsettled):
            alone = self._try_write([job])
            if isinstance(alone, StoreUnavailable):  # the database went away meanwhile
                self._fail(unsettled[n:], alone)
                return
            self._fail([job], alone)

    def _try_write(self, jobs: list[Job]) -> BaseException | None:
        """What `write(jobs)` raised, or None; whatever it is, the jobs' callers are told."""
        try:
            self._write(jobs)
        except BaseException as exc:  # handed to the callers (or retried job by job)
            return exc
        return None

    def _fail(self, jobs: list[Job], failure: BaseException | None) -> None:
        """Give `failure` to each job `write` left unsettled."""
        for job in jobs:
            if not job.future.done():
                if failure is None:  # pragma: no cover — `write` settles every job it returns
                    failure = RuntimeError("the batch writer left a job unsettled")
                    logger.error("%s: a job was left unsettled", self._name)
                job.future.set_exception(failure)


def _retried(failure: BaseException, batch: list[Job]) -> bool:
    """Whether a failed batch is written again job by job: for any error of the data or the code
    (one job's, as far as anyone can tell), not when the database is unreachable — every job would
    wait for it again — nor when the interpreter is stopping."""
    return (
        len(batch) > 1
        and isinstance(failure, Exception)
        and not isinstance(failure, StoreUnavailable)
    )


def _one_line(exc: BaseException) -> str:
    """An error's first line, bounded: a database error's text goes on to the SQL and values."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else "no detail"
