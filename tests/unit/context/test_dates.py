"""Date signals: a timer at a time the event carries, in the customer's time zone for a plain
date (operators/context/dates.py)."""

import pytest

from operators.context.dates import MISSING, NOT_A_DATE, BadDate, bad_dates, instant_of
from operators.identity.merging import merge_states
from operators.journey import Journey
from operators.model.records import Decision
from operators.model.state import CustomerState
from operators.model.state_records import state_from_record, state_to_record
from operators.model.timefmt import format_ms, parse_ms
from operators.policy.load import PolicyError, load_policy
from tests.conftest import REFERENCE_POLICY, make_event

RENEWAL = """  renewal_due:
    on: renewal_scheduled
    at: properties.renewal_date
    before: 30d
    unless: renewed
"""
"""As ``policy-full.yaml`` pins it, with its moment and action below."""
MOMENT = "  renewal:         {from: renewal_due, value: 70, half_life: 10d}\n"
ACTION = """  renewal_reminder:
    moment: renewal
    channels: [email, sms]
    category: retention
    consent: marketing
    template: renewal-reminder
    min_value: 20
    cooldown: 30d
"""
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def dated_policy_text(signal: str = RENEWAL) -> str:
    """The reference policy with ``signal`` and the renewal moment and action."""
    text = REFERENCE_POLICY.read_text()
    text = text.replace("\nsignals:\n", "\nsignals:\n" + signal, 1)
    moments = text.index("\n", text.index("\nmoments:") + 1) + 1
    text = text[:moments] + MOMENT + text[moments:]
    return text.replace("\nactions:\n", "\nactions:\n" + ACTION, 1)


POLICY = load_policy(dated_policy_text(), "dated")


def scheduled(at, date, event_id="r1", timezone=None):
    properties = {} if date is None else {"renewal_date": date}
    event = make_event("renewal_scheduled", at, properties, event_id)
    if timezone is not None:
        event.context["timezone"] = timezone
    return event


def run(events, until="2027-12-31T00:00:00Z", journey=None, policy=POLICY):
    """Events in order, then timers run up to ``until``: the renewal decisions."""
    journey = journey or Journey(CustomerState("cus_ana"))
    outputs = []
    for event in [make_event("consent_changed", "2026-10-01T09:00:00Z", GRANT, "g"), *events]:
        outputs += journey.on_event(policy, event)
    outputs += journey.fire_due(policy, parse_ms(until), inclusive=True)
    return journey, [
        d for d in outputs if isinstance(d, Decision) and d.action == "renewal_reminder"
    ]


def first(decisions):
    """When the first renewal decision was taken, and what it was."""
    return format_ms(decisions[0].at), decisions[0].outcome.value


def test_a_date_time_fires_before_ahead_of_it():
    _, decisions = run([scheduled("2026-11-01T10:00:00Z", "2027-01-10T09:00:00Z")])
    assert first(decisions) == ("2026-12-11T09:00:00Z", "sent")
    assert decisions[0].triggered_by == ("r1",) and decisions[0].signals == ("renewal_due",)
    assert len(decisions) == 1


def test_a_plain_date_is_midnight_in_the_customers_time_zone_across_a_clock_change():
    """Stated in November (CET, +1) for April 15 (CEST, +2): midnight there is 22:00Z, and
    30 days before it, back in CET, is 23:00 local: quiet hours until 08:00."""
    _, madrid = run([scheduled("2026-11-01T10:00:00Z", "2027-04-15")])
    assert first(madrid) == ("2027-03-15T22:00:00Z", "deferred")
    assert format_ms(madrid[1].at) == "2027-03-16T07:00:00Z" and madrid[1].outcome.value == "sent"
    _, new_york = run(
        [scheduled("2026-11-01T10:00:00Z", "2027-04-15", timezone="America/New_York")]
    )
    assert first(new_york) == ("2027-03-16T04:00:00Z", "deferred"), "EDT: midnight is 04:00Z"


def test_the_zone_of_a_plain_date_is_the_customers_latest_word_not_the_default():
    moved = make_event("page_view", "2026-10-20T10:00:00Z", event_id="p")
    moved.context["timezone"] = "Asia/Tokyo"
    _, decisions = run([moved, scheduled("2026-11-01T10:00:00Z", "2027-01-20")])
    assert first(decisions)[0] == "2026-12-20T15:00:00Z", "midnight in Tokyo, 30 days before"


def test_a_date_only_within_before_fires_at_once():
    _, decisions = run([scheduled("2026-11-01T10:00:00Z", "2026-11-20T00:00:00Z")])
    assert first(decisions) == ("2026-11-01T10:00:00Z", "sent")


def test_a_date_in_the_past_starts_nothing_and_replaces_what_an_earlier_statement_started():
    _, none = run([scheduled("2026-11-01T10:00:00Z", "2026-10-15")])
    assert none == []
    _, withdrawn = run(
        [
            scheduled("2026-11-01T10:00:00Z", "2027-01-10T09:00:00Z"),
            scheduled("2026-11-02T10:00:00Z", "2026-10-15", "r2"),
        ]
    )
    assert withdrawn == [], "the latest statement says the renewal has passed"


