"""Every signal of the reference policy, as a story replayed through ``concierge replay``.

Each story is a JSON-lines file of what a customer did; each test reads the
actions and decisions Concierge wrote for it.
"""

from __future__ import annotations

import math

from operators.model.timefmt import format_ms, parse_ms
from tests.conftest import event_dict, write_jsonl

DAY = 86_400_000

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def story(tmp_path, replay, events, *extra, policy=None):
    result = replay(write_jsonl(tmp_path / "story.jsonl", events), *extra, policy=policy)
    assert result.returncode == 0, result.stderr
    return result


def sent(result):
    return [
        (a["action"], a["channel"], a["customer_id"])
        for name in sorted(p.name for p in result.out.glob("actions.*.jsonl"))
        for a in result.lines(name)
    ]


def outcomes(result):
    return [(d["action"], d["outcome"]) for d in result.lines("decisions.jsonl")]


def consent(at, who="ana@example.com"):
    return event_dict("consent_changed", at, GRANT, email=who)


def test_the_same_product_viewed_three_times_in_a_week_nudges_on_push(tmp_path, replay):
    views = [
        event_dict(
            "product_view", f"2026-11-{day}T11:00:00Z", {"product_id": "p-42"}, f"view-{day}"
        )
        for day in (16, 18, 22)
    ]
    other = [
        event_dict("product_view", f"2026-11-{day}T12:00:00Z", {"product_id": "p-7"})
        for day in (16, 17)
    ]
    result = story(tmp_path, replay, [consent("2026-11-15T09:00:00Z"), *views, *other])
    (action,) = result.lines("actions.push.jsonl")
    assert (action["action"], action["moment"], action["value"]) == (
        "product_nudge",
        "browse_intent",
        40.0,
    )
    assert action["signals"] == ["repeat_product_interest"]
    assert action["triggered_by"] == ["view-16", "view-18", "view-22"]
    assert action["decided_at"] == "2026-11-22T11:00:00Z"
    # 40 halving every 2 days reaches min_value 15 after 2 * log2(40/15) days
    expires = parse_ms("2026-11-22T11:00:00Z") + math.floor(2 * DAY * math.log2(40 / 15))
    assert action["expires_at"] == format_ms(expires)
    assert outcomes(result) == [("product_nudge", "sent")]


def test_views_spread_over_more_than_a_week_are_not_interest(tmp_path, replay):
    views = [
        event_dict("product_view", at, {"product_id": "p-42"})
        for at in ("2026-11-10T11:00:00Z", "2026-11-14T11:00:00Z", "2026-11-17T11:00:00.001Z")
    ]
    result = story(tmp_path, replay, [consent("2026-11-01T09:00:00Z"), *views])
    assert outcomes(result) == []


def test_three_loan_eligibility_checks_in_a_week_offer_a_loan_by_email(tmp_path, replay):
    checks = [
        event_dict("loan_eligibility_check", f"2026-11-{day}T15:00:00Z") for day in (20, 21, 27)
    ]
    result = story(tmp_path, replay, [consent("2026-11-15T09:00:00Z"), *checks])
    assert sent(result) == [
        ("loan_offer", "email", result.lines("decisions.jsonl")[0]["customer_id"])
    ]


def test_three_help_searches_in_an_hour_offer_help_in_the_app(tmp_path, replay):
    searches = [
        event_dict("help_search", at, {"query": "refund"}, anonymous_id="bob")
        for at in ("2026-11-20T10:00:00Z", "2026-11-20T10:30:00Z", "2026-11-20T11:00:00Z")
    ]
    slow = [
        event_dict("help_search", at, {"query": "refund"}, anonymous_id="carol")
        for at in ("2026-11-20T10:00:00Z", "2026-11-20T10:30:00Z", "2026-11-20T11:00:00.001Z")
    ]
    result = story(tmp_path, replay, [*searches, *slow])
    (action,) = result.lines("actions.in_app.jsonl")
    assert (action["action"], action["category"], action["signals"]) == (
        "help_offer",
        "service",
        ["help_search_friction"],
    )
    assert outcomes(result) == [("help_offer", "sent")]  # carol's third came 1 ms too late


def test_a_failed_payment_offers_help_without_marketing_consent(tmp_path, replay):
    failed = event_dict("payment_failed", "2026-11-20T10:00:00Z", {"amount": 120})
    result = story(tmp_path, replay, [failed])
    (action,) = result.lines("actions.in_app.jsonl")
    assert action["moment"] == "stuck" and action["signals"] == ["payment_failed"]


