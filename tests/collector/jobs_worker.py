"""A probe's claim loop run straight against the store, as its own OS process, for the tests that
prove several processes claiming from one database take every job exactly once.

`python -m tests.collector.jobs_worker URL ZONE AGENT START LEASE_S [--finish]`: waits until the
wall clock reaches START (so the processes really claim at the same moment), then claims up to 5
jobs at a time until the zone has none left for a while, finishing each (with `--finish`), and
prints one JSON line per claim: `{"id", "claim_id", "attempts"}`.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta

from collector.store import Store


def main(argv: list[str]) -> int:
    url, zone, agent, start, lease_s = argv[:5]
    finish = "--finish" in argv[5:]
    store = Store.open(url)
    lease = timedelta(seconds=float(lease_s))
    try:
        time.sleep(max(0.0, float(start) - time.time()))
        idle_since: float | None = None
        while True:
            claimed = store.claim_jobs(zone, agent, datetime.now(UTC), lease, 5)
            if not claimed:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 0.5:
                    return 0
                time.sleep(0.02)
                continue
            idle_since = None
            for job in claimed:
                print(
                    json.dumps({"id": job.id, "claim_id": job.claim_id, "attempts": job.attempts})
                )
                if finish:
                    store.finish_job(
                        job.id,
                        str(job.claim_id),
                        agent,
                        datetime.now(UTC),
                        result={"by": agent},
                        error=None,
                    )
            sys.stdout.flush()
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
