"""One customer across every identifier: replay stories of identity resolution."""

from __future__ import annotations

from pathlib import Path

from operators.identity.ids import canonical_id
from tests.conftest import event_dict, write_jsonl

STORIES = Path(__file__).parent / "stories"
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}
DEVICE = {"device_id": "tablet-7"}
ANA = {"email": "Ana@Example.com"}


def story(at):
    """Anonymous browsing on a device, consent given by email elsewhere, a login that links
    them, a store purchase with a loyalty card, then more browsing on the card and device."""
    view = {"product_id": "p-42"}
    return [
        event_dict("product_view", at(0), view, event_id="view-1", **DEVICE),
        event_dict("product_view", at(1), view, event_id="view-2", **DEVICE),
        event_dict("consent_changed", at(2), GRANT, event_id="consent", **ANA),
        event_dict("identify", at(3), event_id="login", **DEVICE, **ANA),
        event_dict(
            "purchase", at(4), {"product_id": "p-9"}, event_id="store", loyalty_id="L-7", **ANA
        ),
        event_dict("product_view", at(5), view, event_id="view-3", loyalty_id="L-7"),
        event_dict("product_view", at(6), view, event_id="view-4", **DEVICE),
    ]


def hour(n):
    return f"2026-11-20T{10 + n:02d}:00:00Z"


def test_device_email_and_loyalty_card_are_one_customer(tmp_path, replay):
    result = replay(write_jsonl(tmp_path / "events.jsonl", story(hour)))
    assert result.returncode == 0, result.stderr
    customer = canonical_id("device_id", "tablet-7")
    decisions = result.lines("decisions.jsonl")
    assert {d["customer_id"] for d in decisions} == {customer}
    # Consent given on the email profile lets the nudge go once the profiles merge; the
    # views on the device and on the card count together.
    first, second = decisions
    assert (first["outcome"], first["triggered_by"]) == ("sent", ["view-1", "view-2", "view-3"])
    # The same customer on another identifier is in the nudge's cooldown.
    assert second["outcome"] == "cooldown"
    (merge,) = result.lines("audit.jsonl")
    assert merge["kind"] == "merge" and merge["surviving_id"] == customer
    assert merge["customer_ids"] == [canonical_id("email", "ana@example.com"), customer]
    assert "ana@example.com" not in (tmp_path / "out-0" / "audit.jsonl").read_text()


def test_a_refused_link_and_a_blocked_value_are_audited(tmp_path, replay):
    events = [
        event_dict(
            "identify", hour(n), event_id=f"e{n}", device_id="kiosk", email=f"p{n}@example.com"
        )
        for n in range(4)
    ]
    events.append(
        event_dict("page_view", hour(5), event_id="junk", email="test@test.com", anonymous_id="a-1")
    )
    result = replay(write_jsonl(tmp_path / "events.jsonl", events))
    audit = result.lines("audit.jsonl")
    refused = [a for a in audit if a["kind"] == "merge_refused"]
    assert [a.get("limit") for a in refused] == ["email: 3", None]
    assert refused[1]["blocked"].startswith("email: t***@")
    assert refused[0]["event_id"] == "e3"


def test_views_between_two_merges_are_decided_when_they_happen(replay):
    """Issue 12's p-86: a device merged into an email profile, three views on the device,
    then (hours later) an anonymous browser merged too. The third view is decided at
    09:01:13, deferred to the end of quiet hours in São Paulo (11:00Z), as Kafka mode
    decides it; the later merge is not folded in ahead of it."""
    done = replay(STORIES / "two_merges_in_a_row.jsonl", "--until", "2026-11-21T00:00:00Z")
    assert done.returncode == 0, done.stderr
    nudges = [d for d in done.lines("decisions.jsonl") if d["action"] == "product_nudge"]
    assert [(d["at"], d["outcome"]) for d in nudges[:2]] == [
        ("2026-11-19T09:01:13Z", "deferred"),
        ("2026-11-19T11:00:00Z", "sent"),
    ]
    assert nudges[0]["until"] == "2026-11-19T11:00:00Z"
    assert nudges[0]["triggered_by"] == [f"pt20261120-02055-00{n}" for n in (5, 6, 7)]
