"""Prometheus metrics: one registry per process, served on ``--metrics-port`` (by
:mod:`flows.kafka.health`)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from operators.context.dates import REASONS as DATE_REASONS
from operators.context.dates import bad_dates
from operators.decisions.decide import QUIET_HOURS
from operators.learning.timing import TIMING
from operators.model import encoding as records
from operators.model.records import DeadLetterReason, Event, Outcome
from operators.policy.compiled import Policy

RECORDS_IN = Counter(
    "concierge_records_in", "Every record read from an input topic or file line, good or bad"
)
EVENTS_IN = Counter(
    "concierge_events_in",
    "Accepted events by type (types the policy does not name: other)",
    ["type"],
)
DEAD_LETTERS = Counter("concierge_dead_letters", "Rejected input records by reason", ["reason"])
DECISIONS = Counter("concierge_decisions", "Decisions by outcome", ["outcome"])
HELD_BACK = Counter(
    "concierge_decisions_held_back",
    "Decisions capped, suppressed or deferred, by the rule that held them back (a cap's or "
    "suppression's name, quiet_hours, or learning.timing)",
    ["outcome", "rule"],
)
ACTIONS = Counter("concierge_actions", "Actions emitted by channel", ["channel"])
MEASURED = Counter(
    "concierge_measured_decisions",
    "Decisions sent or held out, by action and group (sent or held_out): the denominators "
    "of the conversion rates",
    ["action", "group"],
)
HELD_OUT = Counter(
    "concierge_held_out", "Decisions a holdout kept from the channel, by action", ["action"]
)
CONVERSIONS = Counter(
    "concierge_conversions",
    "Conversion records: a sent or held-out decision converted, once per conversion type, by "
    "action and group (sent or held_out)",
    ["action", "group"],
)
CONVERTED = Counter(
    "concierge_converted_decisions",
    "Decisions converted for the first time (by any conversion type), by action and group: "
    "the numerators of the conversion rates",
    ["action", "group"],
)
LEARNING_CHOICES = Counter(
    "concierge_learning_choices",
    "Choices learning made for sent and held-out decisions, by kind (channel or variant), the "
    "arm chosen and how: best (the highest estimate), explored (at random), or control (the "
    "static policy's, for a customer in the control share)",
    ["kind", "arm", "how"],
)
LEARNING_TRIALS = Counter(
    "concierge_learning_trials",
    "Trials scored (sent decisions whose outcome window closed), by action, channel, template "
    "and group (learning, or control: decided by the static policy)",
    ["action", "channel", "template", "group"],
)
LEARNING_OUTCOMES = Counter(
    "concierge_learning_outcomes",
    "Rewarded outcomes of the trials scored, each once per trial, by action, channel, template, "
    "outcome and group: times the outcome's reward is what the arm earned",
    ["action", "channel", "template", "outcome", "group"],
)
LEARNING_MODEL_VERSION = Gauge(
    "concierge_learning_model_version_seconds",
    "The population model (learning.population): the boundary of the newest version this "
    "process has, in event time (Unix seconds); it counts the trials that closed before it",
)
LEARNING_MODEL_AGE = Gauge(
    "concierge_learning_model_age_seconds",
    "The population model: how much older than the latest decision that used it its version "
    "was, in event time (between one and two periods while the input flows)",
)
POPULATION_TRIALS = Counter(
    "concierge_learning_population_trials",
    "Trials the population model's learner has counted into whole periods (on the process "
    "that runs the learner)",
)
CAPACITY_ANSWERS = Counter(
    "concierge_capacity_answers",
    "Capacity: the owner's answers to decisions that asked, by how: granted (to leave at "
    "once), paced (to leave later), fell_through (a next best action granted), paced_out or "
    "over_budget (none granted; the first candidate's refusal)",
    ["how"],
)
CAPACITY_USED = Gauge(
    "concierge_capacity_used",
    "Capacity: sends counted in the current interval of each pace, or period of each budget, "
    "as of how far the owner has answered (event time)",
    ["rule", "kind"],
)
CAPACITY_LEFT = Gauge(
    "concierge_capacity_left",
    "Capacity: sends each pace has left in its current interval, or each budget in its "
    "current period",
    ["rule", "kind"],
)
CAPACITY_BACKLOG = Gauge(
    "concierge_capacity_backlog",
    "Capacity: sends granted by each pace to leave in a later interval (waiting to leave)",
    ["rule"],
)
CAPACITY_WAIT = Gauge(
    "concierge_capacity_wait_seconds",
    "Capacity: how long a send asked for now would wait for an interval of each pace with "
    "room (event time)",
    ["rule"],
)
CAPACITY_OLDEST = Gauge(
    "concierge_capacity_oldest_waiting_seconds",
    "Capacity: how long the oldest send still waiting to leave by each pace has waited since "
    "it was decided (event time; since this process started running the owner)",
    ["rule"],
)
CAPACITY_ELAPSED = Gauge(
    "concierge_capacity_period_elapsed_ratio",
    "Capacity: how much of each budget's current period has gone by, 0 to 1 (outside an "
    "agent shift's hours: 1)",
    ["rule"],
)
CAPACITY_REQUESTS = Gauge(
    "concierge_capacity_requests_waiting",
    "Capacity: decisions the owner holds until every worker has answered past them",
)
RECENT_SENDS = Histogram(
    "concierge_actions_per_customer_7d",
    "Fatigue: at each action written to a channel, the actions that customer got in the 7 "
    "days up to it, itself included",
    buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50),
)
RECORDS_OUT = Counter("concierge_records_out", "Records written, by stream", ["stream"])
RECORDS_REFUSED = Counter(
    "concierge_records_refused",
    "Output records the brokers refused as too large, by stream (each replaced by a smaller "
    "record: a dead letter output_too_large, or a dead letter or transfer without its content)",
    ["stream"],
)
LATENCY = Histogram(
    "concierge_event_to_action_latency_seconds",
    "Wall time from reading the triggering record to handing its action to the producer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PROCESSING = Histogram(
    "concierge_processing_latency_seconds",
    "Wall time from reading a record to writing the decisions it caused",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BAD_DATES = Counter(
    "concierge_bad_dates",
    "Events that start a date signal but carry no usable date (missing, or not an RFC 3339 "
    "date-time or date), by signal and reason: no timer starts, an earlier one stays",
    ["signal", "reason"],
)
LATE_EVENTS = Counter(
    "concierge_late_events",
    "Events further behind their input's clock than the policy's allowed_lateness (kept but "
    "uncounted in windows; with late_events: dead_letter they are dead letters instead)",
)
CUSTOMERS_EVICTED = Counter(
    "concierge_customers_evicted",
    "Customers forgotten after evict_idle_after with nothing pending",
)
CUSTOMERS = Gauge("concierge_customers_in_state", "Customers whose context this process holds")
CUSTOMERS_PACKED = Gauge(
    "concierge_customers_packed",
    "Customers held packed (idle for --pack-idle-ms), revived by their next event or timer",
)
CUSTOMERS_REVIVED = Counter(
    "concierge_customers_revived", "Packed customers revived by an event, a merge or a timer"
)
CONSUMER_LAG = Gauge(
    "concierge_consumer_lag", "Records behind the end of an input partition", ["topic", "partition"]
)
KAFKA_ERRORS = Counter("concierge_kafka_errors", "Errors reported by Kafka clients", ["client"])
RESOLVED = Counter(
    "concierge_identity_resolved",
    "Events by whether their profile has a person identifier (email, phone, loyalty, CRM or "
    'customer id): the identity resolution rate is the share with known="true"',
    ["known"],
)
MERGES = Counter("concierge_identity_merges", "Profiles merged into another")
MERGES_REFUSED = Counter(
    "concierge_identity_merges_refused", "Links refused: over a limit, or a blocked value"
)
PROFILES = Gauge("concierge_identity_profiles", "Profiles the identity graph has created")
ERASURES = Counter(
    "concierge_erasures",
    "Erasure requests, by result: a profile erased (one per profile), or nobody held them",
    ["result"],
)
PROFILES_EXPIRED = Counter(
    "concierge_identity_profiles_expired",
    "Profiles dropped with their context after no event for the policy's identity.retention",
)
TRANSFERS_DROPPED = Counter(
    "concierge_transfers_dropped",
    "Merged contexts in flight to a profile the graph had forgotten since (erased or "
    "expired), dropped",
)
IDENTIFIERS_REJECTED = Counter(
    "concierge_identifiers_rejected",
    "Identifier values not used: empty, blocked by the policy, or not a valid phone number",
    ["kind", "reason"],
)
ALIGNING = Gauge(
    "concierge_alignment_waiting_events",
    "Events the identity step holds until every input partition has read past their time",
)
ALIGNED_BEHIND = Counter(
    "concierge_alignment_behind",
    "Events that reached the identity step after later ones had been resolved (more than "
    "--max-idle-ms behind the other partitions, or out of order in their own): resolved at "
    "once, where replay would have put them in their place",
)
TIMERS_HELD = Gauge(
    "concierge_timer_frontier_lag_seconds",
    "How far behind the wall clock timers are held: the cluster's input has been resolved up "
    "to this long ago (grows while a partition reads a backlog, or the identity step is down)",
)

BUILD_INFO = Gauge(
    "concierge_build_info",
    "Always 1: the Concierge version this process runs and the version of the policy it loaded",
    ["version", "policy_version"],
)
TIMERS_PENDING = Gauge(
    "concierge_timers_pending",
    "Timers this process's customers have pending: kind=signal, absence and date signals "
    "waiting to fire; kind=decision, decisions deferred by quiet hours or waiting for a cap's "
    "slot",
    ["kind"],
)
SIGNAL_TIMERS = TIMERS_PENDING.labels("signal")
DEFERRED_DECISIONS = TIMERS_PENDING.labels("decision")
SNAPSHOT_AGE = Gauge(
    "concierge_snapshot_age_seconds",
    "Seconds since this process last saw a recovery snapshot committed in its recovery "
    "partitions (since it started, until the first): what a crash now would replay",
)

KAFKA_CLIENTS = ("consumer", "producer", "transfers", "frontier", "models", "grants")
"""The ``client`` label of :data:`KAFKA_ERRORS`: the clients, and the internal topics whose
records can be unreadable."""

WELL_KNOWN_TYPES = (
    "consent_changed",
    "feedback",
    "identify",
    "purchase",
    "complaint",
    "erasure_requested",
)


def type_labels(policy: Policy) -> frozenset[str]:
    """Event types that get their own label: bounded, so a bad producer cannot explode it."""
    named: set[str] = set(WELL_KNOWN_TYPES)
    named.update(policy.counting_by_type)
    for absence in policy.absence_signals:
        named.update(absence.on or ())
        named.update(absence.unless or ())
    for dated in policy.date_signals:
        named.update(dated.on)
        named.update(dated.unless or ())
    for text in policy.text_signals:
        named.update(text.on)
    if policy.event_types is not None:
        named.update(policy.event_types)
    return frozenset(named)


def declare_build(policy: Policy, version: str) -> None:
    """Say which version runs with which policy: one series per process, always 1."""
    BUILD_INFO.labels(version, policy.version).set(1)


def declare_labels(policy: Policy) -> None:
    """Start every labelled counter at zero for each value it can take under ``policy``, so a
    rate of something that has not happened yet reads 0 rather than nothing, and ``increase()``
    sees its first occurrence after a start."""
    for outcome in Outcome:
        DECISIONS.labels(outcome.value)
    for reason in DeadLetterReason:
        DEAD_LETTERS.labels(reason.value)
    streams = [records.DECISIONS, records.DEAD_LETTERS, records.AUDIT]
    if policy.conversions_by_type:
        streams.append(records.CONVERSIONS)
    if policy.learning is not None:
        streams.append(records.TRIALS)
    for channel in policy.channels:
        ACTIONS.labels(channel)
        streams.append(records.ACTIONS_PREFIX + channel)
    for stream in streams:
        RECORDS_OUT.labels(stream)
    for outcome, rule in held_back_rules(policy):
        HELD_BACK.labels(outcome, rule)
    for event_type in (*type_labels(policy), "other"):
        EVENTS_IN.labels(event_type)
    for client in KAFKA_CLIENTS:
        KAFKA_ERRORS.labels(client)
    for known in ("true", "false"):
        RESOLVED.labels(known)
    for result in ("erased", "nobody"):
        ERASURES.labels(result)
    if policy.learning is not None:
        _declare_learning(policy)
    if policy.capacity is not None:
        for how in CAPACITY_HOWS:
            CAPACITY_ANSWERS.labels(how)


CAPACITY_HOWS = ("granted", "paced", "fell_through", "paced_out", "over_budget")
"""The ``how`` label of :data:`CAPACITY_ANSWERS`."""


def _declare_learning(policy: Policy) -> None:
    """Each arm learning may choose, and each trial and rewarded outcome it may count."""
    learning = policy.learning
    assert learning is not None
    hows = ("best", "explored", "control")
    for action in policy.actions.values():
        for how in hows:
            for channel in action.channels:
                LEARNING_CHOICES.labels("channel", channel, how)
            if len(action.variants) > 1:
                for template in action.variants:
                    LEARNING_CHOICES.labels("variant", template, how)
        for channel in action.channels:
            for template in action.variants:
                for group in ("learning", "control"):
                    LEARNING_TRIALS.labels(action.name, channel, template, group)
                    for outcome in learning.rewards:
                        LEARNING_OUTCOMES.labels(action.name, channel, template, outcome, group)


def held_back_rules(policy: Policy) -> list[tuple[str, str]]:
    """Every (outcome, rule) :data:`HELD_BACK` can count under ``policy``: a cap's name for
    capped, a suppression's or fatigue rule's for suppressed, quiet hours or send-time
    learning for deferred, an eligibility rule's for ineligible, a pace's for paced out, a
    budget's for over budget."""
    rules = [(Outcome.CAPPED.value, cap.name) for cap in policy.caps]
    rules += [(Outcome.SUPPRESSED.value, name) for name in policy.suppressions]
    rules += [(Outcome.SUPPRESSED.value, rule.name) for rule in policy.fatigue]
    if policy.quiet_hours is not None:
        rules.append((Outcome.DEFERRED.value, QUIET_HOURS))
    if policy.learning is not None and policy.learning.wait_up_to:
        rules.append((Outcome.DEFERRED.value, TIMING))
    eligibility = {r.name for rules in policy.eligibility_by_action.values() for r in rules}
    rules += [(Outcome.INELIGIBLE.value, name) for name in sorted(eligibility)]
    if policy.capacity is not None:
        rules += [(Outcome.PACED_OUT.value, pace.name) for pace in policy.capacity.paces]
        rules += [(Outcome.OVER_BUDGET.value, b.name) for b in policy.capacity.budgets]
    return rules


