"""Holdouts, conversions and lift through ``concierge replay`` and ``concierge lift``."""

import random

import jsonschema
import orjson

import schemas
from tests.measurement import measured_policy_text
from tests.scenarios.conftest import concierge

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}
PLANTED = {"sent": 0.30, "held_out": 0.20}
"""The chance that a customer buys within a day of the nudge decision, by group: sending
adds 10 points (a relative lift of 50%)."""
HALF_HELD_OUT = """
holdouts:
  salt: lift-test
  actions: {product_nudge: 0.5}
conversions:
  purchase: {within: 3d}
"""


def line(event_id, event_type, at, email, properties=None):
    record = {
        "event_id": event_id,
        "type": event_type,
        "timestamp": at,
        "identifiers": {"email": email},
    }
    if properties:
        record["properties"] = properties
    return orjson.dumps(record)


def browsing(customers):
    """Each customer grants consent, then views one product three times one morning."""
    lines = []
    for n in range(customers):
        email = f"c{n}@example.com"
        day = 10 + n % 5
        minute = n // 5 % 60
        lines.append(line(f"g-{n}", "consent_changed", "2026-11-01T09:00:00Z", email, GRANT))
        for view in range(3):
            at = f"2026-11-{day:02d}T{10 + view:02d}:{minute:02d}:00Z"
            lines.append(line(f"v-{n}-{view}", "product_view", at, email, {"product_id": "p-1"}))
    return lines


def write(path, lines):
    """The lines in time order, as a producer's history would be."""
    lines = sorted(lines, key=lambda raw: orjson.loads(raw).get("timestamp", ""))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def decisions_by_email(result):
    """The nudge decision of each customer, by the email of the view that triggered it."""
    found = {}
    for record in result.lines("decisions.jsonl"):
        if record["action"] == "product_nudge":
            n = int(record["triggered_by"][-1].split("-")[1])
            found[f"c{n}@example.com"] = record
    return found


def test_lift_planted_in_a_generated_population_is_recovered_within_its_interval(tmp_path, replay):
    policy = tmp_path / "policy.yaml"
    policy.write_text(measured_policy_text(HALF_HELD_OUT))
    exposure = browsing(4000)
    first = replay(write(tmp_path / "exposure.jsonl", exposure), policy=policy)
    assert first.returncode == 0, first.stderr
    nudges = decisions_by_email(first)
    groups = [d["outcome"] for d in nudges.values()]
    assert set(groups) == {"sent", "held_out"}
    assert 1700 < groups.count("held_out") < 2300

    rng = random.Random(14)
    purchases = []
    for email, decision in sorted(nudges.items()):
        if rng.random() < PLANTED[decision["outcome"]]:
            at = decision["at"].replace("T1", "T2", 1)  # ten hours later, the same day
            purchases.append(line(f"p-{email}", "purchase", at, email, {"product_id": "p-9"}))
    second = replay(write(tmp_path / "all.jsonl", exposure + purchases), policy=policy)
    assert second.returncode == 0, second.stderr
    assert decisions_by_email(second) == nudges

    lift = second.summary()["lift"]["product_nudge"]
    low, high = lift["absolute_95"]
    assert low < PLANTED["sent"] - PLANTED["held_out"] < high
    low, high = lift["relative_95"]
    assert low < PLANTED["sent"] / PLANTED["held_out"] - 1 < high
    assert lift["significant"] and low > 0
    assert lift["warnings"] == []

    shown = concierge("lift", str(second.out))
    assert shown.returncode == 0, shown.stderr
    row = next(r for r in shown.stdout.splitlines() if r.startswith("product_nudge"))
    assert f"{lift['customers']['sent']:,}" in row and row.endswith("*")


