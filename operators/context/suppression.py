"""Suppressions: spells during which some actions are held back for a customer.

A complaint holds marketing back for 14 days, a purchase nudges about what was
bought, a sensitive circumstance marketing and retention for 90. A spell holds
from its start (not before: an older decision arriving late is not held back by
it) until its end; another start extends it (see :func:`joined`).
"""

from __future__ import annotations

from operators.model.bounded import keep_latest_groups, make_room
from operators.model.records import Event, lookup
from operators.model.state import CustomerState, Group, Spell
from operators.policy.compiled import ActionSpec, Policy, SuppressionSpec


def start_suppressions(
    state: CustomerState, suppressions: tuple[SuppressionSpec, ...], at: int, event: Event | None
) -> None:
    """Start (or extend) ``suppressions`` at ``at``. With ``same``, one holds only for the
    starting event's value at that path; without the value, it holds for every group."""
    for spec in suppressions:
        value: Group = None
        if spec.same is not None and event is not None:
            found = lookup(spec.same, event)
            if found is not None and not isinstance(found, (dict, list)):
                value = str(found)
        key = (spec.name, value)
        spell = Spell(at, at + spec.duration)
        held = state.suppressions.get(key)
        if held is None:
            make_room(state.suppressions, spec.name, _until, lambda s: s.until <= at)
            state.suppressions[key] = spell
        else:
            state.suppressions[key] = joined(held, spell)


def joined(one: Spell, other: Spell) -> Spell:
    """Two spells of a suppression as one, from the earlier start to the later end.

    Where they do not overlap, the gap between them is held too. Only a decision taken
    behind the clock can fall there (both spells started by then), and holding it back is
    the safe side; keeping only the later spell instead let a late decision inside the
    earlier one through. And so the spells of three profiles join alike however their
    merges are grouped."""
    return Spell(min(one.start, other.start), max(one.until, other.until))


def suppressed_by(
    policy: Policy, state: CustomerState, action: ActionSpec, channel: str, group: Group, now: int
) -> tuple[str, int] | None:
    """The suppression holding ``action`` back on ``channel`` at ``now`` (name, until), if any;
    of several, the one that holds longest. A suppression holds from the moment it
    started, not before: an older decision that arrives late is not held back by it."""
    found: tuple[str, int] | None = None
    longest = 0
    for (name, value), (start, until) in state.suppressions.items():
        if not start <= now < until or (found is not None and until <= longest):
            continue
        spec = policy.suppressions.get(name)
        if spec is None or not spec.selects(action, channel):
            continue
        if value is not None and group is not None and value != group:
            continue
        found, longest = (name, until), until
    return found


def suppressed_until(state: CustomerState) -> int | None:
    """When the last suppression spell ends (or ended), if there are any."""
    return max((spell.until for spell in state.suppressions.values()), default=None)


def merge_suppressions(survivor: CustomerState, retired: CustomerState) -> None:
    """Spells of one suppression (and value) join."""
    for key, spell in retired.suppressions.items():
        held = survivor.suppressions.get(key)
        survivor.suppressions[key] = spell if held is None else joined(held, spell)
    keep_latest_groups(survivor.suppressions, _until)


def _until(spell: Spell) -> int:
    return spell.until
