"""Compile a checked policy document, section by section, into a :class:`Policy`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from operators.model.durations import parse_duration_ms
from operators.model.identifiers import IdentifierRules, compile_rules
from operators.model.state import FEEDBACK_WINDOW, attribute_text
from operators.policy.compiled import (
    DEFAULT_ALLOWED_LATENESS,
    DEFAULT_EVICT_IDLE_AFTER,
    DEFAULT_IDENTIFIER_ORDER,
    DEFAULT_MAX_FUTURE_SKEW,
    DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_TIMEZONE,
    AbsenceSignal,
    ActionSpec,
    Budget,
    Capacity,
    CapSpec,
    ConversionSpec,
    CountingSignal,
    DateSignal,
    EligibilityRule,
    FatigueRule,
    Holdouts,
    Learning,
    MomentSpec,
    Pace,
    Period,
    Policy,
    QuietHours,
    SuppressionSpec,
    TextSignal,
)
from operators.policy.text import PhraseMatcher

Spec = Mapping[str, Any]
Signals = tuple[
    Mapping[str, tuple[CountingSignal, ...]],
    Mapping[str, CountingSignal],
    tuple[AbsenceSignal, ...],
    tuple[DateSignal, ...],
    tuple[TextSignal, ...],
    Mapping[str, tuple[TextSignal, ...]],
]
"""Counting signals by event type and by name, absence signals, date signals, text signals
and those by event type."""
Moments = tuple[Mapping[str, MomentSpec], Mapping[str, tuple[MomentSpec, ...]]]
"""Moments by name, and by the signal that opens them."""
Actions = tuple[Mapping[str, ActionSpec], Mapping[str, tuple[ActionSpec, ...]]]
"""Actions by name, and by their moment."""
Triggered = Mapping[str, tuple[SuppressionSpec, ...]]
Suppressions = tuple[
    Mapping[str, SuppressionSpec],
    Triggered,
    Triggered,
    Triggered,
    Mapping[str, tuple[tuple[str, str | None], ...]],
]
"""Suppressions by name; started by event type, by signal and by feedback outcome; and
consent revocations by feedback outcome."""
Ingest = tuple[frozenset[str] | None, int, int, int, bool]
"""Event types, max record bytes, max future skew, allowed lateness, late dead letters."""


def compile_policy(document: Mapping[str, Any], version: str) -> Policy:
    """Compile a schema-valid, cross-checked policy document into a :class:`Policy`."""
    counting_by_type, counting, absence, dates, text, text_by_type = _signals(document["signals"])
    moments, moments_by_signal = _moments(document["moments"])
    categories = {name: float(weight) for name, weight in document["categories"].items()}
    actions, actions_by_moment = _actions(document["actions"], categories)
    suppressions, by_event, by_signal, by_feedback, revocations = _suppressions(
        document.get("suppressions", ())
    )
    caps = _caps(document.get("caps", ()))
    quiet_hours = _quiet_hours(document.get("quiet_hours"))
    defaults = document.get("defaults", {})
    identifier_order, identifier_rules = _identity(
        document.get("identity", {}), defaults, "reachability" in document
    )
    event_types, max_bytes, skew, lateness, dead_letter_late = _ingest(document)
    conversions = _conversions(document.get("conversions", {}))
    fatigue = _fatigue(document.get("fatigue", ()))
    return Policy(
        version=version,
        channels=tuple(document["channels"]),
        categories=MappingProxyType(categories),
        counting_by_type=counting_by_type,
        counting=counting,
        absence_signals=absence,
        date_signals=dates,
        text_signals=text,
        text_by_type=text_by_type,
        suppressions=suppressions,
        suppressions_by_event=by_event,
        suppressions_by_signal=by_signal,
        suppressions_by_feedback=by_feedback,
        consent_revocations=revocations,
        caps=caps,
        longest_cap_window=max((cap.window for cap in caps), default=0),
        quiet_hours=quiet_hours,
        moments_by_signal=moments_by_signal,
        moments=moments,
        actions_by_moment=actions_by_moment,
        actions=actions,
        consent_purposes=frozenset(a.consent for a in actions.values() if a.consent is not None),
        lowest_min_value=MappingProxyType(
            {moment: min(a.min_value for a in specs) for moment, specs in actions_by_moment.items()}
        ),
        identifier_order=identifier_order,
        identifier_rules=identifier_rules,
        default_timezone=defaults.get("timezone", DEFAULT_TIMEZONE),
        event_types=event_types,
        max_record_bytes=max_bytes,
        max_future_skew=skew,
        allowed_lateness=lateness,
        dead_letter_late=dead_letter_late,
        evict_idle_after=_evict_idle_after(document),
        attributes=MappingProxyType(
            {name: _path(path) for name, path in document.get("attributes", {}).items()}
        ),
        eligibility_by_action=_eligibility(document.get("eligibility", ()), actions),
        reachability=MappingProxyType(
            {c: frozenset(kinds) for c, kinds in document.get("reachability", {}).items()}
        ),
        fatigue=fatigue,
        longest_send_memory=max(
            [FEEDBACK_WINDOW, *(cap.window for cap in caps), *(rule.within for rule in fatigue)]
        ),
        holdouts=_holdouts(document.get("holdouts")),
        conversions_by_type=MappingProxyType({c.type: c for c in conversions}),
        conversions_by_action=MappingProxyType(
            {name: tuple(c for c in conversions if c.measures(name)) for name in actions}
        ),
        learning=_learning(document.get("learning")),
        document=MappingProxyType(dict(document)),
        capacity=_capacity(document.get("capacity"), defaults.get("timezone", DEFAULT_TIMEZONE)),
    )


def _signals(section: Mapping[str, Spec]) -> Signals:
    """The ``signals`` section, each signal indexed by the event types it watches."""
    counting: dict[str, list[CountingSignal]] = {}
    counting_by_name: dict[str, CountingSignal] = {}
    absence: list[AbsenceSignal] = []
    dates: list[DateSignal] = []
    text: list[TextSignal] = []
    for name, spec in section.items():
        if "at_least" in spec:
            signal = _counting_signal(name, spec)
            counting_by_name[name] = signal
            for event_type in signal.on:
                counting.setdefault(event_type, []).append(signal)
        elif "after" in spec:
            absence.append(_absence_signal(name, spec))
        elif "before" in spec:
            dates.append(_date_signal(name, spec))
        else:
            text.append(_text_signal(name, spec))
    text_by_type: dict[str, list[TextSignal]] = {}
    for text_signal in text:
        for event_type in text_signal.on:
            text_by_type.setdefault(event_type, []).append(text_signal)
    return (
        _frozen(counting),
        MappingProxyType(counting_by_name),
        tuple(absence),
        tuple(dates),
        tuple(text),
        _frozen(text_by_type),
    )


def _counting_signal(name: str, spec: Spec) -> CountingSignal:
    """A signal with ``at_least`` and ``within``."""
    return CountingSignal(
        name=name,
        on=frozenset(_names(spec["on"])),
        group_by=_path(spec["group_by"]) if "group_by" in spec else None,
        at_least=spec["at_least"],
        within=parse_duration_ms(spec["within"]),
    )


def _absence_signal(name: str, spec: Spec) -> AbsenceSignal:
    """A signal with ``after``; ``any`` among its ``unless`` types means any event."""
    unless = _names(spec["unless"])
    return AbsenceSignal(
        name=name,
        on=frozenset(_names(spec["on"])) if "on" in spec else None,
        unless=None if "any" in unless else frozenset(unless),
        after=parse_duration_ms(spec["after"]),
    )


def _date_signal(name: str, spec: Spec) -> DateSignal:
    """A signal with ``at`` and ``before``; ``any`` among its ``unless`` types means any
    event, and no ``unless`` none."""
    unless = _names(spec.get("unless", []))
    return DateSignal(
        name=name,
        on=frozenset(_names(spec["on"])),
        at=_path(spec["at"]),
        before=parse_duration_ms(spec["before"]),
        unless=None if "any" in unless else frozenset(unless),
    )


def _text_signal(name: str, spec: Spec) -> TextSignal:
    """A signal with ``text_field`` and ``matches_any``, its phrases compiled to a matcher."""
    return TextSignal(
        name=name,
        on=frozenset(_names(spec["on"])),
        text_field=_path(spec["text_field"]),
        phrases=tuple(spec["matches_any"]),
        matcher=PhraseMatcher(spec["matches_any"]),
    )


def _moments(section: Mapping[str, Spec]) -> Moments:
    """The ``moments`` section, each moment indexed by the signals that open it."""
    moments: dict[str, MomentSpec] = {}
    moments_by_signal: dict[str, list[MomentSpec]] = {}
    for name, spec in section.items():
        moment = MomentSpec(
            name=name,
            sources=_names(spec["from"]),
            value=float(spec["value"]),
            half_life=parse_duration_ms(spec["half_life"]),
        )
        moments[name] = moment
        for source in moment.sources:
            moments_by_signal.setdefault(source, []).append(moment)
    return MappingProxyType(moments), _frozen(moments_by_signal)


def _actions(section: Mapping[str, Spec], categories: Mapping[str, float]) -> Actions:
    """The ``actions`` section, each action ranked by the weight of its category and
    indexed by its moment."""
    actions: dict[str, ActionSpec] = {}
    actions_by_moment: dict[str, list[ActionSpec]] = {}
    for name, spec in section.items():
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
            variants=(spec["template"], *spec.get("variants", ())),
        )
        actions[name] = action
        actions_by_moment.setdefault(action.moment, []).append(action)
    return MappingProxyType(actions), _frozen(actions_by_moment)


def _suppressions(rules: Iterable[Spec]) -> Suppressions:
    """The ``suppressions`` section: suppressions indexed by what starts them, and the
    consent each feedback outcome revokes."""
    suppressions: dict[str, SuppressionSpec] = {}
    triggers: dict[str, dict[str, list[SuppressionSpec]]] = {
        "event": {},
        "signal": {},
        "feedback": {},
    }
    revocations: dict[str, list[tuple[str, str | None]]] = {}
    for rule in rules:
        if "revoke_consent" in rule and "feedback" in rule["when"]:
            revoke = rule["revoke_consent"]
            revocations.setdefault(rule["when"]["feedback"], []).append(
                (revoke["channel"], revoke.get("purpose"))
            )
        if "suppress" not in rule:
            continue
        suppression = _suppression(rule)
        suppressions[suppression.name] = suppression
        ((kind, trigger),) = rule["when"].items()
        triggers[kind].setdefault(trigger, []).append(suppression)
    return (
        MappingProxyType(suppressions),
        _frozen(triggers["event"]),
        _frozen(triggers["signal"]),
        _frozen(triggers["feedback"]),
        _frozen(revocations),
    )


def _suppression(rule: Spec) -> SuppressionSpec:
    """A suppression rule with a ``suppress`` selector."""
    selector = rule["suppress"]
    return SuppressionSpec(
        name=rule["name"],
        categories=_selector(selector, "category"),
        actions=_selector(selector, "action"),
        channels=_selector(selector, "channel"),
        same=_path(selector["same"]) if "same" in selector else None,
        duration=parse_duration_ms(rule["for"]),
    )


def _caps(section: Iterable[Spec]) -> tuple[CapSpec, ...]:
    """The ``caps`` section, in order."""
    return tuple(
        CapSpec(
            name=cap["name"],
            **_send_match(cap),
            max=cap["max"],
            window=parse_duration_ms(cap["window"]),
        )
        for cap in section
    )


def _send_match(spec: Spec) -> dict[str, str | None]:
    """The ``match`` of a cap or fatigue rule, as :class:`SendMatch`'s fields."""
    match = spec.get("match", {})
    return {key: match.get(key) for key in ("channel", "category", "action")}


