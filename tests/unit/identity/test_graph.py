import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.identity.graph import DictStore, GraphError, IdentityGraph
from operators.identity.ids import canonical_id
from operators.model.identifiers import (
    DEFAULT_LIMITS,
    KNOWN_IDENTIFIERS,
    UNKEYED_IDENTITY,
    IdentifierRules,
    compile_rules,
)

ids = UNKEYED_IDENTITY.identify_normalised

NO_LIMITS = IdentifierRules()
"""No limits of the policy's: only the defaults (none of these tests comes near them)."""
_times = itertools.count(1)


def graph(rules=NO_LIMITS):
    return IdentityGraph(DictStore(), rules)


def resolve(g, **identifiers):
    return g.resolve(ids(identifiers), next(_times), f"e-{next(_times)}")


def test_a_new_profile_is_named_by_the_strongest_identifier_of_its_first_event():
    g = graph()
    first = resolve(g, anonymous_id="a-9", email="ana@example.com")
    assert first.created and first.customer_id == canonical_id("email", "ana@example.com")
    assert first.known_person
    assert not resolve(g, anonymous_id="b-1").known_person


def test_links_are_transitive():
    g = graph()
    ana = resolve(g, anonymous_id="a-9", email="ana@example.com").customer_id
    assert resolve(g, email="ana@example.com", loyalty_id="L1").customer_id == ana
    assert resolve(g, loyalty_id="L1").customer_id == ana
    assert resolve(g, anonymous_id="a-9").customer_id == ana
    assert sorted(g.profile_of("loyalty_id", "L1")["identifiers"]) == [
        "anonymous_id",
        "email",
        "loyalty_id",
    ]


def test_two_known_profiles_merge_into_the_older_one():
    g = graph()
    web = resolve(g, anonymous_id="a-9").customer_id
    store = resolve(g, loyalty_id="L1").customer_id
    linked = resolve(g, loyalty_id="L1", anonymous_id="a-9")
    assert linked.customer_id == web
    (merge,) = linked.merges
    assert (merge.retired, merge.survivor) == (store, web)
    assert g.current_id(store) == web
    assert resolve(g, loyalty_id="L1").customer_id == web
    history = g.profile(store)["history"]
    assert [h["event"] for h in history] == ["created", "created", "merged"]


def test_the_surviving_id_does_not_depend_on_the_order_links_arrive_in():
    survivors = set()
    for order in itertools.permutations(
        [("anonymous_id", "a"), ("device_id", "d"), ("loyalty_id", "l")]
    ):
        g = graph()
        first = resolve(g, email="e@x.com").customer_id
        for kind, value in ("anonymous_id", "a"), ("device_id", "d"), ("loyalty_id", "l"):
            resolve(g, **{kind: value})
        for kind, value in order:
            resolve(g, email="e@x.com", **{kind: value})
        survivors.add(resolve(g, device_id="d").customer_id)
        assert survivors == {first}


def test_a_shared_tablet_does_not_fuse_more_emails_than_the_limit(policy):
    g = graph(policy.identifier_rules)
    people = [resolve(g, device_id="tablet", email=f"p{n}@example.com") for n in range(5)]
    tablet = people[0].customer_id
    assert [p.customer_id == tablet for p in people] == [True, True, True, False, False]
    fourth = people[3]
    assert fourth.customer_id == canonical_id("email", "p3@example.com")
    (refusal,) = fourth.refusals
    assert refusal.limit == "email: 3" and refusal.identifier == ("email", "p***@example.com")
    assert refusal.profile == tablet
    assert len(g.profile_of("device_id", "tablet")["identifiers"]["email"]) == 3


def test_a_merge_over_the_limit_is_refused_and_both_profiles_stay(policy):
    g = graph(policy.identifier_rules)
    one = resolve(g, loyalty_id="L1").customer_id
    two = resolve(g, loyalty_id="L2").customer_id
    linked = resolve(g, loyalty_id="L2", email="x@example.com")
    assert linked.customer_id == two
    refused = resolve(g, loyalty_id="L1", anonymous_id="a-1", email="x@example.com")
    assert refused.customer_id == one and refused.merges == ()
    assert refused.refusals[0].limit == "loyalty_id: 1"
    assert resolve(g, email="x@example.com").customer_id == two


