"""Checks evaluated by the collector on an SNMP inventory's `DeviceFacts` (how each device's
SNMP management is secured, which security devices sit on each border), and the role
classification of devices (`roles`, rules in `roles.yaml`). Kept apart from `checks.net`: a scan
has no device facts and an inventory run no scan facts; both count as network evidence.
"""

from __future__ import annotations

from checks.registry import Registry, discover


def device_registry() -> Registry:
    """Every device check, evaluated by the collector over `DeviceFacts`."""
    return discover("checks.device")
