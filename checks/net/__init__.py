"""Checks evaluated by the collector on a scan's `NetFacts` (segmentation, internet isolation,
border firewall, WAF, ZTNA coverage, TLS floor). They are not part of the agent's
`builtin_registry()`: a host agent has no network facts; `network_registry()` assembles them.
"""

from __future__ import annotations

from checks.registry import Registry, discover


def network_registry() -> Registry:
    """Every network check, evaluated by the collector over `NetFacts`."""
    return discover("checks.net")
