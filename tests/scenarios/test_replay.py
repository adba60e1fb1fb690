"""``concierge replay``: the event-time clock, its outputs, and their determinism."""

from __future__ import annotations

import hashlib

import jsonschema
import orjson

import schemas
from flows.commands.generator import Generator
from flows.identity_store import RocksStore
from tests.conftest import event_dict, write_jsonl

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def digest(directory):
    """Each output file's hash; the identity graph (a RocksDB directory, whose own files
    name the time they were written) by the hash of its contents."""
    digests = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file()
    }
    graph = directory / "identity"
    if graph.is_dir():
        with RocksStore(graph, read_only=True) as store:
            contents = hashlib.sha256()
            for key in store.keys_from(b""):
                contents.update(
                    b"%d:%s%d:%s" % (len(key), key, len(store.get(key)), store.get(key))
                )
            digests["identity/"] = contents.hexdigest()
    return digests


def test_the_same_input_gives_byte_identical_output(tmp_path, replay):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(Generator(customers=800, seed=3).events(15000)) + b"\n")
    first = replay(events)
    second = replay(events, "--quiet")
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert digest(first.out) == digest(second.out)
    assert {
        "decisions.jsonl",
        "dlq.jsonl",
        "audit.jsonl",
        "summary.json",
        "policy.json",
        "timezones.json",
        "identity/",
    } <= set(digest(first.out))
    assert any(name.startswith("actions.") for name in digest(first.out))


def test_every_line_is_accounted_for(tmp_path, replay):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(Generator(customers=300, seed=5).events(6000)) + b"\n")
    result = replay(events)
    summary = result.summary()
    assert summary["events_in"] == 6000
    told = next(line for line in result.stderr.splitlines() if line.startswith("replayed "))
    assert told.startswith(f"replayed 6,000 records: {summary['events_ok']:,} events, "), told
    assert summary["events_ok"] + summary["dead_letters"] == summary["events_in"]
    assert summary["dead_letters"] == len(result.lines("dlq.jsonl")) > 0
    assert sum(summary["decisions"].values()) == len(result.lines("decisions.jsonl"))
    for channel, count in summary["actions"].items():
        assert count == len(result.lines(f"actions.{channel}.jsonl")) > 0
    sent = [d for d in result.lines("decisions.jsonl") if d["outcome"] == "sent"]
    assert len(sent) == sum(summary["actions"].values())


def test_bad_lines_are_dead_letters_and_good_lines_still_flow(tmp_path, replay):
    searches = [
        event_dict("help_search", f"2026-11-20T10:0{m}:00Z", anonymous_id="bob") for m in range(3)
    ]
    events = write_jsonl(
        tmp_path / "events.jsonl",
        [
            searches[0],
            b'{"event_id": "broken", ',
            searches[1],
            b"\xff\xfe not text",
            event_dict("product_view", "2099-01-01T00:00:00Z", anonymous_id="bob"),
            {"type": "product_view", "timestamp": "2026-11-20T10:05:00Z"},
            searches[2],
            # The file's own traffic: what its events agree on, which 2099 is far ahead of.
            *(event_dict("page_view", f"2026-11-20T10:06:{s:02d}Z") for s in range(20)),
        ],
    )
    result = replay(events)
    assert result.returncode == 0, result.stderr
    dead = result.lines("dlq.jsonl")
    assert [(d["reason"], d["origin"]["line"]) for d in dead] == [
        ("invalid_json", 2),
        ("not_utf8", 4),
        ("future_timestamp", 5),
        ("schema_violation", 6),
    ]
    assert dead[0]["raw"] == '{"event_id": "broken", '
    assert all(d["origin"]["file"] == str(events) for d in dead)
    for record in dead:
        jsonschema.validate(record, schemas.load("dead_letter"))
    (action,) = result.lines("actions.in_app.jsonl")
    assert action["action"] == "help_offer"
    assert action["triggered_by"] == [s["event_id"] for s in searches]


def checkout_story(tmp_path, last_event_at):
    return write_jsonl(
        tmp_path / "events.jsonl",
        [
            event_dict("consent_changed", "2026-11-20T09:00:00Z", GRANT),
            event_dict(
                "checkout_started",
                "2026-11-20T10:00:00Z",
                {"cart_value": 120},
                event_id="checkout-1",
            ),
            event_dict("page_view", last_event_at, anonymous_id="someone-else"),
        ],
    )