def test_every_identifier_type_has_a_limit_and_a_policy_may_set_its_own(policy):
    assert dict(compile_rules({}, None).limits) == dict(DEFAULT_LIMITS)
    assert set(DEFAULT_LIMITS) == set(KNOWN_IDENTIFIERS)
    # The reference policy limits emails, phones and the business's ids, not browsers or
    # devices: those have the defaults.
    limits = policy.identifier_rules.limits
    assert (limits["email"], limits["anonymous_id"], limits["device_id"]) == (3, 100, 100)
    own = compile_rules({"limits": {"anonymous_id": 5000, "device_id": 2}}, None).limits
    assert (own["anonymous_id"], own["device_id"], own["email"]) == (5000, 2, 10)
    assert IdentifierRules(limits={"email": 2}).limits["anonymous_id"] == 100


def bot(g, count):
    """One email, a new anonymous id each event (a bot, or a broken tag)."""
    return [resolve(g, email="bot@example.com", anonymous_id=f"anon-{n}") for n in range(count)]


def test_the_101st_anonymous_id_of_a_profile_is_refused_and_its_event_lands_on_the_email(policy):
    g = graph(policy.identifier_rules)
    landed = bot(g, 101)
    email = canonical_id("email", "bot@example.com")
    assert {r.customer_id for r in landed} == {email}
    assert all(not r.refusals for r in landed[:100])
    (refusal,) = landed[100].refusals
    assert refusal.limit == "anonymous_id: 100"
    assert refusal.identifier == ("anonymous_id", "an***00") and refusal.profile == email
    assert refusal.other is None
    assert len(g.profile_of("email", "bot@example.com")["identifiers"]["anonymous_id"]) == 100
    assert g.profile_of("anonymous_id", "anon-100") is None
    # Browsing on the refused id alone is a profile of its own, and stays one.
    alone = resolve(g, anonymous_id="anon-100")
    assert alone.created and alone.customer_id != email
    (again,) = resolve(g, email="bot@example.com", anonymous_id="anon-100").refusals
    assert (again.limit, again.other) == ("anonymous_id: 100", alone.customer_id)


def test_a_policys_own_higher_limit_is_honoured():
    g = graph(compile_rules({"limits": {"anonymous_id": 150}}, None))
    landed = bot(g, 151)
    assert [n for n, r in enumerate(landed) if r.refusals] == [150]
    assert len(g.profile_of("email", "bot@example.com")["identifiers"]["anonymous_id"]) == 150


class CountingStore(DictStore):
    """A store that counts the bytes of what is written to it (keys and values)."""

    def __init__(self):
        super().__init__()
        self.written = 0

    def write(self, changes):
        self.written += sum(len(k) + len(v or b"") for k, v in changes.items())
        super().write(changes)


def test_adding_an_identifier_writes_as_much_whatever_the_profile_holds():
    store = CountingStore()
    g = IdentityGraph(store, compile_rules({"limits": {"anonymous_id": 10_000}}, None))
    cost = {}
    for n in range(1, 1001):
        before = store.written
        resolve(g, email="bot@example.com", anonymous_id=f"anon-{n:04d}")
        cost[n] = store.written - before
    # The same bytes, but for a digit more in a count or an operation's number (before,
    # each addition wrote the whole profile and an undo record of it: 12.8 KB for the
    # 90th, 136 KB for the 1,000th).
    assert cost[90] <= cost[2] + 16 and cost[1000] <= cost[2] + 32
    assert cost[2] < 1000


