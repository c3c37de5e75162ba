"""The runner contains failures: unknown facts and broken checks become `error`, never pass/fail."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from checks.model import Severity, Status, Unavailable, failed, passed
from checks.registry import Registry, RegistryError, check
from checks.runner import ParameterError, evaluate, run_check, validate_overrides


@dataclass
class Facts:
    widgets: object = None
    other: object = None


@check(
    "demo.threshold",
    title_en="t",
    title_zh="t",
    severity=Severity.LOW,
    needs=("widgets",),
    params={"limit": 3},
)
def threshold(facts, limit):
    for name, count in facts.widgets.items():
        ok = count <= limit
        yield (passed if ok else failed)(
            f"{name}: {count} (limit {limit})", {"count": count}, target=name
        )


@check("demo.broken", title_en="b", title_zh="b", severity=Severity.LOW, needs=("widgets",))
def broken(facts):
    raise KeyError("disk3")


@check("demo.silent", title_en="s", title_zh="s", severity=Severity.LOW)
def silent(facts):
    return []


@check(
    "demo.scoped",
    title_en="s",
    title_zh="s",
    severity=Severity.LOW,
    needs=("widgets",),
    applies_to=lambda f: None if f.other else "no other thing here",
)
def scoped(facts):
    yield passed("fine")


def test_one_result_per_target_with_parameters():
    results = run_check(threshold, Facts(widgets={"a": 1, "b": 5}))
    assert [(r.target, r.status) for r in results] == [("a", Status.PASS), ("b", Status.FAIL)]
    assert results[1].evidence == {"count": 5}


def test_site_override_changes_the_threshold():
    results = run_check(threshold, Facts(widgets={"b": 5}), {"limit": 10})
    assert results[0].status is Status.PASS
    assert "limit 10" in results[0].message


def test_unavailable_fact_is_error_naming_the_reason():
    results = run_check(threshold, Facts(widgets=Unavailable("lsblk not installed")))
    assert results[0].status is Status.ERROR
    assert "lsblk not installed" in results[0].message


def test_fact_never_gathered_is_error():
    assert run_check(threshold, Facts())[0].status is Status.ERROR


def test_exception_becomes_error_with_class_and_message():
    result = run_check(broken, Facts(widgets={}))[0]
    assert result.status is Status.ERROR
    assert "KeyError" in result.message
    assert "disk3" in result.message
    assert result.evidence["exception"] == "KeyError"


def test_check_without_outcome_is_error_not_pass():
    assert run_check(silent, Facts())[0].status is Status.ERROR


def test_declared_inapplicability_is_not_applicable_with_reason():
    result = run_check(scoped, Facts(widgets={}))[0]
    assert result.status is Status.NOT_APPLICABLE
    assert result.message == "no other thing here"
    assert run_check(scoped, Facts(widgets={}, other=1))[0].status is Status.PASS


@pytest.mark.parametrize(
    ("override", "words"),
    [({"limt": 1}, "no parameter 'limt'"), ({"limit": "many"}, "must be int")],
)
def test_bad_override_is_refused(override, words):
    with pytest.raises(ParameterError, match=words):
        run_check(threshold, Facts(widgets={}), override)


def test_unavailable_is_never_truthy():
    assert not Unavailable("x")


def test_registry_rejects_duplicates_and_bad_ids():
    with pytest.raises(RegistryError):
        Registry([threshold, threshold])
    with pytest.raises(RegistryError):
        check("Disk-Cipher", title_en="", title_zh="", severity=Severity.LOW)


def test_evaluate_keeps_check_order_and_alias_lookup():
    renamed = check(
        "demo.renamed",
        title_en="r",
        title_zh="r",
        severity=Severity.LOW,
        aliases=("demo.old_name",),
    )(lambda facts: [passed("ok")])
    reg = Registry([threshold, renamed])
    assert reg.get("demo.old_name").id == "demo.renamed"
    results = evaluate(reg, Facts(widgets={"a": 1}))
    assert [r.check_id for r in results] == ["demo.renamed", "demo.threshold"]


@dataclass
class Inner:
    volumes: object = None


@check("demo.dotted", title_en="d", title_zh="d", severity=Severity.LOW, needs=("widgets.volumes",))
def dotted(facts):
    yield passed("volumes known")


@pytest.mark.parametrize(
    ("widgets", "words"),
    [
        (None, "'widgets' was not gathered"),
        (Unavailable("no lsblk"), "widgets unavailable: no lsblk"),
        (Inner(volumes=Unavailable("blkid failed")), "widgets.volumes unavailable: blkid failed"),
    ],
)
def test_a_dotted_need_turns_any_unavailable_level_into_one_error(widgets, words):
    [result] = run_check(dotted, Facts(widgets=widgets))
    assert result.status is Status.ERROR
    assert words in result.message
    assert any(zh in (result.message_zh or "") for zh in ("无法获取", "未采集"))
    assert run_check(dotted, Facts(widgets=Inner(volumes=[])))[0].status is Status.PASS


def test_the_agent_gathers_the_top_level_fact_of_a_dotted_need():
    assert Registry([dotted]).needs() == {"widgets"}


@check(
    "demo.follower",
    title_en="f",
    title_zh="f",
    severity=Severity.LOW,
    needs=("widgets",),
    params={"limit": 3},
    shares={"limit": "demo.threshold"},
)
def follower(facts, limit):
    yield passed(f"limit {limit}")


def test_a_shared_threshold_is_set_once_on_its_owner():
    reg = Registry([threshold, follower])
    results = evaluate(reg, Facts(widgets={"a": 5}), {"demo.threshold": {"limit": 10}})
    assert [r.message for r in results] == ["limit 10", "a: 5 (limit 10)"]
    with pytest.raises(ParameterError, match=r"shared with demo\.threshold"):
        validate_overrides(reg, {"demo.follower": {"limit": 1}})
