"""``concierge diff``: what a policy change does, from two replays of the same events.

Decisions are counted by action x outcome x rule (never by reason: reasons embed times, so
counting them would split every count per time). A customer changed when the decisions
about them differ; their decisions are compared per *opportunity*: the action, the moment
and its group, and the events that opened it. One opportunity may be decided several times
(deferred, then sent), so each side is a sequence in time order, and the decisions of one
instant (outranked, then sent) in the order ``decisions.jsonl`` gives them, as are the
opportunities first decided at one instant.

Each replay records a digest of what it read (``summary.json`` ``input``): two replays of
different files are told apart, and a replay made before it recorded one is said to be
one whose input cannot be told.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from flows.commands.terminal import counted
from operators.decisions.decide import DROPPED_WHEN_CAPPED
from operators.model.timefmt import parse_ms

NONE = "-"
"""How a decision without a rule is counted and shown."""
DEFAULT_SAMPLE = 10

Opportunity = tuple[str, str, str, tuple[str, ...]]
"""(action, moment, group or ``-``, triggered_by)."""
Told = tuple[str, str, str, str, str]
"""(at, outcome, channel or ``-``, rule or ``-``, until or ``-``): what one decision said."""


class DiffError(ValueError):
    """A directory that is not a replay's output."""


@dataclass(frozen=True)
class Replayed:
    """One replay's decisions, as the diff needs them."""

    path: Path
    policy_version: str | None
    events_in: int | None
    counts: Counter[tuple[str, str, str]]
    by_customer: dict[str, dict[Opportunity, list[Told]]]
    first_line: dict[str, dict[Opportunity, int]]
    """Where in ``decisions.jsonl`` each customer's opportunity was first decided."""
    input: dict[str, Any] | None = None
    """What the replay read (records, bytes, sha256), if it says."""


