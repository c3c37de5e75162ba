"""Typed facts that checks read. Gatherers in `inventory/` produce them; checks never do I/O.

One module per domain. Every field's docstring says where the value comes from. A value that
could not be gathered is `Unavailable(reason)`, never a default that could be mistaken for an
observation.
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.facts.backup import BackupFacts
from checks.facts.crypto import CryptoFacts
from checks.facts.disk import DiskFacts
from checks.facts.firewall import FirewallFacts
from checks.facts.hardware import CpuInfo, Disk, DmiInfo, HardwareFacts, HostIdentity, Nic
from checks.facts.logs import LogFacts
from checks.facts.tpm import EkCertificate, TpmFacts, TpmLockout
from checks.facts.wipe import WipeFacts
from checks.model import Unavailable

__all__ = [
    "BackupFacts",
    "CpuInfo",
    "CryptoFacts",
    "Disk",
    "DiskFacts",
    "DmiInfo",
    "EkCertificate",
    "FirewallFacts",
    "HardwareFacts",
    "HostFacts",
    "HostIdentity",
    "LogFacts",
    "Nic",
    "TpmFacts",
    "TpmLockout",
    "WipeFacts",
]


@dataclass
class HostFacts:
    """Everything gathered on one host. A field left None was not asked for."""

    hardware: HardwareFacts | Unavailable | None = None
    tpm: TpmFacts | Unavailable | None = None
    disk: DiskFacts | Unavailable | None = None
    backups: BackupFacts | Unavailable | None = None
    wipe: WipeFacts | Unavailable | None = None
    crypto: CryptoFacts | Unavailable | None = None
    logs: LogFacts | Unavailable | None = None
    firewall: FirewallFacts | Unavailable | None = None
