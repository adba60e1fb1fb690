"""Decisions and guardrails as stories, replayed through ``concierge replay`` with the
reference policy: what a customer would notice, and what the decisions say."""

from __future__ import annotations

import pytest

from tests.conftest import event_dict, write_jsonl

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def story(tmp_path, replay, events, *extra, name="story"):
    result = replay(write_jsonl(tmp_path / f"{name}.jsonl", events), *extra)
    assert result.returncode == 0, result.stderr
    return result


def told(result):
    return [
        (d["action"], d["outcome"], d.get("channel"), d["at"])
        for d in result.lines("decisions.jsonl")
    ]


def views(product, *stamps, who="ana@example.com", zone=None):
    events = []
    for at in stamps:
        event = event_dict("product_view", at, {"product_id": product}, email=who)
        if zone is not None:
            event["context"] = {"timezone": zone}
        events.append(event)
    return events


def feedback(action_id, outcome, at="2026-11-20T12:00:00Z", event_id=None):
    """A channel service's report about an action; feedback names no identifiers."""
    report = event_dict(
        "feedback", at, {"action_id": action_id, "channel": "push", "outcome": outcome}, event_id
    )
    report.pop("identifiers")
    return report


def consent(at="2026-11-01T09:00:00Z", who="ana@example.com", **change):
    return event_dict("consent_changed", at, {**GRANT, **change}, email=who)


def test_late_evening_browsing_is_answered_in_the_morning_not_at_night(tmp_path, replay):
    # Ana, in Madrid, keeps looking at a coat until 22:30 local time
    evening = views("coat", "2026-11-20T20:05:00Z", "2026-11-20T21:00:00Z", "2026-11-20T21:30:00Z")
    result = story(tmp_path, replay, [consent(), *evening], "--until", "2026-11-21T12:00:00Z")
    assert told(result) == [
        ("product_nudge", "deferred", "push", "2026-11-20T21:30:00Z"),
        ("product_nudge", "sent", "push", "2026-11-21T07:00:00Z"),
    ]
    deferred, sent = result.lines("decisions.jsonl")
    assert deferred["reason"] == "quiet hours until 2026-11-21T07:00:00Z"
    assert deferred["action_id"] == sent["action_id"]
    (push,) = result.lines("actions.push.jsonl")
    assert push["decided_at"] == "2026-11-21T07:00:00Z" and push["value"] < 40


def test_the_same_minute_is_daytime_for_one_customer_and_night_for_another(tmp_path, replay):
    at = ("2026-11-20T11:00:00Z", "2026-11-20T11:30:00Z", "2026-11-20T12:30:00Z")
    events = [
        consent(),
        consent(who="kenji@example.jp"),
        *views("lamp", *at),
        *views("lamp", *at, who="kenji@example.jp", zone="Asia/Tokyo"),  # 21:30 in Tokyo
    ]
    result = story(tmp_path, replay, events)
    assert [d["outcome"] for d in result.lines("decisions.jsonl")] == ["sent", "deferred"]


def test_a_busy_week_of_browsing_gets_three_marketing_messages_not_five(tmp_path, replay):
    events = [consent()]
    for day, product in zip((16, 17, 17, 18, 19), ("a", "b", "c", "d", "e"), strict=True):
        events += views(product, *(f"2026-11-{day}T1{h}:00:00Z" for h in (0, 1, 2)))
    result = story(tmp_path, replay, events)
    outcomes = [(d["group"], d["outcome"], d["reason"]) for d in result.lines("decisions.jsonl")]
    assert [o[:2] for o in outcomes] == [
        ("a", "sent"),
        ("b", "sent"),
        ("c", "sent"),
        ("d", "capped"),
        ("e", "capped"),
    ]
    assert outcomes[3][2].startswith("capped by marketing-weekly")
    assert len(result.lines("actions.push.jsonl")) == 3


