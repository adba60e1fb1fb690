"""Capacity shared by every customer (operators/decisions/capacity.py): paces never let more
leave in an interval than their limit, budgets fall through to the next best candidate,
and the same requests get the same answers however they arrive."""

import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.decisions.capacity import Barrier, Candidate, Owner, Refusal, Refused, Request
from operators.model.timefmt import parse_ms
from operators.policy.compiled import Budget, Pace, Period

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
EIGHT = parse_ms("2026-11-20T08:00:00Z")
PUSH = Pace("push", limit=3, every=MINUTE)
AGENTS = Budget("agents", limit=2, period=Period(every=DAY))


def candidate(
    value=10.0, channel="push", paces=("push",), budgets=(), min_value=0.0, half_life=HOUR
):
    return Candidate("nudge", channel, value, min_value, half_life, paces, budgets)


def request(n, at, *candidates, klass="marketing"):
    return Request(at, f"cus_{n}", "browse_intent", klass, candidates or (candidate(),))


def test_a_backlog_at_one_instant_leaves_at_the_pace_highest_value_first():
    """The morning after quiet hours: ten sends fall due at 08:00 on a pace of three a
    minute; they leave three a minute, the most valuable first."""
    capacity = Owner([PUSH], [])
    backlog = [request(n, EIGHT, candidate(value=float(n + 1))) for n in range(10)]
    answers = capacity.answer(reversed(backlog))
    leaves = {a.request.customer: a.send_at for a in answers}
    assert [leaves[f"cus_{n}"] for n in (9, 8, 7)] == [EIGHT] * 3
    assert [leaves[f"cus_{n}"] for n in (6, 5, 4)] == [EIGHT + MINUTE] * 3
    assert leaves["cus_0"] == EIGHT + 3 * MINUTE


def test_a_send_over_the_pace_is_paced_out_once_its_value_would_decay_below_its_minimum():
    capacity = Owner([Pace("push", limit=1, every=HOUR)], [])
    first, late = capacity.answer(
        [
            request(1, EIGHT, candidate(value=10.0, min_value=6.0)),
            request(2, EIGHT + MINUTE, candidate(value=10.0, min_value=6.0)),
        ]
    )
    assert first.granted == 0 and first.send_at == EIGHT
    # the next hour's slot is 59 minutes away: 10 halves to 5.0 in an hour, below 6.0
    assert late.granted is None and late.send_at is None
    assert late.refused == (Refused(0, Refusal.PACED_OUT, "push"),)


def test_a_spent_budget_falls_through_to_the_next_best_candidate():
    capacity = Owner([], [AGENTS])
    callback = candidate(channel="agent", paces=(), budgets=("agents",))
    email = candidate(channel="email", paces=())
    answers = capacity.answer(request(n, EIGHT + n, callback, email) for n in range(3))
    assert [a.granted for a in answers] == [0, 0, 1]
    assert answers[2].refused == (Refused(0, Refusal.OVER_BUDGET, "agents"),)
    # the next day, the budget has room again
    (tomorrow,) = capacity.answer([request(4, EIGHT + DAY, callback, email)])
    assert tomorrow.granted == 0


def test_a_reserved_share_is_kept_for_its_class():
    """Half of four callbacks a day is kept for care: marketing gets two, care the rest."""
    budget = Budget("agents", 4, Period(every=DAY), reserve={"care": 0.5})
    capacity = Owner([], [budget])
    callback = candidate(channel="agent", paces=(), budgets=("agents",))
    marketing = capacity.answer(request(n, EIGHT + n, callback) for n in range(3))
    assert [a.granted for a in marketing] == [0, 0, None]
    care = capacity.answer(request(n, EIGHT + 10 + n, callback, klass="care") for n in range(3))
    assert [a.granted for a in care] == [0, 0, None]


