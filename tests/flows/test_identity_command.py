"""What ``concierge identity`` prints of a profile (flows/cli.py)."""

from flows.cli import _shown_profile
from operators.identity.graph import DictStore, IdentityGraph
from operators.model.identifiers import UNKEYED_IDENTITY, IdentifierRules, mask

ids = UNKEYED_IDENTITY.identify_normalised


def test_the_printed_profile_masks_identifiers_in_one_shape_and_names_whose_history_it_is():
    graph = IdentityGraph(DictStore(), IdentifierRules())
    store = graph.resolve(ids({"loyalty_id": "L-1", "email": "ana@example.com"}), 1_000, "e1")
    web = graph.resolve(ids({"anonymous_id": "a-9"}), 2_000, "e2")
    linked = graph.resolve(ids({"anonymous_id": "a-9", "email": "ana@example.com"}), 3_000, "e3")
    (merge,) = linked.merges
    shown = _shown_profile(graph.profile_of("email", "ana@example.com"))
    assert shown["customer_id"] == linked.customer_id
    assert {"type": "email", "value": mask("email", "ana@example.com")} in shown["identifiers"]
    assert [(h["at"], h["event"], h["profile"]) for h in shown["history"]] == [
        ("1970-01-01T00:00:01Z", "created", store.customer_id),
        ("1970-01-01T00:00:02Z", "created", web.customer_id),
        ("1970-01-01T00:00:03Z", "merged", merge.survivor),
    ]
    merged = shown["history"][-1]
    assert merged["retired"] == merge.retired
    assert all(set(i) == {"type", "value"} for i in merged["identifiers"])
    assert "ana@example.com" not in str(shown)
