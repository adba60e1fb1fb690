"""The numbers of ``concierge report``, read from one replay's output files.

Everything is counted from the records themselves (and ``summary.json`` for what replay
measured), so the page says exactly what the files say.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from flows import measure
from flows.commands.explain import ExplainError, replayed_policy, replayed_zones, zone_at
from operators.decisions.quiet_hours import quiet_until
from operators.model.timefmt import parse_ms, zone
from operators.policy.compiled import Policy

WEEK_MS = 7 * 24 * 3_600_000
HOUR_MS = 3_600_000
DELAY_BINS = ((0, "< 1h"), (1, "1-2h"), (2, "2-4h"), (4, "4-8h"), (8, "8-12h"), (12, "12-24h"))
DELAY_LAST = "24h+"
HELD = "quiet hours apply"
EXEMPT = "exempt (channel or category)"


class ReportError(ValueError):
    """A directory that holds no replay this version can report on."""


@dataclass
class Run:
    """One replay, as the report shows it."""

    path: Path
    policy: Policy
    summary: dict[str, Any]
    outcomes: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(outcome, rule) of the decisions that were not sent."""
    peaks: Counter[int] = field(default_factory=Counter)
    """Actions in a person's busiest 7 days -> people."""
    hours: dict[str, list[int]] = field(default_factory=lambda: {HELD: [0] * 24, EXEMPT: [0] * 24})
    """Actions sent by the customer's local hour, where quiet hours apply and where not."""
    in_quiet_hours: int = 0
    """Actions sent inside quiet hours that apply to them (none, unless the engine erred)."""
    delays: dict[str, Counter[str]] = field(default_factory=dict)
    """Rule -> deferrals by how long they waited (:data:`DELAY_BINS`)."""
    delay_hours: dict[str, list[float]] = field(default_factory=dict)
    estimates: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Learning: arm (``channel push``, ``template t``) -> day -> [sum of its estimates, decisions
    that weighed it], over the learning customers' decisions."""
    rewards: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Learning: group (``learning``, ``control``) -> day sent -> [reward, trials scored]."""
    leaves: list[tuple[int, int, str, str]] = field(default_factory=list)
    """Each action sent: when it may leave (its ``send_at``, else ``decided_at``), when it was
    decided, its action and channel (what capacity's paces and budgets count)."""
    population: dict[str, dict[str, float]] = field(default_factory=dict)
    """Learning's population model: arm (within its split: ``channel push, region=north``)
    -> version (its boundary) -> what that version says the arm earns per send."""

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    @property
    def sent(self) -> int:
        return sum(sum(by_hour) for by_hour in self.hours.values())

    @property
    def lift(self) -> dict[str, dict[str, Any]] | None:
        lift: dict[str, dict[str, Any]] | None = self.summary.get("lift")
        return lift


def read_run(path: Path) -> Run:
    """The report's numbers for the replay written into ``path``."""
    try:
        policy = replayed_policy(path)
    except ExplainError as err:
        raise ReportError(str(err)) from None
    try:
        summary = orjson.loads((path / "summary.json").read_bytes())
    except (OSError, orjson.JSONDecodeError) as err:
        raise ReportError(f"cannot read {path / 'summary.json'}: {err}") from None
    run = Run(path, policy, summary)
    for d in _records(path / "decisions.jsonl"):
        run.outcomes[d["outcome"]] += 1
        learned = d.get("learning")
        if learned is not None and not learned["control"]:
            _count_estimates(run, d["at"][:10], learned)
        if learned is not None and "population" in learned:
            _note_population(run, learned)
        if d["outcome"] != "sent":
            run.by_rule[d["outcome"], d.get("rule") or "-"] += 1
        if d["outcome"] == "deferred" and "until" in d:
            waited = (parse_ms(d["until"]) - parse_ms(d["at"])) / HOUR_MS
            rule = d.get("rule") or "-"
            run.delays.setdefault(rule, Counter())[_delay_bin(waited)] += 1
            run.delay_hours.setdefault(rule, []).append(waited)
    _count_sends(run, path)
    for trial in _records(path / "trials.jsonl"):
        group = "control" if trial["control"] else "learning"
        tally = run.rewards.setdefault(group, {}).setdefault(trial["decided_at"][:10], [0.0, 0])
        tally[0] += trial["reward"]
        tally[1] += 1
    return run


def _arms(learned: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each arm a decision's learning weighed, named as the report shows it (``channel
    push``, ``template t``)."""
    for kind, shown in (("channel", "channel"), ("variant", "template")):
        for arm in learned.get(kind, {}).get("arms", ()):
            yield f"{shown} {arm['arm']}", arm


def _count_estimates(run: Run, day: str, learned: dict[str, Any]) -> None:
    for name, arm in _arms(learned):
        tally = run.estimates.setdefault(name, {}).setdefault(day, [0.0, 0])
        tally[0] += arm["estimate"]
        tally[1] += 1


def _note_population(run: Run, learned: dict[str, Any]) -> None:
    model = learned["population"]
    split = f", {model['split']}" if model.get("split") else ""
    for name, arm in _arms(learned):
        versions = run.population.setdefault(f"{name}{split}", {})
        versions[model["model"]] = arm["population"]["estimate"]


def _delay_bin(hours: float) -> str:
    if hours >= 24:
        return DELAY_LAST
    return next(name for low, name in reversed(DELAY_BINS) if hours >= low)


def _count_sends(run: Run, path: Path) -> None:
    """Actions by local hour, and each person's busiest 7 days (a profile merged into
    another counted with it)."""
    zones = replayed_zones(path)
    default = run.policy.default_timezone
    quiet = run.policy.quiet_hours
    merges = measure.merged_into(path / "audit.jsonl")
    sends: dict[str, list[int]] = defaultdict(list)
    for channel_file in sorted(path.glob("actions.*.jsonl")):
        for a in _records(channel_file):
            at, customer = parse_ms(a["decided_at"]), a["customer_id"]
            sends[measure.survivor(customer, merges)].append(at)
            leaves = parse_ms(a["send_at"]) if "send_at" in a else at
            run.leaves.append((leaves, at, a["action"], a["channel"]))
            name = zone_at(zones.get(customer, []), at, default)
            tz = zone(name) or zone(default)
            hour = datetime.fromtimestamp(at / 1000, tz).hour
            applies = quiet is not None and quiet.applies(a["channel"], a["category"])
            run.hours[HELD if applies else EXEMPT][hour] += 1
            if (
                applies
                and quiet is not None
                and tz is not None
                and quiet_until(quiet, at, tz, a["channel"]) is not None
            ):
                run.in_quiet_hours += 1
    for times in sends.values():
        run.peaks[_busiest_week(sorted(times))] += 1


def _busiest_week(times: list[int]) -> int:
    """The most actions within any 7 days (the later edge included, as caps count)."""
    return max(i - bisect.bisect_right(times, at - WEEK_MS) + 1 for i, at in enumerate(times))


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as err:
                raise ReportError(f"{path}:{number}: not a record ({err})") from None