def test_after_unsubscribing_from_push_the_next_nudge_comes_by_email(tmp_path, replay):
    first = [
        consent(),
        *views("coat", "2026-11-20T10:00:00Z", "2026-11-20T10:30:00Z", "2026-11-20T11:00:00Z"),
    ]
    before = story(tmp_path, replay, first, name="before")
    (push,) = before.lines("actions.push.jsonl")
    unsubscribe = feedback(push["action_id"], "unsubscribed")
    later = views("boots", "2026-11-22T10:00:00Z", "2026-11-22T10:30:00Z", "2026-11-22T11:00:00Z")
    after = story(tmp_path, replay, [*first, unsubscribe, *later], name="after")
    assert [(a, o, c) for a, o, c, _ in told(after)] == [
        ("product_nudge", "sent", "push"),
        ("product_nudge", "sent", "email"),
    ]
    assert after.lines("actions.push.jsonl")[0]["action_id"] == push["action_id"]


@pytest.mark.parametrize("outcome", ["complained", "unsubscribed"])
def test_feedback_forged_from_an_email_changes_nothing_and_is_a_dead_letter(
    tmp_path, replay, outcome
):
    from operators.identity.ids import canonical_id

    ana = canonical_id("email", "ana@example.com")
    forged = feedback(
        f"{ana}.product_nudge.0000000000000000", outcome, "2026-11-20T09:00:00Z", "forged-1"
    )
    coat = views("coat", "2026-11-20T10:00:00Z", "2026-11-20T10:30:00Z", "2026-11-20T11:00:00Z")
    result = story(tmp_path, replay, [consent(), forged, *coat])
    assert [(a, o, c) for a, o, c, _ in told(result)] == [("product_nudge", "sent", "push")]
    (dead,) = result.lines("dlq.jsonl")
    assert dead["reason"] == "unknown_action_id" and dead["event_id"] == "forged-1"
    assert result.summary()["dead_letters"] == 1


def test_an_action_id_stays_the_same_across_replays_so_feedback_finds_it(tmp_path, replay):
    coat = views("coat", "2026-11-20T10:00:00Z", "2026-11-20T10:30:00Z", "2026-11-20T11:00:00Z")
    first = story(tmp_path, replay, [consent(), *coat], name="first")
    (push,) = first.lines("actions.push.jsonl")
    clicked = feedback(push["action_id"], "clicked")
    second = story(tmp_path, replay, [consent(), *coat, clicked], name="second")
    assert second.lines("actions.push.jsonl") == [push]
    assert second.lines("dlq.jsonl") == []


def test_a_complaint_stops_marketing_for_two_weeks_but_help_still_comes(tmp_path, replay):
    events = [
        consent(),
        event_dict("complaint", "2026-11-10T10:00:00Z", {"text": "third late delivery"}),
        *views("coat", "2026-11-20T10:00:00Z", "2026-11-20T10:30:00Z", "2026-11-20T11:00:00Z"),
        *[event_dict("help_search", f"2026-11-20T11:{m}:00Z") for m in (10, 20, 30)],
        *views("boots", "2026-11-25T10:00:00Z", "2026-11-25T10:30:00Z", "2026-11-25T11:00:00Z"),
    ]
    result = story(tmp_path, replay, events)
    assert [(a, o) for a, o, _, _ in told(result)] == [
        ("product_nudge", "suppressed"),
        ("help_offer", "sent"),
        ("product_nudge", "sent"),
    ]
    assert result.lines("decisions.jsonl")[0]["reason"] == (
        "suppressed by after-complaint until 2026-11-24T10:00:00Z"
    )


def test_buying_the_coat_stops_nudges_about_the_coat(tmp_path, replay):
    events = [
        consent(),
        event_dict("purchase", "2026-11-20T09:00:00Z", {"product_id": "coat"}),
        *views("coat", "2026-11-20T10:00:00Z", "2026-11-20T10:30:00Z", "2026-11-20T11:00:00Z"),
    ]
    result = story(tmp_path, replay, events)
    assert [(a, o) for a, o, _, _ in told(result)] == [("product_nudge", "suppressed")]
