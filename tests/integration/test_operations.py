"""What an SRE sees of ``concierge run`` on the real broker: liveness and readiness beside the
metrics, build info, counters at zero, timers pending, snapshot age, and JSON log lines."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from datetime import timedelta

import orjson
import pytest

from flows import package_version
from flows.kafka.broker import free_port
from operators.model.records import DeadLetterReason, Outcome
from tests.conftest import event_dict
from tests.integration.conftest import stamp, wait_for

pytestmark = pytest.mark.integration

EMAIL = "sre.check@example.com"


def get(flow, path):
    """(status, body) of a GET on the flow's endpoint; None while nothing answers."""
    url = f"http://127.0.0.1:{flow.metrics_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return None


def test_before_the_brokers_answer_it_is_alive_and_not_ready(topics, flows, tmp_path):
    flow = flows(topics, "--metrics-host", "127.0.0.1", workdir=tmp_path)
    flow.args[flow.args.index("--brokers") + 1] = f"127.0.0.1:{free_port()}"  # nobody there
    flow.start()
    assert wait_for(lambda: get(flow, "/healthz"), 30, "/healthz") == (200, "ok\n")
    status, body = get(flow, "/readyz")
    assert status == 503 and "the brokers have not answered yet" in body
    assert get(flow, "/metrics")[0] == 200
    assert get(flow, "/")[0] == 404
    flow.kill()


def test_a_running_flow_serves_what_an_sre_expects(topics, flows, policy, tmp_path):
    """One flow for all of it: ready only once it runs; build info; every outcome, channel
    and dead-letter reason at zero; a customer's absence timer counted while pending; a
    snapshot age of about the snapshot interval; and a log of JSON lines."""
    topics.create(policy)
    flow = flows(
        topics,
        "--metrics-host",
        "127.0.0.1",
        "--log-format",
        "json",
        "--snapshot-interval",
        "1",
        workdir=tmp_path,
    ).start()
    wait_for(lambda: get(flow, "/healthz"), 30, "/healthz")
    answers = []

    def ready():
        answers.append(get(flow, "/readyz"))
        return answers[-1] == (200, "ready\n")

    wait_for(ready, 60, "/readyz to answer 200")
    assert "reading " in flow.output(), "ready only once the dataflow runs"
    assert all(a[0] == 503 and a[1].startswith("not ready: ") for a in answers[:-1] if a)

    metrics = flow.metrics()
    labels = f'policy_version="{policy.version}",version="{package_version()}"'
    build = f"concierge_build_info{{{labels}}}"
    assert metrics[build] == 1
    for outcome in Outcome:
        assert metrics[f'concierge_decisions_total{{outcome="{outcome.value}"}}'] == 0
    for channel in policy.channels:
        assert metrics[f'concierge_actions_total{{channel="{channel}"}}'] == 0
    for reason in DeadLetterReason:
        assert metrics[f'concierge_dead_letters_total{{reason="{reason.value}"}}'] == 0
    assert metrics['concierge_timers_pending{kind="signal"}'] == 0
    assert metrics['concierge_timers_pending{kind="decision"}'] == 0
    assert wait_for(
        lambda: flow.metrics().get("concierge_snapshot_age_seconds", 99) < 1.5,
        30,
        "a fresh snapshot",
    )

    def signal_timers():
        return flow.metrics().get('concierge_timers_pending{kind="signal"}')

    # A checkout starts checkout_abandoned (30 min) and inactive (45 days); a purchase
    # cancels the first and starts the second again.
    topics.produce([event_dict("checkout_started", stamp(timedelta(minutes=-2)), email=EMAIL)])
    wait_for(lambda: signal_timers() == 2, 30, "two signal timers pending")
    topics.produce(
        [event_dict("purchase", stamp(timedelta(minutes=-1)), {"product_id": "p-1"}, email=EMAIL)]
    )
    wait_for(lambda: signal_timers() == 1, 30, "the checkout timer cancelled")
    flow.wait_for_records_in(2)

    code, _ = flow.terminate(signal.SIGTERM)
    assert code == 0
    lines = [orjson.loads(line) for line in flow.output().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert all(line["time"].endswith("Z") for line in lines)
    stop = next(line for line in lines if line["message"].startswith("stopped; since"))
    assert stop["records_read"] == 2 and stop["dead_letters"] == 0
    assert EMAIL not in flow.output()


def test_a_damaged_recovery_partition_stops_run_at_once_saying_what_to_do(
    topics, flows, policy, tmp_path
):
    """Not a crash at every start: one line naming the file, what is lost, what to do."""
    topics.create(policy)
    flow = flows(topics, "--snapshot-interval", "1", workdir=tmp_path).start()
    events = [
        event_dict("page_view", f"2026-11-20T10:{n // 60:02d}:{n % 60:02d}Z", anonymous_id=f"v{n}")
        for n in range(300)
    ]
    topics.produce(events)
    flow.wait_for_records_in(len(events))
    wait_for(lambda: get(flow, "/readyz") == (200, "ready\n"), 60, "a snapshot")
    assert flow.terminate()[0] == 0
    # the partition that holds the most (16 share the customers)
    part = max((tmp_path / "recovery").glob("part-*.sqlite3"), key=lambda p: p.stat().st_size)
    data = bytearray(part.read_bytes())
    assert len(data) > 8 * 4096, "the snapshot holds the customers"
    data[3 * 4096 : 6 * 4096] = b"\xa5" * (3 * 4096)  # what a failing disk leaves
    part.write_bytes(bytes(data))

    again = flows(topics, workdir=tmp_path).start()
    assert again.wait(30) == 1
    last = again.output().splitlines()[-1]
    assert last.startswith(f"concierge run: recovery partition {part} is damaged (")
    assert "are lost since its last good backup" in last and "RecoveryStoreDamaged" in last
    assert "Traceback" not in again.output() and "reading " not in again.output()
    assert part.read_bytes() == bytes(data), "the damaged file is left for the operator"
