"""Invariants over random event streams (hypothesis): whatever a customer does, in whatever
order the events arrive and across a merge of two profiles, no cap is exceeded, no marketing
goes out without consent or inside a complaint or sensitive suppression, no action is sent
twice, and a journey restored from a snapshot mid-stream decides as it would have.

The references judge each output by the events the journey had received when it produced
it. One known gap (an xfail test below) is kept out of the random streams: an older consent
word arriving after a newer one."""

import pickle
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.journey import Journey
from operators.model.handover import Adopt, Retire
from operators.model.records import Action, Decision, Event, Origin, Outcome
from operators.model.state import CustomerState
from operators.model.state_records import state_from_record, state_to_record
from tests.measurement import holding_out

MINUTE = 60_000
DAY = 1440 * MINUTE
START = 1_790_000_000_000  # 2026-09-21
TAIL = 60 * DAY
"""How long the timers run on after the last event."""
ZONES = ("Europe/Madrid", "Asia/Tokyo", "America/New_York")
CHANNELS = ("*", "email", "sms", "push")
SENSITIVE = ("my son died", "in hospital")
TEXTS = (*["slow delivery", "where is it", "it came broken"] * 3, *SENSITIVE)
views = st.tuples(st.just("product_view"), st.sampled_from(["p-1", "p-2", "p-3"]))
searches = st.tuples(st.just("help_search"), st.none())
failures = st.tuples(st.just("payment_failed"), st.none())
loans = st.tuples(st.just("loan_eligibility_check"), st.none())
checkouts = st.tuples(st.just("checkout_started"), st.none())
purchases = st.tuples(st.just("purchase"), st.sampled_from(["p-1", "p-2", None]))
zones = st.sampled_from(ZONES)
words = st.tuples(st.just("consent_changed"), st.tuples(st.sampled_from(CHANNELS), st.booleans()))


def contacts(texts):
    return st.tuples(st.sampled_from(["complaint", "support_contact"]), st.sampled_from(texts))


BUSY = (
    (1, 5, 10, 20, 30, 60, 120),
    st.sampled_from([0.0] * 8 + [0.05, 0.5, 0.8, 3.0]),
    st.one_of(
        *[failures] * 5,
        *[searches] * 2,
        *[views] * 3,
        contacts(SENSITIVE),
        contacts(TEXTS),
        loans,
        checkouts,
        purchases,
        words,
    ),
)
"""A busy customer: events minutes apart, often out of order, and many sends in a day,
of a service and of care (payments failing, a contact about a bereavement), to fill the
daily caps; ..."""
SLOW = (
    (1, 5, 20, 60, 300, 1440, 4 * 1440),
    st.sampled_from([0.0] * 8 + [0.01, 0.1, 0.8, 3.0, 10.0]),
    st.one_of(
        *[views] * 8,
        *[searches] * 2,
        *[failures] * 4,
        contacts(TEXTS),
        loans,
        checkouts,
        purchases,
        words,
        words,
    ),
)
"""... and one seen every few days, whose timers fire (inactive, cart abandoned) and who
gets marketing (a complaint, which keeps it away for weeks, is not in every stream)."""


def paced(delayed=False, min_size=20, max_size=80, count=1):
    """Lists of (step, gap in minutes, time zone[, delay]), of one pace (``count`` lists of
    the same pace: one person's profiles). The delay: how long after its time an event
    arrives, in allowed latenesses (mostly at once, some out of order within the lateness,
    some far enough behind the input's clock to be late)."""

    def of_pace(pace):
        gaps, delays, steps = pace
        parts = (steps, st.sampled_from(gaps), zones, *([delays] if delayed else []))
        one = st.lists(st.tuples(*parts), min_size=min_size, max_size=max_size)
        return one if count == 1 else st.tuples(*[one] * count)

    return st.sampled_from([BUSY, SLOW]).flatmap(of_pace)


