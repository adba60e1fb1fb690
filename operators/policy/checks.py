"""Checks a policy document needs beyond its schema: names that must point at something
the policy defines, and numbers and durations that must make sense.

Each problem is a field path and a message; :mod:`operators.policy.load` adds the line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from operators.model.durations import parse_duration_ms
from operators.model.records import FEEDBACK_OUTCOMES
from operators.model.timefmt import zone
from operators.policy.compiled import SPLIT_BY_SIGNAL
from operators.policy.text import phrase_words

PathItem = str | int
Problem = tuple[tuple[PathItem, ...], str]
Problems = Iterator[Problem]

MAX_DURATION = parse_duration_ms("3650d")
_DURATION_FIELDS = (
    ("signals", "*", "within"),
    ("signals", "*", "after"),
    ("signals", "*", "before"),
    ("moments", "*", "half_life"),
    ("actions", "*", "cooldown"),
    ("caps", "*", "window"),
    ("suppressions", "*", "for"),
    ("ingest", "max_future_skew"),
    ("ingest", "allowed_lateness"),
    ("customers", "evict_idle_after"),
    ("identity", "retention"),
    ("quiet_hours", "release_over"),
    ("fatigue", "*", "within"),
    ("fatigue", "*", "engaged_within"),
    ("conversions", "*", "within"),
    ("learning", "window"),
    ("learning", "half_life"),
    ("learning", "timing", "wait_up_to"),
    ("learning", "population", "every"),
    ("capacity", "paces", "*", "per"),
    ("capacity", "budgets", "*", "per"),
)
_NUMBER_FIELDS = (
    ("moments", "*", "value"),
    ("actions", "*", "min_value"),
    ("categories", "*"),
    ("learning", "rewards", "*"),
    ("learning", "prior", "reward"),
    ("learning", "prior", "trials"),
)
_SHAPE_ERRORS = (KeyError, TypeError, AttributeError, ValueError, IndexError)
_FIELD_PREFIXES = ("properties.", "context.")


def cross_check(document: dict[str, Any]) -> list[Problem]:
    """Every problem beyond the schema, as far as a document that failed its schema lets
    us look: a check that trips over a malformed section stops, the others go on."""
    found: list[Problem] = []
    for check in (reference_problems, number_problems, duration_problems):
        try:
            found.extend(check(document))
        except _SHAPE_ERRORS:
            continue
    return found


@dataclass(frozen=True, slots=True)
class Defined:
    """The names a policy document defines, section by section."""

    channels: set[str]
    categories: set[str]
    signals: set[str]
    moments: set[str]
    actions: set[str]


def reference_problems(document: dict[str, Any]) -> Problems:
    """Names that must point at something the policy defines, and values that must make sense."""
    defined = Defined(
        channels=set(_names_in(document.get("channels"))),
        categories=set(_names_in(document.get("categories"))),
        signals=set(_names_in(document.get("signals"))),
        moments=set(_names_in(document.get("moments"))),
        actions=set(_names_in(document.get("actions"))),
    )
    yield from _timezone_problems(document.get("defaults"))
    yield from _each(_items(document, "signals"), _signal_problems)
    yield from _each(_items(document, "moments"), _moment_problems, defined)
    yield from _each(_items(document, "actions"), _action_problems, defined)
    yield from _each(_items(document, "quiet_hours"), _quiet_hours_problems, defined)
    yield from _each(_items(document, "caps"), _cap_problems, defined)
    held_back_by: set[str] = set()
    yield from _each(_items(document, "suppressions"), _suppression_problems, defined, held_back_by)
    yield from _each(_items(document, "fatigue"), _fatigue_problems, defined, held_back_by)
    yield from _each(_items(document, "attributes"), _attribute_problems)
    attributes = set(_names_in(document.get("attributes")))
    yield from _each(
        _items(document, "eligibility"), _eligibility_problems, defined, attributes, set()
    )
    yield from _each(_items(document, "reachability"), _reachability_problems, defined)
    yield from _holdout_problems(document.get("holdouts"), defined)
    yield from _each(_items(document, "conversions"), _conversion_problems, defined, document)
    yield from _learning_problems(document.get("learning"), document)
    yield from _capacity_problems(document.get("capacity"), defined)
    identity = document.get("identity")
    if isinstance(identity, dict):
        yield from _each(_items(identity, "blocked"), _blocked_problems)


def _timezone_problems(defaults: Any) -> Problems:
    """The default time zone must be one the zone database knows."""
    timezone = defaults.get("timezone") if isinstance(defaults, dict) else None
    if isinstance(timezone, str) and zone(timezone) is None:
        yield ("defaults", "timezone"), f"unknown time zone {timezone!r}"


def _signal_problems(name: str, spec: dict[str, Any]) -> Problems:
    """A signal's windows and delays must be longer than 0 (a date signal's ``before`` may
    be 0: it fires at the date), its paths must name event fields, and its phrases must
    have words."""
    for key in ("within", "after"):
        if key in spec and _is_zero(spec[key]):
            yield ("signals", name, key), "must be longer than 0"
    for key in ("group_by", "text_field", "at"):
        if key in spec and not spec[key].startswith(_FIELD_PREFIXES):
            yield ("signals", name, key), "must start with properties. or context."
    for index, phrase in enumerate(spec.get("matches_any", [])):
        if isinstance(phrase, str) and not phrase_words(phrase):
            yield ("signals", name, "matches_any", index), f"{phrase!r} has no words to match"


def _moment_problems(name: str, spec: dict[str, Any], defined: Defined) -> Problems:
    """A moment must come from defined signals and have a half-life longer than 0."""
    single = isinstance(spec["from"], str)
    for index, source in enumerate([spec["from"]] if single else spec["from"]):
        if source not in defined.signals:
            path: tuple[PathItem, ...] = ("moments", name, "from")
            yield (
                (path if single else (*path, index)),
                (f"names no signal: {source!r} (signals: {_listing(defined.signals)})"),
            )
    if _is_zero(spec["half_life"]):
        yield ("moments", name, "half_life"), "must be longer than 0"


def _action_problems(name: str, spec: dict[str, Any], defined: Defined) -> Problems:
    """An action must name a defined moment, channels and category; a variant must differ
    from its template."""
    for index, variant in enumerate(spec.get("variants", [])):
        if variant == spec.get("template"):
            yield ("actions", name, "variants", index), "repeats the action's template"
    if spec.get("moment") not in defined.moments:
        yield (
            ("actions", name, "moment"),
            (f"names no moment: {spec.get('moment')!r} (moments: {_listing(defined.moments)})"),
        )
    for index, channel in enumerate(spec.get("channels", [])):
        if channel not in defined.channels:
            yield (
                ("actions", name, "channels", index),
                (f"names no channel: {channel!r} (channels: {_listing(defined.channels)})"),
            )
    if spec.get("category") not in defined.categories:
        yield (
            ("actions", name, "category"),
            (
                f"names no category: {spec.get('category')!r} "
                f"(categories: {_listing(defined.categories)})"
            ),
        )


def _quiet_hours_problems(key: str, values: Any, defined: Defined) -> Problems:
    """The channels and categories quiet hours except must be defined."""
    if key == "channels" and isinstance(values, dict):
        for channel in values:
            if channel not in defined.channels:
                yield ("quiet_hours", "channels", channel), f"names no channel: {channel!r}"
        return
    known = {"except_channels": defined.channels, "except_categories": defined.categories}.get(key)
    if known is None or not isinstance(values, list):
        return
    for index, value in enumerate(values):
        if value not in known:
            yield ("quiet_hours", key, index), f"names no {key[7:-1]}: {value!r}"


def _cap_problems(index: int, spec: dict[str, Any], defined: Defined) -> Problems:
    """A cap must match a defined channel, category and action, over a window longer than 0."""
    yield from _match_problems("caps", index, spec, defined)
    if _is_zero(spec["window"]):
        yield ("caps", index, "window"), "must be longer than 0"


def _match_problems(section: str, index: int, spec: dict[str, Any], defined: Defined) -> Problems:
    """A cap's or fatigue rule's ``match`` must name defined channels, categories and
    actions."""
    match = spec.get("match", {})
    for key, known in _selectable(defined):
        if key in match and match[key] not in known:
            yield (section, index, "match", key), f"names no {key}: {match[key]!r}"


def _suppression_problems(
    index: int, rule: dict[str, Any], defined: Defined, seen: set[str]
) -> Problems:
    """A suppression must have a name no earlier one in ``seen`` has, start from a defined
    signal, and select defined channels, categories and actions by an event field."""
    name = rule.get("name")
    if isinstance(name, str):
        if name in seen:
            yield ("suppressions", index, "name"), f"another suppression is named {name!r}"
        seen.add(name)
    when = rule.get("when", {})
    if "signal" in when and when["signal"] not in defined.signals:
        yield (
            ("suppressions", index, "when", "signal"),
            (f"names no signal: {when['signal']!r}"),
        )
    suppress = rule.get("suppress", {})
    for key, known in _selectable(defined):
        values = suppress.get(key, [])
        for value in [values] if isinstance(values, str) else values:
            if value not in known:
                yield ("suppressions", index, "suppress", key), f"names no {key}: {value!r}"
    same = suppress.get("same")
    if same is not None and not same.startswith(_FIELD_PREFIXES):
        yield (
            ("suppressions", index, "suppress", "same"),
            ("must start with properties. or context."),
        )


def _fatigue_problems(
    index: int, rule: dict[str, Any], defined: Defined, seen: set[str]
) -> Problems:
    """A fatigue rule must have a name no suppression or earlier rule in ``seen`` has (both
    are a decision's ``rule``), match defined channels, categories and actions, and give a
    send less time to be answered than the window it is counted in."""
    name = rule.get("name")
    if isinstance(name, str):
        if name in seen:
            yield ("fatigue", index, "name"), f"a suppression or fatigue rule is named {name!r} too"
        seen.add(name)
    yield from _match_problems("fatigue", index, rule, defined)
    if _is_zero(rule["within"]):
        yield ("fatigue", index, "within"), "must be longer than 0"
    if parse_duration_ms(rule["engaged_within"]) >= parse_duration_ms(rule["within"]):
        yield (
            ("fatigue", index, "engaged_within"),
            f"must be shorter than within ({rule['within']}): a send is only found ignored "
            "once engaged_within has passed, and it must still be within then",
        )


def _attribute_problems(name: str, path: Any) -> Problems:
    """An attribute is read from an event field."""
    if isinstance(path, str) and not path.startswith(_FIELD_PREFIXES):
        yield ("attributes", name), "must start with properties. or context."


def _reachability_problems(channel: str, kinds: Any, defined: Defined) -> Problems:
    """Reachability is said of the policy's own channels."""
    if channel not in defined.channels:
        yield ("reachability", channel), f"names no channel: {channel!r}"


def _eligibility_problems(
    index: int, rule: dict[str, Any], defined: Defined, attributes: set[str], seen: set[str]
) -> Problems:
    """An eligibility rule must have a name no earlier one in ``seen`` has, select defined
    actions and categories, and test attributes the policy defines."""
    name = rule.get("name")
    if isinstance(name, str):
        if name in seen:
            yield ("eligibility", index, "name"), f"{name!r} names an earlier rule too"
        seen.add(name)
    for key, one, known in (
        ("actions", "action", defined.actions),
        ("categories", "category", defined.categories),
    ):
        for at, value in enumerate(rule.get(key, [])):
            if value not in known:
                yield ("eligibility", index, key, at), f"names no {one}: {value!r}"
    for key in ("require", "exclude"):
        for attribute in rule.get(key, {}):
            if attribute not in attributes:
                yield (
                    ("eligibility", index, key, attribute),
                    f"names no attribute: {attribute!r} (attributes: {_listing(attributes)})",
                )


def _holdout_problems(holdouts: Any, defined: Defined) -> Problems:
    """A holdout must name defined categories and actions."""
    if not isinstance(holdouts, dict):
        return
    control = holdouts.get("global")
    categories = control.get("categories", []) if isinstance(control, dict) else []
    for index, category in enumerate(categories if isinstance(categories, list) else []):
        if category not in defined.categories:
            yield (
                ("holdouts", "global", "categories", index),
                f"names no category: {category!r} (categories: {_listing(defined.categories)})",
            )
    actions = holdouts.get("actions")
    for action in actions if isinstance(actions, dict) else {}:
        if action not in defined.actions:
            yield (
                ("holdouts", "actions", action),
                f"names no action: {action!r} (actions: {_listing(defined.actions)})",
            )


def _conversion_problems(
    event_type: str, spec: dict[str, Any], defined: Defined, document: dict[str, Any]
) -> Problems:
    """A conversion must be an event type the policy accepts, within a window longer than
    0, for defined actions."""
    if _is_zero(spec["within"]):
        yield ("conversions", event_type, "within"), "must be longer than 0"
    accepted = document.get("event_types")
    if isinstance(accepted, list) and event_type not in accepted:
        yield ("conversions", event_type), f"{event_type!r} is not one of the policy's event_types"
    for index, action in enumerate(spec.get("actions", [])):
        if action not in defined.actions:
            yield (
                ("conversions", event_type, "actions", index),
                f"names no action: {action!r} (actions: {_listing(defined.actions)})",
            )


def _learning_problems(learning: Any, document: dict[str, Any]) -> Problems:
    """What learning rewards must be an outcome the engine hears of: a feedback outcome, or
    a conversion type; its windows must be longer than 0."""
    if not isinstance(learning, dict):
        return
    conversions = set(_names_in(document.get("conversions")))
    for outcome in learning.get("rewards", {}):
        if outcome not in FEEDBACK_OUTCOMES and outcome not in conversions:
            known = _listing({*FEEDBACK_OUTCOMES, *conversions})
            yield (
                ("learning", "rewards", outcome),
                f"{outcome!r} is neither a feedback outcome nor a conversion type ({known})",
            )
    for key in ("window", "half_life"):
        if key in learning and _is_zero(learning[key]):
            yield ("learning", key), "must be longer than 0"
    population = learning.get("population")
    if isinstance(population, dict):
        if _is_zero(population.get("every", "1s")):
            yield ("learning", "population", "every"), "must be longer than 0"
        by = population.get("by", [])
        attributes = set(_names_in(document.get("attributes")))
        for index, name in enumerate([by] if isinstance(by, str) else by):
            at = ("learning", "population", "by") + (() if isinstance(by, str) else (index,))
            opened = "the signal that opened the decision's moment"
            if name == SPLIT_BY_SIGNAL and name in attributes:
                said = f"{name!r} means {opened} here, and an attribute is called that too"
                yield at, f"{said}: rename the attribute"
            elif name != SPLIT_BY_SIGNAL and name not in attributes:
                listed = f"attributes: {_listing(attributes)}; or {SPLIT_BY_SIGNAL}: {opened}"
                yield at, f"names no attribute: {name!r} ({listed})"
    timing = learning.get("timing")
    if isinstance(timing, dict):
        if _is_zero(timing.get("wait_up_to", "1s")):
            yield ("learning", "timing", "wait_up_to"), "must be longer than 0"
        defined = set(_names_in(document.get("categories")))
        for index, category in enumerate(timing.get("categories", [])):
            if category not in defined:
                yield (
                    ("learning", "timing", "categories", index),
                    f"names no category: {category!r} (categories: {_listing(defined)})",
                )


def _capacity_problems(capacity: Any, defined: Defined) -> Problems:
    """A pace is named after a channel or an action (not a name both have); a budget counts
    the sends of one channel, action or category the policy defines, in periods longer than
    0, an agent shift's hours within a day; its reserved shares name categories and add up
    to at most 1."""
    if not isinstance(capacity, dict):
        return
    for name, pace in (capacity.get("paces") or {}).items():
        at = ("capacity", "paces", name)
        if name in defined.channels and name in defined.actions:
            yield at, f"{name!r} is both a channel and an action: rename one"
        elif name not in defined.channels and name not in defined.actions:
            names = _listing(defined.channels | defined.actions)
            yield at, f"names neither a channel nor an action: {name!r} ({names})"
        if _is_zero(pace.get("per", "1s")):
            yield (*at, "per"), "must be longer than 0"
    kinds = [("channel", defined.channels), ("action", defined.actions)]
    kinds.append(("category", defined.categories))
    for name, budget in (capacity.get("budgets") or {}).items():
        at = ("capacity", "budgets", name)
        scopes = [kind for kind, _ in kinds if kind in budget]
        if len(scopes) != 1:
            yield at, "counts the sends of one `channel`, `action` or `category`: name one"
        for kind, known in kinds:
            if kind in budget and budget[kind] not in known:
                yield (*at, kind), f"names no {kind}: {budget[kind]!r} ({_listing(known)})"
        per = budget.get("per")
        if per not in ("day", "week") and _is_zero(per or "1s"):
            yield (*at, "per"), "must be longer than 0"
        if "hours" in budget:
            opens, closes = budget["hours"].split("-")
            if per != "day":
                yield (*at, "hours"), "an agent shift's hours need `per: day`"
            elif opens >= closes:
                yield (*at, "hours"), f"must start before they end: {budget['hours']!r}"
        if "timezone" in budget and zone(budget["timezone"]) is None:
            yield (*at, "timezone"), f"unknown time zone {budget['timezone']!r}"
        reserve = budget.get("reserve") or {}
        for category in reserve:
            if category not in defined.categories:
                listed = _listing(defined.categories)
                yield (*at, "reserve", category), f"names no category: {category!r} ({listed})"
        if sum(reserve.values()) > 1:
            yield (*at, "reserve"), "the reserved shares add up to more than 1"


def _blocked_problems(kind: str, patterns: list[str]) -> Problems:
    """A blocked identifier pattern must not be empty."""
    for index, pattern in enumerate(patterns):
        if not pattern.strip():
            yield ("identity", "blocked", kind, index), "an empty pattern blocks nothing"


def duration_problems(document: dict[str, Any]) -> Problems:
    """Durations longer than :data:`MAX_DURATION`."""
    for pattern in _DURATION_FIELDS:
        for path, value in _at(document, pattern):
            try:
                too_long = parse_duration_ms(value) > MAX_DURATION
            except (ValueError, TypeError):
                continue
            if too_long:
                yield path, f"{value!r} is longer than 3650d"


def number_problems(document: dict[str, Any]) -> Problems:
    """Values, minimum values and category weights that are not finite or beyond 1e9."""
    for pattern in _NUMBER_FIELDS:
        for path, value in _at(document, pattern):
            if isinstance(value, float) and not math.isfinite(value):
                yield path, f"{value!r} is not a finite number"
            elif isinstance(value, (int, float)) and abs(value) > 1e9:
                yield path, f"{value!r} is larger than 1e9"


def _at(document: Any, pattern: tuple[str, ...]) -> Iterator[tuple[tuple[PathItem, ...], Any]]:
    """Every value at ``pattern`` (``*`` matches any key or index) with its path."""
    nodes: list[tuple[tuple[PathItem, ...], Any]] = [((), document)]
    for part in pattern:
        following: list[tuple[tuple[PathItem, ...], Any]] = []
        for path, node in nodes:
            if part == "*":
                if isinstance(node, dict):
                    following += [((*path, k), v) for k, v in node.items()]
                elif isinstance(node, list):
                    following += [((*path, i), v) for i, v in enumerate(node)]
            elif isinstance(node, dict) and part in node:
                following.append(((*path, part), node[part]))
        nodes = following
    yield from nodes


def _each(entries: Iterable[Any], check: Callable[..., Problems], *context: Any) -> Problems:
    """Run ``check`` on every entry (and ``context``); an entry too malformed to check (its
    schema errors are already reported) does not stop the others."""
    for entry in entries:
        try:
            found = list(check(*entry, *context))
        except _SHAPE_ERRORS:
            continue
        yield from found


def _items(document: dict[str, Any], section: str) -> list[tuple[Any, Any]]:
    """A section's (name, entry) pairs, or (index, entry) for a list; none for any other
    shape."""
    value = document.get(section)
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list):
        return list(enumerate(value))
    return []


def _selectable(defined: Defined) -> tuple[tuple[str, set[str]], ...]:
    """What caps, suppressions and fatigue rules select by, with the names each may take."""
    return (
        ("channel", defined.channels),
        ("category", defined.categories),
        ("action", defined.actions),
    )


def _names_in(section: Any) -> list[str]:
    """The names a section defines; nothing when it is not the shape it should be."""
    if isinstance(section, dict):
        return [str(k) for k in section]
    if isinstance(section, list):
        return [v for v in section if isinstance(v, str)]
    return []


def _is_zero(duration: str) -> bool:
    """Whether ``duration`` is a zero length (``0s``, ``00m``...)."""
    digits = duration[:-1]
    return digits.isdigit() and int(digits) == 0


def _listing(names: set[str]) -> str:
    """``names``, sorted, for a message."""
    return ", ".join(sorted(names))