def _fatigue(section: Iterable[Spec]) -> tuple[FatigueRule, ...]:
    """The ``fatigue`` section, in order."""
    return tuple(
        FatigueRule(
            name=rule["name"],
            **_send_match(rule),
            ignored=rule["ignored"],
            within=parse_duration_ms(rule["within"]),
            engaged_within=parse_duration_ms(rule["engaged_within"]),
        )
        for rule in section
    )


def _quiet_hours(spec: Spec | None) -> QuietHours | None:
    """The ``quiet_hours`` section; None when it gives no ``default`` hours."""
    if not spec or "default" not in spec:
        return None
    return QuietHours(
        start=_minutes(spec["default"]["start"]),
        end=_minutes(spec["default"]["end"]),
        except_channels=frozenset(spec.get("except_channels", ())),
        except_categories=frozenset(spec.get("except_categories", ())),
        channels=MappingProxyType(
            {
                channel: (_minutes(window["start"]), _minutes(window["end"]))
                for channel, window in spec.get("channels", {}).items()
            }
        ),
        release_over=parse_duration_ms(spec["release_over"]) if "release_over" in spec else 0,
    )


def _identity(
    identity: Spec, defaults: Spec, tells_kinds: bool
) -> tuple[tuple[str, ...], IdentifierRules]:
    """The ``identity`` section: the identifier order, strongest first, and its rules."""
    return (
        tuple(identity.get("identifiers", DEFAULT_IDENTIFIER_ORDER)),
        compile_rules(identity, defaults.get("phone_region"), tells_kinds),
    )