def test_a_merge_brings_the_retired_profiles_identifiers_in_the_order_they_came():
    g = graph()
    bot(g, 3)
    browsing = [resolve(g, anonymous_id=f"web-{n}", device_id=f"phone-{n}") for n in range(3)]
    for n in range(3):
        resolve(g, email="bot@example.com", device_id=f"phone-{n}")
    found = g.profile_of("email", "bot@example.com")
    anonymous = ["an***-0", "an***-1", "an***-2", "we***-0", "we***-1", "we***-2"]
    assert found["identifiers"]["anonymous_id"] == anonymous
    assert list(found["identifiers"]) == ["email", "anonymous_id", "device_id"]
    (erased,) = g.erase(ids({"email": "bot@example.com"}))
    assert erased.retired == tuple(b.customer_id for b in browsing)
    held = [masked for kind, masked in erased.identifiers if kind == "device_id"]
    assert held == ["ph***-0", "ph***-1", "ph***-2"]
    assert (
        g.profile_of("device_id", "phone-1") is None and g.profile(browsing[1].customer_id) is None
    )


@pytest.mark.parametrize(("written", "said"), [(b"2", "graph format 2"), (None, "in clear")])
def test_a_graph_of_another_format_is_refused_with_what_to_do(written, said):
    store = DictStore()
    resolve(IdentityGraph(store, NO_LIMITS), email="ana@example.com")
    store.write({b"f": written})
    with pytest.raises(GraphError) as refused:
        IdentityGraph(store, NO_LIMITS)
    assert said in str(refused.value) and "fresh state directory" in str(refused.value)


def test_rolling_back_restores_the_graph_exactly_and_replay_gives_the_same_ids():
    store = DictStore()
    g = IdentityGraph(store, NO_LIMITS)
    g.resolve(ids({"anonymous_id": "a"}), 1, "e1")
    g.resolve(ids({"loyalty_id": "l"}), 2, "e2")
    mark, saved = g.sequence, dict(store.data)
    later = [
        (ids({"anonymous_id": "a", "loyalty_id": "l"}), 3, "e3"),
        (ids({"email": "m@x.com"}), 4, "e4"),
        (ids({"email": "m@x.com", "loyalty_id": "l"}), 5, "e5"),
    ]
    first = [g.resolve(*op) for op in later]
    assert g.roll_back(mark) == 3
    assert store.data == saved
    assert [g.resolve(*op) for op in later] == first


def test_forgotten_undo_records_cannot_be_rolled_back():
    store = DictStore()
    g = IdentityGraph(store, NO_LIMITS)
    for n in range(5):
        g.resolve(ids({"anonymous_id": f"a{n}"}), n, f"e{n}")
    g.forget_undo(3)
    assert [k for k in store.data if k.startswith(b"u\x00")] == [
        b"u\x00%016d" % 4,
        b"u\x00%016d" % 5,
    ]
    assert g.roll_back(3) == 2


def test_blocked_values_compile_to_case_insensitive_wildcards():
    rules = compile_rules({"blocked": {"email": ["noreply@*"]}}, None)
    (pattern,) = rules.blocked["email"]
    assert pattern.match("noreply@shop.example") and not pattern.match("ana@example.com")


# -- properties -----------------------------------------------------------------------------

KINDS = ("customer_id", "email", "phone", "device_id", "anonymous_id")
identifier = st.tuples(st.sampled_from(KINDS), st.sampled_from("abcdef"))
event = st.lists(identifier, min_size=1, max_size=3, unique_by=lambda i: i[0])


class UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            x = self.parent[x]
        return x

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


@settings(max_examples=200, deadline=None)
@given(st.lists(event, min_size=1, max_size=25))
def test_without_limits_profiles_are_the_connected_identifiers(events):
    g = graph()
    reference = UnionFind()
    seen = set()
    for n, identifiers in enumerate(events):
        g.resolve(ids(dict(identifiers)), n, f"e{n}")
        for pair in identifiers:
            seen.add(pair)
            reference.union(pair, identifiers[0])
    groups = {}
    for pair in seen:
        groups.setdefault(reference.find(pair), set()).add(pair)
    for members in groups.values():
        named = {g.profile_of(kind, value)["customer_id"] for kind, value in members}
        assert len(named) == 1
    all_ids = [g.profile_of(k, v)["customer_id"] for k, v in seen]
    assert len(set(all_ids)) == len(groups)