def declare_dates(policy: Policy) -> None:
    """Start the bad-date counter at zero for every date signal and reason."""
    for signal in policy.date_signals:
        for reason in DATE_REASONS:
            BAD_DATES.labels(signal.name, reason)


def count_bad_dates(policy: Policy, events: Iterable[Event]) -> Tally[tuple[str, str]]:
    """Count the events of one batch that start a date signal without a usable date; the
    (signal, reason) tally."""
    found: Tally[tuple[str, str]] = Tally(
        bad for event in events for bad in bad_dates(policy, event)
    )
    for (signal, reason), n in found.items():
        BAD_DATES.labels(signal, reason).inc(n)
    return found


def declare_measurement(policy: Policy) -> None:
    """Start the measurement counters at zero for every action and group, when the policy
    measures: a rate whose numerator has not moved yet reads 0 rather than nothing, and
    ``increase()`` sees the first conversion after a start."""
    if policy.holdouts is None and not policy.conversions_by_type:
        return
    for action in policy.actions:
        HELD_OUT.labels(action)
        for group in ("sent", "held_out"):
            MEASURED.labels(action, group)
            CONVERTED.labels(action, group)
            CONVERSIONS.labels(action, group)


def count_ingested(events: Iterable[Event], reasons: Iterable[str], known: frozenset[str]) -> None:
    """Count one batch of ingest results in a handful of metric updates."""
    records = 0
    types: Tally[str] = Tally()
    rejected: Tally[tuple[str, str]] = Tally()
    late = 0
    for event in events:
        types[event.type] += 1
        if event.rejected_identifiers:
            rejected.update(event.rejected_identifiers)
        if event.late:
            late += 1
    if late:
        LATE_EVENTS.inc(late)
    for (kind, why), n in rejected.items():
        IDENTIFIERS_REJECTED.labels(kind, why).inc(n)
    for event_type, n in types.items():
        EVENTS_IN.labels(event_type if event_type in known else "other").inc(n)
        records += n
    for reason, n in Tally(reasons).items():
        DEAD_LETTERS.labels(reason).inc(n)
        if reason == "late_event":
            LATE_EVENTS.inc(n)
        records += n
    if records:
        RECORDS_IN.inc(records)


