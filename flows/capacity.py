"""The capacity step: one key that owns the paces and budgets every customer shares (see
:mod:`operators.decisions.capacity`).

Customers' decisions that need capacity send it a :class:`~operators.decisions.capacity.
Request` and wait. It holds each request until every worker's journey has answered past
its time (see :mod:`flows.barrier`): then no request at that time or before can still come,
and it answers them in order, whatever order they came in. Its answers go round the loop,
as merged contexts do (replay: in-process; Kafka mode: ``<prefix>grants``), into the
identity step, which hands each to the customer who asked, under the id they asked with.
Each record also says how far it has answered (:class:`Answered`): the end of input waits
for every answer. Its counts and the requests it holds are its recovery snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from bytewax.operators import StatefulBatchLogic

from flows.barrier import Ack
from flows.metrics import (
    CAPACITY_ANSWERS,
    CAPACITY_BACKLOG,
    CAPACITY_ELAPSED,
    CAPACITY_LEFT,
    CAPACITY_OLDEST,
    CAPACITY_REQUESTS,
    CAPACITY_USED,
    CAPACITY_WAIT,
)
from operators.decisions.capacity import (
    Answer,
    Barrier,
    Counts,
    Owner,
    Refusal,
    Refused,
    Request,
    usage,
)
from operators.identity.alignment import NEVER
from operators.model.encoding import GRANTS, Order, OutRecord
from operators.policy.compiled import Capacity

CAPACITY_KEY = "capacity"
CAPACITY_TICK_MS = 1
"""With capacity, the journey barrier ticks as far as the input has been resolved, to the
millisecond: a customer waits for the answer to a request at ``t`` until every worker has
answered past ``t``."""

Snapshot = tuple[Counts, list[Request], dict[int, int]]


@dataclass(frozen=True, slots=True)
class Answered:
    """The capacity owner has answered every request before ``before`` (event time, ms)."""

    before: int


def encode_answers(answers: list[Answer], before: int) -> bytes:
    """The owner's answers as one record: each the request it answers (its time, customer
    and key: the candidates are not sent back), the candidate granted and when it may
    leave, and the refusals before it."""
    return orjson.dumps(
        {
            "before": before,
            "answers": [
                [
                    a.request.at,
                    a.request.customer,
                    a.request.key,
                    a.granted,
                    a.send_at,
                    [[r.candidate, r.why.value, r.rule] for r in a.refused],
                ]
                for a in answers
            ],
        }
    )


def decode_answers(value: bytes) -> list[Answer | Answered]:
    record: dict[str, Any] = orjson.loads(value)
    items: list[Answer | Answered] = [
        Answer(
            Request(at, customer, key, "", ()),
            granted,
            send_at,
            tuple(Refused(n, Refusal(why), rule) for n, why, rule in refused),
        )
        for at, customer, key, granted, send_at, refused in record["answers"]
    ]
    items.append(Answered(record["before"]))
    return items


class CapacityLogic(StatefulBatchLogic[Ack | Request, OutRecord, Snapshot]):
    def __init__(self, capacity: Capacity, workers: int, resume: Snapshot | None) -> None:
        counts, waiting, acked = resume if resume is not None else (None, [], {})
        owner = Owner(capacity.paces, capacity.budgets, counts)
        self._barrier = Barrier(owner, workers, waiting, acked)
        self._told = NEVER
        """How far the last record said the owner has answered."""
        self._leaving: dict[str, list[tuple[int, int]]] = {name: [] for name in owner.paces}
        """Pace -> (when it may leave, when it was decided) of each send granted to leave
        later, since this process started (for the oldest-waiting metric)."""

    def on_batch(self, values: list[Ack | Request]) -> tuple[Iterable[OutRecord], bool]:
        barrier = self._barrier
        for value in values:
            if isinstance(value, Request):
                barrier.ask(value)
            else:
                barrier.ack(value.worker, value.at)
        answers = barrier.due()
        before = barrier.answered_before()
        if before is None or (not answers and before <= self._told):
            return [], StatefulBatchLogic.RETAIN
        self._told = before
        for answer in answers:
            CAPACITY_ANSWERS.labels(_answered_how(answer)).inc()
        self._measure(answers, before)
        record = OutRecord(GRANTS, b"grants", encode_answers(answers, before), Order.of_line(0), "")
        return [record], StatefulBatchLogic.RETAIN

    def _measure(self, answers: list[Answer], before: int) -> None:
        barrier = self._barrier
        CAPACITY_REQUESTS.set(len(barrier.waiting))
        at = answers[-1].request.at if answers else before - 1
        for answer in answers:
            request = answer.request
            send_at = answer.send_at
            if answer.granted is not None and send_at is not None and send_at > request.at:
                for name in request.candidates[answer.granted].paces:
                    self._leaving[name].append((send_at, request.at))
        for use in usage(barrier.owner, at):
            CAPACITY_USED.labels(use.name, use.kind).set(use.used)
            CAPACITY_LEFT.labels(use.name, use.kind).set(max(0, use.limit - use.used))
            if use.kind == "pace":
                CAPACITY_BACKLOG.labels(use.name).set(use.later)
                CAPACITY_WAIT.labels(use.name).set(use.wait / 1000)
                leaving = self._leaving[use.name] = [
                    (send_at, asked) for send_at, asked in self._leaving[use.name] if send_at > at
                ]
                oldest = min((asked for _, asked in leaving), default=at)
                CAPACITY_OLDEST.labels(use.name).set((at - oldest) / 1000)
            else:
                CAPACITY_ELAPSED.labels(use.name).set(1.0 if use.elapsed is None else use.elapsed)

    def snapshot(self) -> Snapshot:
        # A copy: Bytewax may pickle the snapshot after this logic has counted more.
        return self._barrier.snapshot()


def _answered_how(answer: Answer) -> str:
    """``granted`` (at once), ``paced`` (to leave later), ``fell_through`` (a later candidate
    granted), or the refusal of the first candidate when none was."""
    if answer.granted is None:
        return answer.refused[0].why.value if answer.refused else "refused"
    if answer.granted > 0:
        return "fell_through"
    assert answer.send_at is not None
    return "paced" if answer.send_at > answer.request.at else "granted"