def test_a_callback_asked_outside_the_agent_shift_waits_for_it_while_worth_it():
    london = ZoneInfo("Europe/London")
    shift = Budget("shift", 10, Period(zone=london, opens=9 * 60, closes=17 * 60))
    capacity = Owner([], [shift])
    callback = candidate(channel="agent", paces=(), budgets=("shift",), min_value=6.0)
    lasting = candidate(channel="agent", paces=(), budgets=("shift",), half_life=100 * HOUR)
    before, during, evening = capacity.answer(
        [
            request(1, parse_ms("2026-11-20T08:59:00Z"), callback),
            request(2, parse_ms("2026-11-20T09:00:00Z"), callback),
            request(3, parse_ms("2026-11-20T18:00:00Z"), lasting),
        ]
    )
    assert (before.granted, before.send_at) == (0, parse_ms("2026-11-20T09:00:00Z"))
    assert (during.granted, during.send_at) == (0, parse_ms("2026-11-20T09:00:00Z"))
    assert evening.send_at == parse_ms("2026-11-21T09:00:00Z")  # the next morning
    # one whose value would decay below its min_value before the shift opens is refused
    (late,) = capacity.answer([request(4, parse_ms("2026-11-20T19:00:00Z"), callback)])
    assert late.granted is None and late.refused == (Refused(0, Refusal.OVER_BUDGET, "shift"),)


def test_a_send_delayed_by_its_pace_counts_in_the_budget_period_it_leaves_in():
    capacity = Owner([Pace("agent", limit=1, every=HOUR)], [AGENTS])
    callback = candidate(channel="agent", paces=("agent",), budgets=("agents",))
    midnight = parse_ms("2026-11-21T00:00:00Z")
    answers = capacity.answer(request(n, midnight - HOUR, callback) for n in range(3))
    assert [a.send_at for a in answers] == [midnight - HOUR, midnight, midnight + HOUR]
    assert [a.granted for a in answers] == [0, 0, 0]  # one yesterday, two today
    (third_today,) = capacity.answer([request(9, midnight + HOUR, callback)])
    assert third_today.granted is None


demand = st.lists(
    st.tuples(
        st.integers(0, 40),  # minutes past 08:00
        st.floats(1.0, 100.0),  # value
        st.sampled_from(["push", "agent"]),
        st.sampled_from(["care", "marketing"]),
    ),
    min_size=1,
    max_size=80,
)


def requests_of(drawn):
    def one(n, minutes, value, channel, klass):
        paces = (channel,)
        budgets = ("agents",) if channel == "agent" else ()
        first = Candidate("act", channel, value, 1.0, HOUR, paces, budgets)
        fallback = Candidate("act", "email", value / 2, 1.0, HOUR)
        return Request(EIGHT + minutes * MINUTE, f"cus_{n}", "k", klass, (first, fallback))

    return [one(n, *drawn_one) for n, drawn_one in enumerate(drawn)]


def owner():
    paces = [Pace("push", 3, MINUTE), Pace("agent", 2, 10 * MINUTE)]
    budget = Budget("agents", 5, Period(every=DAY), reserve={"care": 0.4})
    return Owner(paces, [budget])


