"""Text signals: what a contact-centre or complaint text names (operators/context/signals.py)."""

from operators.context.signals import names_a_phrase
from tests.conftest import make_event


def text_signal(policy):
    return policy.text_by_type["complaint"][0]


def test_a_sensitive_phrase_fires_the_signal_with_only_the_event_id(policy):
    event = make_event(
        "complaint", "2026-11-20T10:00:00Z", {"text": "My mother PASSED  away last week"}, "c-1"
    )
    fired = names_a_phrase(text_signal(policy), event)
    assert fired is not None
    assert (fired.signal, fired.group, fired.triggered_by) == (
        "sensitive_circumstance",
        None,
        ("c-1",),
    )


def test_text_matching_is_whole_words_and_ignores_case_and_accents(policy):
    signal = text_signal(policy)

    def says(text):
        return names_a_phrase(
            signal, make_event("complaint", "2026-11-20T10:00:00Z", {"text": text})
        )

    assert says("Ella está en el HÓSPITAL")
    assert says("a Funeral.")
    assert says("passed-away")
    assert not says("a deathly dull wait")
    assert not says("the hospitality was poor")
    assert not says("passed, then went away")
    assert not says(None)
    assert not says(["hospital"])
