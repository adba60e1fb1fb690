"""Population models in versions of event time (operators/learning/population.py): tallies
made apart add up alike however grouped, and a version is the same to the last bit."""

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.learning.population import (
    Learner,
    Tally,
    boundary,
    build,
    period_of,
    tally,
    version_for,
)
from operators.model.records import Scored
from tests.learning import learning_policy

LEARNING = learning_policy().learning
assert LEARNING is not None
HOUR = 3_600_000
EVERY = HOUR
START = 1_795_000_000_000 - 1_795_000_000_000 % HOUR


def trial(n, at, channel="email", template="t", reward=0.0, action="nudge"):
    return Scored(
        f"cus_{n % 7}", f"a-{n}", action, channel, template, at - HOUR, at, reward, (), False
    )


trials = st.lists(
    st.builds(
        trial,
        st.integers(0, 10_000),
        st.integers(START, START + 12 * HOUR),
        st.sampled_from(["email", "push", "sms"]),
        st.sampled_from(["t", "t-short"]),
        st.sampled_from([0.0, 1.0, 0.5, 0.1, 3.0]),
    ),
    max_size=60,
)


def combined(parts):
    whole: dict[int, Tally] = {}
    for part in parts:
        for period, counted in part.items():
            whole.setdefault(period, Tally(period)).absorb(counted)
    return whole


@settings(max_examples=60, deadline=None)
@given(trials, st.integers(1, 4), st.randoms(use_true_random=False))
def test_tallies_made_apart_give_the_same_version_to_the_last_bit(scored, parts, rng):
    """Each process (or partition) tallies its own customers' trials; however the trials are
    spread, and in whatever order the partial tallies are added, the version is the same."""
    whole = tally(scored, EVERY)
    spread: list[list[Scored]] = [[] for _ in range(parts)]
    for one in scored:
        spread[rng.randrange(parts)].append(one)
    partial = [tally(part, EVERY) for part in spread]
    rng.shuffle(partial)
    version = version_for(START + 13 * HOUR + 5, EVERY)
    assert build(LEARNING, combined(partial), version, EVERY) == build(
        LEARNING, whole, version, EVERY
    )


def test_a_decision_uses_the_version_of_the_period_before_its_own():
    """Trials closing in the decision's own period are not in it: they could still be
    scored elsewhere in the cluster."""
    now = START + 5 * HOUR + 10
    version = version_for(now, EVERY)
    assert boundary(version, EVERY) == START + 4 * HOUR
    scored = [trial(1, START + 3 * HOUR + 1, reward=1.0), trial(2, START + 4 * HOUR, reward=1.0)]
    model = build(LEARNING, tally(scored, EVERY), version, EVERY)
    assert model.trials == 1
    assert model.arms[("channel", "", "email", "")] == (1.0, 1.0)


def test_older_periods_fade_by_the_half_life_from_their_end_to_the_boundary():
    half = LEARNING.half_life
    at = START + 3 * half
    scored = [trial(1, at - half - 1, reward=1.0), trial(2, at - 1, reward=0.0)]
    model = build(LEARNING, tally(scored, EVERY), period_of(at, EVERY), EVERY)
    trials, reward = model.arms[("channel", "", "email", "")]
    assert trials == 1.5
    assert reward == 0.5


def test_an_arm_nothing_is_known_of_is_worth_the_prior_and_a_known_one_moves_toward_its_rate():
    scored = [trial(n, START + HOUR, channel="push", reward=1.0) for n in range(20)]
    model = build(LEARNING, tally(scored, EVERY), version_for(START + 3 * HOUR, EVERY), EVERY)
    unknown, trials, _ = model.estimate(LEARNING, ("channel", "", "sms", ""))
    assert (unknown, trials) == (LEARNING.prior_reward, 0.0)
    known, _, _ = model.estimate(LEARNING, ("channel", "", "push", ""))
    assert LEARNING.prior_reward < known < 1.0


def test_a_split_counts_each_trial_within_its_customers_feature():
    scored = [
        replace(trial(1, START + HOUR, reward=1.0), feature="region=eu"),
        replace(trial(2, START + HOUR), feature="region=us"),
    ]
    model = build(LEARNING, tally(scored, EVERY), version_for(START + 3 * HOUR, EVERY), EVERY)
    assert model.arms[("channel", "", "email", "region=eu")] == (1.0, 1.0)
    assert model.arms[("channel", "", "email", "region=us")] == (1.0, 0.0)
    assert ("channel", "", "email", "") not in model.arms


