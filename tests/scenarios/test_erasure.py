"""Erasure in replay: an ``erasure_requested`` event forgets the person, their merged
profiles and pending timers; feedback about their old actions is a dead letter; the same
email later is a stranger with no consent; the replay's identity graph keeps no trace."""

from __future__ import annotations

import json

import jsonschema

import schemas
from tests.conftest import write_jsonl
from tests.scenarios.conftest import concierge

MADRID = {"timezone": "Europe/Madrid", "channel": "web"}
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}
ANA = {"email": "Ana.Erase@Example.com", "phone": "+34 600 111 222"}


def _event(event_id, kind, at, identifiers, properties=None):
    record = {"event_id": event_id, "type": kind, "timestamp": at, "context": MADRID}
    if identifiers:
        record["identifiers"] = identifiers
    if properties is not None:
        record["properties"] = properties
    return record


def _before():
    """Ana opts in, browses anonymously, says who she is (a merge), views a product three
    times (a nudge is sent) and starts a checkout (a reminder would follow 30 min later).
    Bo browses beside her."""
    anon, view = {"anonymous_id": "web-ana-9"}, {"product_id": "p-42"}
    bo = {"email": "bo.keep@example.com"}
    return [
        _event("ana-1", "consent_changed", "2026-11-20T10:00:00Z", ANA, GRANT),
        _event("bo-1", "consent_changed", "2026-11-20T10:00:30Z", bo, GRANT),
        _event("anon-1", "product_view", "2026-11-20T10:01:00Z", anon, view),
        _event(
            "ana-2", "identify", "2026-11-20T10:05:00Z", {**anon, "email": "ana.erase@example.com"}
        ),
        _event("anon-2", "product_view", "2026-11-20T10:06:00Z", anon, view),
        _event("anon-3", "product_view", "2026-11-20T10:07:00Z", anon, view),
        _event("bo-2", "checkout_started", "2026-11-20T10:19:00Z", bo, {"cart_id": "c-bo"}),
        _event("ana-3", "checkout_started", "2026-11-20T10:20:00Z", ANA, {"cart_id": "c-1"}),
    ]


def _after(nudge_id):
    """The erasure (by her phone, written another way), feedback about the nudge sent before
    it, and the same email again, three views of the same product."""
    again = {"email": "ana.erase@example.com"}
    view = {"product_id": "p-42"}
    return [
        {
            "event_id": "gdpr-1",
            "type": "erasure_requested",
            "timestamp": "2026-11-20T10:30:00Z",
            "identifiers": {"phone": "+34 600-111-222"},
        },
        _event(
            "fb-1",
            "feedback",
            "2026-11-20T10:35:00Z",
            {},
            {"action_id": nudge_id, "outcome": "unsubscribed", "channel": "push"},
        ),
        _event("new-1", "product_view", "2026-11-20T11:00:00Z", again, view),
        _event("new-2", "product_view", "2026-11-20T11:01:00Z", again, view),
        _event("new-3", "product_view", "2026-11-20T11:02:00Z", again, view),
    ]


def _actions(done):
    return [a for path in sorted(done.out.glob("actions.*.jsonl")) for a in done.lines(path.name)]


def _replayed(tmp_path, replay):
    first = replay(
        write_jsonl(tmp_path / "before.jsonl", _before()), "--until", "2026-11-20T10:25:00Z"
    )
    assert first.returncode == 0, first.stderr
    (nudge,) = [a for a in _actions(first) if a["action"] == "product_nudge"]
    story = _before() + _after(nudge["action_id"])
    done = replay(write_jsonl(tmp_path / "story.jsonl", story), "--until", "2026-11-21T00:00:00Z")
    assert done.returncode == 0, done.stderr
    return done, nudge


