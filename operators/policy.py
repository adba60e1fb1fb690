"""The policy, compiled once into immutable lookup tables for the hot path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from operators.action_ids import UNKEYED, ActionIds
from operators.durations import parse_duration_ms
from operators.identifiers import KNOWN_IDENTIFIERS, IdentifierRules, compile_rules
from operators.text import PhraseMatcher

DEFAULT_IDENTIFIER_ORDER = KNOWN_IDENTIFIERS
DEFAULT_TIMEZONE = "UTC"
DEFAULT_MAX_RECORD_BYTES = 65536
DEFAULT_MAX_FUTURE_SKEW = "365d"
DEFAULT_ALLOWED_LATENESS = "1d"
DEFAULT_EVICT_IDLE_AFTER = "365d"


@dataclass(frozen=True, slots=True)
class CountingSignal:
    """Fires when ``at_least`` events of the ``on`` types (per group) fall within ``within`` ms."""

    name: str
    on: frozenset[str]
    group_by: tuple[str, ...] | None
    at_least: int
    within: int


@dataclass(frozen=True, slots=True)
class AbsenceSignal:
    """Fires ``after`` ms past an ``on`` event (any event when ``on`` is None) unless an
    ``unless`` event (any event when ``unless`` is None) comes first."""

    name: str
    on: frozenset[str] | None
    unless: frozenset[str] | None
    after: int


@dataclass(frozen=True, slots=True)
class TextSignal:
    """Fires when the text at ``text_field`` of an ``on`` event names one of ``phrases``."""

    name: str
    on: frozenset[str]
    text_field: tuple[str, ...]
    phrases: tuple[str, ...]
    matcher: PhraseMatcher


@dataclass(frozen=True, slots=True)
class SuppressionSpec:
    """While active, holds back the actions it selects (every selector given must match).

    Started ``duration`` ms long by an event type, a signal or a feedback outcome.
    With ``same``, it holds back only moments whose group equals the starting
    event's value at that path (a purchase stops nudges for that product).
    """

    name: str
    categories: frozenset[str] | None
    actions: frozenset[str] | None
    channels: frozenset[str] | None
    same: tuple[str, ...] | None
    duration: int

    def selects(self, action: ActionSpec, channel: str) -> bool:
        """Whether this suppression holds back ``action`` on ``channel``."""
        return (
            (self.categories is None or action.category in self.categories)
            and (self.actions is None or action.name in self.actions)
            and (self.channels is None or channel in self.channels)
        )


@dataclass(frozen=True, slots=True)
class MomentSpec:
    """A journey moment: opened by ``sources`` with ``value``, halving every ``half_life``."""

    name: str
    sources: tuple[str, ...]
    value: float
    half_life: int


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What to do about a moment, on which channels, and within which limits."""

    name: str
    moment: str
    channels: tuple[str, ...]
    category: str
    priority: float
    consent: str | None
    template: str
    min_value: float
    cooldown: int


@dataclass(frozen=True, slots=True)
class CapSpec:
    """At most ``max`` sends within any ``window`` ms, of the sends it matches (every
    field given must match; none given: every send)."""

    name: str
    channel: str | None
    category: str | None
    action: str | None
    max: int
    window: int

    def matches(self, action: str, channel: str, category: str) -> bool:
        """Whether a send of ``action`` on ``channel`` counts against this cap."""
        return (
            (self.channel is None or channel == self.channel)
            and (self.category is None or category == self.category)
            and (self.action is None or action == self.action)
        )


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local times of day (minutes since midnight) when nothing is sent, except on
    ``except_channels`` and in ``except_categories``; ``start > end`` spans midnight."""

    start: int
    end: int
    except_channels: frozenset[str]
    except_categories: frozenset[str]

    def applies(self, channel: str, category: str) -> bool:
        """Whether quiet hours hold back ``category`` on ``channel``."""
        return (
            self.start != self.end
            and channel not in self.except_channels
            and category not in self.except_categories
        )


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated, compiled policy. Build it with :func:`operators.policy_load.load_policy`."""

    version: str
    channels: tuple[str, ...]
    categories: Mapping[str, float]
    counting_by_type: Mapping[str, tuple[CountingSignal, ...]]
    counting: Mapping[str, CountingSignal]
    absence_signals: tuple[AbsenceSignal, ...]
    text_signals: tuple[TextSignal, ...]
    text_by_type: Mapping[str, tuple[TextSignal, ...]]
    suppressions: Mapping[str, SuppressionSpec]
    suppressions_by_event: Mapping[str, tuple[SuppressionSpec, ...]]
    suppressions_by_signal: Mapping[str, tuple[SuppressionSpec, ...]]
    suppressions_by_feedback: Mapping[str, tuple[SuppressionSpec, ...]]
    consent_revocations: Mapping[str, tuple[tuple[str, str | None], ...]]
    """Feedback outcome -> (channel or ``from_feedback``, purpose or None: every purpose)."""
    caps: tuple[CapSpec, ...]
    longest_cap_window: int
    quiet_hours: QuietHours | None
    moments_by_signal: Mapping[str, tuple[MomentSpec, ...]]
    moments: Mapping[str, MomentSpec]
    actions_by_moment: Mapping[str, tuple[ActionSpec, ...]]
    actions: Mapping[str, ActionSpec]
    consent_purposes: frozenset[str]
    """The consent purposes some action needs: the only ones a customer's context keeps."""
    lowest_min_value: Mapping[str, float]
    """Moment kind -> the lowest ``min_value`` of its actions: below it, a moment is worth
    nothing to anyone."""
    identifier_order: tuple[str, ...]
    identifier_rules: IdentifierRules
    default_timezone: str
    event_types: frozenset[str] | None
    max_record_bytes: int
    max_future_skew: int
    allowed_lateness: int
    """Events up to this far behind their input's clock still count exactly in windows."""
    dead_letter_late: bool
    """Events later than ``allowed_lateness``: dead letters (True) or kept, uncounted (False)."""
    evict_idle_after: int
    """A customer with nothing pending and no event for this long is forgotten."""
    document: Mapping[str, Any]
    """The validated policy as plain data, for the parts compiled by later stages."""
    action_ids: ActionIds = UNKEYED
    """How action ids are issued and checked. Not from the file: the deployment's key, which
    the edges that run the flow set (``dataclasses.replace``)."""