def _ingest(document: Spec) -> Ingest:
    """The ``event_types`` and ``ingest`` settings, defaults filled in."""
    event_types = document.get("event_types")
    ingest = document.get("ingest", {})
    return (
        frozenset(event_types) if event_types is not None else None,
        ingest.get("max_record_bytes", DEFAULT_MAX_RECORD_BYTES),
        parse_duration_ms(ingest.get("max_future_skew", DEFAULT_MAX_FUTURE_SKEW)),
        parse_duration_ms(ingest.get("allowed_lateness", DEFAULT_ALLOWED_LATENESS)),
        ingest.get("late_events", "keep") == "dead_letter",
    )


def _eligibility(
    rules: Iterable[Spec], actions: Mapping[str, ActionSpec]
) -> Mapping[str, tuple[EligibilityRule, ...]]:
    """The ``eligibility`` section, each rule indexed by the actions it applies to."""
    compiled = [
        EligibilityRule(
            name=rule["name"],
            actions=frozenset(rule["actions"]) if "actions" in rule else None,
            categories=frozenset(rule["categories"]) if "categories" in rule else None,
            require=MappingProxyType(_values(rule.get("require", {}))),
            exclude=MappingProxyType(_values(rule.get("exclude", {}))),
        )
        for rule in rules
    ]
    return MappingProxyType(
        {
            name: tuple(rule for rule in compiled if rule.selects(action))
            for name, action in actions.items()
            if any(rule.selects(action) for rule in compiled)
        }
    )


