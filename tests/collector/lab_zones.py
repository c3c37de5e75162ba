"""The zones file a scan of the lab uses: the lab's own (`Lab.zones_file`) plus what the lab
leaves to the site — the SNMP section with its secrets in files, the ZTNA gateway's client
certificate — and lab-speed timing (`collector.lab.topology.LAB_SCAN_TIMING`: answers come
in microseconds, so nmap need not wait T4's 1.25 s for each). Shared by
tests/collector/test_scan_lab.py and benchmarks/scan.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from collector.lab import Lab
from collector.lab.topology import LAB_SCAN_TIMING

LAB_TIMING = dict(LAB_SCAN_TIMING)


def write_lab_zones(lab: Lab, folder: Path) -> Path:
    """Write `folder/zones.yaml` (and the SNMP secret files, mode 0600) for a running lab."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    data: dict[str, Any] = yaml.safe_load(lab.zones_file.read_text(encoding="utf-8"))
    secrets = json.loads(lab.snmp_file.read_text(encoding="utf-8"))
    for name, value in (
        ("auth", secrets["v3"]["auth_password"]),
        ("priv", secrets["v3"]["priv_password"]),
    ):
        path = folder / name
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)
    data.setdefault(
        "snmp",
        {
            "host": secrets["address"],
            "version": "3",
            "user": secrets["v3"]["user"],
            "auth_key_file": str(folder / "auth"),
            "priv_key_file": str(folder / "priv"),
            "auth_protocol": secrets["v3"]["auth_protocol"].lower(),
            "priv_protocol": secrets["v3"]["priv_protocol"].lower(),
        },
    )
    for system in data.get("critical_systems") or []:
        if system.get("ztna_gateway"):
            system.setdefault("client_cert_file", str(lab.paths.client_cert))
            system.setdefault("client_key_file", str(lab.paths.client_key))
    data.setdefault("scan", {}).update(LAB_TIMING)
    path = folder / "zones.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