streams = paced()
disordered_streams = paced(delayed=True)
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def events_of(stream, prefix="e", start=START, grant=True):
    """The events of ``stream`` in time order, each with its delivery delay (in allowed
    latenesses; 0 for a stream without delays). ``prefix`` keeps event ids apart."""
    t = start
    timed = []
    if grant:
        timed.append((Event(f"{prefix}-grant", "consent_changed", t, {}, {}, GRANT, Origin()), 0))
    for n, ((kind, detail), gap, zone, *delay) in enumerate(stream):
        t += gap * MINUTE
        properties: dict = {}
        if kind in ("product_view", "purchase") and detail is not None:
            properties["product_id"] = detail
        elif kind in ("complaint", "support_contact"):
            properties["text"] = detail
        elif kind == "consent_changed":
            channel, granted = detail
            properties = {"purpose": "marketing", "channel": channel, "granted": granted}
        event = Event(f"{prefix}-{n}", kind, t, {}, {"timezone": zone}, properties, Origin())
        timed.append((event, delay[0] if delay else 0))
    return timed


def by_channel(event):
    return event.properties["channel"]


def deliver(policy, timed, word_key=by_channel):
    """The events in the order they arrive, each ``delay`` allowed latenesses after its time
    (:func:`ingested`). Consent words with the same ``word_key`` arrive in their time order:
    an older word that arrives after a newer one on the same key overrides it (the xfail
    test below)."""
    keyed = []
    last: dict[str, int] = {}
    for n, (event, delay) in enumerate(sorted(timed, key=lambda pair: pair[0].time)):
        arrives = event.time + int(delay * policy.allowed_lateness)
        if event.type == "consent_changed":
            arrives = last[word_key(event)] = max(arrives, last.get(word_key(event), arrives))
        keyed.append(((arrives, n), event))
    return ingested(policy, [event for _, event in sorted(keyed, key=lambda pair: pair[0])])


def ingested(policy, arriving):
    """``arriving`` (in arrival order) as ingest hands them on: each with the input's clock
    when it was read (its watermark), marked late when further behind it than the allowed
    lateness."""
    clock = None
    delivered = []
    for event in arriving:
        clock = event.time if clock is None else max(clock, event.time)
        late = clock - event.time > policy.allowed_lateness
        delivered.append(replace(event, watermark=clock, late=late))
    return delivered


def clock_of(event):
    return max(event.time, event.watermark)


def receive(policy, journey, event):
    """``event`` reaching ``journey``: (what fell due before the input's clock reached it,
    which the journey fires before it takes the event in; what the event itself decided)."""
    fired = journey.fire_due(policy, clock_of(event), inclusive=False)
    return fired, journey.on_event(policy, event)


def run(policy, delivered, customer_id="cus_x"):
    """``delivered`` through one journey, then its timers: [(output, the events received
    when it was produced)]. (No stream here is idle for ``evict_idle_after``: nothing is
    forgotten.)"""
    journey = Journey(CustomerState(customer_id))
    produced = []
    for n, event in enumerate(delivered):
        fired, decided = receive(policy, journey, event)
        produced += [(o, delivered[:n]) for o in fired]
        produced += [(o, delivered[: n + 1]) for o in decided]
    until = max(e.time for e in delivered) + TAIL
    produced += [(o, delivered) for o in journey.fire_due(policy, until, inclusive=True)]
    assert journey.evicted == 0
    return produced


def latest_word(events, channel):
    """The reference: the latest consent word for ``channel`` (or ``*``) among ``events`` (in
    the order they arrived), by event time and then arrival: (time, granted), or None."""
    word = None
    for event in events:
        applies = event.type == "consent_changed" and event.properties["channel"] in ("*", channel)
        if applies and (word is None or event.time >= word[0]):
            word = (event.time, event.properties["granted"])
    return word


def merged_word(survivor, retired, since_merge, channel):
    """The reference after a merge: where both profiles said something, a grant only if
    both granted, as of the later word; then what the survivor received since, by time."""
    said = [w for w in (latest_word(survivor, channel), latest_word(retired, channel)) if w]
    word = (max(at for at, _ in said), all(g for _, g in said)) if said else None
    after = latest_word(since_merge, channel)
    if after is not None and (word is None or after[0] >= word[0]):
        word = after
    return word