@settings(max_examples=80, deadline=None)
@given(demand, st.randoms(use_true_random=False))
def test_no_interval_holds_more_than_its_pace_and_arrival_order_changes_nothing(drawn, rng):
    requests = requests_of(drawn)
    answers = owner().answer(requests)
    shuffled = list(requests)
    rng.shuffle(shuffled)
    # answered in batches as the barrier passes each instant, each batch shuffled
    batched = owner()
    again = []
    for at in sorted({r.at for r in requests}):
        batch = [r for r in shuffled if r.at == at]
        again.extend(batched.answer(batch))
    assert again == answers
    per_interval: dict[tuple[str, int], int] = {}
    for answer in answers:
        if answer.granted is None:
            continue
        chosen = answer.request.candidates[answer.granted]
        assert answer.send_at is not None and answer.send_at >= answer.request.at
        for name in chosen.paces:
            every = {"push": MINUTE, "agent": 10 * MINUTE}[name]
            slot = (name, answer.send_at // every)
            per_interval[slot] = per_interval.get(slot, 0) + 1
    limits = {"push": 3, "agent": 2}
    assert all(n <= limits[name] for (name, _), n in per_interval.items())


@settings(max_examples=40, deadline=None)
@given(demand, st.integers(0, 80))
def test_an_owner_resumed_from_its_counts_answers_as_an_unbroken_one(drawn, cut):
    requests = sorted(requests_of(drawn), key=Request.order)
    times = sorted({r.at for r in requests})
    split = times[min(cut, len(times) - 1)]
    unbroken = owner().answer(requests)
    first = owner()
    before = first.answer(r for r in requests if r.at < split)
    snapshot = first.counts()
    first.answer([request(999, split, candidate())])  # counted after the snapshot: lost
    resumed = Owner(first.paces.values(), first.budgets.values(), snapshot)
    after = resumed.answer(r for r in requests if r.at >= split)
    assert before + after == unbroken


def test_ties_at_one_instant_and_value_break_alike_everywhere():
    same = [request(n, EIGHT, candidate(value=5.0)) for n in range(6)]
    orders = [owner().answer(random.Random(seed).sample(same, len(same))) for seed in range(5)]
    assert all(answers == orders[0] for answers in orders)


def test_a_weekly_budget_starts_again_on_monday_in_its_time_zone():
    tokyo = ZoneInfo("Asia/Tokyo")
    weekly = Budget("weekly", 1, Period(days=7, zone=tokyo))
    capacity = Owner([], [weekly])
    offer = candidate(channel="email", paces=(), budgets=("weekly",))
    sunday, still_sunday, monday = capacity.answer(
        [
            request(1, parse_ms("2026-11-22T14:00:00Z"), offer),  # Sunday 23:00 in Tokyo
            request(2, parse_ms("2026-11-22T14:30:00Z"), offer),
            request(3, parse_ms("2026-11-22T15:00:00Z"), offer),  # Monday 00:00 in Tokyo
        ]
    )
    assert [sunday.granted, still_sunday.granted, monday.granted] == [0, None, 0]


CAPACITY = """
capacity:
  paces:
    push: {limit: 100, per: 1m}
    nudge: {limit: 50, per: 1h}
  budgets:
    shift: {channel: email, limit: 40, per: day, hours: "09:00-17:00", timezone: Europe/London,
            reserve: {marketing: 0.5}}
    weekly: {action: nudge, limit: 500, per: week}
    hourly: {category: marketing, limit: 20, per: 6h}
"""


def test_the_capacity_section_compiles_to_paces_and_budgets_by_what_they_count():
    from operators.policy.load import load_policy
    from tests.learning import POLICY

    capacity = load_policy(POLICY + CAPACITY, "capacity").capacity
    assert capacity is not None
    assert [(p.name, p.limit, p.every) for p in capacity.paces] == [
        ("push", 100, MINUTE),
        ("nudge", 50, HOUR),
    ]
    shift, weekly, hourly = capacity.budgets
    assert shift.period == Period(days=1, zone=ZoneInfo("Europe/London"), opens=540, closes=1020)
    assert dict(shift.reserve) == {"marketing": 0.5}
    assert weekly.period == Period(days=7, zone=ZoneInfo("UTC"))
    assert hourly.period == Period(every=6 * HOUR)
    assert capacity.paces_of("nudge", "push") == ("push", "nudge")
    assert capacity.paces_of("nudge", "email") == ("nudge",)
    assert capacity.budgets_of("nudge", "email", "marketing") == ("shift", "weekly", "hourly")
    assert capacity.budgets_of("other", "push", "care") == ()


def test_a_capacity_section_naming_what_the_policy_lacks_is_refused_with_each_reason():
    from operators.policy.load import PolicyError, load_policy
    from tests.learning import POLICY

    bad = """
capacity:
  paces:
    fax: {limit: 1, per: 1m}
    email: {limit: 1, per: 0s}
  budgets:
    two: {channel: email, action: nudge, limit: 1, per: day}
    none: {channel: pigeon, limit: 1, per: day, timezone: Mars/Olympus}
    night: {channel: email, limit: 1, per: week, hours: "18:00-08:00"}
    greedy: {channel: email, limit: 1, per: day, reserve: {care: 0.6, marketing: 0.6}}
"""
    with pytest.raises(PolicyError) as refused:
        load_policy(POLICY + bad, "bad")
    text = str(refused.value)
    for said in [
        "capacity.paces.fax",
        "names neither a channel nor an action: 'fax'",
        "capacity.paces.email.per",
        "capacity.budgets.two",
        "name one",
        "names no channel: 'pigeon'",
        "unknown time zone 'Mars/Olympus'",
        "an agent shift's hours need `per: day`",
        "names no category: 'care'",
        "add up to more than 1",
    ]:
        assert said in text, said


def test_the_barrier_answers_a_request_only_once_every_worker_has_answered_past_it():
    barrier = Barrier(owner(), workers=2)
    barrier.ask(request(1, EIGHT))
    barrier.ack(0, EIGHT + MINUTE)
    assert barrier.due() == []  # worker 1 may still send one at 08:00
    barrier.ack(1, EIGHT)
    assert barrier.due() == []  # nothing before 08:00 is all it promises
    barrier.ask(request(2, EIGHT, candidate(value=50.0)))  # a later arrival, of more value
    barrier.ack(1, EIGHT + 1)
    answered = barrier.due()
    assert [a.request.customer for a in answered] == ["cus_2", "cus_1"]
    assert barrier.waiting == []


@settings(max_examples=60, deadline=None)
@given(demand, st.randoms(use_true_random=False))
def test_requests_and_acks_interleaved_any_way_get_the_answers_of_one_batch(drawn, rng):
    """Two workers send their requests in time order, each acking as it goes; however their
    messages interleave, and wherever a snapshot is taken and resumed, the answers are
    those of every request answered at once."""
    requests = sorted(requests_of(drawn), key=Request.order)
    expected = owner().answer(requests)
    streams = {0: [], 1: []}
    for r in requests:
        streams[rng.randrange(2)].append(r)
    messages = []
    for worker, mine in streams.items():
        for r in mine:
            messages.append((worker, r))
            messages.append((worker, r.at))  # acks at a request's time promise nothing of it
        messages.append((worker, EIGHT + DAY))
    merged, cursors = [], {0: 0, 1: 0}
    per_worker = {w: [m for m in messages if m[0] == w] for w in (0, 1)}
    while any(cursors[w] < len(per_worker[w]) for w in (0, 1)):
        worker = rng.choice([w for w in (0, 1) if cursors[w] < len(per_worker[w])])
        merged.append(per_worker[worker][cursors[worker]])
        cursors[worker] += 1
    barrier = Barrier(owner(), workers=2)
    answers = []
    cut = rng.randrange(len(merged) + 1)
    for n, (worker, item) in enumerate(merged):
        if n == cut:  # resumed from a snapshot (what came after it is sent again)
            counts, waiting, acked = barrier.snapshot()
            resumed = Owner(barrier.owner.paces.values(), barrier.owner.budgets.values(), counts)
            barrier = Barrier(resumed, 2, waiting, acked)
        if isinstance(item, Request):
            barrier.ask(item)
        else:
            barrier.ack(worker, item)
        answers.extend(barrier.due())
    assert answers == expected


def test_a_decision_asks_for_its_winner_then_its_other_channels_and_nothing_when_unpaced():
    """A nudge that would go by email asks for email, then push; a policy whose capacity
    counts nothing of it asks nothing (it is sent at once, as without capacity)."""
    from operators.decisions.decide import _verdicts, capacity_request
    from operators.model.state import CustomerState, MomentKey, OpenMoment
    from operators.policy.load import load_policy
    from tests.learning import POLICY

    def asked(capacity):
        policy = load_policy(POLICY + capacity, "capacity")
        state = CustomerState("cus_1")
        key = MomentKey("interest", None)
        state.moments[key] = OpenMoment(10.0, EIGHT, "ev-1", ("browsing",), ("ev-1",))
        verdicts = _verdicts(policy, state, [key], EIGHT)
        winner = next(v for v in verdicts if v.outcome.value == "sent")
        asked = capacity_request(policy, state, verdicts, winner, EIGHT)
        return winner.channel, asked[0] if asked is not None else None

    channel, request = asked("capacity:\n  paces: {email: {limit: 1, per: 1m}}\n")
    assert channel == "email" and request is not None
    assert (request.at, request.customer, request.key, request.klass) == (
        EIGHT,
        "cus_1",
        "interest|",
        "marketing",
    )
    assert [(c.action, c.channel, c.paces) for c in request.candidates] == [
        ("nudge", "email", ("email",)),
        ("nudge", "push", ()),
    ]
    assert request.candidates[0].value == 10.0 and request.candidates[0].min_value == 1.0
    assert asked("capacity:\n  paces: {push: {limit: 1, per: 1m}}\n")[1] is None