def run_totals() -> dict[str, int]:
    """What this process has done since it started: records read, dead letters, decisions
    and actions (the structured fields of the log's stop line)."""
    return {
        "records_read": _total(RECORDS_IN),
        "dead_letters": _total(DEAD_LETTERS),
        "decisions": _total(DECISIONS),
        "actions": _total(ACTIONS),
    }


def run_counts(totals: dict[str, int]) -> str:
    """:func:`run_totals` in words, for the log's stop line."""
    return (
        f"{totals['records_read']:,} records read, {totals['dead_letters']:,} dead letters, "
        f"{totals['decisions']:,} decisions, {totals['actions']:,} actions"
    )


def _total(counter: Counter) -> int:
    """A counter's total over its labels."""
    return int(
        sum(
            sample.value
            for family in counter.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )
    )


def count_resolved(known: int, unknown: int, profiles: int) -> None:
    if known:
        RESOLVED.labels("true").inc(known)
    if unknown:
        RESOLVED.labels("false").inc(unknown)
    PROFILES.set(profiles)


def count_merges(merges: int, refused: int) -> None:
    if merges:
        MERGES.inc(merges)
    if refused:
        MERGES_REFUSED.inc(refused)


def count_erasures(erased: int, nobody: int) -> None:
    if erased:
        ERASURES.labels("erased").inc(erased)
    if nobody:
        ERASURES.labels("nobody").inc(nobody)


def count_aligned(waiting: int, behind: int) -> None:
    ALIGNING.set(waiting)
    if behind:
        ALIGNED_BEHIND.inc(behind)
