"""``concierge broker``: the embedded broker in the foreground, for trying ``run`` by hand."""

from __future__ import annotations

import signal
import socket
import subprocess

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.scenarios.conftest import CONCIERGE

pytestmark = pytest.mark.integration


def test_the_broker_command_serves_kafka_until_sigterm():
    process = subprocess.Popen(
        [CONCIERGE, "broker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        address = process.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), process.stderr.read()
        producer = Producer({"bootstrap.servers": address, "log_level": 0})
        producer.produce("hello", b"world", partition=0)
        assert producer.flush(10) == 0
        consumer = Consumer({"bootstrap.servers": address, "group.id": "t", "log_level": 0})
        consumer.assign([TopicPartition("hello", 0, 0)])
        values = []
        for _ in range(20):
            message = consumer.poll(1)
            if message is not None and message.error() is None:
                values.append(message.value())
                break
        assert values == [b"world"]
        consumer.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert "concierge run --policy POLICY --brokers " + address in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_a_busy_port_is_one_line_and_exit_2_and_no_address():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [CONCIERGE, "broker", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"concierge broker: port {port} on 127.0.0.1 is in use: give another with --port, "
        "or leave --port out for a free one"
    ]