def complained_within(events, at, days, text_only):
    """The reference: whether ``events`` hold a complaint (``text_only``: a sensitive
    contact) in the ``days`` before ``at``."""
    for event in events:
        if (
            event.type not in ("complaint", "support_contact")
            or not 0 <= at - event.time < days * DAY
        ):
            continue
        sensitive = event.properties["text"] in SENSITIVE
        if sensitive or (event.type == "complaint" and not text_only):
            return True
    return False


def check_caps(policy, actions, counts=lambda action: True):
    """Every rolling window of every cap that holds a send that ``counts`` holds at most the
    cap's sends (the windows ending at a send are the fullest)."""
    for cap in policy.caps:
        matching = [a for a in actions if cap.matches(a.action, a.channel, a.category)]
        for a in matching:
            inside = [
                b for b in matching if a.decided_at - cap.window < b.decided_at <= a.decided_at
            ]
            if any(counts(b) for b in inside):
                assert len({b.action_id for b in inside}) <= cap.max, (
                    f"{cap.name} exceeded at {a.decided_at}"
                )


def sent(produced):
    return [o for o, *_ in produced if isinstance(o, Action)]


def check_guardrails(
    produced, word_for=lambda action, received: latest_word(received, action.channel)
):
    """No marketing or retention action without a grant or inside a complaint or sensitive
    suppression of the events received by then (``produced``: [(output, received)]); the
    grant is ``word_for`` the action: by default the latest word received. No action id is
    sent twice."""
    actions = sent(produced)
    assert len({a.action_id for a in actions}) == len(actions), "an action sent twice"
    for output, received in produced:
        if not isinstance(output, Action) or output.category not in ("marketing", "retention"):
            continue
        word = word_for(output, received)
        assert word is not None and word[1], f"{output.action} without consent"
        assert not complained_within(received, output.decided_at, 14, text_only=False)
        assert not complained_within(received, output.decided_at, 90, text_only=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_the_guardrails_hold_for_any_stream(policy, stream):
    produced = run(policy, deliver(policy, events_of(stream)))
    check_caps(policy, sent(produced))
    check_guardrails(produced)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disordered_streams)
def test_the_guardrails_hold_when_events_arrive_out_of_order_or_late(policy, stream):
    """Decisions taken for an earlier event time still leave room in every later window;
    consent is the latest word received by then; a late event counts in no window but still
    changes consent and starts suppressions."""
    delivered = deliver(policy, events_of(stream))
    produced = run(policy, delivered)
    check_caps(policy, sent(produced))
    check_guardrails(produced)


crowded_streams = st.lists(
    st.one_of(
        st.tuples(failures, st.sampled_from([61, 90, 120, 240]), zones, st.just(0.0)),
        st.tuples(
            st.one_of(contacts(SENSITIVE), views, loans, words),
            st.sampled_from([1, 30, 90]),
            zones,
            st.sampled_from([0.2, 0.5, 0.9]),
        ),
    ),
    min_size=10,
    max_size=40,
)
"""A customer whose payments keep failing (a help offer every hour or more, in order),
with other events (a bereavement, products viewed, eligibility checks) arriving hours
behind the clock, when the sends after them may have filled a window they fall in."""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crowded_streams)
def test_a_decision_behind_the_clock_leaves_room_in_every_later_window(policy, stream):
    produced = run(policy, deliver(policy, events_of(stream)))
    check_caps(policy, sent(produced))
    check_guardrails(produced)


@pytest.mark.xfail(
    strict=True,
    reason="record_consent overwrites the word on a (purpose, channel) with whatever word "
    "arrives last, even one older by event time: an opt-out is undone by an older grant "
    "that arrives after it",
)
@pytest.mark.parametrize("late", [False, True], ids=["out_of_order", "late"])
def test_an_older_grant_that_arrives_after_an_opt_out_does_not_undo_it(policy, late):
    opt_out = {"purpose": "marketing", "channel": "*", "granted": False}
    older = 2 * DAY if late else 10 * MINUTE
    arrivals = [
        Event("no", "consent_changed", START, {}, {}, opt_out),
        Event("yes", "consent_changed", START - older, {}, {}, GRANT),
        *[
            Event(f"v-{n}", "product_view", START + n * MINUTE, {}, {}, {"product_id": "p-1"})
            for n in (1, 2, 3)
        ],
    ]
    journey = Journey(CustomerState("cus_x"))
    outputs = []
    for event in ingested(policy, arrivals):
        assert event.late == (late and event.event_id == "yes")
        outputs += journey.on_event(policy, event)
    assert not [o for o in outputs if isinstance(o, Action)]
    decisions = [(o.action, o.outcome) for o in outputs if isinstance(o, Decision)]
    assert decisions == [("product_nudge", Outcome.NO_CONSENT)]


