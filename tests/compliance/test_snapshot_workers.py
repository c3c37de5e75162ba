"""A large snapshot renders each standard's XLSX and PDF in a worker process of its own: the
members it writes are those the collector's own process would render, in the same order."""

from __future__ import annotations

import contextlib
import io
import zipfile
from datetime import UTC, datetime

import pytest

from collector.compliance import snapshot
from collector.compliance.model import Compliance
from collector.compliance.render import render
from tests.compliance.sample import sample_compliance


def members(documents: dict[str, Compliance], formats: tuple[str, ...]) -> dict[str, bytes]:
    out = io.BytesIO()
    writer = snapshot._Writer(out, datetime(2026, 12, 1, tzinfo=UTC))
    with contextlib.ExitStack() as stack:
        stack.callback(writer.close)
        snapshot._Reports(documents, formats, "zh", stack).write(writer)
    with zipfile.ZipFile(out) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_workers_render_what_the_process_would(monkeypatch: pytest.MonkeyPatch) -> None:
    documents = {s: sample_compliance(s, hosts=6) for s in ("gbt22239-2019-l3", "mnds")}
    formats = ("json", "xlsx", "pdf")
    monkeypatch.setattr(snapshot, "_WORKERS_FROM_HOSTS", 0)
    monkeypatch.setattr(snapshot.os, "cpu_count", lambda: 2)
    started: list[object] = []
    real = snapshot.ProcessPoolExecutor

    def pool(*args: object, **kwargs: object) -> object:
        made = real(*args, **kwargs)  # type: ignore[arg-type]
        started.append(made)
        return made

    monkeypatch.setattr(snapshot, "ProcessPoolExecutor", pool)
    in_workers = members(documents, formats)
    assert started, "no worker process was started"
    names = list(in_workers)
    assert names == [
        "reports/gbt22239-2019-l3.json",
        "reports/mnds.json",
        "reports/gbt22239-2019-l3.xlsx",
        "reports/gbt22239-2019-l3.pdf",
        "reports/mnds.xlsx",
        "reports/mnds.pdf",
    ]
    for standard, document in documents.items():
        assert in_workers[f"reports/{standard}.json"] == render(document, "json")
        assert in_workers[f"reports/{standard}.xlsx"] == render(document, "xlsx")
        assert in_workers[f"reports/{standard}.pdf"].startswith(b"%PDF-")
