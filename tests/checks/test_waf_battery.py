"""The WAF battery's reading: wafw00f's own plugins name products from recorded answers (no
request of their own), each attack is judged beside its twin, and a block is marked only by
what tells it from the application's own errors."""

from __future__ import annotations

import pytest

from checks.facts.network import AttackExchange, HttpExchange
from checks.net.waf_battery import judge, judge_all, name_waf


def answer(
    status: int | None, server: str = "App/1.0", body: str = "page", **more: str
) -> HttpExchange:
    headers = (("Server", server), *((k.replace("_", "-"), v) for k, v in more.items()))
    return HttpExchange("http://198.18.1.10/", "GET", status, "", headers, body,
                        None if status else "connection reset", 0.01)  # fmt: skip


def attack(kind: str, got: HttpExchange, twin: HttpExchange | None) -> AttackExchange:
    return AttackExchange(kind, "GET ?x", got, "query", twin)


def test_wafw00f_names_a_product_medsec_keeps_no_fingerprint_of() -> None:
    pytest.importorskip("wafw00f")
    ordinary = answer(200, "cloudflare", cf_ray="8c1f2a3b4c5d6e7f-HKG")
    block = answer(403, "cloudflare", "<title>Attention Required! | Cloudflare</title>",
                   cf_ray="8c1f2a3b4c5d6e7f-HKG")  # fmt: skip
    found = name_waf(ordinary, [block])
    assert found is not None
    assert found[0].startswith("Cloudflare"), found


def test_no_product_is_named_from_plain_answers() -> None:
    assert name_waf(answer(200), [answer(403, body="Forbidden")]) is None


@pytest.mark.parametrize(
    ("got", "twin", "verdict"),
    [
        (answer(403), answer(200), "blocked"),
        (answer(None), answer(200), "blocked"),
        (answer(200), answer(200), "through"),
        (answer(404), answer(404), "undecided"),
        (answer(403), answer(404), "blocked"),
        (answer(200), answer(404), "through"),
        (answer(403), None, "undecided"),
        (answer(403), answer(None), "undecided"),
    ],
)
def test_judged_beside_the_twin(got: HttpExchange, twin: HttpExchange | None, verdict: str) -> None:
    assert judge(attack("sqli", got, twin))[0] == verdict


def test_the_apps_own_refusal_carries_no_mark_but_another_responder_does() -> None:
    own = [attack(k, answer(403, body="Forbidden"), answer(200)) for k in ("sqli", "xss")]
    assert [j.marks for j in judge_all(own, answer(404, body="Forbidden"))] == [(), ()]
    waf = [attack(k, answer(403, "WAF", "Forbidden"), answer(200)) for k in ("sqli", "xss")]
    assert all(j.marks for j in judge_all(waf, answer(404, body="Forbidden")))


def test_a_block_page_counts_only_when_several_classes_share_it_and_no_app_page_is_it() -> None:
    shared = [attack(k, answer(403, body="Blocked, id 1234"), answer(200)) for k in ("sqli", "xss")]
    assert all(j.marks for j in judge_all(shared, answer(404, body="Not found")))
    alone = [attack("sqli", answer(403, body="Blocked"), answer(200))]
    assert judge_all(alone, answer(404, body="Not found"))[0].marks == ()