def test_a_complaint_that_arrives_late_still_keeps_marketing_away_for_its_spell(policy):
    """A complaint on day 0 arrives late, after one on day 14 (a spell that starts an hour
    after the first one's ends); the third view of a product on day 13, within the lateness,
    opens a nudge inside the first complaint's 14 days."""
    day0 = START - START % DAY + 10 * 60 * MINUTE  # 10:00 UTC: no quiet hours in Madrid
    hour = 60 * MINUTE

    def view(n, at):
        return Event(f"v-{n}", "product_view", at, {}, {}, {"product_id": "p-1"})

    def complaint(name, at):
        return Event(name, "complaint", at, {}, {}, {"text": "slow delivery"})

    arrivals = [
        Event("yes", "consent_changed", day0, {}, {}, GRANT),
        view(1, day0 + 13 * DAY + hour),
        view(2, day0 + 13 * DAY + 2 * hour),
        complaint("later", day0 + 14 * DAY + hour),
        complaint("earlier", day0),
        view(3, day0 + 13 * DAY + 3 * hour),
    ]
    journey = Journey(CustomerState("cus_x"))
    outputs = []
    for event in ingested(policy, arrivals):
        assert event.late == (event.event_id == "earlier")
        outputs += journey.on_event(policy, event)
    assert not [o for o in outputs if isinstance(o, Action)]
    decisions = [(o.action, o.outcome, o.rule) for o in outputs if isinstance(o, Decision)]
    assert decisions == [("product_nudge", Outcome.SUPPRESSED, "after-complaint")]


def parts(state):
    return {name: getattr(state, name) for name in CustomerState.__slots__}


HOLDING_OUT_NUDGES = holding_out("0.9999999")
"""Nudges held out, other actions sent, purchases converting: every part of measurement's
state in play."""


