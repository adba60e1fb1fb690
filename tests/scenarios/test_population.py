"""Population models through `concierge replay`: a new customer starts from what the
customers of their region answered, not from the policy's order."""

from operators.model.timefmt import format_ms, parse_ms
from tests.conftest import event_dict, write_jsonl
from tests.learning import DAY, POLICY, START, actions_of, customer_of

LEARNING = """
learning:
  rewards: {clicked: 1}
  window: 2h
  half_life: 30d
  explore: 0
  prior: {reward: 0.5, trials: 2}
  control: 0
  salt: population-test
  choose: [channel]
attributes:
  region: context.region
"""
POPULATION = LEARNING.replace(
    "  choose: [channel]\n", "  choose: [channel]\n  population: {every: 1d, by: region}\n"
)


def view(n, day, region, hour=10):
    at = format_ms(START + day * DAY + hour * 3_600_000 + n * 1_000)
    record = event_dict(
        "product_view", at, {"product_id": "p-1"}, f"view-{n}-{day}", email=f"c{n}@example.com"
    )
    record["context"] = {"region": region}
    return record


def click(action):
    at = format_ms(parse_ms(action["decided_at"]) + 3_600_000)
    record = event_dict(
        "feedback", at, {"action_id": action["action_id"], "outcome": "clicked"}, f"c-{at}"
    )
    record.pop("identifiers")
    return record


def first_channel_of_a_newcomer(tmp_path, replay, learning):
    """Twenty northern customers, who click push and never email, for four days; then a new
    northern customer's first send."""
    tmp_path.mkdir()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY + learning)
    views, answers = [], []
    for day in range(4):
        views += [view(n, day, "north") for n in range(20)]
        story = sorted([*views, *answers], key=lambda e: e["timestamp"])
        result = replay(write_jsonl(tmp_path / f"day-{day}.jsonl", story), policy=policy)
        assert result.returncode == 0, result.stderr
        today = [a for a in actions_of(result) if (parse_ms(a["decided_at"]) - START) // DAY == day]
        answers += [click(a) for a in today if a["channel"] == "push"]
    newcomer = view(99, 3, "north", hour=15)
    story = sorted([*views, *answers, newcomer], key=lambda e: e["timestamp"])
    result = replay(write_jsonl(tmp_path / "newcomer.jsonl", story), policy=policy)
    assert result.returncode == 0, result.stderr
    return [a["channel"] for a in actions_of(result) if customer_of(a) == 99]


def test_a_new_customer_starts_from_what_their_region_answers(tmp_path, replay):
    assert first_channel_of_a_newcomer(tmp_path / "own", replay, LEARNING) == ["email"]
    assert first_channel_of_a_newcomer(tmp_path / "pop", replay, POPULATION) == ["push"]
