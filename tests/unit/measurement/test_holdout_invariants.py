"""Property: a held-out customer lives exactly the journey a sent one lives, for any stream;
only the channel hears nothing (operators/decisions/decide.py)."""

from hypothesis import HealthCheck, given, settings

from operators.model.records import Action, Decision, Outcome
from tests.measurement import measured_policy
from tests.unit.test_invariants import deliver, disordered_streams, events_of, run

EVERYONE = measured_policy(
    "holdouts:\n  salt: s\n  global: {share: 0.9999999}\nconversions:\n  purchase: {within: 3d}\n"
)
NO_ONE = measured_policy("conversions:\n  purchase: {within: 3d}\n")


def shape(decision: Decision) -> tuple:
    outcome = Outcome.SENT if decision.outcome is Outcome.HELD_OUT else decision.outcome
    return (
        decision.action,
        outcome,
        decision.at,
        decision.action_id,
        decision.channel,
        decision.value,
        decision.moment,
        decision.group,
        decision.until,
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disordered_streams)
def test_held_out_and_sent_customers_get_the_same_decisions_for_any_stream(stream):
    held = [o for o, _ in run(EVERYONE, deliver(EVERYONE, events_of(stream)))]
    sent = [o for o, _ in run(NO_ONE, deliver(NO_ONE, events_of(stream)))]
    assert not [o for o in held if isinstance(o, Action)]
    assert [shape(d) for d in held if isinstance(d, Decision)] == [
        shape(d) for d in sent if isinstance(d, Decision)
    ]
    assert Outcome.SENT not in {d.outcome for d in held if isinstance(d, Decision)}