def test_a_checkout_left_for_thirty_minutes_sends_a_cart_reminder_as_of_then(tmp_path, replay):
    events = [
        consent("2026-11-20T09:00:00Z"),
        event_dict("checkout_started", "2026-11-20T10:00:00Z", {"cart": 2}, "co-ana"),
        consent("2026-11-20T09:00:00Z", "ben@example.com"),
        event_dict("checkout_started", "2026-11-20T10:00:00Z", email="ben@example.com"),
        event_dict("purchase", "2026-11-20T10:29:59Z", {"order": "o-1"}, email="ben@example.com"),
    ]
    result = story(tmp_path, replay, events, "--until", "2026-11-20T12:00:00Z")
    (action,) = result.lines("actions.email.jsonl")
    assert action["action"] == "cart_recovery" and action["triggered_by"] == ["co-ana"]
    assert action["decided_at"] == "2026-11-20T10:30:00Z"
    assert outcomes(result) == [("cart_recovery", "sent")]  # ben bought in time


def test_until_the_timer_is_due_nothing_is_sent(tmp_path, replay):
    events = [
        consent("2026-11-20T09:00:00Z"),
        event_dict("checkout_started", "2026-11-20T10:00:00Z"),
    ]
    result = story(tmp_path, replay, events, "--until", "2026-11-20T10:29:59.999Z")
    assert outcomes(result) == []


def test_silence_after_a_test_drive_wins_back_at_45_and_at_180_days(tmp_path, replay):
    events = [
        consent("2026-03-01T09:00:00Z"),
        event_dict("test_drive_completed", "2026-03-02T10:00:00Z", {"model": "ev-3"}, "drive"),
    ]
    result = story(tmp_path, replay, events, "--until", "2026-09-01T00:00:00Z")
    win_backs = result.lines("actions.email.jsonl")
    assert [(a["decided_at"], a["signals"]) for a in win_backs] == [
        ("2026-04-16T10:00:00Z", ["inactive"]),
        ("2026-08-29T10:00:00Z", ["gone_quiet_after_test_drive"]),
    ]
    assert all(a["action"] == "win_back_offer" and a["category"] == "retention" for a in win_backs)


def test_any_event_before_45_days_keeps_a_customer_from_being_inactive(tmp_path, replay):
    events = [
        consent("2026-03-01T09:00:00Z"),
        event_dict("page_view", "2026-04-14T09:00:00Z"),
    ]
    result = story(tmp_path, replay, events, "--until", "2026-05-28T00:00:00Z")
    assert outcomes(result) == []
    result = story(tmp_path, replay, events, "--until", "2026-05-29T09:00:00Z")
    assert outcomes(result) == [("win_back_offer", "sent")]


def test_a_bereavement_goes_to_an_agent_and_marketing_stops_for_90_days(tmp_path, replay):
    text = "Mi padre falleció. He PASSED AWAY last week, please stop the offers"
    views = [
        event_dict("product_view", f"2026-11-2{day}T11:00:00Z", {"product_id": "p-42"})
        for day in (1, 2, 3)
    ]
    events = [
        consent("2026-11-15T09:00:00Z"),
        event_dict("support_contact", "2026-11-20T10:00:00Z", {"text": text}, "call-1"),
        *views,
    ]
    result = story(tmp_path, replay, events)
    (handoff,) = result.lines("actions.agent.jsonl")
    assert (handoff["action"], handoff["template"], handoff["triggered_by"]) == (
        "empathy_handoff",
        "specialist-callback",
        ["call-1"],
    )
    decisions = result.lines("decisions.jsonl")
    assert [(d["action"], d["outcome"]) for d in decisions] == [
        ("empathy_handoff", "sent"),
        ("product_nudge", "suppressed"),
    ]
    assert decisions[1]["reason"] == "suppressed by sensitive until 2027-02-18T10:00:00Z"
    outputs = [p for p in result.out.rglob("*") if p.is_file() and p.name != "policy.json"]
    written = b"".join(p.read_bytes() for p in outputs).lower()  # the policy names the words
    assert b"passed" not in written and b"padre" not in written


def test_words_that_merely_contain_a_phrase_are_not_sensitive(tmp_path, replay):
    events = [
        event_dict("complaint", "2026-11-20T10:00:00Z", {"text": "the hospitality was deathly"}),
    ]
    result = story(tmp_path, replay, events)
    assert outcomes(result) == []


def test_a_complaint_holds_marketing_back_for_14_days_but_not_service(tmp_path, replay):
    events = [
        consent("2026-11-01T09:00:00Z"),
        event_dict("complaint", "2026-11-10T10:00:00Z", {"text": "late again"}),
        event_dict("payment_failed", "2026-11-11T10:00:00Z"),
        *[
            event_dict("product_view", f"2026-11-2{d}T11:00:00Z", {"product_id": "p"})
            for d in (1, 2, 3)
        ],
        *[
            event_dict("product_view", f"2026-11-2{d}T11:00:00Z", {"product_id": "q"})
            for d in (4, 5, 6)
        ],
    ]
    result = story(tmp_path, replay, events)
    assert outcomes(result) == [
        ("help_offer", "sent"),
        ("product_nudge", "suppressed"),
        ("product_nudge", "sent"),
    ]


