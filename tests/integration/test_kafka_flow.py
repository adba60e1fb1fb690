"""The real flow on the real embedded broker: what arrives on each topic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from flows.commands.generator import Generator
from flows.kafka.connectors import FrontierReader
from flows.progress import FrontierMark, InputFrontier
from operators.identity.alignment import NEVER
from operators.identity.ids import canonical_id
from tests.conftest import event_dict
from tests.integration.conftest import afternoon_zone, stamp, wait_for

pytestmark = pytest.mark.integration

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def story(prefix: str = "", product: str = "p-42", searcher: str = "bob") -> list[dict]:
    """Ana browses one product three times with consent; someone searches help three times.
    Everyone is in a time zone where it is afternoon now: no quiet hours."""
    events = [
        event_dict(
            "consent_changed",
            stamp(timedelta(hours=-5)),
            GRANT,
            event_id=f"{prefix}consent",
            email="ana@example.com",
        ),
        *[
            event_dict(
                "product_view",
                stamp(timedelta(hours=-4 + n)),
                {"product_id": product},
                event_id=f"{prefix}view-{n}",
                email="ana@example.com",
            )
            for n in range(3)
        ],
        *[
            event_dict(
                "help_search",
                stamp(timedelta(minutes=-30 + 10 * n)),
                {"query": "refund"},
                event_id=f"{prefix}search-{n}",
                anonymous_id=searcher,
            )
            for n in range(3)
        ],
    ]
    zone = afternoon_zone()
    for event in events:
        event["context"] = {"timezone": zone}
    return events


def test_actions_decisions_and_dead_letters_land_on_their_topics(topics, flows, policy):
    topics.create(policy)
    good = story()
    bad = [b'{"event_id": "cut', b"\xff\xfe", orjson.dumps({"type": "product_view"})]
    topics.produce(
        [*good[:2], bad[0], *good[2:5], *bad[1:], *good[5:]],
        keys=[
            b"ana",
            b"ana",
            b"src-key-1",
            b"ana",
            b"ana",
            b"ana",
            b"src-key-2",
            b"src-key-3",
            b"bob",
            b"bob",
            b"bob",
        ],
    )
    flow = flows(topics, "--stop-at-end").start()
    assert flow.wait(120) == 0, flow.output()

    ana = canonical_id("email", "ana@example.com")
    bob = canonical_id("anonymous_id", "bob")
    (push,) = topics.read("actions.push")
    assert push[0] == ana.encode()
    nudge = orjson.loads(push[1])
    assert (nudge["action"], nudge["customer_id"], nudge["template"]) == (
        "product_nudge",
        ana,
        "product-nudge",
    )
    assert nudge["triggered_by"] == ["view-0", "view-1", "view-2"]
    (in_app,) = topics.values("actions.in_app")
    assert (in_app["action"], in_app["customer_id"]) == ("help_offer", bob)

    decisions = topics.read("decisions")
    assert sorted(key for key, *_ in decisions) == sorted([ana.encode(), bob.encode()])
    assert {orjson.loads(v)["outcome"] for _, v, *_ in decisions} == {"sent"}

    dead = topics.read("dlq")
    assert sorted(key for key, *_ in dead) == [b"src-key-1", b"src-key-2", b"src-key-3"]
    reasons = {}
    for _, value, _, _ in dead:
        record = orjson.loads(value)
        assert record["origin"]["topic"] == topics.prefix + "events"
        assert isinstance(record["origin"]["partition"], int)
        assert isinstance(record["origin"]["offset"], int)
        reasons[record["reason"]] = record
    assert set(reasons) == {"invalid_json", "not_utf8", "schema_violation"}
    assert reasons["invalid_json"]["raw"] == '{"event_id": "cut'
    assert topics.read("actions.email") == [] and topics.read("audit") == []


def test_metrics_count_every_record_and_sigterm_stops_cleanly(topics, flows, policy):
    topics.create(policy)
    flow = flows(topics).start()
    records = [*story(), b"not json", b"{}"]
    topics.produce(records)
    metrics = flow.wait_for_records_in(len(records))
    wait_for(
        lambda: flow.metrics().get('concierge_actions_total{channel="in_app"}') == 1,
        30,
        "the help offer to be counted",
    )
    metrics = flow.metrics()
    assert metrics['concierge_dead_letters_total{reason="invalid_json"}'] == 1
    assert metrics['concierge_dead_letters_total{reason="schema_violation"}'] == 1
    assert metrics['concierge_events_in_total{type="product_view"}'] == 3
    assert metrics['concierge_events_in_total{type="help_search"}'] == 3
    assert metrics['concierge_decisions_total{outcome="sent"}'] == 2
    assert metrics['concierge_actions_total{channel="push"}'] == 1
    assert metrics["concierge_event_to_action_latency_seconds_count"] == 2
    assert metrics["concierge_processing_latency_seconds_count"] == 2
    assert metrics['concierge_identity_resolved_total{known="true"}'] == 4
    assert metrics['concierge_identity_resolved_total{known="false"}'] == 3
    assert metrics["concierge_identity_profiles"] == 2

    code, took = flow.terminate()
    assert code == 0, flow.output()
    assert took < 10


def test_a_restart_resumes_where_it_stopped_and_repeats_nothing(topics, flows, policy, tmp_path):
    topics.create(policy)
    # The first run makes one recovery partition per worker (the default); the second, which
    # would make 16 in a new directory, keeps it as it is.
    first = flows(topics, "--snapshot-interval", "1").start()
    topics.produce(story("a-"))
    first.wait_for_records_in(7)
    wait_for(lambda: len(topics.read("actions.in_app")) == 1, 30, "the first help offer")
    assert first.terminate()[0] == 0
    recovery = tmp_path / "recovery"
    assert [p.name for p in recovery.glob("part-*.sqlite3")] == ["part-0.sqlite3"]

    topics.produce(story("b-", product="p-7", searcher="carol"))
    second = flows(topics, "--snapshot-interval", "1", "--recovery-partitions", "16").start()
    second.wait_for_records_in(7)  # only the new records: it resumed, it did not start over
    wait_for(lambda: len(topics.read("decisions")) == 4, 30, "the second story's decisions")
    assert second.terminate()[0] == 0
    assert [p.name for p in recovery.glob("part-*.sqlite3")] == ["part-0.sqlite3"]
    assert "no snapshots in " in first.output() and "resuming from" not in first.output()
    assert "resuming from the snapshots in " in second.output()
    assert "stopped; since it started: 7 records read, 0 dead letters, 2 decisions, 2 actions" in (
        second.output()
    )

    actions = topics.values("actions.push") + topics.values("actions.in_app")
    ids = [a["action_id"] for a in actions]
    assert len(ids) == len(set(ids)) == 4
    assert sorted(a["triggered_by"][-1] for a in actions) == [
        "a-search-2",
        "a-view-2",
        "b-search-2",
        "b-view-2",
    ]
    assert [d["outcome"] for d in topics.values("decisions")] == ["sent"] * 4


def recent_stream(customers: int, count: int, seed: int, timers: bool = True) -> list[dict]:
    """Generated traffic from the last day. Checkout timers (30 minutes) are all past due by
    now; inactivity (45 days) and test-drive silence (180 days) are not."""
    generator = Generator(
        customers=customers, seed=seed, start=stamp(timedelta(days=-1)), bad_share=0.0
    )
    events = [orjson.loads(raw) for raw in generator.events(count)]
    if timers:
        return events
    return [e for e in events if e["type"] not in ("checkout_started", "test_drive_completed")]


def replay_prediction(events, tmp_path, policy_path) -> dict[str, list[bytes]]:
    """What ``concierge replay`` with the policy at ``policy_path`` says the same events give,
    with event time run up to now."""
    from tests.scenarios.conftest import concierge

    file = tmp_path / "events.jsonl"
    file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    out = tmp_path / "replay"
    done = concierge(
        "replay",
        "--policy",
        str(policy_path),
        "--events",
        str(file),
        "--out",
        str(out),
        "--until",
        stamp(timedelta(0)),
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    return {
        path.name[: -len(".jsonl")]: sorted(path.read_bytes().splitlines())
        for path in out.glob("*.jsonl")
    }


def records_by_action_id(topics, policy) -> dict[str, set[bytes]]:
    actions: dict[str, set[bytes]] = {}
    for channel in policy.channels:
        for _, value, _, _ in topics.read(f"actions.{channel}"):
            actions.setdefault(orjson.loads(value)["action_id"], set()).add(value)
    return actions


def without_timers(reference_policy_path, tmp_path):
    """The reference policy without quiet hours. The second half of a stream produced
    after a restart holds events from before timers the first half set: in Kafka mode a
    timer fires on the wall clock once the input is read to its end, so deferrals (like
    checkout timers, left out of these streams) would fire before those events arrive;
    replay, reading the whole file, would not."""
    text = reference_policy_path.read_text()
    start = text.index("quiet_hours:")
    end = text.index("\n\n", start)
    path = tmp_path / "no-quiet-hours.yaml"
    path.write_text(text[:start] + text[end + 2 :])
    return path


def test_after_kill_9_nothing_is_skipped_and_repeats_are_identical(
    topics, flows, policy, tmp_path, reference_policy_path
):
    topics.create(policy, partitions=1)
    events = recent_stream(customers=150, count=3000, seed=21, timers=False)
    half = len(events) // 2
    reference_policy_path = without_timers(reference_policy_path, tmp_path)
    first = flows(
        topics,
        "--snapshot-interval",
        "1",
        "--recovery-partitions",
        "16",
        policy=reference_policy_path,
    ).start()
    topics.produce(events[:half])
    wait_for(
        lambda: first.metrics().get("concierge_records_in_total", 0) >= half,
        60,
        "the first half to be read",
    )
    first.kill()
    # 16 recovery partitions, as a process holding many customers is advised to have: what
    # it resumes from is spread over them
    assert len(list((tmp_path / "recovery").glob("part-*.sqlite3"))) == 16

    topics.produce(events[half:])
    second = flows(
        topics, "--stop-at-end", "--snapshot-interval", "1", policy=reference_policy_path
    ).start()
    assert second.wait(120) == 0, second.output()

    actions = records_by_action_id(topics, policy)
    assert actions, "the stream should have caused actions"
    differing = {k: v for k, v in actions.items() if len(v) > 1}
    assert not differing, f"a repeat differed: {differing}"
    predicted = replay_prediction(events, tmp_path, reference_policy_path)
    kafka_decisions = {value for _, value, _, _ in topics.read("decisions")}
    assert kafka_decisions == set(predicted["decisions"]), "a decision was skipped or differs"
    for channel in policy.channels:
        copies = {value for _, value, _, _ in topics.read(f"actions.{channel}")}
        assert copies == set(predicted.get(f"actions.{channel}", [])), channel


@pytest.mark.parametrize("workers", ["1", "2"])
def test_kafka_mode_gives_what_replay_predicts(
    topics, flows, policy, tmp_path, reference_policy_path, workers
):
    topics.create(policy, partitions=1)
    events = recent_stream(customers=200, count=4000, seed=8)
    assert any(e["type"] == "checkout_started" for e in events)
    topics.produce(events)
    flow = flows(topics, "--stop-at-end", "-w", workers).start()
    assert flow.wait(180) == 0, flow.output()

    predicted = replay_prediction(events, tmp_path, reference_policy_path)
    for stream in ["decisions"] + [f"actions.{c}" for c in policy.channels]:
        kafka = sorted(value for _, value, _, _ in topics.read(stream))
        assert kafka == predicted.get(stream, []), stream
    assert predicted.get("actions.email"), "cart reminders (timers) should be among them"


def test_run_creates_the_topics_it_needs(topics, flows, policy):
    flow = flows(topics, "--stop-at-end").start()
    assert flow.wait(60) == 0, flow.output()
    from confluent_kafka.admin import AdminClient

    existing = AdminClient(topics.settings.config()).list_topics(timeout=10).topics
    for topic in topics.settings.input_topics() + topics.settings.output_topics(policy):
        assert topic in existing


def test_a_restart_leaves_the_last_runs_frontier_marks_out(topics, policy):
    """After a kill -9 the last run's marks are still at the end of ``<prefix>frontier``,
    telling of input this start has not resolved again: applied, they would fire every
    timer of the snapshot before the events that follow it are read again."""
    topics.create(policy)
    frontier_topic = topics.settings.frontier_topic()[len(topics.prefix) :]
    now = int(datetime.now(UTC).timestamp() * 1000)
    stale = [
        FrontierMark(now - 1000, False, None, now - 60_000 + n, "the last run") for n in range(20)
    ]
    topics.produce([m.encode() for m in stale], topic=frontier_topic, keys=[b"frontier"] * 20)
    applied: list[FrontierMark] = []

    class Frontier(InputFrontier):
        def apply(self, mark: FrontierMark) -> None:
            applied.append(mark)
            super().apply(mark)

    frontier = Frontier()
    reader = FrontierReader(topics.settings, frontier).start()
    try:

        def publish() -> bool:  # as the identity step does, again and again
            published = int(datetime.now(UTC).timestamp() * 1000)
            fresh = FrontierMark(now - 5000, False, None, published, "this run")
            topics.produce([fresh.encode()], topic=frontier_topic, keys=[b"frontier"])
            return frontier.settled != NEVER

        wait_for(publish, 30, "this run's mark", every=0.5)
        print("APPLIED", [(m.run, m.published) for m in applied])
        assert {mark.run for mark in applied} == {"this run"}
    finally:
        reader.close()


def test_a_restored_timer_waits_until_the_backlog_is_read(topics, flows, policy):
    """The checkout's timer is in the snapshot; the purchase that cancels it arrives while
    the flow is down. On restart the timer is past due on the wall clock, but it must not
    fire before the purchase is read: Kafka mode decides as replay would."""
    topics.create(policy, partitions=1)
    started = datetime.now(UTC) - timedelta(minutes=30) + timedelta(seconds=8)
    due = started + timedelta(minutes=30)
    at = lambda delta: (started + delta).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    ana = {"email": "ana@example.com"}
    first = flows(topics, "--snapshot-interval", "1").start()
    topics.produce(
        [
            event_dict("consent_changed", at(timedelta(minutes=-1)), GRANT, **ana),
            event_dict("checkout_started", at(timedelta(0)), {"cart_value": 80}, **ana),
        ]
    )
    first.wait_for_records_in(2)
    assert first.terminate()[0] == 0

    marker = [
        event_dict(
            "help_search", at(timedelta(minutes=6 + n)), {"query": "x"}, anonymous_id="marker"
        )
        for n in range(3)
    ]
    topics.produce(
        [event_dict("purchase", at(timedelta(minutes=5)), {"product_id": "p-1"}, **ana), *marker]
    )
    wait_for(
        lambda: datetime.now(UTC) > due + timedelta(seconds=1),
        30,
        "the checkout timer to fall due on the wall clock",
    )
    second = flows(topics).start()
    # The marker's decision comes after the purchase in the one partition: once it is out,
    # the purchase has been handled and the timer had its chance to fire wrongly.
    wait_for(lambda: topics.values("decisions"), 60, "the marker's decision")
    assert [d["action"] for d in topics.values("decisions")] == ["help_offer"]
    assert topics.read("actions.email") == []
    assert second.terminate()[0] == 0


def test_sigint_stops_it_cleanly_too(topics, flows, policy):
    import signal

    topics.create(policy)
    flow = flows(topics).start()
    topics.produce(story())
    flow.wait_for_records_in(7)
    code, took = flow.terminate(signal.SIGINT)
    assert code == 0 and took < 10, flow.output()


def test_a_stop_past_its_grace_is_interrupted_and_the_next_run_loses_nothing(
    topics, flows, policy, tmp_path, reference_policy_path
):
    """``--stop-grace 0``: a SIGTERM while the flow is busy interrupts it at once, before its
    last snapshot (as a process holding a million customers is interrupted after the
    default 8 s), and it still exits 0, saying so; the next run resumes from the snapshot
    before and decides what replay decides, nothing lost."""
    import signal

    topics.create(policy, partitions=1)
    events = recent_stream(customers=2000, count=20000, seed=22, timers=False)
    reference_policy_path = without_timers(reference_policy_path, tmp_path)
    topics.produce(events)
    first = flows(
        topics, "--stop-grace", "0", "--snapshot-interval", "1", policy=reference_policy_path
    ).start()
    wait_for(
        lambda: first.metrics().get("concierge_records_in_total", 0) >= 5000,
        60,
        "a quarter of the stream to be read",
    )
    code, took = first.terminate(signal.SIGTERM)
    assert code == 0 and took < 10, first.output()
    assert "did not drain within its grace (--stop-grace 0 s)" in first.output()
    assert "stopped before the dataflow drained" in first.output()

    second = flows(topics, "--stop-at-end", policy=reference_policy_path).start()
    assert second.wait(120) == 0, second.output()
    predicted = replay_prediction(events, tmp_path, reference_policy_path)
    assert predicted["decisions"], "the stream should be decided"
    decisions = {value for _, value, _, _ in topics.read("decisions")}
    assert decisions == set(predicted["decisions"]), "a decision was skipped or differs"


def test_sigterm_while_it_starts_stops_it_cleanly(topics, flows, policy):
    """An operator's SIGTERM as soon as the metrics answer, while it still reaches the
    brokers and prepares its snapshots: it stops cleanly, not killed by the signal."""
    import signal

    topics.create(policy)
    flow = flows(topics).start()
    wait_for(flow.metrics, 60, "the flow's metrics endpoint")
    code, took = flow.terminate(signal.SIGTERM)
    assert code == 0 and took < 10, flow.output()


def yesterdays_hour(n: int) -> str:
    """Yesterday at 09:00 UTC (morning in Madrid) plus ``n`` hours: outside quiet hours (its sends
    go out) whatever time of day the suite runs."""
    morning = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    return (morning - timedelta(days=1) + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_one_customer_across_identifiers_in_kafka_and_in_the_identity_command(
    topics, flows, policy, tmp_path
):
    import json

    from tests.scenarios.conftest import concierge
    from tests.scenarios.test_identity import story

    # One partition: which profile is older (and so survives) depends on the order the
    # identity step sees them in, which several partitions would leave open.
    topics.create(policy, partitions=1)
    events = story(yesterdays_hour)
    topics.produce(
        events, keys=[b"tablet-7", b"tablet-7", b"ana", b"tablet-7", b"L-7", b"L-7", b"tablet-7"]
    )
    flow = flows(topics, "--stop-at-end").start()
    assert flow.wait(120) == 0, flow.output()

    customer = canonical_id("device_id", "tablet-7")
    decisions = topics.values("decisions")
    assert [(d["customer_id"], d["outcome"]) for d in decisions] == [
        (customer, "sent"),
        (customer, "cooldown"),
    ]
    merges = [a for a in topics.values("audit") if a["kind"] == "merge"]
    assert merges and all(m["surviving_id"] == customer for m in merges)

    shown = concierge("identity", "--state-dir", str(tmp_path / "state"), "email:ANA@example.com ")
    assert shown.returncode == 0, shown.stderr
    profile = json.loads(shown.stdout)
    assert profile["customer_id"] == customer
    types = sorted(i["type"] for i in profile["identifiers"])
    assert types == ["device_id", "email", "loyalty_id"]
    assert "ana@example.com" not in shown.stdout
    assert any(h["event"] == "merged" for h in profile["history"])
    missing = concierge("identity", "--state-dir", str(tmp_path / "state"), "email:x@y.z")
    assert missing.returncode == 1


@pytest.mark.usefixtures("cluster_key")
def test_two_processes_give_the_same_records_and_stop_together(topics, flows, policy, tmp_path):
    import signal

    from flows.kafka.broker import free_port
    from tests.scenarios.test_identity import story

    topics.create(policy, partitions=1)
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    cluster = []
    for index in (0, 1):
        workdir = tmp_path / f"process-{index}"
        workdir.mkdir()
        cluster.append(flows(topics, "-i", str(index), "-a", addresses, workdir=workdir).start())
    topics.produce(story(yesterdays_hour))
    wait_for(lambda: len(topics.values("decisions")) == 2, 60, "the story's two decisions")

    customer = canonical_id("device_id", "tablet-7")
    assert [(d["customer_id"], d["outcome"]) for d in topics.values("decisions")] == [
        (customer, "sent"),
        (customer, "cooldown"),
    ]
    for process in cluster:
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
    assert [process.wait(10) for process in cluster] == [0, 0]
