"""``concierge explain``: one customer's timeline, from a replay's output.

The replay keeps what explain needs beside its records: the identity graph (``identity/``,
which finds the profile an identifier or customer id belongs to, and every profile merged
into it), the policy it ran (``policy.json``: the moments' half-lives) and the time zones
its customers were decided about in (``timezones.json``). Signals and moments are shown as
the decisions name them: a moment is opened, and decided about, at the instant its signal
fires. Replay writes decisions in processing order; the timeline is sorted by time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from flows.commands.diff import is_dropped
from flows.identity_store import CANONICAL_PREFIX, ProfileQueryError, find_profile
from flows.keys import with_keys
from flows.replay import IDENTITY_DIR, STDIN_NAME, open_events
from operators.identity.ids import is_canonical_id
from operators.ingest import Ingestor
from operators.model.action_ids import customer_of_action_id
from operators.model.durations import format_duration
from operators.model.records import Event, Origin
from operators.model.timefmt import format_ms, parse_ms, zone
from operators.policy.compiled import Policy
from operators.policy.load import PolicyError, load_policy

RANK = {
    "event": 0,
    "merge": 1,
    "merge_refused": 1,
    "erased": 1,
    "signal": 2,
    "moment": 3,
    "decision": 4,
    "action": 5,
    "conversion": 6,
}
"""The order of a timeline's entries at one instant: cause before effect."""
SHOWN_VALUE_CHARS = 40
SHOWN_EVENT_IDS = 4


class ExplainError(ValueError):
    """WHO is not a customer id or identifier, or the directory holds no replay explain can
    read."""


class NotFound(LookupError):
    """No profile holds WHO."""


@dataclass(frozen=True, slots=True)
class Entry:
    at: int
    kind: str
    record: dict[str, Any]
    seq: int

    def key(self) -> tuple[int, int, int]:
        return self.at, RANK[self.kind], self.seq


@dataclass
class Profile:
    """The profile WHO names, and every canonical id it has gone by."""

    customer_id: str
    identifiers: dict[str, list[str]]
    """Masked."""
    digests: dict[str, list[str]]
    history: list[dict[str, Any]]
    ids: set[str] = field(default_factory=set)


def explain(
    replay_dir: Path, who: str, events: Path | None = None, region: str | None = None
) -> dict[str, Any]:
    """The timeline of the customer ``who`` names in the replay written into ``replay_dir``,
    as plain data (what ``--json`` prints); :class:`NotFound` if no profile holds them."""
    policy, _ = with_keys(replayed_policy(replay_dir))
    profile, asked = _find(replay_dir, who, policy, region)
    entries: list[Entry] = []
    seq = iter(range(1 << 62))
    merges = list(_audit(replay_dir, profile, seq))
    entries += merges
    entries += _outputs(replay_dir, profile, policy, seq)
    zones = _zones(replay_dir, profile)
    if events is not None:
        customer_events = list(_events(events, profile, policy, seq))
        erased = [e.at for e in merges if e.kind == "erased"]
        if erased:  # what came after is nobody's: feedback about its actions, dead letters
            customer_events = [e for e in customer_events if e.at <= erased[0]]
        entries += customer_events
        zones = _zones_of_events(customer_events) or zones
    entries.sort(key=Entry.key)
    timeline = [_shown(entry, zones, policy.default_timezone) for entry in entries]
    kinds = Counter(entry.kind for entry in entries)
    return {
        "customer_id": profile.customer_id,
        "asked": asked,
        "profiles": sorted(profile.ids),
        "identifiers": [
            {"type": kind, "value": masked}
            for kind, values in profile.identifiers.items()
            for masked in values
        ],
        "timezone": zones[-1][1] if zones else policy.default_timezone,
        "policy_version": _replayed_version(replay_dir) or policy.version,
        "counts": dict(sorted(kinds.items(), key=lambda item: RANK[item[0]])),
        "outcomes": dict(
            sorted(Counter(e.record["outcome"] for e in entries if e.kind == "decision").items())
        ),
        "events_read": events is not None,
        "timeline": timeline,
    }