def test_a_file_out_of_order_beyond_the_lateness_is_reported(tmp_path, replay):
    """Two days on, then two days back: the later events agree on the clock (one record
    alone would not move it, see test_event_time.py)."""
    views = [
        event_dict("product_view", at, {"product_id": "p-42"})
        for at in ("2026-11-22T11:00:00Z", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z")
    ]
    views[1:1] = [event_dict("page_view", f"2026-11-22T11:0{m}:00Z") for m in (1, 2)]
    result = story(tmp_path, replay, [consent("2026-11-15T09:00:00Z"), *views])
    assert result.summary()["late_events"] == 2
    assert "2 events came more than 1d after later ones" in result.stderr
    assert outcomes(result) == []
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text(_reference(tmp_path) + "\ningest: {allowed_lateness: 3d}\n")
    result = story(tmp_path, replay, [consent("2026-11-15T09:00:00Z"), *views], policy=lenient)
    assert result.summary()["late_events"] == 0
    assert outcomes(result) == [("product_nudge", "sent")]
    strict = tmp_path / "strict.yaml"
    strict.write_text(_reference(tmp_path) + "\ningest: {late_events: dead_letter}\n")
    result = story(tmp_path, replay, [consent("2026-11-15T09:00:00Z"), *views], policy=strict)
    assert "2 events came more than 1d after later ones in the file and went to dlq.jsonl" in (
        result.stderr
    )
    assert [d["reason"] for d in result.lines("dlq.jsonl")] == ["late_event", "late_event"]


def _reference(tmp_path):
    from tests.conftest import REFERENCE_POLICY

    return REFERENCE_POLICY.read_text()


def test_an_idle_customer_is_forgotten_consent_and_all(tmp_path, replay):
    policy = tmp_path / "evicting.yaml"
    policy.write_text(_reference(tmp_path) + "\ncustomers: {evict_idle_after: 60d}\n")
    views = [
        event_dict("product_view", f"2026-11-2{d}T11:00:00Z", {"product_id": "p-42"})
        for d in (1, 2, 3)
    ]
    events = [consent("2026-01-05T09:00:00Z"), *views]
    result = story(tmp_path, replay, events, policy=policy)
    assert outcomes(result) == [("win_back_offer", "sent"), ("product_nudge", "no_consent")]
    result = story(tmp_path, replay, events)  # the default keeps a customer for a year
    assert outcomes(result) == [("win_back_offer", "sent"), ("product_nudge", "sent")]


def test_renewal_dates_through_replay_with_policy_full_unchanged(tmp_path, replay):
    """``policy-full.yaml`` as pinned: a plain date fires 30 days before its midnight in
    Madrid (into quiet hours, so it leaves with the morning's spread release), a date
    within 30 days fires at once, a renewal cancels it, and a date nobody can read is
    counted in summary.json and told on stderr."""
    from tests.conftest import FULL_POLICY as policy

    def of(who, kind, at, date=None):
        properties = {} if date is None else {"renewal_date": date}
        return event_dict(kind, at, properties, f"{who}-{kind}", email=f"{who}@example.com")

    events = [
        event_dict(
            "consent_changed", "2026-11-01T09:00:00Z", GRANT, f"{who}-g", email=f"{who}@example.com"
        )
        for who in ("ana", "bo", "carla", "dan")
    ]
    events += [
        of("ana", "renewal_scheduled", "2026-11-02T10:00:00Z", "2027-04-15"),
        of("bo", "renewal_scheduled", "2026-11-02T10:00:00Z", "15/04/2027"),
        of("carla", "renewal_scheduled", "2026-11-02T10:00:00Z", "2027-01-10T09:00:00Z"),
        of("dan", "renewal_scheduled", "2026-11-02T10:00:00Z", "2026-11-20"),
        of("carla", "renewed", "2026-11-20T10:00:00Z"),
    ]
    result = story(tmp_path, replay, events, "--until", "2027-06-01T00:00:00Z", policy=policy)
    renewals = [
        (d["triggered_by"][0], d["at"], d["outcome"])
        for d in result.lines("decisions.jsonl")
        if d["action"] == "renewal_reminder"
    ]
    ana = [r for r in renewals if r[0] == "ana-renewal_scheduled"]
    assert ana[0] == ("ana-renewal_scheduled", "2027-03-15T22:00:00Z", "deferred")
    assert ana[1][2] in ("sent", "held_out")
    assert "2027-03-16T07:00:00Z" <= ana[1][1] < "2027-03-16T07:30:00Z", "08:00 + release_over"
    assert [r for r in renewals if r[0] == "dan-renewal_scheduled"] == [
        ("dan-renewal_scheduled", "2026-11-02T10:00:00Z", "sent")
    ]
    assert {r[0] for r in renewals} == {"ana-renewal_scheduled", "dan-renewal_scheduled"}
    assert result.summary()["bad_dates"] == {"renewal_due": {"missing": 0, "not_a_date": 1}}
    assert "note: renewal_due: 1 not_a_date" in result.stderr