def test_rewards_count_in_millionths_so_their_sum_is_exact():
    scored = [trial(n, START + HOUR, reward=0.1) for n in range(10)]
    shuffled = scored[:]
    random.Random(3).shuffle(shuffled)
    one, other = tally(scored, EVERY), tally(shuffled, EVERY)
    count = one[period_of(START + HOUR, EVERY)].arms[("channel", "", "email", "")]
    assert count.reward == 1_000_000
    assert one == other


def test_a_population_split_by_an_attribute_the_policy_lacks_or_of_no_period_is_refused():
    from operators.policy.load import PolicyError, load_policy
    from tests.learning import LEARNING as SECTION
    from tests.learning import POLICY

    bad = SECTION + "  population: {every: 0h, by: planet}\n"
    try:
        load_policy(POLICY + bad, "bad")
    except PolicyError as err:
        text = str(err)
    else:
        raise AssertionError("refused")
    assert "learning.population.every" in text and "must be longer than 0" in text
    assert "learning.population.by" in text and "names no attribute: 'planet'" in text
    good = load_policy(
        POLICY + SECTION + "  population: {every: 1d, by: region}\n"
        "attributes:\n  region: context.region\n",
        "good",
    ).learning
    assert good is not None
    assert (good.population_every, good.population_by) == (86_400_000, ("region",))


def test_a_split_by_several_names_a_value_of_each_in_the_policys_order():
    """``by: [region, signal]``: a decision's split is the customer's region and the signal
    that opened its moment; an attribute the customer lacks is empty; a name that is no
    attribute is refused, and ``signal`` cannot be an attribute's name too."""
    from operators.learning.evidence import split_of
    from operators.model.state import AttributeWord, CustomerState
    from operators.policy.load import PolicyError, load_policy
    from tests.learning import LEARNING as SECTION
    from tests.learning import POLICY

    attributes = "attributes:\n  region: context.region\n  tier: properties.tier\n"
    learning = load_policy(
        POLICY + SECTION + "  population: {every: 1d, by: [region, signal, tier]}\n" + attributes,
        "split",
    ).learning
    assert learning is not None and learning.population_by == ("region", "signal", "tier")
    state = CustomerState("c-1")
    state.attributes = (AttributeWord("region", "north", 0),)
    assert split_of(learning, state, "browsing") == "region=north,signal=browsing,tier="
    one = load_policy(POLICY + SECTION + "  population: {every: 1d}\n", "one").learning
    assert one is not None and split_of(one, state, "browsing") is None

    for by, said in [
        ("[region, planet]", "learning.population.by.1 (line 27): names no attribute: 'planet'"),
        ("[]", "learning.population.by"),
        ("[region, region]", "learning.population.by"),
    ]:
        try:
            population = f"  population: {{every: 1d, by: {by}}}\n"
            load_policy(POLICY + SECTION + population + attributes, "b")
        except PolicyError as err:
            assert said in str(err), str(err)
        else:
            raise AssertionError(f"by: {by} refused")
    try:
        load_policy(
            POLICY + SECTION + "  population: {every: 1d, by: signal}\n"
            "attributes:\n  signal: context.signal\n",
            "clash",
        )
    except PolicyError as err:
        assert "learning.population.by" in str(err) and "rename the attribute" in str(err)
    else:
        raise AssertionError("an attribute called signal, split by signal: refused")


def test_a_trial_of_a_period_already_made_counts_in_the_first_period_still_open():
    """After a --stop-at-end run, the next may read input stamped before that end: the trials
    it scores do not change a version already made (every process has it), they count in
    the first period still open."""
    first = period_of(START, EVERY)
    learner = Learner(EVERY, workers=1)
    learner.add(trial(1, START + HOUR // 2))
    learner.ack(0, START + 3 * HOUR)
    made = learner.complete()
    assert made is not None and made.latest == first + 2 and made.trials == 1
    assert [t.period for t in made.tallies] == [first]
    learner.add(trial(2, START + HOUR // 2))  # late: of period 0, made already
    learner.add(trial(3, START + 3 * HOUR + 1))
    learner.ack(0, START + 5 * HOUR)
    later = learner.complete()
    assert later is not None and later.latest == first + 4
    counted = {t.period: t.arms[("channel", "", "email", "")].trials for t in later.tallies}
    assert counted == {first + 2: 1, first + 3: 1}
