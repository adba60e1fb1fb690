"""What one profile may hold: every identifier type has a limit (the policy's, else a
default), a link past it is refused and audited, and a bot that names one email with a new
anonymous id each event costs what ordinary traffic costs."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from flows.commands.generator import Generator
from operators.identity.ids import canonical_id
from operators.model.timefmt import format_ms, parse_ms
from tests.conftest import write_jsonl
from tests.scenarios.conftest import CONCIERGE, concierge

BOT = "bot@example.com"
START = parse_ms("2026-11-16T06:00:00Z")


def bot_events(count: int) -> list[dict[str, object]]:
    """One email and a new anonymous id in every event, one a second."""
    return [
        {
            "event_id": f"bot-{n:06d}",
            "type": "page_view",
            "timestamp": format_ms(START + n * 1000),
            "identifiers": {"email": BOT, "anonymous_id": f"anon-{n}"},
        }
        for n in range(count)
    ]


def shown(out: Path, who: str) -> subprocess.CompletedProcess[str]:
    return concierge("identity", "--state-dir", str(out), who)


def test_the_101st_anonymous_id_of_a_profile_is_refused_and_audited(tmp_path, replay):
    done = replay(write_jsonl(tmp_path / "events.jsonl", bot_events(101)))
    assert done.returncode == 0, done.stderr
    email = canonical_id("email", BOT)
    (refused,) = done.lines("audit.jsonl")
    assert refused == {
        "at": "2026-11-16T06:01:40Z",
        "kind": "merge_refused",
        "customer_ids": [email],
        "surviving_id": email,  # the event is processed on the email's profile
        "identifiers": [{"type": "anonymous_id", "value": "an***00"}],
        "event_id": "bot-000100",
        "limit": "anonymous_id: 100",
    }
    profile = orjson.loads(shown(done.out, f"email:{BOT}").stdout)
    assert profile["customer_id"] == email
    held = [i["value"] for i in profile["identifiers"] if i["type"] == "anonymous_id"]
    assert len(held) == 100 and held[0] == "an***-0" and held[-1] == "an***99"
    assert shown(done.out, "anonymous_id:anon-100").returncode == 1  # no profile holds it


def test_a_policys_own_higher_limit_is_honoured(tmp_path, replay, reference_policy_path):
    text = reference_policy_path.read_text()
    assert "limits: {email: 3," in text
    policy = tmp_path / "policy.yaml"
    own = "limits: {anonymous_id: 150, device_id: 1000000, email: 3,"
    policy.write_text(text.replace("limits: {email: 3,", own))
    assert concierge("validate", str(policy)).returncode == 0
    done = replay(write_jsonl(tmp_path / "events.jsonl", bot_events(151)), policy=policy)
    assert done.returncode == 0, done.stderr
    (refused,) = done.lines("audit.jsonl")
    assert (refused["event_id"], refused["limit"]) == ("bot-000150", "anonymous_id: 150")
    profile = orjson.loads(shown(done.out, "anonymous_id:anon-149").stdout)
    assert profile["customer_id"] == canonical_id("email", BOT)


@dataclass
class Cost:
    seconds: float
    peak_rss_kib: int
    graph_bytes: int


def replay_cost(events: Path, out: Path, policy: Path, cap: Cost | None = None) -> Cost:
    """What ``concierge replay --quiet`` of ``events`` took: wall time, the process's peak
    resident memory and the size of the identity graph it left. Past ``cap``'s time or
    memory it is killed (the test then fails on the figures, not on the machine)."""
    command = [CONCIERGE, "replay", "--policy", str(policy), "--events", str(events)]
    with (out.parent / f"{out.name}.stderr").open("wb") as stderr:
        started = time.monotonic()
        child = subprocess.Popen([*command, "--out", str(out), "--quiet"], stderr=stderr)
    ended: list[tuple[int, int, os.struct_rusage]] = []
    reaper = threading.Thread(target=lambda: ended.append(os.wait4(child.pid, 0)))
    reaper.start()
    while reaper.is_alive():
        reaper.join(0.2)
        if cap is not None and not ended and _over(child.pid, started, cap):
            child.kill()
    seconds = time.monotonic() - started
    _, status, usage = ended[0]
    child.returncode = os.waitstatus_to_exitcode(status)
    assert cap is not None or child.returncode == 0, (out.parent / f"{out.name}.stderr").read_text()
    graph = sum(f.stat().st_size for f in (out / "identity").rglob("*") if f.is_file())
    return Cost(seconds, usage.ru_maxrss, graph)


def _over(pid: int, started: float, cap: Cost) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    found = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")]
    if not found:  # it has exited and not been waited for yet: nothing more to weigh
        return False
    return found[0] > cap.peak_rss_kib or time.monotonic() - started > cap.seconds


@pytest.mark.scale  # about 25 s: run by `make test-scale`, with the kill -9 test
def test_a_hundred_thousand_bot_events_cost_what_ordinary_traffic_costs(
    tmp_path, reference_policy_path
):
    """Before the limits and the graph's format 3, each such event rewrote the whole profile
    and kept an undo record of it: 8,000 of them took 2.9 GB, and 100,000 were killed at
    8 GB after 14,000."""
    ordinary = tmp_path / "ordinary.jsonl"
    ordinary.write_bytes(b"\n".join(Generator(customers=10_000, seed=7).events(100_000)) + b"\n")
    bot = write_jsonl(tmp_path / "bot.jsonl", bot_events(100_000))
    baseline = replay_cost(ordinary, tmp_path / "ordinary", reference_policy_path)
    cap = Cost(3 * baseline.seconds, 3 * baseline.peak_rss_kib, 0)
    cost = replay_cost(bot, tmp_path / "bot", reference_policy_path, cap)
    assert cost.peak_rss_kib <= 1.5 * baseline.peak_rss_kib, (cost, baseline)
    assert cost.seconds <= 2 * baseline.seconds, (cost, baseline)
    assert cost.graph_bytes <= baseline.graph_bytes / 10, (cost, baseline)
    audit = (tmp_path / "bot" / "audit.jsonl").read_bytes().splitlines()
    assert len(audit) == 100_000 - 100  # every event past the limit refused and audited
