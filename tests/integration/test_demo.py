"""``concierge demo``: the whole thing on loopback, and a summary that says what happened."""

from __future__ import annotations

import pytest

from flows.kafka.broker import free_port
from tests.scenarios.conftest import concierge

pytestmark = pytest.mark.integration


def test_the_demo_says_where_metrics_were_and_that_none_were_with_port_0():
    port = free_port()
    served = concierge(
        "demo", "--customers", "100", "--events", "2000", "--metrics-port", str(port), timeout=120
    )
    assert served.returncode == 0, served.stderr
    assert "actions per channel:" in served.stdout and "decisions by outcome:" in served.stdout
    assert f"metrics were served at http://127.0.0.1:{port}/metrics" in served.stdout
    off = concierge(
        "demo", "--customers", "100", "--events", "2000", "--metrics-port", "0", timeout=120
    )
    assert off.returncode == 0, off.stderr
    assert "metrics were not served (--metrics-port 0)" in off.stdout
    assert "127.0.0.1:0" not in off.stdout
