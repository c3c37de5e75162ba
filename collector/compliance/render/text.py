"""Words shared by the renderers: statuses, conformity and object kinds in Chinese and English."""

from __future__ import annotations

STATUS_WORDS = {
    "zh": {
        "pass": "通过",
        "fail": "不通过",
        "error": "无法判定",
        "not_applicable": "不适用",
        "manual": "需人工",
        "not_covered": "无证据",
    },
    "en": {
        "pass": "pass",
        "fail": "fail",
        "error": "error",
        "not_applicable": "not applicable",
        "manual": "manual",
        "not_covered": "not covered",
    },
}
CONFORMITY_EN = {
    "符合": "conforms",
    "部分符合": "partly conforms",
    "不符合": "does not conform",
    "不适用": "not applicable",
}
UNDECIDED = {"zh": "未判定", "en": "undecided"}
KIND_WORDS = {
    "zh": {
        "host": "主机",
        "agent": "代理（未报告）",
        "zone_pair": "区域边界",
        "web_app": "Web 应用",
        "critical_system": "关键系统",
        "service": "服务",
        "device": "网络设备",
        "scan": "扫描",
        "hosts": "主机",
        "network": "网络",
        "attestation": "人工声明",
    },
    "en": {
        "host": "host",
        "agent": "agent (never reported)",
        "zone_pair": "zone pair",
        "web_app": "web app",
        "critical_system": "critical system",
        "service": "service",
        "device": "network device",
        "scan": "scan",
        "hosts": "hosts",
        "network": "network",
        "attestation": "attestation",
    },
}


def status_word(status: str, lang: str) -> str:
    return STATUS_WORDS["en" if lang == "en" else "zh"].get(status, status)


def conformity_word(conformity: str | None, lang: str) -> str:
    if conformity is None:
        return UNDECIDED["en" if lang == "en" else "zh"]
    return CONFORMITY_EN.get(conformity, conformity) if lang == "en" else conformity


def kind_word(kind: str, lang: str) -> str:
    return KIND_WORDS["en" if lang == "en" else "zh"].get(kind, kind)


def message(item_message: str, item_message_zh: str | None, lang: str) -> str:
    return item_message_zh if lang != "en" and item_message_zh else item_message


def reason(obj: object, lang: str) -> str:
    """An object's reason (`ObjectVerdict.reason`/`reason_zh`) in the language, or ''."""
    english = getattr(obj, "reason", None)
    chinese = getattr(obj, "reason_zh", None)
    return (chinese if lang != "en" and chinese else english) or ""
