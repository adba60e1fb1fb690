"""Fatigue: a customer who ignores what we send hears from us less
(operators/decisions/fatigue.py)."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.identity.merging import merge_states
from operators.journey import Journey
from operators.model.records import Action, Decision, Event, Outcome
from operators.model.state import CustomerState, Send
from operators.model.state_records import state_from_record, state_to_record
from operators.model.timefmt import format_ms, parse_ms
from operators.policy.load import PolicyError
from tests.conftest import make_event
from tests.measurement import measured_policy

SECTION = """
fatigue:
  - {name: ignoring-marketing, match: {category: marketing}, ignored: 3, within: 14d,
     engaged_within: 2d}
"""
"""As ``policy-full.yaml`` pins it."""
POLICY = measured_policy(SECTION)
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}
DAY = 86_400_000


def views(day, product):
    """Three views of ``product`` on November ``day``: a nudge is decided at 10:20 UTC."""
    return [
        make_event("product_view", f"2026-11-{day:02d}T10:{m:02d}:00Z", {"product_id": product})
        for m in (0, 10, 20)
    ]


def feedback(at, action_id, outcome):
    return make_event("feedback", at, {"action_id": action_id, "outcome": outcome})


def run(events, journey=None, grant=True, policy=POLICY):
    journey = journey or Journey(CustomerState("cus_ana"))
    outputs = []
    first = [make_event("consent_changed", "2026-11-01T09:00:00Z", GRANT)] if grant else []
    for event in [*first, *events]:
        outputs += journey.on_event(policy, event)
    return journey, outputs


def four_nudges_under(policy):
    """What is decided of nudges on November 1, 4, 8 and 11 under ``policy``."""
    events = [e for n, day in enumerate((1, 4, 8, 11)) for e in views(day, f"p-{n}")]
    _, outputs = run(events, policy=policy)
    return [d.outcome for d in nudges(outputs)]


def nudges(outputs):
    return [d for d in outputs if isinstance(d, Decision) and d.action == "product_nudge"]


def three_sends(days=(1, 4, 8)):
    """Nudges sent on November 1, 4 and 8 at 10:20 (spaced so no cap holds them)."""
    journey, outputs = run([e for n, day in enumerate(days) for e in views(day, f"p-{n}")])
    sent = [a for a in outputs if isinstance(a, Action)]
    assert len(sent) == len(days)
    return journey, sent


def test_three_ignored_sends_hold_marketing_back_until_the_oldest_leaves_the_window():
    journey, _ = three_sends()
    _, outputs = run(views(11, "p-9"), journey, grant=False)
    (decision,) = nudges(outputs)
    assert (decision.outcome, decision.rule, decision.channel) == (
        Outcome.SUPPRESSED,
        "ignoring-marketing",
        "push",
    )
    assert decision.until == parse_ms("2026-11-15T10:20:00Z"), "the Nov 1 send + 14d"
    assert decision.reason == (
        "suppressed by ignoring-marketing until 2026-11-15T10:20:00Z: last 3 sends ignored"
    )
    assert decision.action_id is None
    assert not [a for a in outputs if isinstance(a, Action)]
    _, later = run(views(16, "p-10"), journey, grant=False)
    assert [d.outcome for d in nudges(later)] == [Outcome.SENT], "the Nov 1 send has left"


def test_an_open_in_time_resets_fatigue():
    journey, sent = three_sends()
    opened = feedback("2026-11-05T08:00:00Z", sent[1].action_id, "opened")
    _, outputs = run([opened, *views(11, "p-9")], journey, grant=False)
    assert [d.outcome for d in nudges(outputs)] == [Outcome.SENT]


def test_an_open_after_engaged_within_does_not_count():
    journey, sent = three_sends()
    late = feedback("2026-11-07T08:00:00Z", sent[1].action_id, "opened")  # 2d 21h40m after
    _, outputs = run([late, *views(11, "p-9")], journey, grant=False)
    assert [(d.outcome, d.rule) for d in nudges(outputs)] == [
        (Outcome.SUPPRESSED, "ignoring-marketing")
    ]


def test_a_send_still_awaiting_its_answer_is_not_yet_ignored():
    journey, _ = three_sends()
    _, outputs = run(views(9, "p-9"), journey, grant=False)  # a day after the Nov 8 send
    assert [d.outcome for d in nudges(outputs)] == [Outcome.SENT]


def test_fewer_ignored_sends_than_the_rule_counts_hold_nothing_back():
    journey, _ = three_sends(days=(4, 8))
    _, outputs = run(views(11, "p-9"), journey, grant=False)
    assert [d.outcome for d in nudges(outputs)] == [Outcome.SENT]


def test_a_bounced_send_reached_nobody_so_it_was_not_ignored():
    journey, sent = three_sends()
    bounced = feedback("2026-11-04T12:00:00Z", sent[1].action_id, "bounced")
    _, outputs = run([bounced, *views(11, "p-9")], journey, grant=False)
    assert [d.outcome for d in nudges(outputs)] == [Outcome.SENT]


def test_a_held_out_send_reached_nobody_so_it_was_not_ignored():
    policy = measured_policy(SECTION + "holdouts: {salt: s, actions: {product_nudge: 0.9999999}}")
    assert four_nudges_under(policy) == [Outcome.HELD_OUT] * 4


def test_fatigue_holds_back_only_what_its_rule_matches():
    journey, _ = three_sends()
    searches = [make_event("help_search", f"2026-11-11T10:0{m}:00Z") for m in range(3)]
    _, outputs = run(searches, journey, grant=False)
    assert [(d.action, d.outcome) for d in outputs if isinstance(d, Decision)] == [
        ("help_offer", Outcome.SENT)
    ], "a service action is not marketing"


def test_a_policy_without_fatigue_sends_to_a_customer_who_ignores_everything():
    assert four_nudges_under(measured_policy("")) == [Outcome.SENT] * 4


def test_engagement_survives_the_state_record_and_a_merge():
    journey, sent = three_sends()
    run([feedback("2026-11-05T08:00:00Z", sent[1].action_id, "opened")], journey, grant=False)
    back = state_from_record(state_to_record(journey.state))
    assert back.sends == journey.state.sends
    assert back.sends[1].engaged_at == parse_ms("2026-11-05T08:00:00Z")
    survivor = Journey(CustomerState("cus_bo"))
    run(views(2, "p-x")[:1], survivor)
    merge_states(POLICY, survivor.state, back)
    _, outputs = run(views(11, "p-9"), survivor, grant=False)
    assert [d.outcome for d in nudges(outputs)] == [Outcome.SENT], "the open came with the merge"


def test_a_merge_combines_what_both_profiles_heard_about_one_send():
    from operators.context.sends import merge_sends

    send = Send(1, "cus_ana.product_nudge.0", "product_nudge", "push", "marketing", None)
    survivor, retired = CustomerState("a"), CustomerState("b")
    survivor.sends = [send._replace(engaged_at=9)]
    retired.sends = [send._replace(engaged_at=5, bounced=True)]
    merge_sends(survivor, retired)
    assert survivor.sends == [send._replace(engaged_at=5, bounced=True)]


def test_state_records_written_before_fatigue_still_load():
    for fields in (
        [1, "id", "product_nudge", "push", "marketing", None],
        [1, "id", "product_nudge", "push", "marketing", None, True],
        [1, "id", "product_nudge", "push", "marketing", None, False, True],
    ):
        record = state_to_record(CustomerState("cus_ana"))
        record["sends"] = [fields]
        (send,) = state_from_record(record).sends
        assert send.engaged_at is None
        assert (send.held_out, send.bounced) == (
            len(fields) > 6 and fields[6],
            len(fields) > 7 and fields[7],
        )


@pytest.mark.parametrize(
    ("rule", "where", "says"),
    [
        (
            "{name: after-complaint, match: {}, ignored: 2, within: 7d, engaged_within: 1d}",
            "fatigue.0.name",
            "named 'after-complaint' too",
        ),
        (
            "{name: f, match: {category: promos}, ignored: 2, within: 7d, engaged_within: 1d}",
            "fatigue.0.match.category",
            "names no category",
        ),
        (
            "{name: f, match: {}, ignored: 2, within: 2d, engaged_within: 2d}",
            "fatigue.0.engaged_within",
            "must be shorter than within",
        ),
        ("{name: f, match: {}, ignored: 0, within: 7d, engaged_within: 1d}", "fatigue", ""),
    ],
)
def test_a_fatigue_rule_that_cannot_mean_anything_is_refused(rule, where, says):
    with pytest.raises(PolicyError, match=re.escape(where)) as err:
        measured_policy(f"fatigue:\n  - {rule}\n")
    assert says in str(err.value)


interest = st.lists(
    st.tuples(st.sampled_from([6, 20, 30, 50, 75, 120]), st.integers(0, 4)), min_size=5, max_size=30
)
"""Three views of one of five products, some hours after the last three."""
opens = st.lists(st.tuples(st.booleans(), st.integers(1, 4 * DAY)), min_size=1, max_size=20)
"""Per marketing send in turn: whether it is opened, and how long after it."""


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interest, opens)
def test_no_marketing_goes_to_a_customer_whose_last_three_sends_were_ignored(steps, answers):
    """The reference: at each marketing send, of the marketing sends of the 14 days before,
    the last three were not all left unopened for two days after them; sends of one instant
    come in the order of their action ids (two groups released from quiet hours at 07:00
    are sent at one instant). Opens arrive in time order among the views."""
    journey = Journey(CustomerState("cus_x"))
    heard: list[tuple[int, str, int | None]] = []  # (sent at, action id, opened at)
    to_open: list[Event] = []

    def check(outputs):
        for action in (o for o in outputs if isinstance(o, Action)):
            if action.category != "marketing":
                continue
            now = action.decided_at
            last = [(at, o) for at, _, o in sorted(heard) if now - 14 * DAY < at <= now][-3:]
            answer_by = [at + 2 * DAY for at, _ in last]
            ignored = [
                by <= now and (o is None or o > by)
                for by, (_, o) in zip(answer_by, last, strict=True)
            ]
            assert len(last) < 3 or not all(ignored), f"{action.action} to a fatigued customer"
            opened, after = answers[len(heard) % len(answers)]
            heard.append((now, action.action_id, now + after if opened else None))
            if opened:
                properties = {"action_id": action.action_id, "outcome": "opened"}
                to_open.append(make_event("feedback", format_ms(now + after), properties))
                to_open.sort(key=lambda e: e.time)

    at = parse_ms("2026-11-01T10:00:00Z")
    events = [make_event("consent_changed", format_ms(at), GRANT)]
    for hours, product in steps:
        at += hours * 3_600_000
        for m in (0, 10, 20):
            properties = {"product_id": f"p-{product}"}
            events.append(make_event("product_view", format_ms(at + m * 60_000), properties))
    for event in events:
        while to_open and to_open[0].time < event.time:
            check(journey.on_event(POLICY, to_open.pop(0)))
        check(journey.on_event(POLICY, event))


def test_a_customer_is_not_forgotten_while_a_fatigue_rule_still_counts_their_sends():
    import dataclasses

    from operators.eviction import evict_at

    journey, sent = three_sends()
    journey.state.pending.clear()  # the inactivity timer: not what this is about
    idle_a_day = dataclasses.replace(POLICY, evict_idle_after=DAY)
    assert evict_at(idle_a_day, journey.state) == sent[-1].decided_at + 14 * DAY


def test_a_policy_without_caps_or_fatigue_remembers_sends_for_the_feedback_window():
    from operators.model.state import FEEDBACK_WINDOW
    from operators.policy.compiler import compile_policy

    uncapped = {k: v for k, v in measured_policy("").document.items() if k != "caps"}
    assert compile_policy(uncapped, "uncapped").longest_send_memory == FEEDBACK_WINDOW
