"""Capacity: what the whole deployment may send, shared by every customer (not wired into
the flow yet: see issue 34).

One owner hands out capacity for the whole cluster, in event-time order, so replay and
Kafka mode give the same answers however the customers are spread:

- a **pace** lets at most ``limit`` sends leave in each interval of ``every`` ms of event
  time (intervals counted from the Unix epoch); a send over it leaves at the start of the
  first later interval with room, while its value, decaying, stays at or above its
  ``min_value``;
- a **budget** lets at most ``limit`` sends count in each of its periods (a send counts in
  the period it leaves in); a share of it can be **reserved** for a priority class, which
  the other classes may not use.

A customer's decision asks with a :class:`Request`: its candidates in the order the
decision ranks them (the action it would send first, then the next best), and the owner
grants the first every pace and budget of which has room, or none. Requests are answered
in the order of :func:`Request.order`: by event time, then by value (so a backlog that
falls due at one instant, the morning after quiet hours, drains highest value first).
Whatever order they arrive in, the same requests give the same answers (the owner answers
those at ``t`` only once every one at ``t`` or before is in: see :mod:`flows.barrier`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from operators.context.decay import decayed
from operators.policy.compiled import Budget, Pace

Counts = tuple[dict[str, dict[int, int]], dict[str, dict[int, dict[str, int]]]]
"""What the owner has handed out: pace -> interval -> sends; budget -> period -> class ->
sends."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to act on a decision: an action on a channel, its value at the request's
    time, and the paces and budgets it counts against (their names)."""

    action: str
    channel: str
    value: float
    min_value: float
    half_life: int
    paces: tuple[str, ...] = ()
    budgets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Request:
    """A customer's decision at ``at`` asking for capacity: ``candidates`` best first;
    ``klass`` its priority class (for reservations); ``key`` names it among the customer's
    (the answer goes back to it)."""

    at: int
    customer: str
    key: str
    klass: str
    candidates: tuple[Candidate, ...]

    def order(self) -> tuple[int, float, str, str]:
        """Answered in this order: by time, then the best candidate's value, highest first,
        then by customer and key (so ties break alike everywhere)."""
        best = self.candidates[0].value if self.candidates else 0.0
        return self.at, -best, self.customer, self.key


class Refusal(Enum):
    """Why a candidate was not granted."""

    PACED_OUT = "paced_out"
    """Its paces have no room before its value decays below its ``min_value``."""
    OVER_BUDGET = "over_budget"
    """A budget it counts against is spent for the period it would leave in."""


@dataclass(frozen=True, slots=True)
class Refused:
    candidate: int
    why: Refusal
    rule: str
    """The pace or budget that refused it."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The owner's answer to ``request``: the candidate granted (its index) and when it may
    leave, or none; and why each candidate before it was refused."""

    request: Request
    granted: int | None
    send_at: int | None
    refused: tuple[Refused, ...]


class Owner:
    """The owner's counts: sends per pace interval, and per budget period (and class). The
    pace intervals before the last request answered are dropped as it moves on."""

    def __init__(
        self, paces: Iterable[Pace], budgets: Iterable[Budget], resume: Counts | None = None
    ) -> None:
        self.paces = {pace.name: pace for pace in paces}
        self.budgets = {budget.name: budget for budget in budgets}
        sent, spent = resume if resume is not None else ({}, {})
        self.sent: dict[str, dict[int, int]] = {n: dict(sent.get(n, {})) for n in self.paces}
        """Pace -> interval -> sends granted to leave in it."""
        self.spent: dict[str, dict[int, dict[str, int]]] = {
            n: {p: dict(by) for p, by in spent.get(n, {}).items()} for n in self.budgets
        }
        """Budget -> period -> class -> sends counted."""

    def answer(self, requests: Iterable[Request]) -> list[Answer]:
        """Answer ``requests`` (every one up to the latest of them that will ever come), in
        :meth:`Request.order`."""
        answers = [self._answer(request) for request in sorted(requests, key=Request.order)]
        if answers:
            self._forget_before(answers[-1].request.at)
        return answers

    def _answer(self, request: Request) -> Answer:
        refused: list[Refused] = []
        for index, candidate in enumerate(request.candidates):
            send_at, rule, why = self._leaves(candidate, request.at)
            if send_at is None:
                refused.append(Refused(index, why, rule))
                continue
            spent = self._spent(candidate, request.klass, send_at)
            if spent is not None:
                refused.append(Refused(index, Refusal.OVER_BUDGET, spent))
                continue
            self._count(candidate, request.klass, send_at)
            return Answer(request, index, send_at, tuple(refused))
        return Answer(request, None, None, tuple(refused))

    def _leaves(self, candidate: Candidate, at: int) -> tuple[int | None, str, Refusal]:
        """When ``candidate`` asked at ``at`` may leave: the earliest time every pace of it
        has room, within the hours of every budget of it that has hours (an agent shift:
        asked outside them, it waits for them to open), while its value stays at or above
        its ``min_value``; None if there is none, with the pace or budget that stopped it."""
        send_at = at
        while True:
            slot, pace = self._slot(candidate, at, send_at)
            if slot is None:
                return None, pace, Refusal.PACED_OUT
            send_at = opens = slot
            for name in candidate.budgets:
                period = self.budgets[name].period
                if period.of(opens) is None:
                    opens = period.opens_after(opens)
                    if not _worth(candidate, opens - at):
                        return None, name, Refusal.OVER_BUDGET
            if opens == send_at:
                return send_at, "", Refusal.PACED_OUT
            send_at = opens

    def _slot(self, candidate: Candidate, at: int, start: int) -> tuple[int | None, str]:
        """The earliest time from ``start`` every pace of ``candidate`` has room, while its
        value (asked at ``at``) stays at or above its ``min_value``; None (and the pace that
        was full to the last) if there is none."""
        send_at = start
        moved = True
        while moved:
            moved = False
            for name in candidate.paces:
                pace = self.paces[name]
                interval = pace.interval(send_at)
                sent = self.sent[name]
                while sent.get(interval, 0) >= pace.limit:
                    interval += 1
                    start = pace.start(interval)
                    if not _worth(candidate, start - at):
                        return None, name
                if pace.start(interval) > send_at:
                    send_at, moved = pace.start(interval), True
        return send_at, ""

    def _spent(self, candidate: Candidate, klass: str, send_at: int) -> str | None:
        """The first budget of ``candidate`` with no room for it at ``send_at`` (None: all
        have room)."""
        for name in candidate.budgets:
            budget = self.budgets[name]
            period = budget.period.of(send_at)
            if period is None:
                return name
            by_class = self.spent[name].get(period, {})
            if not budget.room(sum(by_class.values()), by_class, klass):
                return name
        return None

    def _count(self, candidate: Candidate, klass: str, send_at: int) -> None:
        for name in candidate.paces:
            sent = self.sent[name]
            interval = self.paces[name].interval(send_at)
            sent[interval] = sent.get(interval, 0) + 1
        for name in candidate.budgets:
            period = self.budgets[name].period.of(send_at)
            assert period is not None
            by_class = self.spent[name].setdefault(period, {})
            by_class[klass] = by_class.get(klass, 0) + 1

    def _forget_before(self, at: int) -> None:
        """Drop the pace intervals that end before ``at``: no later request can leave in
        them. (Budget periods are kept: a period's index need not follow time.)"""
        for name, sent in self.sent.items():
            current = self.paces[name].interval(at)
            for interval in [i for i in sent if i < current]:
                del sent[interval]

    def counts(self) -> Counts:
        """A copy of what it has handed out, which nothing done to it later changes (a
        recovery snapshot: Bytewax may pickle it after the owner has counted more)."""
        return (
            {name: dict(sent) for name, sent in self.sent.items()},
            {n: {p: dict(by) for p, by in periods.items()} for n, periods in self.spent.items()},
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """What one pace or budget has handed out, as of a time: for operators' metrics."""

    name: str
    kind: str
    """``pace`` or ``budget``."""
    used: int
    """Sends counted in the current interval (a pace) or period (a budget)."""
    limit: int
    later: int = 0
    """A pace: sends granted to leave in a later interval (the backlog)."""
    wait: int = 0
    """A pace: how long (ms) a send asked for now would wait for an interval with room."""
    elapsed: float | None = None
    """A budget: how much of its current period has gone by (None: outside its hours)."""


def usage(owner: Owner, at: int) -> list[Usage]:
    """What every pace and budget of ``owner`` has handed out, as of ``at``."""
    report: list[Usage] = []
    for name, pace in owner.paces.items():
        sent = owner.sent[name]
        current = pace.interval(at)
        free = current
        while sent.get(free, 0) >= pace.limit:
            free += 1
        later = sum(n for interval, n in sent.items() if interval > current)
        wait = max(0, pace.start(free) - at)
        report.append(Usage(name, "pace", sent.get(current, 0), pace.limit, later, wait))
    for name, budget in owner.budgets.items():
        period = budget.period.of(at)
        used = sum(owner.spent[name].get(period, {}).values()) if period is not None else 0
        elapsed = budget.period.elapsed(at)
        report.append(Usage(name, "budget", used, budget.limit, elapsed=elapsed))
    return report


class Barrier:
    """The requests the owner holds until every worker has answered past their time (see
    :mod:`flows.barrier`): then no request at that time or before can still come, and
    they are answered, in order."""

    def __init__(
        self,
        owner: Owner,
        workers: int,
        waiting: Iterable[Request] = (),
        acked: Mapping[int, int] | None = None,
    ) -> None:
        self.owner = owner
        self.workers = workers
        self.waiting = list(waiting)
        self.acked = dict(acked or {})

    def ask(self, request: Request) -> None:
        self.waiting.append(request)

    def ack(self, worker: int, at: int) -> None:
        self.acked[worker] = max(at, self.acked.get(worker, at))

    def answered_before(self) -> int | None:
        """Every request before this has been answered, or will never come (None: some
        worker has not answered yet)."""
        if len(self.acked) < self.workers:
            return None
        return min(self.acked.values())

    def due(self) -> list[Answer]:
        """The answers every worker's acks have made due: to each request before the
        earliest of them."""
        before = self.answered_before()
        if before is None or not self.waiting:
            return []
        due = [r for r in self.waiting if r.at < before]
        if not due:
            return []
        self.waiting = [r for r in self.waiting if r.at >= before]
        return self.owner.answer(due)

    def snapshot(self) -> tuple[Counts, list[Request], dict[int, int]]:
        """A copy nothing done later changes (Bytewax may pickle it after the step has
        counted more): the owner's counts, the requests waiting, the acks."""
        return self.owner.counts(), list(self.waiting), dict(self.acked)


def _worth(candidate: Candidate, delay: int) -> bool:
    """Whether ``candidate``'s value, decayed over ``delay`` ms, is still at or above its
    ``min_value``."""
    return decayed(candidate.value, delay, candidate.half_life) >= candidate.min_value