@settings(max_examples=100, deadline=None)
@given(st.lists(event, min_size=2, max_size=20), st.data())
def test_a_rolled_back_graph_replays_to_the_same_resolutions(events, data):
    store = DictStore()
    g = IdentityGraph(store, IdentifierRules(limits={"email": 2, "customer_id": 1}))
    cut = data.draw(st.integers(min_value=0, max_value=len(events)))
    for n, identifiers in enumerate(events[:cut]):
        g.resolve(ids(dict(identifiers)), n, f"e{n}")
    mark, saved = g.sequence, dict(store.data)
    rest = [(ids(dict(given)), n, f"e{n}") for n, given in enumerate(events[cut:], start=cut)]
    first = [g.resolve(*op) for op in rest]
    g.roll_back(mark)
    assert store.data == saved
    assert [g.resolve(*op) for op in rest] == first


def test_a_cleared_graph_is_as_new():
    store = DictStore()
    g = IdentityGraph(store, NO_LIMITS)
    first = g.resolve(ids({"email": "a@x.com"}), 1, "e1")
    g.resolve(ids({"email": "a@x.com", "loyalty_id": "L"}), 2, "e2")
    g.clear()
    assert store.data == {} and g.sequence == 0
    assert g.resolve(ids({"email": "a@x.com"}), 1, "e1") == first


# -- retention and erasure --------------------------------------------------------------------

DAY = 86_400_000


def test_retention_drops_a_profile_idle_that_long_and_a_merged_one_with_it():
    g = graph(IdentifierRules(retention=10 * DAY))
    browser = g.resolve(ids({"anonymous_id": "a-1"}), 0, "e1").customer_id
    ana = g.resolve(ids({"email": "ana@x.com"}), DAY, "e2").customer_id
    g.resolve(ids({"anonymous_id": "a-1", "email": "ana@x.com"}), 2 * DAY, "e3")
    bo = g.resolve(ids({"email": "bo@x.com"}), 5 * DAY, "e4").customer_id
    assert g.expire(12 * DAY) == ()  # Ana's last event was on day 2: not ten whole days yet
    (gone,) = g.expire(13 * DAY)
    assert (gone.customer_id, gone.retired) == (browser, (ana,))
    assert ("email", "a***@x.com") in gone.identifiers
    assert g.profile_of("email", "ana@x.com") is None and g.profile(ana) is None
    assert g.profile_of("email", "bo@x.com")["customer_id"] == bo
    again = g.resolve(ids({"email": "ana@x.com"}), 14 * DAY, "e5")
    assert again.created and again.customer_id == ana, "a stranger, named as anyone new"


def test_an_event_keeps_a_profile_from_expiring_and_costs_one_write_a_day():
    g = graph(IdentifierRules(retention=10 * DAY))
    g.resolve(ids({"email": "ana@x.com"}), 0, "e1")
    before = g.sequence
    for n in range(5):
        g.resolve(ids({"email": "ana@x.com"}), DAY + n, f"e{n}")
    assert g.sequence == before + 1
    assert g.expire(11 * DAY + 1) == () and g.expire(12 * DAY) != ()


def test_an_erased_profiles_ids_are_never_given_again_and_a_rollback_restores_it():
    store = DictStore()
    g = IdentityGraph(store, NO_LIMITS)
    first = g.resolve(ids({"email": "ana@x.com"}), 1, "e1").customer_id
    mark, saved = g.sequence, dict(store.data)
    (erased,) = g.erase(ids({"email": "ana@x.com", "phone": "+34600000000"}))
    assert erased.customer_id == first and g.profile(first) is None
    assert g.erase(ids({"email": "ana@x.com"})) == ()
    second = g.resolve(ids({"email": "ana@x.com"}), 2, "e2").customer_id
    assert second != first
    g.erase(ids({"email": "ana@x.com"}))
    third = g.resolve(ids({"email": "ana@x.com"}), 3, "e3").customer_id
    assert third not in (first, second)
    g.roll_back(mark)
    assert store.data == saved and g.profile(first)["customer_id"] == first
