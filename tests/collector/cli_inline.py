"""`medsec ...` run in this process (`collector.cli.main`) as the console script runs it: the
same command without an interpreter's start-up, for tests that need no separate process."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


def inline_medsec(*args: str | Path) -> Done:
    """Its exit code and what it printed; never a traceback."""
    from collector.cli import main

    out, err = io.StringIO(), io.StringIO()
    mask = os.umask(0o022)
    os.umask(mask)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse refuses the command line before main runs
                code = int(exc.code or 0)
    finally:
        os.umask(mask)  # main() narrows it for the collector's files
    done = Done(code, out.getvalue(), err.getvalue())
    assert "Traceback" not in done.err, done.err
    return done
