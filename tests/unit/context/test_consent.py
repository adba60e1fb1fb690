"""Consent: opt-in, the latest word winning (operators/context/consent.py)."""

from operators.context.consent import has_consent, record_consent
from operators.model.state import CustomerState
from tests.conftest import make_event


def word(purpose, channel, granted):
    """A consent word, as a ``consent_changed`` event says it."""
    return make_event(
        "consent_changed",
        "2026-11-20T10:00:00Z",
        {"purpose": purpose, "channel": channel, "granted": granted},
    )


def test_consent_is_opt_in_and_the_latest_word_wins(policy):
    state = CustomerState("cus_1")
    assert not has_consent(state, "marketing", "email")

    def consent(channel, granted):
        state.seq += 1
        record_consent(policy, state, word("marketing", channel, granted))

    consent("*", True)
    assert has_consent(state, "marketing", "email") and has_consent(state, "marketing", "sms")
    consent("sms", False)
    assert has_consent(state, "marketing", "email") and not has_consent(state, "marketing", "sms")
    consent("*", False)
    assert not has_consent(state, "marketing", "email")
    consent("email", True)
    assert has_consent(state, "marketing", "email") and not has_consent(state, "marketing", "push")


def test_consent_for_purposes_and_channels_the_policy_does_not_name_is_not_kept(policy):
    state = CustomerState("cus_1")
    for purpose, channel in (("research", "email"), ("marketing", "fax")):
        record_consent(policy, state, word(purpose, channel, True))
    assert state.consent == {}
