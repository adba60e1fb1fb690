"""Consent: per purpose and channel, opt-in, the latest word winning.

Consent is data: a ``consent_changed`` event says it, an unsubscribe feedback
revokes it. Marketing needs a grant; service and care need none. Words on
purposes or channels the policy does not use change nothing it decides and
are not kept.
"""

from __future__ import annotations

from operators.model.records import Event
from operators.model.state import ConsentWord, CustomerState
from operators.policy.compiled import Policy

EVERY_CHANNEL = "*"


def record_consent(policy: Policy, state: CustomerState, event: Event) -> None:
    """A ``consent_changed`` event sets consent for a purpose on a channel (``*``: all)."""
    props = event.properties
    purpose = props["purpose"]
    channel = props.get("channel") or EVERY_CHANNEL
    if purpose not in policy.consent_purposes:
        return
    if channel != EVERY_CHANNEL and channel not in policy.channels:
        return
    state.consent[(purpose, channel)] = ConsentWord(bool(props["granted"]), event.time, state.seq)


def revoke_consent(
    policy: Policy, state: CustomerState, channel: str, purpose: str | None, at: int
) -> None:
    """An opt-out from feedback (an unsubscribe): for ``purpose`` (None: every purpose the
    policy uses) on ``channel`` (``*``: all)."""
    if channel != EVERY_CHANNEL and channel not in policy.channels:
        return
    for each in (purpose,) if purpose is not None else sorted(policy.consent_purposes):
        state.consent[(each, channel)] = ConsentWord(False, at, state.seq)


def has_consent(state: CustomerState, purpose: str, channel: str) -> bool:
    """Opt-in: granted only if the latest word on this channel (or on all) is a grant."""
    word = latest_word(state, purpose, channel)
    return word is not None and word.granted


def latest_word(state: CustomerState, purpose: str, channel: str) -> ConsentWord | None:
    """The latest consent word that applies to ``purpose`` on ``channel``, if any."""
    specific = state.consent.get((purpose, channel))
    every = state.consent.get((purpose, EVERY_CHANNEL))
    if specific is None:
        return every
    if every is None or specific.order > every.order:
        return specific
    return every


def merge_consent(policy: Policy, survivor: CustomerState, retired: CustomerState) -> None:
    """Per purpose and channel, a grant only if every profile that said something granted:
    the most restrictive word, as of the later of them."""
    merged: dict[tuple[str, str], ConsentWord] = {}
    purposes = {purpose for purpose, _ in survivor.consent} | {
        purpose for purpose, _ in retired.consent
    }
    for purpose in purposes:
        for channel in policy.channels:
            words = [
                word
                for word in (
                    latest_word(survivor, purpose, channel),
                    latest_word(retired, purpose, channel),
                )
                if word is not None
            ]
            if words:
                at, seq = max(word.order for word in words)
                merged[(purpose, channel)] = ConsentWord(all(w.granted for w in words), at, seq)
    survivor.consent = merged
