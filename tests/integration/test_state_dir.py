"""``run`` resumes its snapshots only beside the identity graph they were taken with: a lost
or older ``--state-dir`` would resume customers whose links the graph no longer holds (a
consent given under an anonymous id, lost at login)."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import event_dict

pytestmark = pytest.mark.integration


def visits(prefix: str, count: int, minute: int) -> list[dict]:
    """Each visitor browses anonymously, then logs in: one merge of the graph each."""
    events = []
    for n in range(count):
        anonymous = {"anonymous_id": f"{prefix}-anon-{n}"}
        at = f"2026-11-20T10:{minute:02d}:{n:02d}Z"
        events.append(event_dict("page_view", at, **anonymous))
        login = f"2026-11-20T10:{minute + 1:02d}:{n:02d}Z"
        events.append(event_dict("page_view", login, email=f"{prefix}{n}@example.com", **anonymous))
    return events


def finish(flow) -> None:
    assert flow.wait(90) == 0, flow.output()


def refused(flow) -> str:
    code = flow.wait(90)
    assert code == 2, flow.output()
    return flow.output().strip().splitlines()[-1]


def test_a_lost_state_dir_beside_snapshots_is_refused(topics, flows, policy, tmp_path):
    topics.create(policy)
    topics.produce(visits("a", 10, 0))
    finish(flows(topics, "--stop-at-end").start())
    shutil.rmtree(tmp_path / "state" / "identity")
    line = refused(flows(topics, "--stop-at-end").start())
    assert "the identity graph under --state-dir is empty" in line
    assert "Runbook: IdentityGraphMismatch" in line


def test_an_older_copy_of_the_state_dir_is_refused(topics, flows, policy, tmp_path):
    topics.create(policy)
    topics.produce(visits("a", 10, 0))
    finish(flows(topics, "--stop-at-end").start())
    backup = tmp_path / "backup"
    for directory in ("state", "recovery"):  # taken together, while it is stopped
        shutil.copytree(tmp_path / directory, backup / directory)
    topics.produce(visits("b", 10, 10))
    finish(flows(topics, "--stop-at-end").start())
    shutil.rmtree(tmp_path / "state")
    shutil.copytree(backup / "state", tmp_path / "state")
    line = refused(flows(topics, "--stop-at-end").start())
    assert "the identity graph under --state-dir is behind the snapshots" in line
    shutil.rmtree(tmp_path / "recovery")  # restored together, they resume
    shutil.copytree(backup / "recovery", tmp_path / "recovery")
    finish(flows(topics, "--stop-at-end").start())
