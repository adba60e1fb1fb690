"""Eligibility by attributes through ``concierge replay``: the ``ineligible`` outcome."""

import orjson

from tests.measurement import measured_policy_text
from tests.unit.decisions.test_eligibility import SECTIONS

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def test_only_customers_in_iberia_are_offered_a_loan(tmp_path, replay):
    policy = tmp_path / "policy.yaml"
    policy.write_text(measured_policy_text(SECTIONS))
    lines = []
    for who, region in (("es", "ES"), ("fr", "FR"), ("unknown", None)):
        email = f"{who}@example.com"
        grant = {
            "event_id": f"{who}-g",
            "type": "consent_changed",
            "timestamp": "2026-11-01T09:00:00Z",
            "identifiers": {"email": email},
            "properties": GRANT,
        }
        if region:
            grant["context"] = {"region": region}
        lines.append(grant)
        lines += [
            {
                "event_id": f"{who}-{m}",
                "type": "loan_eligibility_check",
                "timestamp": f"2026-11-10T10:{m:02d}:00Z",
                "identifiers": {"email": email},
            }
            for m in (0, 10, 20)
        ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    result = replay(events, policy=policy)
    assert result.returncode == 0, result.stderr
    by_event = {d["triggered_by"][-1].split("-")[0]: d for d in result.lines("decisions.jsonl")}
    assert by_event["es"]["outcome"] == "sent"
    assert (by_event["fr"]["outcome"], by_event["fr"]["rule"]) == (
        "ineligible",
        "loans-iberia-only",
    )
    assert by_event["unknown"]["reason"].startswith("ineligible: region unknown")
    assert result.summary()["decisions"]["ineligible"] == 2
    assert [a["customer_id"] for a in result.lines("actions.email.jsonl")] == [
        by_event["es"]["customer_id"]
    ]


def test_a_bounced_email_is_not_used_again_until_the_customer_gives_a_new_one(tmp_path, replay):
    """Through the real identity step: the profile's identifier types reach the decision,
    and a new email stated by a later event makes the channel reachable again."""
    from tests.conftest import event_dict, write_jsonl
    from tests.unit.context.test_reachability import SECTION

    policy = tmp_path / "policy.yaml"
    policy.write_text(measured_policy_text(SECTION))

    def views(product, day, **identifiers):
        return [
            event_dict(
                "product_view",
                f"2026-11-{day}T10:{m:02d}:00Z",
                {"product_id": product},
                f"{product}-{m}",
                **identifiers,
            )
            for m in (0, 10, 20)
        ]

    ana = {"loyalty_id": "L-1", "email": "ana@example.com"}
    grant = event_dict("consent_changed", "2026-11-01T09:00:00Z", GRANT, "g", **ana)
    browser = views("p-0", "09", anonymous_id="browser-9")  # nobody to write to
    first = [grant, *browser, *views("p-1", "10", **ana)]
    ran = replay(write_jsonl(tmp_path / "first.jsonl", first), policy=policy)
    assert ran.returncode == 0, ran.stderr
    (sent,) = ran.lines("actions.email.jsonl")
    bounce = event_dict(
        "feedback", "2026-11-10T12:00:00Z", {"action_id": sent["action_id"], "outcome": "bounced"}
    )
    bounce.pop("identifiers")
    new_email = {"loyalty_id": "L-1", "email": "ana.new@example.com"}
    story = [*first, bounce, *views("p-2", "11", **ana), *views("p-3", "12", **new_email)]
    result = replay(write_jsonl(tmp_path / "story.jsonl", story), policy=policy)
    assert result.returncode == 0, result.stderr
    told = [
        (d["triggered_by"][0].split("-")[1], d["outcome"], d.get("channel"), d["reason"])
        for d in result.lines("decisions.jsonl")
    ]
    assert told == [
        ("0", "unreachable", None, "unreachable: no device_id for push; no email for email"),
        ("1", "sent", "email", "eligible"),
        ("2", "unreachable", None, "unreachable: no device_id for push; email bounced"),
        ("3", "sent", "email", "eligible"),
    ]
    assert result.summary()["decisions"]["unreachable"] == 2


NUDGE_DAYS = ("01", "04", "08", "11")
"""November days a nudge each, spaced so no cap holds them back."""


def browsing(days_by_who):
    """Each person grants consent on November 1 and, on each of their days, views a new
    product three times from 10:00 (a nudge is decided at 10:20); in time order."""
    from tests.conftest import event_dict

    events = []
    for who, days in days_by_who.items():
        email = {"email": f"{who}@example.com"}
        events.append(event_dict("consent_changed", "2026-11-01T09:00:00Z", GRANT, who, **email))
        for n, day in enumerate(days):
            events += [
                event_dict(
                    "product_view",
                    f"2026-11-{day}T10:{m:02d}:00Z",
                    {"product_id": f"p-{n}"},
                    f"{who}-{n}-{m}",
                    **email,
                )
                for m in (0, 10, 20)
            ]
    return sorted(events, key=lambda e: e["timestamp"])


def test_a_customer_who_ignores_three_nudges_hears_no_more_marketing_for_a_while(tmp_path, replay):
    """Fatigue through replay: Ana opens nothing and is held back; Bo opens one nudge in
    time and keeps hearing from us; the feedback names only the action id."""
    from tests.conftest import event_dict, write_jsonl
    from tests.unit.decisions.test_fatigue import SECTION

    policy = tmp_path / "policy.yaml"
    policy.write_text(measured_policy_text(SECTION))
    story = browsing({"ana": NUDGE_DAYS, "bo": NUDGE_DAYS})
    first = replay(write_jsonl(tmp_path / "first.jsonl", story), policy=policy)
    assert first.returncode == 0, first.stderr
    bos = [a for a in first.lines("actions.push.jsonl") if a["triggered_by"][0].startswith("bo")]
    opened = event_dict(
        "feedback", "2026-11-05T08:00:00Z", {"action_id": bos[1]["action_id"], "outcome": "opened"}
    )
    opened.pop("identifiers")
    story = sorted([*story, opened], key=lambda e: e["timestamp"])
    result = replay(write_jsonl(tmp_path / "story.jsonl", story), policy=policy)
    assert result.returncode == 0, result.stderr
    told = sorted(
        (d["triggered_by"][0][:-2], d["outcome"], d.get("rule"), d.get("until"))
        for d in result.lines("decisions.jsonl")
    )
    assert told == [
        ("ana-0", "sent", None, None),
        ("ana-1", "sent", None, None),
        ("ana-2", "sent", None, None),
        ("ana-3", "suppressed", "ignoring-marketing", "2026-11-15T10:20:00Z"),
        ("bo-0", "sent", None, None),
        ("bo-1", "sent", None, None),
        ("bo-2", "sent", None, None),
        ("bo-3", "sent", None, None),
    ]