def read_replay(path: Path) -> Replayed:
    """The decisions of the replay written into ``path``; :class:`DiffError` if there is
    none."""
    decisions = path / "decisions.jsonl"
    if not decisions.is_file():
        raise DiffError(f"no replay output at {path} (no decisions.jsonl)")
    counts: Counter[tuple[str, str, str]] = Counter()
    by_customer: dict[str, dict[Opportunity, list[Told]]] = defaultdict(lambda: defaultdict(list))
    first_line: dict[str, dict[Opportunity, int]] = defaultdict(dict)
    with decisions.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                d = orjson.loads(line)
                opportunity = (
                    d["action"],
                    d["moment"],
                    d.get("group") or NONE,
                    tuple(d["triggered_by"]),
                )
                told = (
                    d["at"],
                    d["outcome"],
                    d.get("channel") or NONE,
                    d.get("rule") or NONE,
                    NONE if is_dropped(d) else d.get("until") or NONE,
                )
                customer = d["customer_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as err:
                raise DiffError(f"{decisions}:{number}: not a decision record ({err})") from None
            counts[d["action"], d["outcome"], told[3]] += 1
            by_customer[customer][opportunity].append(told)
            first_line[customer].setdefault(opportunity, number)
    for opportunities in by_customer.values():
        for told_list in opportunities.values():
            told_list.sort(key=lambda told: parse_ms(told[0]))  # stable: one instant as written
    summary = _summary(path)
    given = summary.get("input")
    return Replayed(
        path,
        summary.get("policy_version"),
        summary.get("events_in"),
        counts,
        {c: dict(o) for c, o in by_customer.items()},
        dict(first_line),
        given if isinstance(given, dict) and isinstance(given.get("sha256"), str) else None,
    )


def is_dropped(decision: dict[str, Any]) -> bool:
    """Whether a decision says it will not be decided again: capped, and worth too little by
    the time the cap frees a slot. Its ``until`` is when the cap frees, not when it is
    decided again, so the diff does not show it."""
    return decision["outcome"] == "capped" and DROPPED_WHEN_CAPPED in decision["reason"]


def _summary(path: Path) -> dict[str, Any]:
    try:
        summary = orjson.loads((path / "summary.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return summary if isinstance(summary, dict) else {}


def compare(before: Replayed, after: Replayed, sample: int = DEFAULT_SAMPLE) -> dict[str, Any]:
    """The diff as plain data (what ``--json`` prints)."""
    keys = sorted(set(before.counts) | set(after.counts))
    counts = [
        {
            "action": action,
            "outcome": outcome,
            "rule": rule,
            "before": before.counts[action, outcome, rule],
            "after": after.counts[action, outcome, rule],
            "change": after.counts[action, outcome, rule] - before.counts[action, outcome, rule],
        }
        for action, outcome, rule in keys
    ]
    customers = sorted(set(before.by_customer) | set(after.by_customer))
    changed = [
        c for c in customers if before.by_customer.get(c, {}) != after.by_customer.get(c, {})
    ]
    return {
        "before": _side(before),
        "after": _side(after),
        "same_events": same_events(before, after),
        "counts": counts,
        "customers": {"decided": len(customers), "changed": len(changed)},
        "sample": [
            {"customer_id": c, "changes": _changes(before, after, c)} for c in changed[:sample]
        ],
    }


def same_events(before: Replayed, after: Replayed) -> bool | None:
    """Whether the two replays read the same input (by its digest); None when one of them
    does not say what it read (made before replays recorded it)."""
    if before.input is None or after.input is None:
        return None
    return bool(
        before.input["sha256"] == after.input["sha256"]
        and before.input.get("records") == after.input.get("records")
    )


def _side(replayed: Replayed) -> dict[str, Any]:
    return {
        "dir": str(replayed.path),
        "policy_version": replayed.policy_version,
        "events_in": replayed.events_in,
        "input": replayed.input,
        "decisions": sum(replayed.counts.values()),
    }


def input_warning(diff: dict[str, Any]) -> str | None:
    """What to say first when the two replays did not read, or may not have read, the same
    events; None when they did."""
    before, after = diff["before"], diff["after"]
    if diff["same_events"] is None:
        unknown = [side["dir"] for side in (before, after) if side["input"] is None]
        return (
            f"note: cannot tell whether the two replays read the same events: "
            f"{' and '.join(unknown)} {'was' if len(unknown) == 1 else 'were'} replayed by a "
            "version that did not record its input (replay again to know)"
        )
    if diff["same_events"]:
        return None
    return (
        "warning: the two replays read different inputs: before "
        f"{_input_text(before['input'])}, after {_input_text(after['input'])}; the "
        "differences below are not only the policy's"
    )


def _input_text(given: dict[str, Any]) -> str:
    records = given.get("records")
    count = counted(records, "record") if isinstance(records, int) else "? records"
    size = given.get("bytes")
    bytes_text = f"{size:,} bytes, " if isinstance(size, int) else ""
    return f"{count} ({bytes_text}sha256 {given['sha256'][:12]})"


def _changes(before: Replayed, after: Replayed, customer: str) -> list[dict[str, Any]]:
    """Each opportunity decided differently for ``customer``, in time order; those first
    decided at one instant as ``decisions.jsonl`` has them (the old replay's, then the new
    one's for those only it decided)."""
    mine = before.by_customer.get(customer, {})
    theirs = after.by_customer.get(customer, {})
    written_before = before.first_line.get(customer, {})
    written_after = after.first_line.get(customer, {})
    changes: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
    for opportunity in set(mine) | set(theirs):
        was, now = mine.get(opportunity, []), theirs.get(opportunity, [])
        if was == now:
            continue
        first_at = min(parse_ms(told[0]) for told in was + now)
        written = (
            (0, written_before[opportunity])
            if opportunity in written_before
            else (1, written_after[opportunity])
        )
        action, moment, group, triggered_by = opportunity
        change = {
            "action": action,
            "moment": moment,
            "group": None if group == NONE else group,
            "triggered_by": list(triggered_by),
            "before": [_told(t) for t in was],
            "after": [_told(t) for t in now],
        }
        changes.append(((first_at, *written), change))
    return [change for _, change in sorted(changes, key=lambda entry: entry[0])]


def _told(told: Told) -> dict[str, str | None]:
    at, outcome, channel, rule, until = told
    return {
        "at": at,
        "outcome": outcome,
        "channel": None if channel == NONE else channel,
        "rule": None if rule == NONE else rule,
        "until": None if until == NONE else until,
    }


def render(diff: dict[str, Any]) -> str:
    """The diff as text a CX designer reads."""
    before, after = diff["before"], diff["after"]
    warning = input_warning(diff)
    lines = [warning, ""] if warning else []
    lines += [
        f"before: {before['dir']} (policy {before['policy_version']}, "
        f"{before['decisions']:,} decisions)",
        f"after:  {after['dir']} (policy {after['policy_version']}, "
        f"{after['decisions']:,} decisions)",
    ]
    lines += ["", "decisions by action, outcome and rule:"]
    rows = [("action", "outcome", "rule", "before", "after", "change")]
    for c in diff["counts"]:
        change = f"{c['change']:+,}" if c["change"] else "0"
        rows.append(
            (c["action"], c["outcome"], c["rule"], f"{c['before']:,}", f"{c['after']:,}", change)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for row in rows:
        left = "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths[:3], strict=True))
        right = "  ".join(cell.rjust(w) for cell, w in zip(row[3:], widths[3:], strict=True))
        lines.append(f"  {left}  {right}")
    customers = diff["customers"]
    share = customers["changed"] / customers["decided"] if customers["decided"] else 0.0
    lines += [
        "",
        f"customers: {customers['changed']:,} of {customers['decided']:,} decided about "
        f"changed ({share:.1%})",
    ]
    if diff["sample"]:
        lines.append(f"a sample of the changed customers ({len(diff['sample'])}):")
    for customer in diff["sample"]:
        lines.append(f"  {customer['customer_id']}")
        for change in customer["changes"]:
            group = f" [{change['group']}]" if change["group"] else ""
            lines.append(
                f"    {change['action']} for {change['moment']}{group}, "
                f"opened by {', '.join(change['triggered_by'])}:"
            )
            lines.append(f"      before: {_sequence(change['before'])}")
            lines.append(f"      after:  {_sequence(change['after'])}")
    return "\n".join(lines)


def _sequence(told: list[dict[str, str | None]]) -> str:
    if not told:
        return "not decided"
    return "; then ".join(_one(t) for t in told)


def _one(told: dict[str, str | None]) -> str:
    text = f"{told['outcome']}"
    if told["channel"]:
        text += f" on {told['channel']}"
    if told["rule"]:
        text += f" by {told['rule']}"
    text += f" at {told['at']}"
    if told["until"] and told["outcome"] == "sent":
        text += f", paced: leaves at {told['until']}"  # capacity
    elif told["until"]:
        text += f" until {told['until']}"
    return text
