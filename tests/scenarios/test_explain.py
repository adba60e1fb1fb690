"""``concierge explain``: one customer's timeline from a replay, as a CX designer asks for it."""

from __future__ import annotations

import json

from tests.conftest import write_jsonl
from tests.scenarios.conftest import concierge

NEW_YORK = {"timezone": "America/New_York", "channel": "web"}
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def _event(event_id, kind, at, identifiers, properties=None):
    record = {
        "event_id": event_id,
        "type": kind,
        "timestamp": at,
        "identifiers": identifiers,
        "context": NEW_YORK,
    }
    if properties is not None:
        record["properties"] = properties
    return record


def _story():
    """Ana (in New York) opts in by email; later an anonymous visitor views a product, says
    who she is, which merges the two profiles, and views it twice more at 21:30 her time:
    the nudge waits for the end of her quiet hours. Bo browses too, and is not her."""
    ana, anon = {"email": "Ana@Example.com"}, {"anonymous_id": "a-9"}
    view = {"product_id": "p-42"}
    return [
        _event("ana-1", "consent_changed", "2026-11-20T14:00:00Z", ana, GRANT),
        _event("anon-1", "product_view", "2026-11-21T02:10:00Z", anon, view),
        _event("bo-1", "product_view", "2026-11-21T02:11:00Z", {"email": "bo@example.com"}, view),
        _event("ana-2", "identify", "2026-11-21T02:20:00Z", {**anon, "email": "ana@example.com"}),
        _event("anon-2", "product_view", "2026-11-21T02:25:00Z", anon, view),
        _event("bo-2", "product_view", "2026-11-21T02:26:00Z", {"email": "bo@example.com"}, view),
        _event("anon-3", "product_view", "2026-11-21T02:30:00Z", anon, view),
        _event("bo-3", "product_view", "2026-11-21T02:31:00Z", {"email": "bo@example.com"}, view),
    ]


def _replayed(tmp_path, replay):
    events = write_jsonl(tmp_path / "story.jsonl", _story())
    done = replay(events, "--until", "2026-11-22T00:00:00Z")
    assert done.returncode == 0, done.stderr
    return done, events


def _rows(text):
    """The timeline's rows as (kind, what), the time columns left out."""
    rows = []
    for line in text.splitlines():
        if line[:4] in ("2026", " " * 4) and len(line) > 56:
            rows.append((line[56:67].strip(), line[67:]))
    return rows


def test_explain_tells_anas_story_in_time_order_with_her_local_time(tmp_path, replay):
    done, events = _replayed(tmp_path, replay)
    shown = concierge(
        "explain", "--replay", str(done.out), "--events", str(events), "email: ANA@example.com "
    )
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert ": the profile holding email:a***@example.com" in text.splitlines()[0]
    assert "time zone: America/New_York" in text
    assert "merged into it: cus_" in text
    assert "a***@example.com" in text and "ana@example.com" not in text.lower()
    assert "bo-" not in text
    kinds = [kind for kind, _ in _rows(text)]
    assert kinds == [
        "event",
        "event",
        "event",
        "merge",
        "event",
        "event",
        "signal",
        "moment",
        "decision",
        "decision",
        "action",
    ]
    rows = dict(enumerate(_rows(text)))
    assert rows[6][1].startswith("repeat_product_interest fired (by anon-1, anon-2, anon-3)")
    assert rows[7][1] == "browse_intent [p-42] opened: value 40, half-life 2d"
    assert rows[8][1] == (
        "product_nudge on push: deferred (quiet hours until 2026-11-21T13:00:00Z; rule quiet_hours)"
    )
    assert rows[9][1] == "product_nudge on push: sent (eligible)"
    assert rows[10][1].startswith("product_nudge sent on push: template product-nudge")
    night = next(line for line in text.splitlines() if line.startswith("2026-11-21T02:30:00Z"))
    assert "Fri 2026-11-20 21:30:00 EST" in night
    morning = next(line for line in text.splitlines() if line.startswith("2026-11-21T13:00:00Z"))
    assert "Sat 2026-11-21 08:00:00 EST" in morning


def test_explain_as_json_by_any_of_her_ids_whatever_order_the_decisions_were_written(
    tmp_path, replay
):
    done, _ = _replayed(tmp_path, replay)
    by_email = json.loads(
        concierge("explain", "--replay", str(done.out), "--json", "email:ana@example.com").stdout
    )
    survivor, retired = (
        by_email["customer_id"],
        next(p for p in by_email["profiles"] if p != by_email["customer_id"]),
    )
    assert by_email["identifiers"] == [
        {"type": "email", "value": "a***@example.com"},
        {"type": "anonymous_id", "value": "***"},
    ]
    assert not by_email["events_read"]
    assert [e["kind"] for e in by_email["timeline"]] == [
        "merge",
        "signal",
        "moment",
        "decision",
        "decision",
        "action",
    ]
    deferred = by_email["timeline"][3]
    assert (deferred["outcome"], deferred["rule"], deferred["until"]) == (
        "deferred",
        "quiet_hours",
        "2026-11-21T13:00:00Z",
    )
    # Without the events, the local time comes from the zone the replay decided her in.
    assert deferred["local"] == "2026-11-20T21:30:00-05:00"
    assert deferred["timezone"] == "America/New_York"

    by_retired = json.loads(
        concierge("explain", "--replay", str(done.out), "--json", retired).stdout
    )
    assert by_retired["customer_id"] == survivor
    assert by_retired["timeline"] == by_email["timeline"]

    decisions = done.out / "decisions.jsonl"
    lines = decisions.read_bytes().splitlines(keepends=True)
    decisions.write_bytes(b"".join(reversed(lines)))
    reordered = json.loads(
        concierge("explain", "--replay", str(done.out), "--json", retired).stdout
    )
    assert reordered == by_retired


def test_explain_and_identity_say_whom_they_cannot_find_and_what_they_cannot_read(tmp_path, replay):
    done, _ = _replayed(tmp_path, replay)
    nobody = concierge("explain", "--replay", str(done.out), "email:carla@example.com")
    assert nobody.returncode == 1
    assert "no profile holds email:c***@example.com" in nobody.stderr
    assert "carla" not in nobody.stderr
    vague = concierge("explain", "--replay", str(done.out), "ana@example.com")
    assert vague.returncode == 2
    assert "TYPE:VALUE" in vague.stderr
    empty = concierge("explain", "--replay", str(tmp_path), "email:ana@example.com")
    assert empty.returncode == 2
    assert "no replay output" in empty.stderr
    for absent in ("cus_doesnotexist", "cus_00000000000000000000"):
        stranger = concierge("explain", "--replay", str(done.out), absent)
        assert stranger.returncode == 1, "a customer id, of nobody in the replay"
        assert stranger.stderr.startswith(
            f"concierge explain: no customer with the id {absent} is in the replay at "
        )
        assert "customer_id of its decisions.jsonl" in stranger.stderr
        assert "TYPE:VALUE" not in stranger.stderr
    held = concierge("identity", "--state-dir", str(done.out), "email:carla@example.com")
    assert held.returncode == 1
    assert held.stderr == "concierge identity: no profile holds email:c***@example.com\n"


def test_the_replay_keeps_its_identity_graph_for_concierge_identity(tmp_path, replay):
    done, _ = _replayed(tmp_path, replay)
    shown = concierge("identity", "--state-dir", str(done.out), "anonymous_id:a-9")
    assert shown.returncode == 0, shown.stderr
    profile = json.loads(shown.stdout)
    assert [entry["event"] for entry in profile["history"]] == ["created", "created", "merged"]