def test_a_later_statement_moves_the_timer_and_an_earlier_one_arriving_late_does_not():
    events = [
        scheduled("2026-11-01T10:00:00Z", "2027-01-10T09:00:00Z"),
        scheduled("2026-11-05T10:00:00Z", "2027-02-10T09:00:00Z", "r2"),
    ]
    _, moved = run(events)
    assert [(format_ms(d.at), d.triggered_by) for d in moved] == [("2027-01-11T09:00:00Z", ("r2",))]
    _, kept = run(events[::-1])  # the older statement comes second (within the lateness)
    assert [(format_ms(d.at), d.triggered_by) for d in kept] == [("2027-01-11T09:00:00Z", ("r2",))]


def test_renewed_cancels_it_and_a_new_statement_after_it_starts_again():
    renewed = make_event("renewed", "2026-11-20T10:00:00Z", event_id="done")
    _, cancelled = run([scheduled("2026-11-01T10:00:00Z", "2027-01-10T09:00:00Z"), renewed])
    assert cancelled == []
    next_year = scheduled("2026-11-21T10:00:00Z", "2028-01-10T09:00:00Z", "r2")
    _, again = run(
        [scheduled("2026-11-01T10:00:00Z", "2027-01-10T09:00:00Z"), renewed, next_year],
        until="2028-12-31T00:00:00Z",
    )
    assert [format_ms(d.at) for d in again] == ["2027-12-11T09:00:00Z"]


def test_a_bad_or_missing_date_starts_nothing_keeps_the_timer_it_had_and_is_named():
    for date, reason in [
        (None, MISSING),
        ("2027-02-30", NOT_A_DATE),
        ("10/01/2027", NOT_A_DATE),
        ("2027-01-10T09:00:00", NOT_A_DATE),  # a date-time needs its offset
        (20270110, NOT_A_DATE),
        ("0001-01-01", NOT_A_DATE),
    ]:
        bad = scheduled("2026-11-05T10:00:00Z", date, "bad")
        assert list(bad_dates(POLICY, bad)) == [("renewal_due", reason)], date
        _, nothing = run([bad])
        assert nothing == [], date
        _, kept = run([scheduled("2026-11-01T10:00:00Z", "2027-01-10T09:00:00Z"), bad])
        assert [d.triggered_by for d in kept] == [("r1",)], date
    assert list(bad_dates(POLICY, scheduled("2026-11-05T10:00:00Z", "2027-01-10"))) == []
    assert list(bad_dates(POLICY, make_event("page_view", "2026-11-05T10:00:00Z"))) == []


def test_instants_are_read_as_rfc_3339_says():
    assert instant_of("2027-01-10T09:00:00+02:00", "UTC") == parse_ms("2027-01-10T07:00:00Z")
    assert instant_of("2027-01-10t09:00:00.250z", "UTC") == parse_ms("2027-01-10T09:00:00.250Z")
    assert instant_of("2027-01-10", "Europe/Madrid") == parse_ms("2027-01-09T23:00:00Z")
    with pytest.raises(BadDate) as bad:
        instant_of({"date": "2027-01-10"}, "UTC")
    assert bad.value.reason == NOT_A_DATE


def test_a_late_statement_starts_no_timer_as_for_absence_signals():
    import dataclasses

    late = dataclasses.replace(scheduled("2026-11-01T10:00:00Z", "2027-01-10T09:00:00Z"), late=True)
    _, decisions = run([late])
    assert decisions == []


def test_a_pending_renewal_survives_the_state_record_and_a_merge():
    journey = Journey(CustomerState("cus_ana"))
    for event in [
        make_event("consent_changed", "2026-10-01T09:00:00Z", GRANT, "g"),
        scheduled("2026-11-01T10:00:00Z", "2027-01-10T09:00:00Z"),
    ]:
        journey.on_event(POLICY, event)
    back = state_from_record(state_to_record(journey.state))
    assert back.pending["renewal_due"] == journey.state.pending["renewal_due"]
    survivor = CustomerState("cus_bo")
    merge_states(POLICY, survivor, back)
    assert format_ms(survivor.pending["renewal_due"].due) == "2026-12-11T09:00:00Z"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("at: renewal_date", "signals.renewal_due.at"),
        ("before: 30 days", "signals.renewal_due"),
        ("before: 4000d", "signals.renewal_due.before"),
    ],
)
def test_a_date_signal_that_cannot_mean_anything_is_refused(change, where):
    key = change.split(":")[0]
    signal = "\n".join(
        f"    {change}" if line.strip().startswith(f"{key}:") else line
        for line in RENEWAL.splitlines()
    )
    with pytest.raises(PolicyError, match=where.replace(".", r"\.")):
        load_policy(dated_policy_text(signal + "\n"), "bad")


def test_before_zero_fires_at_the_date_itself():
    signal = RENEWAL.replace("before: 30d", "before: 0s")
    _, decisions = run(
        [scheduled("2026-11-01T10:00:00Z", "2027-01-10T09:00:00Z")],
        policy=load_policy(dated_policy_text(signal), "at the date"),
    )
    assert first(decisions) == ("2027-01-10T09:00:00Z", "sent")