def test_an_erased_person_is_forgotten_and_a_later_event_starts_a_stranger(tmp_path, replay):
    done, nudge = _replayed(tmp_path, replay)
    old = nudge["customer_id"]

    (erased,) = [a for a in done.lines("audit.jsonl") if a["kind"] == "erased"]
    jsonschema.validate(erased, schemas.load("audit"))
    assert erased["surviving_id"] == old and erased["event_id"] == "gdpr-1"
    assert erased["at"] == "2026-11-20T10:30:00Z"
    assert len(erased["customer_ids"]) == 2 and erased["customer_ids"][0] == old
    shown = {(i["type"], i["value"]) for i in erased["identifiers"]}
    assert {("email", "a***@example.com"), ("phone", "+34******22")} <= shown
    assert ("anonymous_id", "we***-9") in shown, "the merged profile's identifiers go too"
    assert "ana" not in json.dumps(erased).lower().replace("a***", "")

    ids = set(erased["customer_ids"])
    decided = [d for d in done.lines("decisions.jsonl") if d["customer_id"] in ids]
    assert decided and all(d["at"] < "2026-11-20T10:30:00Z" for d in decided)
    reminded = {
        a["customer_id"]
        for a in done.lines("actions.email.jsonl")
        if a["action"] == "cart_recovery"
    }
    assert len(reminded) == 1 and old not in reminded, "Bo is reminded of his cart; she is not"

    (dead,) = done.lines("dlq.jsonl")
    assert dead["reason"] == "unknown_action_id" and dead["event_id"] == "fb-1"
    assert dead["origin"]["line"] == 10

    stranger = [d for d in done.lines("decisions.jsonl") if d["at"] >= "2026-11-20T11:00:00Z"]
    assert stranger, "the same email later is a new profile, decided about afresh"
    assert {d["customer_id"] for d in stranger}.isdisjoint(ids)
    assert {d["outcome"] for d in stranger} == {"no_consent"}, "her consent went with her"


def test_the_replays_graph_keeps_no_trace_of_her(tmp_path, replay):
    done, nudge = _replayed(tmp_path, replay)
    old = nudge["customer_id"]
    for path in (done.out / "identity").rglob("*"):
        data = path.read_bytes().lower() if path.is_file() else b""
        for needle in (b"ana.erase", b"600111222", b"web-ana-9", b"we***-9", old.encode()):
            assert needle not in data, (needle, path)
    assert concierge("identity", "--state-dir", str(done.out), old).returncode == 1
    now = concierge("identity", "--state-dir", str(done.out), "email:ana.erase@example.com")
    assert now.returncode == 0, now.stderr
    profile = json.loads(now.stdout)
    assert profile["customer_id"] != old
    assert [h["event"] for h in profile["history"]] == ["created"]
    assert profile["identifiers"] == [{"type": "email", "value": "a***@example.com"}]


def test_retention_drops_a_profile_idle_for_longer_and_its_links_with_it(tmp_path, replay):
    """policy-full keeps profiles 400 days: Ana's browser linked to her email in January 2026
    is a stranger to her by March 2027; Bo, seen in between, keeps his."""
    from tests.conftest import FULL_POLICY

    view = {"product_id": "p-1"}
    story = [
        _event("a-1", "product_view", "2026-01-05T10:00:00Z", {"anonymous_id": "web-ana"}, view),
        _event(
            "a-2",
            "identify",
            "2026-01-05T10:01:00Z",
            {"anonymous_id": "web-ana", "email": "ana.old@example.com"},
        ),
        _event(
            "b-1",
            "identify",
            "2026-01-05T10:02:00Z",
            {"anonymous_id": "web-bo", "email": "bo.old@example.com"},
        ),
        _event(
            "b-2", "product_view", "2026-12-01T10:00:00Z", {"email": "bo.old@example.com"}, view
        ),
        _event("a-3", "product_view", "2027-03-01T10:00:00Z", {"anonymous_id": "web-ana"}, view),
        _event("b-3", "product_view", "2027-03-01T10:01:00Z", {"anonymous_id": "web-bo"}, view),
    ]
    done = replay(write_jsonl(tmp_path / "years.jsonl", story), policy=FULL_POLICY)
    assert done.returncode == 0, done.stderr
    ana = concierge("identity", "--state-dir", str(done.out), "email:ana.old@example.com")
    assert ana.returncode == 1, "her profile left the graph with its identifiers"
    browser = json.loads(
        concierge("identity", "--state-dir", str(done.out), "anonymous_id:web-ana").stdout
    )
    assert [h["event"] for h in browser["history"]] == ["created"]
    assert browser["history"][0]["at"] == "2027-03-01T10:00:00Z"
    bo = json.loads(
        concierge("identity", "--state-dir", str(done.out), "anonymous_id:web-bo").stdout
    )
    assert {i["type"] for i in bo["identifiers"]} == {"anonymous_id", "email"}


