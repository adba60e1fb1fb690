"""The recovery snapshots of 0.7.0, taken before operators/ was grouped by stage (their
pickles name ``operators.state``, ``operators.model``, ``operators.handover`` ...), resume."""

import pickle
import zlib
from pathlib import Path

import pytest

from flows.journey import PACKED_MAGIC, JourneyConfig, JourneyLogic, unpack
from operators.identity.resolution import ForCustomer
from operators.journey import Journey
from operators.model.state import CustomerState
from operators.policy.load import load_policy
from tests.conftest import FULL_POLICY, make_event

RECORDED = Path(__file__).parent / "snapshots" / "recovery-0.7.0.bin"
"""Every row 0.7.0 (1060206) left in its recovery partitions after ``concierge run
--stop-at-end`` over 4,000 generated events of 200 customers under the full policy (made by
``snapshots/record.py``)."""


@pytest.fixture(scope="module")
def rows():
    return pickle.loads(zlib.decompress(RECORDED.read_bytes()))


def test_every_customer_0_7_0_kept_comes_back_and_decides_on(rows):
    config = JourneyConfig(load_policy(FULL_POLICY.read_text()), wall_clock_timers=False)
    packed = [pickle.loads(value) for step, _, value in rows if step == "concierge.journey"]
    assert len(packed) == 265
    journeys = [
        unpack(customer) if customer[:3] == PACKED_MAGIC else pickle.loads(customer)
        for customer in packed
    ]
    assert all(type(j) is Journey and type(j.state) is CustomerState for j in journeys)
    assert sum(len(j.state.sends) for j in journeys) == 155  # 148 sent, and those held out
    later = make_event("page_view", "2026-12-30T10:00:00Z", event_id="after-the-upgrade")
    for customer, journey in zip(packed, journeys, strict=True):
        logic = JourneyLogic(config, customer)
        logic.on_batch([ForCustomer(journey.state.customer_id, later)])
        assert logic.snapshot()  # went on, and can be snapshotted again


def test_the_input_and_identity_steps_0_7_0_kept_unpickle(rows):
    steps = {step for step, _, _ in rows}
    assert steps == {"concierge.ingest", "concierge.journey", "concierge.identity"}
    for step, _, value in rows:
        if step != "concierge.journey":
            assert pickle.loads(value) is not None
