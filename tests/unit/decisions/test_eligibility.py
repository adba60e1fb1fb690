"""Attributes that events state, and eligibility by them: the ``ineligible`` outcome
(operators/context/attributes.py, operators/decisions/eligibility.py)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.context.attributes import attribute_of
from operators.identity.merging import merge_states
from operators.journey import Journey
from operators.model.records import Action, Decision, Outcome
from operators.model.state import MAX_VALUE_CHARS, CustomerState
from operators.model.state_records import state_from_record, state_to_record
from operators.model.timefmt import format_ms, parse_ms
from operators.policy.load import PolicyError
from tests.conftest import make_event
from tests.measurement import measured_policy

SECTIONS = """
attributes:
  region: context.region
  status: properties.account_status
  tier: properties.loyalty_tier

eligibility:
  - {name: loans-iberia-only, actions: [loan_offer], require: {region: [ES, PT]}}
  - name: no-marketing-in-collections
    categories: [marketing, retention]
    exclude: {status: [in_collections, closed]}
"""
"""As ``policy-full.yaml`` pins them (one rule in block style)."""
POLICY = measured_policy(SECTIONS)
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def stating(at, region=None, **properties):
    event = make_event("page_view", at, properties)
    if region is not None:
        event.context["region"] = region
    return event


def checks(day):
    return [
        make_event("loan_eligibility_check", f"2026-11-{day:02d}T10:{m:02d}:00Z")
        for m in (0, 10, 20)
    ]


def views(day, product="p-42"):
    return [
        make_event("product_view", f"2026-11-{day:02d}T10:{m:02d}:00Z", {"product_id": product})
        for m in (0, 10, 20)
    ]


def run(events, journey=None, policy=POLICY):
    journey = journey or Journey(CustomerState("cus_ana"))
    outputs = []
    for event in [make_event("consent_changed", "2026-11-01T09:00:00Z", GRANT), *events]:
        outputs += journey.on_event(policy, event)
    return journey, outputs


def outcomes(outputs, action):
    return [(d.outcome, d.rule) for d in outputs if isinstance(d, Decision) and d.action == action]


def test_a_required_attribute_that_is_unknown_or_elsewhere_makes_the_customer_ineligible():
    _, unknown = run(checks(10))
    assert outcomes(unknown, "loan_offer") == [(Outcome.INELIGIBLE, "loans-iberia-only")]
    (decision,) = [d for d in unknown if isinstance(d, Decision)]
    assert decision.reason == "ineligible: region unknown; loans-iberia-only requires one of ES, PT"
    assert decision.channel is None and decision.action_id is None
    _, french = run([stating("2026-11-05T09:00:00Z", "FR"), *checks(10)])
    assert outcomes(french, "loan_offer") == [(Outcome.INELIGIBLE, "loans-iberia-only")]
    _, spanish = run([stating("2026-11-05T09:00:00Z", "ES"), *checks(10)])
    assert outcomes(spanish, "loan_offer") == [(Outcome.SENT, None)]


def test_an_excluded_value_stops_marketing_but_an_unknown_one_passes():
    _, unknown = run(views(10))
    assert outcomes(unknown, "product_nudge") == [(Outcome.SENT, None)]
    _, collections = run(
        [stating("2026-11-05T09:00:00Z", account_status="in_collections"), *views(10)]
    )
    assert outcomes(collections, "product_nudge") == [
        (Outcome.INELIGIBLE, "no-marketing-in-collections")
    ]
    help_searches = [make_event("help_search", f"2026-11-10T12:0{m}:00Z") for m in range(3)]
    _, service = run(
        [stating("2026-11-05T09:00:00Z", account_status="in_collections"), *help_searches]
    )
    assert outcomes(service, "help_offer") == [(Outcome.SENT, None)]  # a service action


def test_eligibility_is_asked_before_consent():
    journey = Journey(CustomerState("cus_ana"))
    outputs = []
    for event in [stating("2026-11-05T09:00:00Z", "FR"), *checks(10)]:
        outputs += journey.on_event(POLICY, event)
    assert outcomes(outputs, "loan_offer") == [(Outcome.INELIGIBLE, "loans-iberia-only")]


def test_the_latest_statement_in_event_time_wins_whatever_order_they_come_in():
    journey, _ = run([stating("2026-11-06T09:00:00Z", "ES"), stating("2026-11-05T09:00:00Z", "FR")])
    assert attribute_of(journey.state, "region") == "ES"
    _, outputs = run(checks(10), journey)
    assert outcomes(outputs, "loan_offer")[-1] == (Outcome.SENT, None)


def test_an_ineligible_customers_moment_stays_open_until_they_become_eligible():
    journey, outputs = run([stating("2026-11-05T09:00:00Z", "FR"), *checks(10)])
    assert outcomes(outputs, "loan_offer") == [(Outcome.INELIGIBLE, "loans-iberia-only")]
    assert [key.moment for key in journey.state.moments] == ["loan_intent"]
    _, later = run([stating("2026-11-11T09:00:00Z", "PT"), *checks(11)], journey)
    assert (Outcome.SENT, None) in outcomes(later, "loan_offer")


def test_a_merge_brings_a_region_and_the_later_statement_wins():
    retired, _ = run([stating("2026-11-06T09:00:00Z", "ES")])
    survivor, _ = run([stating("2026-11-05T09:00:00Z", "FR", loyalty_tier="gold")])
    merge_states(POLICY, survivor.state, retired.state)
    assert attribute_of(survivor.state, "region") == "ES"
    assert attribute_of(survivor.state, "tier") == "gold"
    _, outputs = run(checks(10), survivor)
    assert [type(o) for o in outputs if isinstance(o, Action)] == [Action]


def test_attributes_survive_the_state_record_and_stay_bounded():
    journey, _ = run(
        [stating("2026-11-05T09:00:00Z", "x" * 1000, account_status={"not": "a value"})]
    )
    assert attribute_of(journey.state, "region") == "x" * MAX_VALUE_CHARS
    assert attribute_of(journey.state, "status") is None
    back = state_from_record(state_to_record(journey.state))
    assert back.attributes == journey.state.attributes


def test_a_policy_without_attributes_keeps_none(policy):
    journey, outputs = run([stating("2026-11-05T09:00:00Z", "FR"), *checks(10)], policy=policy)
    assert journey.state.attributes == ()
    assert outcomes(outputs, "loan_offer") == [(Outcome.SENT, None)]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ("attributes: {region: region}", "must start with properties. or context."),
        (
            "attributes: {region: context.region}\n"
            "eligibility: [{name: r, require: {country: [ES]}}]",
            "names no attribute: 'country'",
        ),
        (
            "attributes: {region: context.region}\n"
            "eligibility: [{name: r, actions: [loan], require: {region: [ES]}}]",
            "names no action: 'loan'",
        ),
        (
            "attributes: {region: context.region}\n"
            "eligibility: [{name: r, require: {region: [ES]}}, {name: r, exclude: {region: [FR]}}]",
            "'r' names an earlier rule too",
        ),
    ],
)
def test_a_bad_eligibility_section_is_refused_naming_the_field(sections, message):
    with pytest.raises(PolicyError) as refused:
        measured_policy(sections)
    assert message in str(refused.value)


steps = st.lists(
    st.tuples(
        st.sampled_from(["state", "check", "check"]),
        st.integers(min_value=1, max_value=600),
        st.sampled_from(["ES", "PT", "FR", "DE"]),
    ),
    min_size=5,
    max_size=60,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_no_loan_reaches_a_customer_whose_latest_region_is_outside_iberia(story):
    t = parse_ms("2026-11-02T09:00:00Z")
    events = []
    for kind, gap, region in story:
        t += gap * 60_000
        at = format_ms(t)
        events.append(
            stating(at, region) if kind == "state" else make_event("loan_eligibility_check", at)
        )
    _, outputs = run(events)
    stated = [(e.time, e.context["region"]) for e in events if "region" in e.context]
    for action in (o for o in outputs if isinstance(o, Action)):
        assert action.action == "loan_offer"
        said = [region for at, region in stated if at <= action.decided_at]
        assert said and said[-1] in ("ES", "PT")
    for decision in (o for o in outputs if isinstance(o, Decision)):
        said = [region for at, region in stated if at <= decision.at]
        eligible = bool(said) and said[-1] in ("ES", "PT")
        assert (decision.outcome is Outcome.INELIGIBLE) == (not eligible)