def test_without_until_event_time_stops_at_the_last_event(tmp_path, replay):
    result = replay(checkout_story(tmp_path, "2026-11-20T10:10:00Z"))
    assert result.lines("actions.email.jsonl") == []


def test_a_timer_fires_when_the_stream_passes_it(tmp_path, replay):
    result = replay(checkout_story(tmp_path, "2026-11-20T11:00:00Z"))
    (action,) = result.lines("actions.email.jsonl")
    assert action["action"] == "cart_recovery"
    assert action["decided_at"] == "2026-11-20T10:30:00Z"
    assert action["triggered_by"] == ["checkout-1"]


def test_until_advances_event_time_and_fires_due_timers(tmp_path, replay):
    events = checkout_story(tmp_path, "2026-11-20T10:10:00Z")
    result = replay(events, "--until", "2026-11-20T10:30:00Z")
    assert [a["decided_at"] for a in result.lines("actions.email.jsonl")] == [
        "2026-11-20T10:30:00Z"
    ]
    much_later = replay(events, "--until", "2027-02-01T00:00:00Z")
    decided = [(d["action"], d["at"]) for d in much_later.lines("decisions.jsonl")]
    assert ("cart_recovery", "2026-11-20T10:30:00Z") in decided
    assert ("win_back_offer", "2027-01-04T10:00:00Z") in decided  # 45 days of silence


def test_a_purchase_in_time_cancels_the_cart_reminder(tmp_path, replay):
    events = write_jsonl(
        tmp_path / "events.jsonl",
        [
            event_dict("consent_changed", "2026-11-20T09:00:00Z", GRANT),
            event_dict("checkout_started", "2026-11-20T10:00:00Z"),
            event_dict("purchase", "2026-11-20T10:20:00Z", {"product_id": "p-1"}),
        ],
    )
    result = replay(events, "--until", "2026-11-21T00:00:00Z")
    assert result.lines("decisions.jsonl") == []


def test_outputs_from_an_earlier_replay_are_replaced(tmp_path, replay, reference_policy_path):
    from tests.scenarios.conftest import concierge

    events = checkout_story(tmp_path, "2026-11-20T11:00:00Z")
    out = tmp_path / "out"
    out.mkdir()
    (out / "actions.sms.jsonl").write_text('{"stale": true}\n')
    done = concierge(
        "replay", "--policy", str(reference_policy_path), "--events", str(events), "--out", str(out)
    )
    assert done.returncode == 0
    assert not (out / "actions.sms.jsonl").exists()
    assert (out / "actions.email.jsonl").exists()


def test_every_output_record_matches_its_schema(tmp_path, replay):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(Generator(customers=200, seed=11).events(4000)) + b"\n")
    result = replay(events)
    for path in result.out.glob("actions.*.jsonl"):
        for line in path.read_bytes().splitlines():
            jsonschema.validate(orjson.loads(line), schemas.load("action"))
    for record in result.lines("decisions.jsonl"):
        jsonschema.validate(record, schemas.load("decision"))
        assert record["at"].endswith("Z")
    for record in result.lines("dlq.jsonl"):
        jsonschema.validate(record, schemas.load("dead_letter"))
    assert result.lines("audit.jsonl"), "the generated customers log in: merges"
    for record in result.lines("audit.jsonl"):
        jsonschema.validate(record, schemas.load("audit"))


