"""Every check's recorded cases, host, network and device, gathered from the per-domain case
modules, with the registry each check belongs to."""

from __future__ import annotations

from checks.device import device_registry
from checks.net import network_registry
from checks.registry import Registry, builtin_registry
from tests.checks import (
    cases,
    cases_backup,
    cases_device,
    cases_disk,
    cases_firewall,
    cases_logs,
    cases_net,
    cases_net_router,
    cases_wipe_crypto,
)
from tests.checks.meta import Case

HOST_CASES: dict[str, list[Case]] = {}
for _module in (
    cases,
    cases_backup,
    cases_disk,
    cases_firewall,
    cases_logs,
    cases_wipe_crypto,
):
    for _check_id, _cases in _module.CASES.items():
        HOST_CASES.setdefault(_check_id, []).extend(_cases)

ALL_CASES: dict[str, list[Case]] = {**HOST_CASES}
for _check_id, _cases in (
    *cases_net.CASES.items(),
    *cases_net_router.CASES.items(),
    *cases_device.CASES.items(),
):
    ALL_CASES.setdefault(_check_id, []).extend(_cases)


def registries() -> tuple[Registry, Registry, Registry]:
    """The agent's host checks, the collector's network checks and its device checks."""
    return builtin_registry(), network_registry(), device_registry()


def registry_of(check_id: str) -> Registry:
    host, net, device = registries()
    return host if check_id in host else net if check_id in net else device
