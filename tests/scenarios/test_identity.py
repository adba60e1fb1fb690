"""One customer across every identifier: replay stories of identity resolution."""

from __future__ import annotations

from operators.identity import canonical_id
from tests.conftest import event_dict, write_jsonl

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
