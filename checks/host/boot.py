"""Boot integrity: UEFI Secure Boot verifies the boot loader against the platform's keys."""

from __future__ import annotations

from collections.abc import Iterator

from checks.facts import HardwareFacts, HostFacts
from checks.model import Msg, Outcome, Severity, Unavailable, errored, failed, passed, require
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
        yield failed(
            Msg(
                "legacy BIOS boot: no Secure Boot verification of the boot loader",
                "传统 BIOS 引导：引导程序未经安全启动（Secure Boot）验证",
            ),
            evidence,
        )
    elif isinstance(hw.secure_boot, Unavailable):
        reason = hw.secure_boot.reason
        yield errored(
            Msg(
                f"UEFI boot, but Secure Boot state unreadable: {reason}",
                f"UEFI 引导，但无法读取安全启动（Secure Boot）状态：{reason}",
            ),
            evidence,
        )
    elif hw.secure_boot:
        yield passed(
            Msg("UEFI Secure Boot is enabled", "已启用 UEFI 安全启动（Secure Boot）"),
            {**evidence, "secure_boot": True},
        )
    else:
        yield failed(
            Msg(
                "UEFI boot with Secure Boot disabled", "UEFI 引导，但未启用安全启动（Secure Boot）"
            ),
            {**evidence, "secure_boot": False},
        )
