"""Privacy on the real broker: what an attacker who reads the state and recovery volumes
finds of people (their identifiers only as keyed digests), erasure through ``concierge
forget`` across kill -9, and what a run's outputs and logs say of a person."""

from __future__ import annotations

import os
import re
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from operators.model.identifiers import IdentityKey
from tests.conftest import event_dict
from tests.integration.conftest import in_the_afternoon, stamp, wait_for
from tests.scenarios.conftest import concierge

pytestmark = pytest.mark.integration

PEOPLE = [
    # (as the producer writes them, the forms they take once normalised)
    (
        {"email": " Ana.Privacy@Example.COM ", "phone": "+34 600 111 222"},
        ["ana.privacy@example.com", "+34600111222", "600111222", "34600111222"],
    ),
    (
        {"email": "bo.secret@shop.example", "phone": "(0034) 611-222-333"},
        ["bo.secret@shop.example", "+34611222333", "611222333", "34611222333"],
    ),
    (
        {"email": "CHARLIE.HIDDEN@mail.example", "loyalty_id": "LOY-778899"},
        ["charlie.hidden@mail.example", "LOY-778899"],
    ),
]


def people_events(offset: timedelta = timedelta(minutes=-30)) -> list[dict]:
    events = []
    for n, (identifiers, _) in enumerate(PEOPLE):
        at = stamp(offset + timedelta(minutes=n))
        events.append(
            event_dict(
                "consent_changed", at, {"purpose": "marketing", "granted": True}, **identifiers
            )
        )
        for k in range(3):
            events.append(
                event_dict(
                    "product_view",
                    at,
                    {"product_id": f"p-{n}"},
                    anonymous_id=f"web-{n}-{k}",
                    **identifiers,
                )
            )
    return [in_the_afternoon(event) for event in events]


def needles() -> list[bytes]:
    """Every form of the people's identifiers that would give them away."""
    found = set()
    for identifiers, forms in PEOPLE:
        found.update(value.strip() for value in identifiers.values())
        found.update(forms)
        found.update(v.strip().lower() for v in identifiers.values())
    return sorted(f.encode() for f in found)


def files_under(*directories: Path) -> list[Path]:
    return [p for d in directories for p in d.rglob("*") if p.is_file()]


def occurrences(directories: list[Path], wanted: list[bytes]) -> dict[str, list[str]]:
    """needle -> the files holding it, case-insensitively."""
    found: dict[str, list[str]] = {}
    for path in files_under(*directories):
        try:
            data = path.read_bytes().lower()
        except FileNotFoundError:  # deleted since it was listed (a running RocksDB's log)
            continue
        for needle in wanted:
            if needle.lower() in data:
                found.setdefault(needle.decode(), []).append(str(path))
    return found


def test_state_and_recovery_hold_no_identifier_in_clear(topics, flows, policy, tmp_path):
    topics.create(policy, partitions=2)
    flow = flows(topics, "--snapshot-interval", "1", workdir=tmp_path).start()
    events = people_events()
    topics.produce(events)
    flow.wait_for_records_in(len(events))
    wait_for(
        lambda: flow.metrics().get("concierge_identity_profiles") == len(PEOPLE), 60, "the graph"
    )
    exposition = "\n".join(f"{name} {value}" for name, value in flow.metrics().items())
    code, _ = flow.terminate()  # it drains, and snapshots what it holds
    assert code == 0, flow.output()

    state, recovery = tmp_path / "state", tmp_path / "recovery"
    assert files_under(state / "identity") and files_under(recovery)
    assert occurrences([state, recovery], needles()) == {}
    # The search reads what is there: the masked forms the graph keeps for people to read.
    assert occurrences([state], [b"a***@example.com", b"+34******22"])
    key = state / "identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and os.stat(key).st_uid == os.getuid()
    assert occurrences([tmp_path], needles()) == {}, "and none in the log either"
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "metrics").write_text(exposition)
    streams = ["decisions", "audit", "dlq", *(f"actions.{c}" for c in policy.channels)]
    for stream in streams:
        (outputs / stream).write_bytes(b"\n".join(v for _, v, _, _ in topics.read(stream)))
    assert (outputs / "decisions").stat().st_size, "the people were decided about"
    assert occurrences([outputs], needles()) == {}, "nor in any output, nor in the metrics"


ANA = {"email": "Ana.Gdpr@Example.com", "phone": "+34 600 999 888"}
ANA_FORMS = [b"ana.gdpr@example.com", b"+34600999888", b"600999888"]


def ana_story() -> list[dict]:
    """Ana opts in, views a product three times (a nudge is sent) and starts a checkout (its
    reminder is a timer due in 30 minutes, pending for the whole test, beside the one that
    would say she has gone quiet)."""
    view = {"product_id": "p-1"}
    at = [stamp(timedelta(minutes=m)) for m in (-20, -19, -18, -17, -10)]
    return [
        in_the_afternoon(event)
        for event in [
            event_dict("consent_changed", at[0], {"purpose": "marketing", "granted": True}, **ANA),
            *(event_dict("product_view", t, view, **ANA) for t in at[1:4]),
            event_dict("checkout_started", at[4], {"cart_id": "c-1"}, **ANA),
        ]
    ]


def erased_records(topics):
    return [a for a in topics.values("audit") if a["kind"] == "erased"]


