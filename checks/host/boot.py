"""Boot integrity: UEFI Secure Boot verifies the boot loader against the platform's keys."""

from __future__ import annotations

from collections.abc import Iterator

from checks.facts import HardwareFacts, HostFacts
from checks.model import Outcome, Severity, Unavailable, errored, failed, passed, require
from checks.registry import check


@check(
    "host.secure_boot",
    title_en="UEFI Secure Boot verifies the boot chain",
    title_zh="启用 UEFI 安全启动，对系统引导程序进行可信验证",
    severity=Severity.MEDIUM,
    needs=("hardware",),
)
def secure_boot(facts: HostFacts) -> Iterator[Outcome]:
    hw = require(facts.hardware, HardwareFacts)
    evidence = {"boot_mode": hw.boot_mode}
    if hw.boot_mode == "legacy":
        yield failed("legacy BIOS boot: no Secure Boot verification of the boot loader", evidence)
    elif isinstance(hw.secure_boot, Unavailable):
        yield errored(
            f"UEFI boot, but Secure Boot state unreadable: {hw.secure_boot.reason}", evidence
        )
    elif hw.secure_boot:
        yield passed("UEFI Secure Boot is enabled", {**evidence, "secure_boot": True})
    else:
        yield failed("UEFI boot with Secure Boot disabled", {**evidence, "secure_boot": False})
