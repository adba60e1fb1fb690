"""Population models through `concierge replay`: a new customer starts from what the
customers of their region answered, not from the policy's order."""

import jsonschema

import schemas
from flows.commands.explain import learning_words
from operators.model.timefmt import format_ms, parse_ms
from tests.conftest import event_dict, write_jsonl
from tests.learning import DAY, POLICY, START, actions_of, customer_of
from tests.scenarios.conftest import concierge

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
    "  choose: [channel]\n",
    "  choose: [channel]\n  population: {every: 1d, by: [region, signal]}\n",
)
SPLIT = "region=north,signal=browsing"


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
    channels = [a["channel"] for a in actions_of(result) if customer_of(a) == 99]
    decision = next(
        d for d in result.lines("decisions.jsonl") if d["triggered_by"] == ["view-99-3"]
    )
    assert concierge("report", str(result.out)).returncode == 0
    return channels, decision, (result.out / "report.html").read_text()


def test_a_new_customer_starts_from_what_their_region_answers(tmp_path, replay):
    alone, decision, page = first_channel_of_a_newcomer(tmp_path / "own", replay, LEARNING)
    assert alone == ["email"]
    assert "population" not in decision["learning"]
    assert "each arm by the population model" not in page
    pooled, decision, page = first_channel_of_a_newcomer(tmp_path / "pop", replay, POPULATION)
    assert pooled == ["push"]

    # The decision says which version it used (day 2's: it counts the trials of days 0 and 1,
    # whose windows closed a whole day before), the customer's split, and what the region's
    # sends say of each channel: push, all clicked, email, never.
    jsonschema.validate(decision, schemas.load("decision"))
    learned = decision["learning"]
    assert learned["population"] == {"model": format_ms(START + 2 * DAY), "split": SPLIT}
    arms = {arm["arm"]: arm for arm in learned["channel"]["arms"]}
    assert arms["push"]["trials"] == arms["email"]["trials"] == 0  # a newcomer's own: none
    push, email = arms["push"]["population"], arms["email"]["population"]
    # day 0's twenty sends on email, faded by a day of the 30-day half-life; day 1's on push
    assert email["trials"] == round(20 * 0.5 ** (1 / 30), 2) and push["trials"] == 20
    assert push["estimate"] > 0.8 > 0.2 > email["estimate"]
    assert arms["push"]["estimate"] > arms["email"]["estimate"]
    told = learning_words(learned)
    assert "push over email" in told
    assert f"none of theirs, toward the population's {push['estimate']:.2f} of" in told
    assert f"population model of {format_ms(START + 2 * DAY)} for {SPLIT}" in told

    # The report charts what each version said of each arm, and which versions were used:
    # day 0's decisions used the version of the day before the input, day 3's day 2's.
    assert "each arm by the population model" in page
    assert f"channel push, {SPLIT}" in page
    assert "4, 2026-11-01 to 2026-11-04" in page