def test_forget_says_what_it_cannot_send_and_never_the_value():
    from flows.kafka.broker import free_port

    nobody = f"127.0.0.1:{free_port()}"
    bad = concierge("forget", "--brokers", nobody, "phone:12 34")
    assert bad.returncode == 2 and bad.stderr == "concierge forget: phone *** is invalid\n"
    assert concierge("forget", "--brokers", nobody, "ana@example.com").returncode == 2
    slip = concierge("forget", "--brokers", nobody, "email:not-an-email", "phone:+34600111222")
    assert slip.returncode == 2 and slip.stdout == "", "refused before anything is sent"
    assert slip.stderr == (
        "concierge forget: email no***il is invalid (an address is NAME@DOMAIN)\n"
    )
    twice = concierge("forget", "--brokers", nobody, "email:a@x.com", "email:b@x.com")
    assert twice.returncode == 2 and "one email per request" in twice.stderr
    down = concierge("forget", "--brokers", nobody, "--timeout", "1", "phone:+34600111222")
    assert down.returncode == 1, down.stderr
    assert down.stderr.startswith(
        "concierge forget: the erasure request was not sent: cannot reach"
    )
    assert "600111222" not in down.stderr and down.stdout == ""


def test_explain_shows_an_erased_customers_records_up_to_the_erasure(tmp_path, replay):
    done, nudge = _replayed(tmp_path, replay)
    old = nudge["customer_id"]
    events = tmp_path / "story.jsonl"
    shown = concierge("explain", "--replay", str(done.out), "--events", str(events), old)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "erased at 2026-11-20T10:30:00Z by gdpr-1" in text
    timeline = text.splitlines()[text.splitlines().index("") + 2 :]
    rows = [line[56:].split(None, 1) for line in timeline]
    kinds = [kind for kind, _ in rows]
    assert kinds[-1] == "erased" and "merge" in kinds and "action" in kinds
    assert "ana.erase" not in text.lower() and "600111222" not in text
    assert "fb-1" not in text, "feedback after the erasure belongs to nobody"
    as_json = json.loads(concierge("explain", "--replay", str(done.out), "--json", old).stdout)
    assert as_json["customer_id"] == old and as_json["counts"]["erased"] == 1
    assert {"type": "phone", "value": "+34******22"} in as_json["identifiers"]
    by_email = concierge("explain", "--replay", str(done.out), "email:ana.erase@example.com")
    assert old not in by_email.stdout, "her email now names the stranger, not her"


def test_erasing_one_mailbox_leaves_another_that_only_looks_like_it(tmp_path, replay):
    """``teſt`` (a long s) and ``test`` are two mailboxes, two people: erasing one leaves the
    other's profile, consent and nudges."""
    events = []
    for who, email in (("long", "teſt@example.com"), ("plain", "test@example.com")):
        person = {"email": email}
        events.append(_event(f"{who}-0", "consent_changed", "2026-11-20T10:00:00Z", person, GRANT))
        for n in (1, 2, 3):
            at = f"2026-11-20T10:0{n}:00Z"
            events.append(_event(f"{who}-{n}", "product_view", at, person, {"product_id": "p-7"}))
    erasure = {"email": "teſt@example.com"}
    events.append(_event("gdpr", "erasure_requested", "2026-11-20T10:05:00Z", erasure))
    for n in (6, 7, 8):
        at = f"2026-11-20T10:0{n}:00Z"
        plain = {"email": "test@example.com"}
        events.append(_event(f"plain-{n}", "product_view", at, plain, {"product_id": "p-8"}))
    done = replay(write_jsonl(tmp_path / "lookalikes.jsonl", events))
    erased = [a for a in done.lines("audit.jsonl") if a["kind"] == "erased"]
    assert len(erased) == 1 and len(erased[0]["customer_ids"]) == 1
    sent = [d for d in done.lines("decisions.jsonl") if d["outcome"] == "sent"]
    assert len({d["customer_id"] for d in sent}) == 2, "a nudge to each before the erasure"
    plain = concierge("identity", "--state-dir", str(done.out), "email:test@example.com")
    assert plain.returncode == 0, "the other mailbox keeps its profile"
    later = [d for d in sent if d["at"] > "2026-11-20T10:05:00Z"]
    assert [d["action"] for d in later] == ["product_nudge"], "and its consent"