def _values(listed: Spec) -> dict[str, frozenset[str]]:
    """Attribute -> its listed values, as the text an event's value is compared as."""
    return {
        name: frozenset(text for v in values if (text := attribute_text(v)) is not None)
        for name, values in listed.items()
    }


def _holdouts(spec: Spec | None) -> Holdouts | None:
    """The ``holdouts`` section; a missing global group holds out no one globally."""
    if spec is None:
        return None
    control = spec.get("global", {})
    categories = control.get("categories")
    return Holdouts(
        salt=spec["salt"],
        global_share=float(control.get("share", 0.0)),
        global_categories=frozenset(categories) if categories is not None else None,
        action_shares=MappingProxyType(
            {name: float(share) for name, share in spec.get("actions", {}).items()}
        ),
    )


def _conversions(section: Mapping[str, Spec]) -> tuple[ConversionSpec, ...]:
    """The ``conversions`` section, one per event type."""
    return tuple(
        ConversionSpec(
            type=event_type,
            within=parse_duration_ms(spec["within"]),
            actions=frozenset(spec["actions"]) if "actions" in spec else None,
        )
        for event_type, spec in section.items()
    )


LEARNING_HALF_LIFE = "30d"
LEARNING_EXPLORE = 0.1
PRIOR_TRIALS = 5.0


