"""The agent's timer serving as a probe: `medsec-agent run` with a `probe:` section delivers its
report, then claims what jobs its zone has waiting, runs them, posts their results and returns.

`run` hands delivery to a fresh interpreter (agent/push.py `push`: the gatherers' memory is
released first); with a probe section that interpreter is this module instead of agent.push: it
delivers the report exactly as agent.push does, then makes one claim round (no long poll: the
timer's run must end). The run's exit code keeps its meaning: the report's own code, raised to 1
when delivery or the probe needs a person; a collector that cannot be reached costs one line on
stderr, not the code.
"""

from __future__ import annotations

import asyncio
import os
import sys

import msgspec

from agent.config import ProbeConfig
from agent.push import PushJob, deliver

PROG = "medsec-agent"


class Handed(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What crosses the exec: the delivery job and the probe section."""

    push: PushJob
    probe: ProbeConfig


def push_then_probe(job: PushJob, probe: ProbeConfig, report_bytes: bytes) -> int:
    """Deliver the report and make one probe round, in a fresh interpreter when possible (as
    `agent.push.push` does, for the same memory reason); the run's exit code."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        fd = os.memfd_create("medsec-report", 0)
        with os.fdopen(os.dup(fd), "wb") as out:
            out.write(msgspec.json.encode(Handed(job, probe)) + b"\n" + report_bytes)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
        if sys.executable:
            argv = [sys.executable, "-I", "-m", "agent.probe_round", str(fd)]
            os.execv(sys.executable, argv)  # noqa: S606 — our interpreter, an argv list
    except OSError:
        pass  # no memfd or no interpreter to exec: do it in this process
    return _deliver_and_probe(Handed(job, probe), report_bytes)


def _deliver_and_probe(handed: Handed, report_bytes: bytes) -> int:
    from agent.probe import run_probe_async

    job = handed.push
    code = max(job.report_exit, deliver(job, report_bytes, sys.stderr))
    probed = asyncio.run(run_probe_async(handed.probe, job.collector, once=True, wait=0.0))
    return max(code, probed)


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.probe_round FD`: the delivering and probing half of `medsec-agent run`."""
    args = sys.argv[1:] if argv is None else argv
    try:
        with os.fdopen(int(args[0]), "rb") as handed_file:
            data = handed_file.read()
        header, _, report_bytes = data.partition(b"\n")
        handed = msgspec.json.decode(header, type=Handed)
    except (IndexError, ValueError, OSError, msgspec.DecodeError) as exc:
        print(f"{PROG}: internal error: no report handed over ({exc})", file=sys.stderr)
        return 3
    try:
        return _deliver_and_probe(handed, report_bytes)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the delivering process's boundary: one line, never a traceback
        print(f"{PROG}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