def _names(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _quiet_hours(spec: Mapping[str, Any] | None) -> QuietHours | None:
    if not spec or "default" not in spec:
        return None
    return QuietHours(
        start=_minutes(spec["default"]["start"]),
        end=_minutes(spec["default"]["end"]),
        except_channels=frozenset(spec.get("except_channels", ())),
        except_categories=frozenset(spec.get("except_categories", ())),
    )


def _minutes(hh_mm: str) -> int:
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)


def _selector(selector: Mapping[str, Any], key: str) -> frozenset[str] | None:
    return frozenset(_names(selector[key])) if key in selector else None


def _frozen(table: Mapping[str, list[Any]]) -> Mapping[str, tuple[Any, ...]]:
    return MappingProxyType({k: tuple(v) for k, v in table.items()})


def _path(dotted: str) -> tuple[str, ...]:
    return tuple(dotted.split("."))


def compile_policy(document: Mapping[str, Any], version: str) -> Policy:
    """Compile a schema-valid, cross-checked policy document into a :class:`Policy`."""
    counting: dict[str, list[CountingSignal]] = {}
    counting_by_name: dict[str, CountingSignal] = {}
    absence: list[AbsenceSignal] = []
    text: list[TextSignal] = []
    for name, spec in document["signals"].items():
        if "at_least" in spec:
            signal = CountingSignal(
                name=name,
                on=frozenset(_names(spec["on"])),
                group_by=_path(spec["group_by"]) if "group_by" in spec else None,
                at_least=spec["at_least"],
                within=parse_duration_ms(spec["within"]),
            )
            counting_by_name[name] = signal
            for event_type in signal.on:
                counting.setdefault(event_type, []).append(signal)
        elif "after" in spec:
            unless = _names(spec["unless"])
            absence.append(
                AbsenceSignal(
                    name=name,
                    on=frozenset(_names(spec["on"])) if "on" in spec else None,
                    unless=None if "any" in unless else frozenset(unless),
                    after=parse_duration_ms(spec["after"]),
                )
            )
        else:
            text.append(
                TextSignal(
                    name=name,
                    on=frozenset(_names(spec["on"])),
                    text_field=_path(spec["text_field"]),
                    phrases=tuple(spec["matches_any"]),
                    matcher=PhraseMatcher(spec["matches_any"]),
                )
            )
    text_by_type: dict[str, list[TextSignal]] = {}
    for text_signal in text:
        for event_type in text_signal.on:
            text_by_type.setdefault(event_type, []).append(text_signal)

    moments: dict[str, MomentSpec] = {}
    moments_by_signal: dict[str, list[MomentSpec]] = {}
    for name, spec in document["moments"].items():
        moment = MomentSpec(
            name=name,
            sources=_names(spec["from"]),
            value=float(spec["value"]),
            half_life=parse_duration_ms(spec["half_life"]),
        )
        moments[name] = moment
        for source in moment.sources:
            moments_by_signal.setdefault(source, []).append(moment)

    categories = {name: float(weight) for name, weight in document["categories"].items()}
    actions: dict[str, ActionSpec] = {}
    actions_by_moment: dict[str, list[ActionSpec]] = {}
    for name, spec in document["actions"].items():
        action = ActionSpec(
            name=name,
            moment=spec["moment"],
            channels=tuple(spec["channels"]),
            category=spec["category"],
            priority=categories[spec["category"]],
            consent=spec.get("consent"),
            template=spec["template"],
            min_value=float(spec["min_value"]),
            cooldown=parse_duration_ms(spec.get("cooldown", "0s")),
        )
        actions[name] = action
        actions_by_moment.setdefault(action.moment, []).append(action)

    suppressions: dict[str, SuppressionSpec] = {}
    triggers: dict[str, dict[str, list[SuppressionSpec]]] = {
        "event": {},
        "signal": {},
        "feedback": {},
    }
    revocations: dict[str, list[tuple[str, str | None]]] = {}
    for rule in document.get("suppressions", ()):
        if "revoke_consent" in rule and "feedback" in rule["when"]:
            revoke = rule["revoke_consent"]
            revocations.setdefault(rule["when"]["feedback"], []).append(
                (revoke["channel"], revoke.get("purpose"))
            )
        if "suppress" not in rule:
            continue
        selector = rule["suppress"]
        suppression = SuppressionSpec(
            name=rule["name"],
            categories=_selector(selector, "category"),
            actions=_selector(selector, "action"),
            channels=_selector(selector, "channel"),
            same=_path(selector["same"]) if "same" in selector else None,
            duration=parse_duration_ms(rule["for"]),
        )
        suppressions[suppression.name] = suppression
        ((kind, trigger),) = rule["when"].items()
        triggers[kind].setdefault(trigger, []).append(suppression)

    identity = document.get("identity", {})
    ingest = document.get("ingest", {})
    event_types = document.get("event_types")
    return Policy(
        version=version,
        channels=tuple(document["channels"]),
        categories=MappingProxyType(categories),
        counting_by_type=MappingProxyType({k: tuple(v) for k, v in counting.items()}),
        counting=MappingProxyType(counting_by_name),
        absence_signals=tuple(absence),
        text_signals=tuple(text),
        text_by_type=_frozen(text_by_type),
        suppressions=MappingProxyType(suppressions),
        suppressions_by_event=_frozen(triggers["event"]),
        suppressions_by_signal=_frozen(triggers["signal"]),
        suppressions_by_feedback=_frozen(triggers["feedback"]),
        consent_revocations=_frozen(revocations),
        caps=tuple(
            CapSpec(
                name=cap["name"],
                channel=cap.get("match", {}).get("channel"),
                category=cap.get("match", {}).get("category"),
                action=cap.get("match", {}).get("action"),
                max=cap["max"],
                window=parse_duration_ms(cap["window"]),
            )
            for cap in document.get("caps", ())
        ),
        longest_cap_window=max(
            (parse_duration_ms(cap["window"]) for cap in document.get("caps", ())), default=0
        ),
        quiet_hours=_quiet_hours(document.get("quiet_hours")),
        moments_by_signal=MappingProxyType({k: tuple(v) for k, v in moments_by_signal.items()}),
        moments=MappingProxyType(moments),
        actions_by_moment=MappingProxyType({k: tuple(v) for k, v in actions_by_moment.items()}),
        actions=MappingProxyType(actions),
        consent_purposes=frozenset(a.consent for a in actions.values() if a.consent is not None),
        lowest_min_value=MappingProxyType(
            {moment: min(a.min_value for a in specs) for moment, specs in actions_by_moment.items()}
        ),
        identifier_order=tuple(identity.get("identifiers", DEFAULT_IDENTIFIER_ORDER)),
        identifier_rules=compile_rules(identity, document.get("defaults", {}).get("phone_region")),
        default_timezone=document.get("defaults", {}).get("timezone", DEFAULT_TIMEZONE),
        event_types=frozenset(event_types) if event_types is not None else None,
        max_record_bytes=ingest.get("max_record_bytes", DEFAULT_MAX_RECORD_BYTES),
        max_future_skew=parse_duration_ms(ingest.get("max_future_skew", DEFAULT_MAX_FUTURE_SKEW)),
        allowed_lateness=parse_duration_ms(
            ingest.get("allowed_lateness", DEFAULT_ALLOWED_LATENESS)
        ),
        dead_letter_late=ingest.get("late_events", "keep") == "dead_letter",
        evict_idle_after=parse_duration_ms(
            document.get("customers", {}).get("evict_idle_after", DEFAULT_EVICT_IDLE_AFTER)
        ),
        document=MappingProxyType(dict(document)),
    )
