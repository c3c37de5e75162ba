"""Wall time and peak memory of a full `medsec-agent run`, beside `lynis audit system --quick`.

Run: `.venv/bin/python benchmarks/agent_run.py [--runs N]`. Both tools run on this machine in
the same invocation; the agent talks to a real swtpm (with EK certificates) started here, so the
TSS path is measured, not the quick "no TPM" path. Peak RSS is the largest single process of the
command's tree (ru_maxrss of the waited children), the figure an operator's `ps` would show.

Target: agent ≤ 1 s wall and ≤ 50 MB peak RSS on 2 cores. `--compare-with REV` also runs the
agent of an earlier commit (checked out in a temporary git worktree) in the same invocation,
interleaved run by run, so a change can be held to "within 5 % of before".
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.swtpm import provision_ek_certificate, start_swtpm  # noqa: E402

# Runs the command in a child and reports the child tree's peak RSS, so the parent (this
# benchmark, with its imports) does not pollute the figure.
_MEASURE = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(wall, rss, p.returncode)\n"
)


# Runs `agent.cli.main` from a given source tree, so two trees are launched the same way.
_LAUNCH = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from agent.cli import main; sys.exit(main())"
)


_RUN = ("--format", "json", "--no-push")
_GIT = shutil.which("git") or "/usr/bin/git"


def measure(argv: list[str]) -> tuple[float, float, int]:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    wall, rss_kb, code = out.stdout.split()
    return float(wall), int(rss_kb) / 1024, int(code)


def _worktree(rev: str, work: Path) -> Path:
    """`rev` checked out beside the benchmark's other files (removed at the end)."""
    tree = work / "base"
    subprocess.run(
        [_GIT, "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return tree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--skip-lynis", action="store_true")
    parser.add_argument(
        "--compare-with", metavar="REV", help="also measure the agent of this git revision"
    )
    args = parser.parse_args()

    agent = shutil.which("medsec-agent", path=str(Path(sys.executable).parent))
    if agent is None:
        print(
            "medsec-agent is not installed in this venv; run scripts/bootstrap.sh", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="medsec-bench-") as tmp:
        work = Path(tmp)
        provision_ek_certificate(work / "state", work)
        tpm = start_swtpm(work / "state")
        try:
            cfg = work / "agent.yaml"
            cfg.write_text(json.dumps({"tpm": {"tcti": tpm.tcti}}), encoding="utf-8")
            trees = {"medsec-agent run (full, swtpm)": ROOT}
            if args.compare_with:
                trees[f"  the same at {args.compare_with}"] = _worktree(args.compare_with, work)
            argvs = {
                name: [sys.executable, "-c", _LAUNCH, str(tree), "run", "--config", str(cfg), *_RUN]
                for name, tree in trees.items()
            }
            runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in argvs}
            for argv in argvs.values():
                measure(argv)  # warm the page cache
            for _ in range(args.runs):
                for name, argv in argvs.items():
                    runs[name].append(measure(argv))
        finally:
            tpm.stop()
            if args.compare_with:
                subprocess.run(
                    [_GIT, "-C", str(ROOT), "worktree", "remove", "--force", str(work / "base")],
                    check=False,
                    capture_output=True,
                    timeout=60,
                )

    rows = [
        (
            name,
            statistics.median([w for w, _, _ in done]),
            max(w for w, _, _ in done),
            max(r for _, r, _ in done),
            f"{args.runs} runs",
        )
        for name, done in runs.items()
    ]
    lynis = shutil.which("lynis")
    if lynis and not args.skip_lynis:
        with tempfile.TemporaryDirectory(prefix="medsec-bench-lynis-") as tmp:
            wall, rss, _ = measure(
                [
                    lynis,
                    "audit",
                    "system",
                    "--quick",
                    "--no-colors",
                    "--logfile",
                    f"{tmp}/lynis.log",
                    "--report-file",
                    f"{tmp}/lynis.dat",
                ]
            )
        rows.append(("lynis audit system --quick", wall, wall, rss, "1 run"))
    else:
        rows.append(
            (
                "lynis audit system --quick",
                float("nan"),
                float("nan"),
                float("nan"),
                "lynis not installed" if not lynis else "skipped",
            )
        )

    print(f"{'command':34} {'median s':>9} {'max s':>7} {'peak RSS MB':>12}  note")
    for name, median, worst, rss, note in rows:
        print(f"{name:34} {median:9.3f} {worst:7.3f} {rss:12.1f}  {note}")
    print("target: medsec-agent run <= 1 s wall, <= 50 MB peak RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
