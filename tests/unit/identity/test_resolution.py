"""What the identity step makes of a resolved event: merge notices for both profiles, audit
records, and the event for its customer (operators/identity/resolution.py)."""

import dataclasses

from operators.identity.graph import DictStore, IdentityGraph
from operators.identity.resolution import ForAudit, ForCustomer, route
from operators.model.encoding import Order
from operators.model.handover import Adopt, Retire
from operators.model.records import Origin
from tests.conftest import make_event


def resolved(policy, graph, event):
    resolution = graph.resolve(event.identifiers, event.time, event.event_id)
    return route(graph.sequence, resolution, event)


def test_a_merge_tells_both_profiles_then_audits_then_routes_the_event(policy):
    graph = IdentityGraph(DictStore(), policy.identifier_rules)
    web = resolved(
        policy, graph, make_event("page_view", "2026-11-20T10:00:00Z", anonymous_id="a-9")
    )
    store = resolved(policy, graph, make_event("purchase", "2026-11-20T11:00:00Z", loyalty_id="L1"))
    (web_id,) = [r.customer_id for r in web]
    (store_id,) = [r.customer_id for r in store]
    link = dataclasses.replace(
        make_event("identify", "2026-11-20T12:00:00Z", anonymous_id="a-9", loyalty_id="L1"),
        origin=Origin(file="events.jsonl", line=7),
        watermark=make_event("x", "2026-11-20T12:30:00Z").time,
    )
    retire, adopt, audit, event = resolved(policy, graph, link)

    assert isinstance(retire, ForCustomer) and isinstance(retire.item, Retire)
    assert isinstance(adopt, ForCustomer) and isinstance(adopt.item, Adopt)
    assert {retire.customer_id, adopt.customer_id} == {web_id, store_id}
    assert retire.item.into == adopt.customer_id and adopt.item.retired == retire.customer_id
    assert retire.item.merge_id == adopt.item.merge_id
    assert retire.item.merge_id == f"{graph.sequence}:{retire.customer_id}>{adopt.customer_id}"
    # the merge happens where the input's clock stood when the event was read
    assert retire.item.at == adopt.item.at == link.watermark
    assert retire.item.line == adopt.item.line == 7

    assert isinstance(audit, ForAudit) and audit.order == Order.of_line(7, 0)
    assert audit.audit.kind == "merge" and audit.audit.surviving_id == adopt.customer_id
    assert event == ForCustomer(adopt.customer_id, link)


def test_an_event_that_links_nothing_is_routed_alone(policy):
    graph = IdentityGraph(DictStore(), policy.identifier_rules)
    view = make_event("page_view", "2026-11-20T10:00:00Z", anonymous_id="a-9")
    (only,) = resolved(policy, graph, view)
    assert isinstance(only, ForCustomer) and only.item is view


def test_a_blocked_identifier_is_audited_as_a_refused_merge_in_input_order(policy):
    graph = IdentityGraph(DictStore(), policy.identifier_rules)
    junk = dataclasses.replace(
        make_event("page_view", "2026-11-20T10:00:00Z", anonymous_id="a-9"),
        blocked_identifiers=(("email", "t***@test.com"), ("phone", "*******000")),
        origin=Origin(file="events.jsonl", line=3),
    )
    first, second, event = resolved(policy, graph, junk)
    assert [r.audit.kind for r in (first, second)] == ["merge_refused", "merge_refused"]
    assert [r.audit.blocked for r in (first, second)] == [
        "email: t***@test.com",
        "phone: *******000",
    ]
    assert [r.order for r in (first, second)] == [Order.of_line(3, 0), Order.of_line(3, 1)]
    assert isinstance(event, ForCustomer)
