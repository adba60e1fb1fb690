"""The HTTP endpoint (flows/kafka/health.py): /metrics, /healthz and /readyz apart, 404 for
the rest, and what makes a process ready."""

import socket
import threading
import urllib.error
import urllib.request

import pytest

import flows.metrics  # noqa: F401  (registers the flow's metrics)
from flows.kafka.health import Readiness, serve


def get(port, path, host="127.0.0.1"):
    """(status, body) of a GET."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class Run:
    """What a run has reached, as the readiness check sees it."""

    def __init__(self) -> None:
        self.committed = False
        self.stopping = threading.Event()
        self.readiness = Readiness(lambda: self.committed, self.stopping)


@pytest.fixture
def run():
    return Run()


@pytest.fixture
def port(run):
    endpoint = serve("127.0.0.1", 0, run.readiness)
    yield endpoint.port
    endpoint.close()


def test_the_three_paths_answer_apart_and_any_other_is_not_found(port):
    status, body = get(port, "/metrics")
    assert status == 200 and "# TYPE concierge_records_in_total counter" in body
    assert get(port, "/healthz") == (200, "ok\n")
    status, body = get(port, "/readyz")
    assert status == 503 and body.startswith("not ready: ")
    for path in ("/", "/metrics/", "/health", "/favicon.ico"):
        status, body = get(port, path)
        assert status == 404 and "/metrics" in body, path
    assert get(port, "/metrics?name[]=concierge_records_in_total")[0] == 200


def test_ready_once_started_a_snapshot_committed_and_every_input_partition_answered(run, port):
    def readyz():
        return get(port, "/readyz")

    assert readyz() == (503, "not ready: starting: the brokers have not answered yet\n")
    run.readiness.expect("events#0")
    run.readiness.expect("feedback#0")
    run.readiness.started()
    assert "first snapshot" in readyz()[1]
    run.committed = True
    assert readyz() == (
        503,
        "not ready: starting: no answer from the brokers yet for events#0, feedback#0\n",
    )
    run.readiness.reached("events#0")
    run.readiness.reached("feedback#0")
    assert readyz() == (200, "ready\n")
    run.stopping.set()
    assert readyz() == (503, "not ready: stopping\n")
    assert get(port, "/healthz") == (200, "ok\n"), "alive while it stops"


def test_a_taken_port_is_an_error_at_start(run, port):
    with pytest.raises(OSError):
        serve("127.0.0.1", port, run.readiness)


def test_an_ipv6_host_is_served(run):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        endpoint = serve("::1", 0, run.readiness)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert get(endpoint.port, "/healthz", "[::1]") == (200, "ok\n")
    finally:
        endpoint.close()
