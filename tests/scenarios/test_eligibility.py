"""Eligibility by attributes through ``concierge replay``: the ``ineligible`` outcome."""

import orjson

from tests.measurement import measured_policy_text
from tests.unit.test_eligibility import SECTIONS

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
