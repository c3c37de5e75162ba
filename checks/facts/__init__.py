"""Typed facts that checks read. Gatherers in `inventory/` produce them; checks never do I/O.

One module per domain. Every field's docstring says where the value comes from. A value that
could not be gathered is `Unavailable(reason)`, never a default that could be mistaken for an
observation.
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.facts.hardware import CpuInfo, Disk, DmiInfo, HardwareFacts, HostIdentity, Nic
from checks.facts.tpm import EkCertificate, TpmFacts, TpmLockout
from checks.model import Unavailable

__all__ = [
    "CpuInfo",
    "Disk",
    "DmiInfo",
    "EkCertificate",
    "HardwareFacts",
    "HostFacts",
    "HostIdentity",
    "Nic",
    "TpmFacts",
    "TpmLockout",
]


@dataclass
class HostFacts:
    """Everything gathered on one host. A field left None was not asked for."""

    hardware: HardwareFacts | Unavailable | None = None
    tpm: TpmFacts | Unavailable | None = None
