"""What the identity step makes of one resolved event: where it goes, the merge notices
for both profiles of each merge, and the audit records.

The identity graph (:mod:`operators.identity.graph`) says which profile an event lands
on and what its identifiers merged or were refused; this turns that into items for the
per-customer journeys (:class:`ForCustomer`) and for the audit stream (:class:`ForAudit`).
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from operators.identity.graph import Erasure, Resolution
from operators.model.encoding import Order
from operators.model.handover import Adopt, Forget, Retire, Transfer, merge_id
from operators.model.records import Audit, DeadLetter, DeadLetterReason, Event
from operators.model.timefmt import format_ms

JourneyItem = Event | Adopt | Retire | Transfer | Forget


class ForCustomer(NamedTuple):
    """An item for one customer's journey."""

    customer_id: str
    item: JourneyItem


class ForAudit(NamedTuple):
    """An audit record, with its place in replay's output."""

    audit: Audit
    order: Order


Routed = ForCustomer | ForAudit


def route(sequence: int, resolution: Resolution, event: Event) -> list[Routed]:
    """Where ``event``, resolved by the graph at operation ``sequence``, goes: for each
    merge a :class:`Retire` to the retired profile and an :class:`Adopt` to the survivor,
    then the audit records of merges and refusals, then the event itself to its customer.

    A merge happens at the input's event time when the event was read (its watermark,
    if it arrived late), so timers due before then fire first on both sides.
    """
    if not (resolution.merges or resolution.refusals or event.blocked_identifiers):
        return [ForCustomer(resolution.customer_id, event)]  # the common event
    line = event.origin.line or 0
    at = max(event.time, event.watermark)
    routed: list[Routed] = []
    for merge in resolution.merges:
        notice = merge_id(sequence, merge.retired, merge.survivor)
        routed.append(ForCustomer(merge.retired, Retire(notice, merge.survivor, at, line)))
        routed.append(ForCustomer(merge.survivor, Adopt(notice, merge.retired, at, line)))
    audits = identity_audits(resolution, event)
    routed.extend(ForAudit(audit, Order.of_line(line, n)) for n, audit in enumerate(audits))
    routed.append(ForCustomer(resolution.customer_id, event))
    return routed


def identity_audits(resolution: Resolution, event: Event) -> list[Audit]:
    """One audit record per merge, per link the limits refused, and per blocked identifier."""
    audits = [
        Audit(
            event.time,
            "merge",
            (merge.retired, merge.survivor),
            merge.survivor,
            merge.identifiers,
            event.event_id,
        )
        for merge in resolution.merges
    ]
    for refusal in resolution.refusals:
        involved = (refusal.profile,) + ((refusal.other,) if refusal.other else ())
        audits.append(
            Audit(
                event.time,
                "merge_refused",
                involved,
                resolution.customer_id,
                (refusal.identifier,),
                event.event_id,
                limit=refusal.limit,
            )
        )
    for kind, masked in event.blocked_identifiers:
        audits.append(
            Audit(
                event.time,
                "merge_refused",
                (resolution.customer_id,),
                resolution.customer_id,
                ((kind, masked),),
                event.event_id,
                blocked=f"{kind}: {masked}",
            )
        )
    return audits


def erasure_routes(erasures: tuple[Erasure, ...], event: Event) -> list[Routed]:
    """For each profile an erasure request forgot: a :class:`Forget` to every id it went by
    (the merged ones may still hold a context on its way), and one ``erased`` audit record
    naming them, with the identifiers it held, masked."""
    line = event.origin.line or 0
    at = max(event.time, event.watermark)
    routed: list[Routed] = []
    for n, erasure in enumerate(erasures):
        ids = (erasure.customer_id, *erasure.retired)
        routed.extend(ForCustomer(customer, Forget(at, line)) for customer in ids)
        audit = Audit(
            event.time, "erased", ids, erasure.customer_id, erasure.identifiers, event.event_id
        )
        routed.append(ForAudit(audit, Order.of_line(line, n)))
    return routed


def forgotten_feedback(event: Event) -> DeadLetter:
    """The dead letter of feedback about an action of a profile the graph has forgotten.
    Its ``raw`` is the feedback as read with any identifiers masked (what this far into the
    flow is left of it); ``origin`` says where the original is."""
    record = {
        "event_id": event.event_id,
        "type": event.type,
        "timestamp": format_ms(event.time),
        "identifiers": {kind: identifier.masked for kind, identifier in event.identifiers.items()},
        "context": event.context,
        "properties": event.properties,
    }
    return DeadLetter(
        DeadLetterReason.UNKNOWN_ACTION_ID,
        "feedback names an action of a customer Concierge no longer knows (erased, or past "
        "the policy's identity.retention)",
        orjson.dumps({k: v for k, v in record.items() if v}),
        event.origin,
        event.event_id,
        event.type,
        "properties.action_id",
    )