def test_held_out_decisions_reach_no_channel_and_conversions_match_the_summary(tmp_path, replay):
    policy = tmp_path / "policy.yaml"
    policy.write_text(measured_policy_text())
    events = browsing(600)
    events += [
        line(f"p-{n}", "purchase", "2026-11-16T09:00:00Z", f"c{n}@example.com")
        for n in range(0, 600, 2)
    ]
    result = replay(write(tmp_path / "events.jsonl", events), policy=policy)
    assert result.returncode == 0, result.stderr
    decisions = result.lines("decisions.jsonl")
    held = [d for d in decisions if d["outcome"] == "held_out"]
    assert {d["rule"] for d in held} == {"holdouts.global", "holdouts.actions.product_nudge"}
    assert all(d["action_id"] and d["channel"] and d["value"] for d in held)
    sent_ids = {
        a["action_id"]
        for path in result.out.glob("actions.*.jsonl")
        for a in result.lines(path.name)
    }
    assert not sent_ids & {d["action_id"] for d in held}

    conversions = result.lines("conversions.jsonl")
    assert conversions
    for record in conversions:
        jsonschema.validate(record, schemas.load("conversion"))
    for record in decisions:
        jsonschema.validate(record, schemas.load("decision"))
    counted = result.summary()["conversions"]["product_nudge"]
    assert counted["sent"] == len([d for d in decisions if d["outcome"] == "sent"])
    assert counted["held_out"] == len(held)
    converted = {(c["outcome"], c["action_id"]) for c in conversions}
    assert counted["sent_converted"] == len([1 for o, _ in converted if o == "sent"])
    assert counted["held_out_converted"] == len([1 for o, _ in converted if o == "held_out"])
    assert counted["held_out_converted"] > 0


def test_lift_of_a_replay_without_conversions_says_what_is_missing(tmp_path, replay):
    result = replay(write(tmp_path / "events.jsonl", browsing(3)))
    assert result.returncode == 0
    assert "conversions" not in result.summary()
    assert not (result.out / "conversions.jsonl").exists()
    shown = concierge("lift", str(result.out))
    assert shown.returncode == 2
    assert "no conversions section" in shown.stderr


def test_the_summary_gives_actions_per_customer_per_7_days(tmp_path, replay):
    result = replay(write(tmp_path / "events.jsonl", browsing(20)))
    fatigue = result.summary()["fatigue"]
    assert fatigue["window"] == "7d"
    assert fatigue["per_action"] == {"observed": 20, "p50": 1, "p90": 1, "p99": 1, "max": 1}
    assert fatigue["per_customer_peak"]["observed"] == 20


def test_a_decision_made_before_a_merge_converts_on_the_surviving_profile(tmp_path, replay):
    policy = tmp_path / "policy.yaml"
    policy.write_text(measured_policy_text("conversions:\n  purchase: {within: 3d}\n"))

    def anonymous(event_id, event_type, at, properties=None):
        record = orjson.loads(line(event_id, event_type, at, "x", properties))
        record["identifiers"] = {"anonymous_id": "a-1"}
        return orjson.dumps(record)

    events = [
        line("newsletter", "page_view", "2026-10-25T09:00:00Z", "ana@example.com"),
        anonymous("g", "consent_changed", "2026-11-01T09:00:00Z", GRANT),
        *[
            anonymous(f"v{n}", "product_view", f"2026-11-10T1{n}:00:00Z", {"product_id": "p-1"})
            for n in range(3)
        ],
        orjson.dumps(
            {
                "event_id": "login",
                "type": "identify",
                "timestamp": "2026-11-11T09:00:00Z",
                "identifiers": {"anonymous_id": "a-1", "email": "ana@example.com"},
            }
        ),
        line("buy", "purchase", "2026-11-12T09:00:00Z", "ana@example.com", {"product_id": "p-9"}),
        line("buy-again", "purchase", "2026-11-12T10:00:00Z", "ana@example.com"),
    ]
    result = replay(write(tmp_path / "events.jsonl", events), policy=policy)
    assert result.returncode == 0, result.stderr
    (nudge,) = [d for d in result.lines("decisions.jsonl") if d["outcome"] == "sent"]
    (merge,) = result.lines("audit.jsonl")
    assert nudge["customer_id"] in merge["customer_ids"]
    (converted,) = result.lines("conversions.jsonl")
    assert converted["action_id"] == nudge["action_id"]
    assert converted["customer_id"] == merge["surviving_id"] != nudge["customer_id"]
    assert converted["event_id"] == "buy"
    assert result.summary()["conversions"]["product_nudge"]["sent_converted"] == 1