def timers(flow) -> float:
    return flow.metrics().get('concierge_timers_pending{kind="signal"}', -1)


def start_with_ana(topics, flows, policy, tmp_path, *extra):
    topics.create(policy, partitions=2)
    flow = flows(topics, *extra, workdir=tmp_path).start()
    events = ana_story()
    topics.produce(events)
    flow.wait_for_records_in(len(events))
    wait_for(lambda: timers(flow) > 0, 30, "her timers (the checkout's, her absence's) pending")
    (nudge,) = [
        a
        for c in policy.channels
        for a in topics.values(f"actions.{c}")
        if a["action"] == "product_nudge"
    ]
    return flow, nudge


def forget(topics, *identifiers):
    done = concierge(
        "forget",
        "--brokers",
        topics.broker.bootstrap,
        "--topic-prefix",
        topics.prefix,
        *identifiers,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def after_the_erasure_she_is_a_stranger(topics, flows, policy, tmp_path, nudge, reread):
    """Restarted after the kill (reading ``reread`` records again): the erasure holds; her
    timers are gone; feedback about her nudge is a dead letter; her email again is a new
    profile with no consent; nothing is left of her on disk."""
    old = nudge["customer_id"]
    flow = flows(topics, "--snapshot-interval", "1", workdir=tmp_path).start()
    flow.wait_for_records_in(reread)
    wait_for(lambda: timers(flow) == 0, 30, "her timers to be gone")
    feedback = event_dict(
        "feedback",
        stamp(timedelta(seconds=1)),
        {"action_id": nudge["action_id"], "outcome": "unsubscribed", "channel": nudge["channel"]},
    )
    feedback.pop("identifiers")
    again = [
        event_dict(
            "product_view",
            stamp(timedelta(seconds=s)),
            {"product_id": "p-1"},
            email="ana.gdpr@example.com",
        )
        for s in (2, 3, 4)
    ]
    topics.produce([feedback], topic="feedback")
    topics.produce(again)
    wait_for(
        lambda: any(d["reason"] == "unknown_action_id" for d in topics.values("dlq")),
        60,
        "the feedback to be a dead letter",
    )
    wait_for(
        lambda: any(d["at"] >= again[0]["timestamp"] for d in topics.values("decisions")),
        60,
        "her new profile to be decided about",
    )
    erased = erased_records(topics)
    assert erased and all(e == erased[0] for e in erased), "repeated after the kill, identical"
    ids = set(erased[0]["customer_ids"])
    assert old in ids
    new = [d for d in topics.values("decisions") if d["at"] >= again[0]["timestamp"]]
    assert {d["customer_id"] for d in new}.isdisjoint(ids)
    assert {d["outcome"] for d in new} == {"no_consent"}
    later = [d for d in topics.values("decisions") if d["customer_id"] in ids]
    assert all(d["at"] < erased[0]["at"] for d in later), "nothing decided for her after it"
    state, recovery = tmp_path / "state", tmp_path / "recovery"
    key = IdentityKey((state / "identity.key").read_bytes().strip())
    # Her email is the stranger's now; her phone, her old id and her masked phone are hers.
    hers = [key.digest("phone", "+34600999888").encode(), old.encode(), b"+34******88"]
    wait_for(
        lambda: occurrences([state], hers) == {},
        60,
        "the graph's files to be rewritten without her, once no snapshot needs her undo",
    )
    code, _ = flow.terminate()
    assert code == 0, flow.output()
    assert occurrences([state, recovery], [*ANA_FORMS, *hers]) == {}


def test_an_erasure_read_just_before_a_kill_9_is_not_undone(topics, flows, policy, tmp_path):
    flow, nudge = start_with_ana(topics, flows, policy, tmp_path, "--snapshot-interval", "3600")
    sent = forget(topics, "phone:+34600999888")
    # the request's random id and the time it was sent are not hers, and may hold "999"
    told = re.sub(r"erasure-[0-9a-f]+|\d{4}-\d\d-\d\dT[\d:.]+Z", "", sent)
    assert "phone:+34******88" in sent and "999" not in told.replace("+34******88", "")
    wait_for(lambda: erased_records(topics), 60, "the erased audit record")
    flow.kill()  # no snapshot yet: the restart clears the graph and reads it all again
    after_the_erasure_she_is_a_stranger(topics, flows, policy, tmp_path, nudge, 6)
    logs = "".join(p.read_text() for p in tmp_path.glob("flow-*.log"))
    assert "identity graph: no snapshot to resume from; starting it afresh" in logs


def test_an_erasure_snapshotted_just_before_a_kill_9_stays(topics, flows, policy, tmp_path):
    flow, nudge = start_with_ana(topics, flows, policy, tmp_path, "--snapshot-interval", "1")
    forget(topics, "email: ANA.GDPR@example.com ")
    wait_for(lambda: erased_records(topics), 60, "the erased audit record")
    wait_for(lambda: timers(flow) == 0, 30, "her timer to go")
    age = flow.metrics()["concierge_snapshot_age_seconds"]
    wait_for(lambda: flow.metrics()["concierge_snapshot_age_seconds"] < age, 30, "a snapshot")
    flow.kill()
    after_the_erasure_she_is_a_stranger(topics, flows, policy, tmp_path, nudge, 0)
