"""The hospital in a box: `Lab.up()` builds it from network namespaces, `Lab.down()` removes every
trace of it (also after a crash, without its state file), `Lab.status()` reports it and
`Lab.fault()` switches the faults the scanner must catch.

One namespace per zone (`<prefix><zone>`) plus a router (`<prefix>rtr`) whose nftables ruleset
is the zones file's policy (`network`). Nothing is added to the root namespace: no link, no
address, no route; the collector reaches the lab from inside its namespaces
(`collector.lab.netns`). Every daemon (`daemons`) runs inside a lab namespace with all its files
under the lab folder (`state`), so `down` ends them by namespace membership (`processes`, never
by name), deletes the namespaces and removes the folder.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from collector.lab import daemons, network, pki
from collector.lab import topology as t
from collector.lab.configs import (
    LabConfigError,
    LabPaths,
    SnmpSecrets,
    check_zones,
    parse_policy,
    render_zones,
)
from collector.lab.faults import switch as switch_daemon_fault
from collector.lab.host import LabError, ensure_probe_user, in_netns, preflight
from collector.lab.processes import alive_in, end_processes, read_pid
from collector.lab.state import (
    DaemonStatus,
    DownReport,
    LabStatus,
    State,
    clear_folder,
    load_state,
    prepare_folder,
    save_state,
)

PREFIX_ENV = "MEDSEC_LAB_PREFIX"
DIR_ENV = "MEDSEC_LAB_DIR"
DEFAULT_DIR_PARENT = Path("/run/medsec")


def default_prefix() -> str:
    return os.environ.get(PREFIX_ENV) or t.DEFAULT_PREFIX


def default_dir(prefix: str) -> Path:
    configured = os.environ.get(DIR_ENV)
    return Path(configured) if configured else DEFAULT_DIR_PARENT / prefix.rstrip("-")


def zones_template() -> str:
    """The packaged zones file the lab is built from (its policy is the router's ruleset)."""
    return importlib.resources.files("collector.lab").joinpath("zones.yaml").read_text("utf-8")


class Lab:
    """One lab: its namespace prefix and its folder (LAB). Cheap to construct; nothing runs."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        prefix: str | None = None,
        *,
        persona: str = t.DEFAULT_PERSONA,
    ) -> None:
        self.prefix = default_prefix() if prefix is None else prefix
        if not t.PREFIX_PATTERN.fullmatch(self.prefix):
            raise LabError(
                f"lab prefix {self.prefix!r}: use 2-11 characters a-z0-9 ending in '-', e.g. 'lab-'"
            )
        if persona not in t.PERSONAS:
            raise LabError(f"persona {persona!r}: choose one of {', '.join(t.PERSONAS)}")
        self.persona = persona
        root = Path(state_dir) if state_dir is not None else default_dir(self.prefix)
        self.paths = LabPaths(Path(os.path.abspath(root)))

    # --- names and files the scanner uses ----------------------------------------------------

    @property
    def directory(self) -> Path:
        return self.paths.root

    @property
    def zones_file(self) -> Path:
        """LAB/zones.yaml, written by `up`: the zones file for this lab's names and paths."""
        return self.paths.zones

    @property
    def snmp_file(self) -> Path:
        """LAB/snmp.json (mode 0600): the agent's address, v2c community and v3 credentials."""
        return self.paths.snmp_secrets

    def netns(self, zone: str) -> str:
        """The namespace of a zone (`internet`, `dmz`, `his`, `office`, `mgmt`) or of `rtr`."""
        if zone not in t.NAMESPACE_SUFFIXES:
            raise LabError(f"unknown lab zone {zone!r}: one of {', '.join(t.NAMESPACE_SUFFIXES)}")
        return self.prefix + zone

    def command(self, zone: str, *argv: str) -> list[str]:
        """argv running `argv` inside a zone's namespace (`ip netns exec`)."""
        return in_netns(self.netns(zone), *argv)

    def existing_namespaces(self) -> list[str]:
        return network.existing(network.namespace_names(self.prefix))

    # --- up ----------------------------------------------------------------------------------

    def up(self) -> dict[str, float]:
        """Build the lab; the seconds each step took. On failure everything is removed again
        (logs kept under LAB/logs) and LabError says which step and daemon failed."""
        started = time.monotonic()
        tools = preflight()
        zones_text = zones_template()
        try:
            check_zones(zones_text)
            policy = parse_policy(zones_text)
        except LabConfigError as exc:
            raise LabError(str(exc)) from exc
        present = self.existing_namespaces()
        if present:
            raise LabError(
                f"lab {self.prefix!r} is already (partly) up ({', '.join(present)}): "
                "run `medsec lab down` first"
            )
        prepare_folder(self.paths)
        state = State(self.prefix, str(self.paths.root), self.persona)
        save_state(self.paths, state)
        timings: dict[str, float] = {}

        def step(name: str, action: Callable[[], None]) -> None:
            begin = time.monotonic()
            action()
            timings[name] = round(time.monotonic() - begin, 3)

        def make_keys() -> None:
            pki.make_pki(self.paths)
            pki.make_ssh(self.paths)

        def build_network() -> None:
            state.namespaces = network.namespace_names(self.prefix)
            save_state(self.paths, state)  # before creating anything: a crash is recorded
            network.build(self.prefix, tools["ip"])

        persona = t.PERSONAS[self.persona]
        try:
            secrets = pki.make_snmp_secrets()
            step("keys", make_keys)
            step("network", build_network)
            step("firewall", lambda: network.load_ruleset(self.prefix, self.paths, policy, ()))
            step("configs", lambda: daemons.write_configs(self.paths, persona, secrets, ()))
            step("probe_user", ensure_probe_user)
            step(
                "daemons",
                lambda: daemons.start(
                    daemons.specs(self.paths, tools),
                    paths=self.paths,
                    prefix=self.prefix,
                    state=state,
                    save=lambda: save_state(self.paths, state),
                ),
            )
            self._write_zones_and_secrets(zones_text, secrets)
            timings["total"] = round(time.monotonic() - started, 3)
            state.phase = "up"
            state.timings = timings
            save_state(self.paths, state)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down(keep_logs=True)
            raise
        return timings

    def _write_zones_and_secrets(self, zones_text: str, secrets: SnmpSecrets) -> None:
        document = secrets.as_json(self.netns("mgmt"), t.PERSONAS[self.persona])
        fd = os.open(self.paths.snmp_secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        # The zones file a scan of this lab needs, complete: the router's SNMP v3 credentials
        # (secrets in their own 0600 files, never in the zones file), the gateway's client
        # certificate, and lab-speed timing (answers come in microseconds).
        secret_dir = self.paths.root / "secrets"
        secret_dir.mkdir(mode=0o700, exist_ok=True)
        v3 = document["v3"]
        for name, value in (("snmp-auth", v3["auth_password"]), ("snmp-priv", v3["priv_password"])):
            fd = os.open(secret_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(value + "\n")
        extras = {
            "snmp": {
                "host": document["address"],
                "version": "3",
                "user": v3["user"],
                "auth_key_file": str(secret_dir / "snmp-auth"),
                "priv_key_file": str(secret_dir / "snmp-priv"),
                "auth_protocol": v3["auth_protocol"].lower(),
                "priv_protocol": v3["priv_protocol"].lower(),
            },
            "client_cert_file": str(self.paths.client_cert),
            "client_key_file": str(self.paths.client_key),
            "scan": dict(t.LAB_SCAN_TIMING),
        }
        self.paths.zones.write_text(render_zones(zones_text, self.prefix, self.paths, extras))

    # --- down --------------------------------------------------------------------------------

    def down(self, *, keep_logs: bool = False) -> DownReport:
        """Remove the lab: end every process inside its namespaces, delete the namespaces (their
        links go with them) and the lab folder (`keep_logs` keeps LAB/logs). Works from whatever
        is left: the state file is a hint, the namespaces are found by this lab's names."""
        started = time.monotonic()
        present = self.existing_namespaces()
        stopped = end_processes(present)
        if present:
            network.delete(present)
        left = self.existing_namespaces()
        if left:
            raise LabError(f"could not delete namespaces {', '.join(left)}")
        removed = False
        if self.paths.marker.exists():
            clear_folder(self.paths.root, keep=("logs",) if keep_logs else ())
            if not keep_logs:
                shutil.rmtree(self.paths.root, ignore_errors=True)
            removed = True
        return DownReport(present, stopped, removed, round(time.monotonic() - started, 3))

    # --- status and faults -------------------------------------------------------------------

    def status(self) -> LabStatus:
        state = load_state(self.paths)
        names = network.namespace_names(self.prefix)
        present = set(network.existing(names))
        namespaces = {name: name in present for name in names}
        daemon_status = []
        for name, entry in (state.daemons if state else {}).items():
            netns_name = str(entry.get("netns", ""))
            pid = read_pid(Path(entry["pidfile"])) if entry.get("pidfile") else None
            daemon_status.append(DaemonStatus(name, netns_name, pid, alive_in(pid, netns_name)))
        if state is not None:
            phase = state.phase
        else:
            phase = "building" if any(namespaces.values()) else "absent"
        return LabStatus(
            self.prefix,
            str(self.paths.root),
            phase,
            namespaces,
            daemon_status,
            sorted(state.faults) if state else [],
        )

    def faults(self) -> frozenset[str]:
        state = load_state(self.paths)
        return frozenset(state.faults) if state else frozenset()

    def fault(self, name: str, on: bool) -> None:
        """Switch one fault on or off (idempotent); returns once the lab behaves accordingly."""
        if name not in t.FAULTS:
            raise LabError(f"unknown fault {name!r}: one of {', '.join(t.FAULTS)}")
        state = load_state(self.paths)
        if state is None or state.phase != "up" or not all(self.status().namespaces.values()):
            raise LabError(f"lab {self.prefix!r} in {self.paths.root} is not up")
        active = set(state.faults)
        if on:
            active.add(name)
        else:
            active.discard(name)
        if name in t.ROUTER_FAULTS:
            network.load_ruleset(self.prefix, self.paths, parse_policy(zones_template()), active)
        else:
            switch_daemon_fault(name, on, paths=self.paths, dmz=self.netns("dmz"))
        state.faults = sorted(active)
        save_state(self.paths, state)
