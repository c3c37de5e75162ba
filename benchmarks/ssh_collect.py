"""Agentless collection of 20 hosts over SSH: hosts/s at each concurrency, and one host's time
beside the local agent run, in the same invocation.

Run (root): `.venv/bin/python benchmarks/ssh_collect.py [--hosts 20] [--concurrency 1,5,10,20]
[--runs 3] [--with-root-bashrc]`. Each host is a real sshd in a network namespace of its own
(`msshb<N>`, 198.18.210.10+N/24, a veth into the bridge `msshbr0` at 198.18.210.1 in this
namespace); all are removed at the end, and leftovers of an interrupted run at the start. The
namespaces share this machine's file system, so every host reports this machine (the same host
id) with its own interfaces. The local run is `medsec-agent run`'s work in-process: the same
gatherers through `LocalRunner`, the same checks and report.

bash sources ~/.bashrc for every command sshd runs; this machine's root .bashrc starts pyenv and
costs ~130 ms a command, which no ordinary server spends: by default each sshd runs with an empty
file bound over it (in its own mount namespace); `--with-root-bashrc` measures with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import parse_config  # noqa: E402
from agent.gather import gather  # noqa: E402
from agent.report import build_report  # noqa: E402
from checks.catalog import builtin_catalogs  # noqa: E402
from checks.registry import builtin_registry  # noqa: E402
from checks.runner import evaluate  # noqa: E402
from collector.agentless import HostSpec, collect_host, collect_hosts  # noqa: E402
from inventory.network.ssh import SshTarget  # noqa: E402
from inventory.runner import LocalRunner  # noqa: E402
from tests.inventory.sshd import Sshd, make_key, start_sshd, tool  # noqa: E402

BRIDGE = "msshbr0"
PREFIX = "msshb"
NET = "198.18.210"


def ip(*args: str, check: bool = True) -> None:
    subprocess.run([tool("ip"), *args], check=check, capture_output=True, timeout=30)


def teardown(count: int = 64) -> None:
    for n in range(count):
        ip("netns", "del", f"{PREFIX}{n}", check=False)
    ip("link", "del", BRIDGE, check=False)


@contextmanager
def hosts(count: int, folder: Path, root_bashrc: bool) -> Iterator[list[Sshd]]:
    """`count` sshd, each in its own namespace behind the bridge; removed afterwards."""
    teardown()
    servers: list[Sshd] = []
    key = make_key(folder / "id")
    host_key = make_key(folder / "ssh_host_ed25519_key")
    try:
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{NET}.1/24", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        for n in range(count):
            ns, veth = f"{PREFIX}{n}", f"{PREFIX}v{n}"
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", veth, "master", BRIDGE, "up")
            ip("-n", ns, "addr", "add", f"{NET}.{10 + n}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        for n in range(count):
            servers.append(
                start_sshd(
                    folder / f"sshd{n}",
                    {"root": [key.with_suffix(".pub")]},
                    host=f"{NET}.{10 + n}",
                    port=22,
                    netns=f"{PREFIX}{n}",
                    host_key=host_key,
                    quiet_rc=not root_bashrc,
                )
            )
        yield servers
    finally:
        for server in servers:
            server.stop()
        teardown()


def local_run(registry, config, catalogs) -> float:  # type: ignore[no-untyped-def]
    """`medsec-agent run`'s work in-process: gather, evaluate, build the report document."""
    started = time.perf_counter()
    chosen = [registry.get(c) for c in config.checks.selected(registry.ids())]
    facts = gather(LocalRunner(), config, registry.needs(c.id for c in chosen))
    results = evaluate(chosen, facts, {})
    build_report(facts, results, "bench").to_dict(catalogs)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--concurrency", default="1,5,10,20")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--with-root-bashrc", action="store_true")
    args = parser.parse_args()
    # libtss2 logs every failed TCTI probe of the local run; medsec-agent silences it the same way.
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    levels = [int(c) for c in args.concurrency.split(",")]
    registry, catalogs = builtin_registry(), builtin_catalogs()
    config = parse_config({}, "defaults", registry)
    with tempfile.TemporaryDirectory(prefix="medsec-ssh-bench-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        with hosts(args.hosts, folder, args.with_root_bashrc) as servers:
            known = folder / "known_hosts"
            known.write_text("".join(s.known_hosts_line() for s in servers))
            specs = [
                HostSpec(
                    SshTarget(
                        s.host,
                        "root",
                        port=22,
                        key_file=str(folder / "id"),
                        known_hosts=str(known),
                    ),
                    config,
                )
                for s in servers
            ]
            # Warm-up: imports, the first fork of each sshd.
            collect_hosts(specs, registry, catalogs, host_timeout=120, concurrency=20)
            local_run(registry, config, catalogs)

            print(f"{len(specs)} hosts, sshd in network namespaces, {args.runs} runs each")
            for level in levels:
                rates = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    outcomes = collect_hosts(
                        specs, registry, catalogs, host_timeout=120, concurrency=level
                    )
                    took = time.perf_counter() - started
                    failed = [o.error for o in outcomes if o.error]
                    if failed:
                        print(f"  failed: {failed[0]}")
                        return 1
                    rates.append(len(specs) / took)
                print(
                    f"concurrency {level:3}: {statistics.median(rates):6.1f} hosts/s "
                    f"(median; runs {', '.join(f'{r:.1f}' for r in rates)})"
                )
            one, local, per_command = [], [], []
            for _ in range(args.runs * 2):
                outcome = collect_host(specs[0], registry, catalogs, host_timeout=120)
                assert outcome.document is not None, outcome.error
                one.append(outcome.seconds)
                commands = outcome.document["inventory"]["collection"]["commands"]
                per_command += [c["seconds"] for c in commands[1:]]
                local.append(local_run(registry, config, catalogs))
            print(
                f"one host over SSH: {statistics.median(one):.3f} s (login, "
                f"{len(commands) - 1} commands, SFTP reads; median of {len(one)})"
            )
            print(f"local agent run:   {statistics.median(local):.3f} s (median of {len(local)})")
            print(f"one command over SSH: {statistics.median(per_command) * 1000:.1f} ms (median)")
    with suppress(Exception):
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