def _learning(spec: Spec | None) -> Learning | None:
    """The ``learning`` section."""
    if spec is None:
        return None
    prior = spec.get("prior", {})
    choose = spec.get("choose", ("channel", "variant"))
    timing = spec.get("timing", {})
    categories = timing.get("categories")
    population = spec.get("population")
    return Learning(
        rewards=MappingProxyType({name: float(value) for name, value in spec["rewards"].items()}),
        window=parse_duration_ms(spec["window"]),
        half_life=parse_duration_ms(spec.get("half_life", LEARNING_HALF_LIFE)),
        explore=float(spec.get("explore", LEARNING_EXPLORE)),
        prior_reward=float(prior.get("reward", 0.0)),
        prior_trials=float(prior.get("trials", PRIOR_TRIALS)),
        control=float(spec.get("control", 0.0)),
        salt=spec["salt"],
        channel="channel" in choose,
        variant="variant" in choose,
        order="order" in choose,
        wait_up_to=parse_duration_ms(timing.get("wait_up_to", "0s")),
        timing_categories=frozenset(categories) if categories is not None else None,
        population_every=parse_duration_ms(population["every"]) if population else None,
        population_by=_names(population.get("by", ())) if population else (),
    )


def _capacity(spec: Spec | None, timezone: str) -> Capacity | None:
    """The ``capacity`` section (None: nothing limits what the deployment sends)."""
    if not spec or not (spec.get("paces") or spec.get("budgets")):
        return None
    paces = tuple(
        Pace(name, int(pace["limit"]), parse_duration_ms(pace["per"]))
        for name, pace in spec.get("paces", {}).items()
    )
    budgets = tuple(
        Budget(
            name,
            int(budget["limit"]),
            _period(budget, timezone),
            MappingProxyType({k: float(v) for k, v in budget.get("reserve", {}).items()}),
            budget.get("channel"),
            budget.get("action"),
            budget.get("category"),
        )
        for name, budget in spec.get("budgets", {}).items()
    )
    return Capacity(paces, budgets)


def _period(budget: Spec, timezone: str) -> Period:
    """A budget's period: a local day (an agent shift's hours of it) or week, or a
    duration."""
    per = budget["per"]
    if per not in ("day", "week"):
        return Period(every=parse_duration_ms(per))
    zone = ZoneInfo(budget.get("timezone", timezone))
    hours = budget.get("hours")
    if hours is None:
        return Period(days=1 if per == "day" else 7, zone=zone)
    opens, closes = (int(t[:2]) * 60 + int(t[3:]) for t in hours.split("-"))
    return Period(days=1, zone=zone, opens=opens, closes=closes)


def _evict_idle_after(document: Spec) -> int:
    """The ``customers`` setting: how long an idle customer is kept (ms)."""
    customers = document.get("customers", {})
    return parse_duration_ms(customers.get("evict_idle_after", DEFAULT_EVICT_IDLE_AFTER))


def _names(value: str | list[str]) -> tuple[str, ...]:
    """One name or a list of them, as a tuple."""
    return (value,) if isinstance(value, str) else tuple(value)


def _minutes(hh_mm: str) -> int:
    """``HH:MM`` in minutes since midnight."""
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)


def _selector(selector: Spec, key: str) -> frozenset[str] | None:
    """The names a selector gives at ``key``, or None (any) when it gives none."""
    return frozenset(_names(selector[key])) if key in selector else None


def _frozen(table: Mapping[str, list[Any]]) -> Mapping[str, tuple[Any, ...]]:
    """A read-only copy of ``table`` with tuples for lists."""
    return MappingProxyType({k: tuple(v) for k, v in table.items()})


def _path(dotted: str) -> tuple[str, ...]:
    """A dotted field path, split."""
    return tuple(dotted.split("."))