def test_replay_says_what_it_did_not_do_timers_and_decisions_still_pending(tmp_path, replay):
    """A checkout at the end of the file and a nudge deferred into the night: without
    --until their timers never fire, and the summary and stderr say so, by kind."""
    from tests.conftest import event_dict, write_jsonl

    grant = {"purpose": "marketing", "channel": "*", "granted": True}
    ana = {"email": "ana@example.com"}
    events = [event_dict("consent_changed", "2026-11-20T09:00:00Z", grant, "g", **ana)]
    events += [
        event_dict("product_view", f"2026-11-20T21:{m}:00Z", {"product_id": "p-1"}, f"v{m}", **ana)
        for m in (10, 20, 30)
    ]
    events.append(event_dict("checkout_started", "2026-11-20T21:40:00Z", {}, "c", **ana))
    story = write_jsonl(tmp_path / "story.jsonl", events)
    cut = replay(story)
    assert cut.returncode == 0, cut.stderr
    assert cut.summary()["pending_at_end"] == {
        "at": "2026-11-20T21:40:00Z",
        "last_event": "2026-11-20T21:40:00Z",
        "timers": {"checkout_abandoned": 1, "inactive": 1},
        "decisions": {"browse_intent": 1},
    }
    assert (
        "note: still pending at 2026-11-20T21:40:00Z, the end of event time: "
        "1 checkout_abandoned timers, 1 inactive timers, 1 browse_intent decisions"
    ) in cut.stderr
    run_on = replay(story, "--until", "2026-11-21T12:00:00Z")
    pending = run_on.summary()["pending_at_end"]
    assert (pending["timers"], pending["decisions"]) == ({"inactive": 1}, {})
    assert "warning: --until" not in run_on.stderr
    early = replay(story, "--until", "2026-11-20T21:00:00Z")
    assert (
        "warning: --until 2026-11-20T21:00:00Z is before the file's last event "
        "(2026-11-20T21:40:00Z)"
    ) in early.stderr


def test_a_gzip_file_and_standard_input_replay_as_the_plain_file_does(tmp_path, replay):
    import gzip
    import subprocess

    from tests.conftest import REFERENCE_POLICY
    from tests.scenarios.conftest import CONCIERGE
    from tests.unit.decisions.test_eligibility import GRANT

    lines = [
        {
            "event_id": f"v{m}",
            "type": "product_view",
            "timestamp": f"2026-11-20T10:{m:02d}:00Z",
            "identifiers": {"email": "ana@example.com"},
            "properties": {"product_id": "p-1"},
        }
        for m in (0, 10, 20)
    ]
    lines.insert(
        0,
        {
            "event_id": "g",
            "type": "consent_changed",
            "timestamp": "2026-11-20T09:00:00Z",
            "identifiers": {"email": "ana@example.com"},
            "properties": GRANT,
        },
    )
    raw = b"".join(orjson.dumps(line) + b"\n" for line in lines) + b"not json\n"
    plain = tmp_path / "events.jsonl"
    plain.write_bytes(raw)
    packed = tmp_path / "events.jsonl.gz"
    packed.write_bytes(gzip.compress(raw))
    expected = replay(plain)
    zipped = replay(packed)
    assert zipped.returncode == 0, zipped.stderr
    for name in ("decisions.jsonl", "actions.push.jsonl"):
        assert (zipped.out / name).read_bytes() == (expected.out / name).read_bytes()
    (dead,) = zipped.lines("dlq.jsonl")
    assert dead["reason"] != "not_utf8" and dead["origin"]["line"] == 5
    piped = subprocess.run(
        [
            CONCIERGE,
            "replay",
            "--policy",
            str(REFERENCE_POLICY),
            "--events",
            "-",
            "--out",
            str(tmp_path / "piped"),
        ],
        input=raw,
        capture_output=True,
    )
    assert piped.returncode == 0, piped.stderr
    for name in ("decisions.jsonl", "actions.push.jsonl"):
        assert (tmp_path / "piped" / name).read_bytes() == (expected.out / name).read_bytes()
    (dead,) = [
        orjson.loads(x) for x in (tmp_path / "piped" / "dlq.jsonl").read_bytes().splitlines()
    ]
    assert dead["origin"]["file"] == "<stdin>"


def test_a_damaged_gzip_file_fails_naming_where_it_broke(tmp_path, replay):
    import gzip

    raw = b"".join(
        orjson.dumps(
            {
                "event_id": f"e{n}",
                "type": "page_view",
                "timestamp": "2026-11-20T10:00:00Z",
                "identifiers": {"email": f"c{n}@example.com"},
            }
        )
        + b"\n"
        for n in range(2000)
    )
    damaged = tmp_path / "events.jsonl.gz"
    damaged.write_bytes(gzip.compress(raw)[:-200])
    result = replay(damaged)
    assert result.returncode == 1
    assert "could not be read to its end (after line" in result.stderr
    assert result.summary()["read_error"].startswith("after line")