def replayed_policy(replay_dir: Path) -> Policy:
    path = replay_dir / "policy.json"
    if not (replay_dir / "decisions.jsonl").is_file():
        raise ExplainError(f"no replay output at {replay_dir} (no decisions.jsonl)")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ExplainError(
            f"{replay_dir} has no policy.json: it was replayed by 0.5.0 or before; "
            "replay again to explain it"
        ) from None
    try:
        return load_policy(text, str(path))
    except PolicyError as err:
        raise ExplainError(f"{path} cannot be read back: {err}") from None


def _replayed_version(replay_dir: Path) -> str | None:
    """The version of the policy file replayed (``policy.json`` is its content, not its
    text, so its own hash differs)."""
    try:
        version = orjson.loads((replay_dir / "summary.json").read_bytes())["policy_version"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return version if isinstance(version, str) else None


def _find(replay_dir: Path, who: str, policy: Policy, region: str | None) -> tuple[Profile, str]:
    """The profile ``who`` names, and how to say whom was asked about (masked)."""
    try:
        found, asked = find_profile(
            replay_dir / IDENTITY_DIR, who, policy.identifier_rules, policy.identity_key, region
        )
    except FileNotFoundError:
        raise ExplainError(
            f"{replay_dir} has no identity graph ({IDENTITY_DIR}/): it was replayed by 0.5.0 "
            "or before; replay again to explain it"
        ) from None
    except ProfileQueryError as err:
        raise ExplainError(str(err)) from None
    if found is None and is_canonical_id(who):
        erased = _erasure_of(replay_dir, who)
        if erased is not None:
            return erased, asked
    if found is None and who.startswith(CANONICAL_PREFIX):
        raise NotFound(
            f"no customer with the id {asked} is in the replay at {replay_dir} (the ids it "
            "holds are the customer_id of its decisions.jsonl; or name the customer by an "
            "identifier, e.g. email:ana@example.com)"
        )
    if found is None:
        raise NotFound(f"no profile holds {asked} in the replay at {replay_dir}")
    profile = Profile(
        found["customer_id"], found["identifiers"], found["digests"], found["history"]
    )
    profile.ids = {profile.customer_id} | {
        entry["retired"] for entry in profile.history if entry["event"] == "merged"
    }
    return profile, asked


def _erasure_of(replay_dir: Path, customer_id: str) -> Profile | None:
    """The profile an ``erased`` audit record says ``customer_id`` was, if one does: the
    graph has forgotten it, the replay's records have not."""
    for record in _lines(replay_dir / "audit.jsonl", {customer_id}):
        if record["kind"] == "erased" and customer_id in record["customer_ids"]:
            masked: dict[str, list[str]] = {}
            for shown in record["identifiers"]:
                masked.setdefault(shown["type"], []).append(shown["value"])
            profile = Profile(record["surviving_id"], masked, {}, [])
            profile.ids = set(record["customer_ids"])
            return profile
    return None


def _lines(path: Path, ids: set[str]) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines output that name one of ``ids`` (a cheap test of the
    bytes first: most lines are about someone else)."""
    if not path.is_file():
        return
    needles = [i.encode() for i in ids]
    with path.open("rb") as lines:
        for line in lines:
            if any(needle in line for needle in needles):
                yield orjson.loads(line)


def _audit(replay_dir: Path, profile: Profile, seq: Iterator[int]) -> Iterator[Entry]:
    """Merges into the profile (also those of profiles merged into it before), refused
    merges involving it, and erasures."""
    records = list(_lines(replay_dir / "audit.jsonl", profile.ids))
    grown = True
    while grown:  # a profile merged into one that was merged into this one, and so on
        grown = False
        for record in records:
            if record["kind"] == "merge" and record["surviving_id"] in profile.ids:
                new = set(record["customer_ids"]) - profile.ids
                if new:
                    profile.ids |= new
                    grown = True
        if grown:
            records = list(_lines(replay_dir / "audit.jsonl", profile.ids))
    for record in records:
        if profile.ids & set(record["customer_ids"]) or record["surviving_id"] in profile.ids:
            yield Entry(parse_ms(record["at"]), record["kind"], record, next(seq))


def _outputs(
    replay_dir: Path, profile: Profile, policy: Policy, seq: Iterator[int]
) -> Iterator[Entry]:
    """The customer's decisions (with the signals and moments they name), actions and
    conversions."""
    opened: set[tuple[Any, ...]] = set()
    decisions = [
        d
        for d in _lines(replay_dir / "decisions.jsonl", profile.ids)
        if d["customer_id"] in profile.ids
    ]
    decisions.sort(key=lambda d: parse_ms(d["at"]))
    for d in decisions:
        at = parse_ms(d["at"])
        moment = (d["customer_id"], d["moment"], d.get("group"), tuple(d["triggered_by"]))
        if moment not in opened:
            opened.add(moment)
            for signal in d["signals"]:
                yield Entry(
                    at, "signal", {"signal": signal, "triggered_by": d["triggered_by"]}, next(seq)
                )
            spec = policy.moments.get(d["moment"])
            shown = {"moment": d["moment"], "group": d.get("group"), "value": d["value"]}
            if spec is not None:
                shown["half_life"] = format_duration(spec.half_life)
            yield Entry(at, "moment", shown, next(seq))
        yield Entry(at, "decision", d, next(seq))
    for path in sorted(replay_dir.glob("actions.*.jsonl")):
        for a in _lines(path, profile.ids):
            if a["customer_id"] in profile.ids:
                yield Entry(parse_ms(a["decided_at"]), "action", a, next(seq))
    for c in _lines(replay_dir / "conversions.jsonl", profile.ids):
        if c["customer_id"] in profile.ids:
            yield Entry(parse_ms(c["at"]), "conversion", c, next(seq))


def _events(path: Path, profile: Profile, policy: Policy, seq: Iterator[int]) -> Iterator[Entry]:
    """The events of the file that name one of the profile's identifiers, or give feedback
    on one of its actions (the file's dead letters are not the customer's: replay's
    ``dlq.jsonl`` has them)."""
    ingest = Ingestor(policy).ingest
    held = {(kind, digest) for kind, digests in profile.digests.items() for digest in digests}
    name = STDIN_NAME if str(path) == "-" else str(path)
    with open_events(path) as lines:
        for number, raw in enumerate(lines, 1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            event = ingest(raw, Origin(file=name, line=number))
            if not isinstance(event, Event):
                continue
            about = customer_of_action_id(str(event.properties.get("action_id", "")))
            named = {(kind, identifier.digest) for kind, identifier in event.identifiers.items()}
            if about in profile.ids or not held.isdisjoint(named):
                yield Entry(event.time, "event", _event_record(event), next(seq))


def _event_record(event: Event) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "identifiers": [
            {"type": kind, "value": identifier.masked}
            for kind, identifier in event.identifiers.items()
        ],
        "line": event.origin.line,
    }
    if event.context:
        record["context"] = dict(event.context)
    if event.properties:
        record["properties"] = dict(event.properties)
    return record


Zones = list[tuple[int, str]]
"""(from when, time zone), in time order."""


def replayed_zones(replay_dir: Path) -> dict[str, Zones]:
    """The time zones the replay decided customers in (``timezones.json``): customer ->
    (from when, zone); empty when the replay kept none."""
    try:
        known = orjson.loads((replay_dir / "timezones.json").read_bytes())["customers"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return {}
    return {c: [(parse_ms(at), name) for at, name in changes] for c, changes in known.items()}


def _zones(replay_dir: Path, profile: Profile) -> Zones:
    """The time zones the replay decided about the customer in (any of their ids)."""
    known = replayed_zones(replay_dir)
    return sorted(
        (at, name)
        for customer in profile.ids
        for at, name in known.get(customer, [])
        if zone(name) is not None
    )


def _zones_of_events(events: list[Entry]) -> Zones:
    """The time zones the customer's events said, as the engine keeps them: the latest by
    event time."""
    said = []
    for entry in events:
        name = entry.record.get("context", {}).get("timezone")
        if isinstance(name, str) and zone(name) is not None:
            said.append((entry.at, name))
    return sorted(said)


def zone_at(zones: Zones, at: int, default: str) -> str:
    current = default if not zones or zones[0][0] <= at else zones[0][1]
    for since, name in zones:
        if since > at:
            break
        current = name
    return current


def _shown(entry: Entry, zones: Zones, default: str) -> dict[str, Any]:
    name = zone_at(zones, entry.at, default)
    local = datetime.fromtimestamp(entry.at / 1000, zone(name) or zone(default))
    return {
        "at": format_ms(entry.at),
        "local": local.isoformat(timespec="milliseconds" if entry.at % 1000 else "seconds"),
        "timezone": name,
        "kind": entry.kind,
        **entry.record,
    }


def render(explained: dict[str, Any]) -> str:
    """The timeline as a person reads it: one line per entry, UTC and local time first."""
    asked, customer = explained["asked"], explained["customer_id"]
    if asked == customer:
        title = customer
    elif asked.startswith("cus_"):
        title = f"{customer}: the profile {asked} was merged into"
    else:
        title = f"{customer}: the profile holding {asked}"
    head = [
        title,
        "  identifiers: "
        + ", ".join(f"{i['type']} {i['value']}" for i in explained["identifiers"]),
    ]
    others = [p for p in explained["profiles"] if p != explained["customer_id"]]
    if others:
        head.append(f"  merged into it: {', '.join(others)}")
    head.append(
        f"  time zone: {explained['timezone']}; policy {explained['policy_version']}; "
        + ", ".join(f"{n:,} {kind}{'s' * (n != 1)}" for kind, n in explained["counts"].items())
    )
    if explained["outcomes"]:
        head.append(
            "  decisions: " + ", ".join(f"{n:,} {o}" for o, n in explained["outcomes"].items())
        )
    for erased in (e for e in explained["timeline"] if e["kind"] == "erased"):
        head.append(
            f"  erased at {erased['at']} by {erased['event_id']}: the identity graph and "
            "the flow's state hold nothing of it since (nor of its identifiers, so only "
            "feedback about its actions can be found among the events); these records are "
            "what the replay wrote before"
        )
    if not explained["events_read"]:
        head.append("  (events not shown: add --events with the file that was replayed)")
    lines = [*head, "", f"{'UTC':<26}{'local':<30}"]
    last_at = None
    for entry in explained["timeline"]:
        when = f"{entry['at']:<26}{_local_text(entry):<30}" if entry["at"] != last_at else ""
        last_at = entry["at"]
        lines.append(f"{when:<56}{entry['kind']:<11}{_what(entry)}")
    return "\n".join(lines)


def _local_text(entry: dict[str, Any]) -> str:
    at = parse_ms(entry["at"])
    local = datetime.fromtimestamp(at / 1000, zone(entry["timezone"]))
    return f"{local:%a %Y-%m-%d %H:%M:%S} {local.tzname()}"


def _what(e: dict[str, Any]) -> str:
    kind = e["kind"]
    if kind == "event":
        where = f" ({e['context']['channel']})" if "channel" in e.get("context", {}) else ""
        props = " ".join(f"{k}={_short(v)}" for k, v in e.get("properties", {}).items())
        return f"{e['type']} {e['event_id']}{where} {props}".rstrip()
    if kind == "signal":
        return f"{e['signal']} fired (by {_events_named(e['triggered_by'])})"
    if kind == "moment":
        group = f" [{e['group']}]" if e.get("group") else ""
        life = f", half-life {e['half_life']}" if "half_life" in e else ""
        return f"{e['moment']}{group} opened: value {e['value']:g}{life}"
    if kind == "decision":
        channel = f" on {e['channel']}" if "channel" in e else ""
        told = f"{e['action']}{channel}: {e['outcome']} ({e['reason']}"
        if "rule" in e and e["rule"] not in e["reason"]:
            told += f"; rule {e['rule']}"
        if "until" in e and e["until"] not in e["reason"] and not is_dropped(e):
            told += f"; until {e['until']}"
        told += ")"
        return told + f"; {learning_words(e['learning'])}" if "learning" in e else told
    if kind == "action":
        leaves = f", leaves at {e['send_at']} (paced)" if "send_at" in e else ""
        return (
            f"{e['action']} sent on {e['channel']}: template {e['template']}, "
            f"value {e['value']:g}{leaves}, expires {e['expires_at']} ({e['action_id']})"
        )
    if kind == "conversion":
        return (
            f"{e['conversion']} {e['event_id']} converts {e['action']} "
            f"({e['outcome']} at {e['decided_at']})"
        )
    identifiers = ", ".join(f"{i['type']} {i['value']}" for i in e.get("identifiers", []))
    if kind == "merge":
        retired = [c for c in e["customer_ids"] if c != e["surviving_id"]]
        into = f"merged into {e['surviving_id']} by {e['event_id']}"
        return f"{', '.join(retired)} {into} ({identifiers})"
    if kind == "erased":
        return f"{', '.join(e['customer_ids'])} erased by {e['event_id']} ({identifiers})"
    if kind == "merge_refused":
        why = e.get("limit") or e.get("blocked") or ""
        return f"link of {', '.join(e['customer_ids'])} refused by {why} ({identifiers})"
    return f"{', '.join(e['customer_ids'])} ({identifiers})"


def learning_words(learning: dict[str, Any]) -> str:
    """What learning chose for a decision, in words: each choice's arm over the others, with
    the estimates and the customer's own trials behind them (and the population's, toward
    which they are shrunk, with the model's version), and whether it explored."""
    choices = [(kind, learning[kind]) for kind in ("channel", "variant") if kind in learning]
    if learning.get("control"):
        static = " and ".join(f"{kind} {choice['chosen']}" for kind, choice in choices)
        return f"learning's control share: the static policy's {static or 'choice'}"
    told = []
    for kind, choice in choices:
        chosen = next(a for a in choice["arms"] if a["arm"] == choice["chosen"])
        others = [a for a in choice["arms"] if a is not chosen]
        said = f"{'' if kind == 'channel' else 'template '}{chosen['arm']}"
        if others:
            said += " over " + ", ".join(a["arm"] for a in others)
        said += f": {chosen['estimate']:.2f} per send ({_trials(chosen)})"
        if others:
            said += " against " + ", ".join(f"{a['estimate']:.2f} ({_trials(a)})" for a in others)
        told.append(said)
    population = learning.get("population")
    if population is not None:
        split = f" for {population['split']}" if population.get("split") else ""
        told.append(f"population model of {population['model']}{split}")
    how = "exploring" if any(c["explored"] for _, c in choices) else "not exploring"
    told.append(f"{how}, chosen with probability {learning['propensity']:.2f}")
    return "; ".join(told)


def _trials(arm: dict[str, Any]) -> str:
    trials = arm["trials"]
    population = arm.get("population")
    if population is None:
        return f"{trials:.1f} trials of theirs" if trials else "the prior alone"
    theirs = f"{trials:.1f} trials of theirs" if trials else "none of theirs"
    pooled = population["trials"]
    said = f"{population['estimate']:.2f} of {pooled:,.1f} sends" if pooled else "the prior"
    return f"{theirs}, toward the population's {said}"


def _events_named(event_ids: list[str]) -> str:
    if len(event_ids) <= SHOWN_EVENT_IDS:
        return ", ".join(event_ids)
    first = ", ".join(event_ids[: SHOWN_EVENT_IDS - 1])
    return f"{first}, ... {event_ids[-1]}: {len(event_ids):,} events"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 1] + "…"
