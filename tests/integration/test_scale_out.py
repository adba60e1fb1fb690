"""Scale-out under realistic keying: producers key each event by the identifier they know,
so one person's events are spread over partitions and processes. Replay, one process on
one partition, one process on four, and two processes on four give the same records."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from confluent_kafka import Producer

from flows.commands.generator import Generator
from flows.commands.generator import producer_key as generated_key
from flows.kafka.broker import free_port
from operators.identity.ids import canonical_id
from tests.integration.conftest import QUIET, Topics, afternoon_zone, stamp, wait_for
from tests.integration.test_kafka_flow import recent_stream, replay_prediction

pytestmark = pytest.mark.usefixtures("cluster_key")


def producer_key(event: dict) -> bytes:
    """The web keys by its cookie, the app by the device, the till by the loyalty card, the
    contact centre by the phone, a login by the email: the identifier each producer knows."""
    key = generated_key(orjson.dumps(event))
    assert key is not None
    return key


PERSONS = int(os.environ.get("CONCIERGE_SCALE_PERSONS", "800"))
"""How many generated persons the agreement test uses (``CONCIERGE_SCALE_PERSONS=2500`` for
issue 12's measurement: about 30,000 events)."""


def population(now: datetime) -> tuple[list[dict], list[dict]]:
    """Generated persons (800 by default): anonymous browsing, logins that merge, consent,
    checkouts with and without a purchase minutes later, help searches, contact-centre calls.

    The history (three days ago, every timer it sets long past due) is produced before
    the flow starts; the live part (the last ten minutes, in a zone where it is afternoon,
    so nothing waits for quiet hours to end during the test) while it runs."""
    history = [
        orjson.loads(raw)
        for raw in Generator(PERSONS, seed=12, start=stamp(timedelta(days=-3)), bad_share=0).events(
            PERSONS * 45 // 4
        )
    ]
    live_start = (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    live = [
        orjson.loads(raw)
        for raw in Generator(
            PERSONS, seed=12, start=live_start, bad_share=0, minutes_between_sessions=0.02
        ).events(PERSONS * 5 // 8)
    ]
    zone = afternoon_zone()
    for event in live:
        event["event_id"] = "live-" + event["event_id"]
        event.setdefault("context", {})["timezone"] = zone
    return history, live


def produce(topics: Topics, events: list[dict]) -> None:
    producer = Producer({"bootstrap.servers": topics.broker.bootstrap, "linger.ms": 5, **QUIET})
    for event in events:
        producer.produce(topics.prefix + "events", orjson.dumps(event), producer_key(event))
    assert producer.flush(30) == 0


def records_in(cluster) -> float:
    return sum(flow.metrics().get("concierge_records_in_total", 0) for flow in cluster)


def start_cluster(flows, topics, workdir, processes, *extra):
    """``concierge run`` as ``processes`` processes of one cluster, each with its own
    directories under ``workdir`` (kept across restarts)."""
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    cluster = []
    for index in range(processes):
        own = workdir / f"p{index}"
        own.mkdir(parents=True, exist_ok=True)
        member = ("-i", str(index), "-a", addresses) if processes > 1 else ()
        cluster.append(flows(topics, *member, *extra, workdir=own).start())
    return cluster


def stop_cluster(cluster):
    """SIGTERM every process: each stops cleanly."""
    for flow in cluster:
        assert flow.process is not None
        flow.process.send_signal(signal.SIGTERM)
    assert [flow.wait(20) for flow in cluster] == [0] * len(cluster)


def run_cluster(broker, flows, policy, tmp_path, name, partitions, processes, history, live):
    topics = Topics(broker, f"{name}{free_port()}.")
    topics.create(policy, partitions=partitions)
    produce(topics, history)
    cluster = start_cluster(flows, topics, tmp_path / name, processes)
    wait_for(lambda: records_in(cluster) >= len(history), 120, f"{name}: the history read")
    produce(topics, live)
    wait_for(lambda: records_in(cluster) >= len(history) + len(live), 60, f"{name}: live read")
    return topics, cluster


def sorted_records(topics: Topics, streams: list[str]) -> dict[str, list[bytes]]:
    return {s: sorted(v for _, v, _, _ in topics.read(s)) for s in streams}


def cart_reminders_after_a_purchase(events: list[dict], actions: list[bytes]) -> list[str]:
    """Cart reminders sent although the same customer bought between the checkout and the
    reminder: a purchase by an identifier that events up to the reminder had linked to the
    checkout's (identity limits aside, which this population never reaches)."""
    by_id = {e["event_id"]: e for e in events}
    wrong = []
    for value in actions:
        action = orjson.loads(value)
        if action["action"] != "cart_recovery":
            continue
        checkout = by_id[action["triggered_by"][0]]
        sent_at = action["decided_at"]
        linked = _linked(events, sent_at)
        mine = linked(_first(checkout))
        for e in events:
            if (
                e["type"] == "purchase"
                and checkout["timestamp"] < e["timestamp"] <= sent_at
                and linked(_first(e)) == mine
            ):
                wrong.append(action["action_id"])
    return wrong


def _first(event: dict) -> str:
    kind, value = next(iter(event["identifiers"].items()))
    return f"{kind}:{value.lower()}"


def _linked(events: list[dict], until: str):
    """Which identifiers events up to ``until`` linked: the root of each one's group."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for e in events:
        if e["timestamp"] > until:
            continue
        names = [f"{k}:{v.lower()}" for k, v in e["identifiers"].items()]
        for other in names[1:]:
            if root(other) != root(names[0]):
                parent[root(other)] = root(names[0])
    return root


@pytest.mark.timeout(900)
def test_replay_one_process_four_partitions_and_two_processes_agree_under_realistic_keying(
    broker, flows, policy, tmp_path, reference_policy_path
):
    now = datetime.now(UTC)
    history, live = population(now)
    events = history + live
    keys = {producer_key(e) for e in events}
    assert len(keys) > 1.5 * len({_first(e) for e in events if "email" in e["identifiers"]})
    predicted = replay_prediction(events, tmp_path, reference_policy_path)
    streams = ["decisions"] + [f"actions.{c}" for c in policy.channels]
    expected = {s: predicted.get(s, []) for s in streams}
    decisions = len(expected["decisions"])
    assert decisions > PERSONS and expected["actions.email"], "cart reminders should be among them"
    actions = [v for s in streams[1:] for v in expected[s]]
    assert not cart_reminders_after_a_purchase(events, actions), "replay sent one"

    for name, partitions, processes in (("one", 1, 1), ("four", 4, 1), ("two", 4, 2)):
        topics, cluster = run_cluster(
            broker, flows, policy, tmp_path, name, partitions, processes, history, live
        )
        wait_for(
            lambda topics=topics: len(topics.read("decisions")) >= decisions,
            120,
            f"{name}: {decisions} decisions",
            every=1.0,
        )
        got = sorted_records(topics, streams)
        stop_cluster(cluster)
        for stream in streams:
            assert got[stream] == expected[stream], f"{name}: {stream} differs from replay"


def start_pair(flows, topics, tmp_path, tag):
    """Two processes of one cluster, once both hear the identity step."""
    cluster = start_cluster(flows, topics, tmp_path / "pair", 2)
    for flow in cluster:
        wait_for(
            lambda flow=flow: flow.metrics().get("concierge_timer_frontier_lag_seconds", 0) > 0,
            60,
            f"{tag}: both processes to hear the identity step",
        )
    return cluster


def produce_paid_and_unpaid_checkouts(broker, topics):
    """Three people check out on one partition and pay (by email) on the next; a fourth
    checks out and never pays. Two hours ago: every cart timer is past due on the wall clock."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, **QUIET})
    zone = afternoon_zone()
    for p in range(4):
        person = {"anonymous_id": f"anon-stall-{p}", "email": f"stall{p}@example.com"}
        story = [
            ("identify", -125, person, p),
            ("checkout_started", -120, {"anonymous_id": person["anonymous_id"]}, p),
            ("purchase", -110, {"email": person["email"]}, (p + 1) % 4),
        ]
        if p == 3:  # nobody pays for this one: its reminder shows the timers ran
            story = [("checkout_started", -120, {"anonymous_id": "anon-unpaid"}, p)]
        for kind, minutes, identifiers, partition in story:
            event = {
                "event_id": f"stall-{p}-{kind}",
                "type": kind,
                "timestamp": stamp(timedelta(minutes=minutes)),
                "identifiers": identifiers,
                "context": {"timezone": zone, "channel": "web"},
                "properties": {"cart_value": 80, "product_id": "p-1"},
            }
            producer.produce(topics.prefix + "events", orjson.dumps(event), partition=partition)
    assert producer.flush(30) == 0


def cart_reminders(topics):
    return [d for d in topics.values("decisions") if d["action"] == "cart_recovery"]


def only_the_unpaid_checkout_is_reminded(topics):
    reminders = wait_for(lambda: cart_reminders(topics), 60, "the unpaid checkout's reminder")
    unpaid = canonical_id("anonymous_id", "anon-unpaid")
    assert [d["customer_id"] for d in reminders] == [unpaid], "a paid cart got a reminder"


def test_a_stalled_process_holds_every_timer_back_until_its_partitions_are_read(
    broker, flows, policy, tmp_path
):
    """One of two processes is stopped (SIGSTOP) for 20 s while checkouts arrive on the
    other's partitions and the purchases that cancel them on every partition: the cart
    timers, long past due on the wall clock, must not fire on the live process before the
    stalled one has read the purchases; and once it has, only the checkout nobody paid for
    gets its reminder."""
    topics = Topics(broker, f"stall{free_port()}.")
    topics.create(policy, partitions=4)
    cluster = start_pair(flows, topics, tmp_path, "stall")
    stalled = cluster[1].process
    assert stalled is not None
    stalled.send_signal(signal.SIGSTOP)
    try:
        produce_paid_and_unpaid_checkouts(broker, topics)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            fired = cart_reminders(topics)
            assert not fired, f"a cart timer fired while a partition was unread: {fired}"
            time.sleep(1)
    finally:
        stalled.send_signal(signal.SIGCONT)
    only_the_unpaid_checkout_is_reminded(topics)
    stop_cluster(cluster)


def test_a_killed_process_stops_the_cluster_so_nothing_fires_early_then_both_resume(
    broker, flows, policy, tmp_path
):
    """kill -9 of one of two processes, right after the checkouts and purchases are
    produced: a Bytewax cluster cannot go on without a member, so the live process stops
    at once (exit 1, one line) instead of firing timers whose cancelling events the dead
    one had to read. Both started again, only the unpaid checkout gets a reminder."""
    topics = Topics(broker, f"kill{free_port()}.")
    topics.create(policy, partitions=4)
    live, doomed = start_pair(flows, topics, tmp_path, "before the kill")
    produce_paid_and_unpaid_checkouts(broker, topics)
    doomed.kill()
    assert live.wait(30) == 1
    assert "another process of the cluster went away" in live.output()
    paid = [d for d in cart_reminders(topics) if "unpaid" not in d["triggered_by"][0]]
    assert not paid, f"a paid cart got a reminder before the stop: {paid}"
    time.sleep(10)  # the dead process stays down a while: nothing runs meanwhile
    cluster = start_pair(flows, topics, tmp_path, "after the restart")
    only_the_unpaid_checkout_is_reminded(topics)
    stop_cluster(cluster)


def test_two_processes_stop_together_at_the_end_with_what_replay_predicts(
    broker, flows, policy, tmp_path, reference_policy_path
):
    """``--stop-at-end`` on a cluster: every process stops, after every merge's context has
    arrived and what was due has fired, with replay's records."""
    events = recent_stream(customers=300, count=4000, seed=31)
    topics = Topics(broker, f"end{free_port()}.")
    topics.create(policy, partitions=4)
    produce(topics, events)
    cluster = start_cluster(flows, topics, tmp_path / "end", 2, "--stop-at-end")
    assert [flow.wait(180) for flow in cluster] == [0, 0], cluster[0].output()

    predicted = replay_prediction(events, tmp_path, reference_policy_path)
    assert predicted["audit"], "the stream should merge profiles"
    for stream in ["decisions", "audit"] + [f"actions.{c}" for c in policy.channels]:
        kafka = sorted(value for _, value, _, _ in topics.read(stream))
        assert kafka == predicted.get(stream, []), stream