@pytest.mark.parametrize("measuring", [False, True], ids=["reference", "measuring"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disordered_streams, st.integers(min_value=1, max_value=80))
def test_a_journey_restored_mid_stream_decides_as_if_it_had_not_stopped(
    policy, measuring, stream, cut
):
    """Recovery is snapshot and replay: a journey pickled mid-stream (a Bytewax snapshot), or
    whose context went through its record and back (a merge's transfer), goes on exactly as
    the one that kept running; and at every point of the stream the record holds the whole
    context."""
    policy = HOLDING_OUT_NUDGES if measuring else policy
    delivered = deliver(policy, events_of(stream))
    cut = min(cut, len(delivered) - 1)
    end = max(e.time for e in delivered) + TAIL

    def go_on(journey, events, until=None):
        outputs = []
        for event in events:
            outputs += journey.on_event(policy, event)
            assert parts(state_from_record(state_to_record(journey.state))) == parts(journey.state)
        if until is not None:
            outputs += journey.fire_due(policy, until, inclusive=True)
        return outputs

    journey = Journey(CustomerState("cus_x"))
    go_on(journey, delivered[:cut])
    snapshot = pickle.dumps(journey)
    record = state_to_record(journey.state)
    straight = go_on(journey, delivered[cut:], end)
    assert go_on(pickle.loads(snapshot), delivered[cut:], end) == straight
    assert go_on(Journey(state_from_record(record)), delivered[cut:], end) == straight


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    paced(delayed=True, min_size=15, max_size=60, count=2),
    st.booleans(),
    st.booleans(),
    st.integers(min_value=1, max_value=100),
    st.integers(min_value=0, max_value=3),
)
def test_the_guardrails_hold_across_a_merge_of_two_profiles(
    policy, streams, grant_s, grant_r, merge_at, held
):
    """Two profiles with their own streams merge at a random point as in production: the
    survivor is told to adopt and holds back what comes meanwhile, the retired profile
    hands its context over, the survivor folds it in and handles what it held; the rest of
    both streams goes to the survivor. Caps count the union of both profiles' sends,
    consent is the merge's (where both said something, a grant only if both granted; then
    the latest word), and nothing goes out under the retired id once it has handed over."""
    stream_s, stream_r = streams
    timed = events_of(stream_s, "s", START, grant_s)
    timed += events_of(stream_r, "r", START + 30_000, grant_r)
    delivered = deliver(policy, timed, word_key=lambda event: "every word")
    cut = 1 + merge_at % (len(delivered) - 1)
    journeys = {"s": Journey(CustomerState("cus_s")), "r": Journey(CustomerState("cus_r"))}
    received: dict[str, list[Event]] = {"s": [], "r": []}
    before: list = []  # (output, what its profile had received, profile) before the merge
    for event in delivered[:cut]:
        profile = event.event_id[0]
        fired, decided = receive(policy, journeys[profile], event)
        before += [(o, list(received[profile]), profile) for o in fired]
        received[profile].append(event)
        before += [(o, list(received[profile]), profile) for o in decided]

    at = delivered[cut - 1].watermark
    survivor, retired = journeys["s"], journeys["r"]
    outputs, handed = survivor.on_adopt(policy, Adopt("m-1", retired="cus_r", at=at))
    assert handed is None
    before += [(o, list(received["s"]), "s") for o in outputs]
    held_back = delivered[cut : cut + held]
    for event in held_back:
        assert survivor.on_event(policy, event) == [], "an event was not held back"
    outputs, transfer = retired.on_retire(policy, Retire("m-1", into="cus_s", at=at))
    assert transfer is not None and retired.retired
    before += [(o, list(received["r"]), "r") for o in outputs]

    # Once the context is in, the survivor handles the held events one by one, each after
    # the timers due before it: a copy that held only the first n tells which outputs came
    # before the next one was taken in.
    waiting = pickle.dumps(survivor)
    outputs, handed = survivor.on_transfer(policy, transfer)
    assert handed is None and not survivor.awaiting
    after: list = []  # (output, what the survivor had received since the merge)
    since_merge: list[Event] = []
    for n, event in enumerate(held_back):
        copy = pickle.loads(waiting)
        copy.queue = copy.queue[: n + 1]  # the merge at its head and n events
        taken_in = len(copy.on_transfer(policy, transfer)[0])
        taken_in += len(copy.fire_due(policy, clock_of(event), inclusive=False))
        after += [(o, list(since_merge)) for o in outputs[len(after) : taken_in]]
        since_merge.append(event)
    after += [(o, list(since_merge)) for o in outputs[len(after) :]]
    for event in delivered[cut + held :]:
        fired, decided = receive(policy, survivor, event)
        after += [(o, list(since_merge)) for o in fired]
        since_merge.append(event)
        after += [(o, list(since_merge)) for o in decided]
    until = max(e.time for e in delivered) + TAIL
    after += [(o, since_merge) for o in survivor.fire_due(policy, until, inclusive=True)]
    assert retired.fire_due(policy, until, inclusive=True) == []
    assert survivor.evicted == retired.evicted == 0

    for output, _ in after:
        assert output.customer_id == "cus_s", "an output under the retired id after the merge"
        if isinstance(output, Action):
            assert output.action_id.startswith("cus_s.")
    actions = sent(before) + sent(after)
    assert len({a.action_id for a in actions}) == len(actions)
    for profile in ("s", "r"):
        check_caps(policy, [o for o, _, p in before if p == profile and isinstance(o, Action)])
    sent_after = {a.action_id for a in sent(after)}
    check_caps(policy, actions, counts=lambda action: action.action_id in sent_after)
    check_guardrails([(o, seen) for o, seen, _ in before])
    old_s, old_r = received["s"], received["r"]
    check_guardrails(
        [(o, old_s + old_r + since) for o, since in after],
        lambda action, seen: merged_word(
            old_s, old_r, seen[len(old_s) + len(old_r) :], action.channel
        ),
    )
