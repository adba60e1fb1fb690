"""Attributes: facts about a customer that events state (a region, an account status).

Each attribute of the policy is read from one field of every event; the latest event (in
event time) that states it wins, whatever order the events come in, and through merges
the later statement wins too. Eligibility rules (:mod:`operators.decisions.eligibility`) read them.
"""

from __future__ import annotations

from operators.model.records import Event, lookup
from operators.model.state import AttributeWord, CustomerState, attribute_text
from operators.policy.compiled import Policy


def record_attributes(policy: Policy, state: CustomerState, event: Event) -> None:
    """Keep what ``event`` states of each attribute, where it is the latest word."""
    for name, path in policy.attributes.items():
        value = attribute_text(lookup(path, event))
        if value is not None:
            _say(state, AttributeWord(name, value, event.time))


def attribute_of(state: CustomerState, name: str) -> str | None:
    """The customer's latest word on attribute ``name``, if any."""
    for word in state.attributes:
        if word.name == name:
            return word.value
    return None


def merge_attributes(survivor: CustomerState, retired: CustomerState) -> None:
    """The later statement of each attribute wins (the survivor's, at the same instant)."""
    for word in retired.attributes:
        _say(survivor, word, ties_win=False)


def _say(state: CustomerState, word: AttributeWord, ties_win: bool = True) -> None:
    kept = []
    for old in state.attributes:
        if old.name != word.name:
            kept.append(old)
        elif old.at > word.at or (old.at == word.at and not ties_win):
            return
    kept.append(word)
    state.attributes = tuple(sorted(kept))
