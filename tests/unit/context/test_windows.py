"""Counting signals over sliding windows (operators/context/windows.py)."""

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.context.windows import MAX_UNSETTLED, count
from operators.model.bounded import MAX_GROUPS
from operators.model.state import CustomerState
from tests.conftest import make_event

HOUR = 3_600_000
DAY = 24 * HOUR

VIEW = {"product_id": "p-42"}


class CountingSignalFor:
    from operators.policy.compiled import CountingSignal

    signal = CountingSignal("s", frozenset({"help_search"}), None, 1, 1)


def repeat_signal(policy):
    return policy.counting_by_type["product_view"][0]


def views(policy, state, *times, product="p-42"):
    signal = repeat_signal(policy)
    return [
        count(
            state,
            signal,
            make_event("product_view", t, {"product_id": product}),
            policy.allowed_lateness,
        )
        for t in times
    ]


def test_third_view_within_the_window_fires(policy):
    state = CustomerState("cus_1")
    first, second, third = views(
        policy, state, "2026-11-20T10:00:00Z", "2026-11-21T10:00:00Z", "2026-11-22T10:00:00Z"
    )
    assert first is None and second is None
    assert third is not None and third.group == "p-42" and len(third.triggered_by) == 3


def test_exactly_at_the_window_boundary_counts(policy):
    state = CustomerState("cus_1")
    *_, third = views(
        policy, state, "2026-11-20T10:00:00Z", "2026-11-23T10:00:00Z", "2026-11-27T10:00:00Z"
    )
    assert third is not None


def test_one_millisecond_past_the_window_does_not(policy):
    state = CustomerState("cus_1")
    *_, third = views(
        policy, state, "2026-11-20T10:00:00Z", "2026-11-23T10:00:00Z", "2026-11-27T10:00:00.001Z"
    )
    assert third is None


def test_groups_count_apart(policy):
    state = CustomerState("cus_1")
    fired = views(policy, state, "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z", product="p-1")
    fired += views(policy, state, "2026-11-20T12:00:00Z", product="p-2")
    assert fired == [None, None, None]


def test_a_view_without_a_product_is_not_counted(policy):
    state = CustomerState("cus_1")
    signal = repeat_signal(policy)
    for t in ("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z"):
        assert count(state, signal, make_event("product_view", t, {}), 0) is None
    assert state.windows == {}


def test_a_late_event_inside_the_window_still_completes_it(policy):
    state = CustomerState("cus_1")
    *_, late = views(
        policy, state, "2026-11-20T10:00:00Z", "2026-11-22T10:00:00Z", "2026-11-21T10:00:00Z"
    )
    assert late is not None


def test_windows_keep_only_what_the_signal_needs(policy):
    """In order, a window keeps its latest ``at_least`` events; with a lateness, also what
    is within it of the newest, which a late event could still pair with."""
    signal = repeat_signal(policy)
    for lateness, kept in ((0, ["d7", "d8", "d9"]), (DAY, ["d6", "d7", "d8", "d9"])):
        state = CustomerState("cus_1")
        for d in range(10):
            event = make_event("product_view", f"2026-11-2{d}T10:00:00Z", VIEW, f"d{d}")
            count(state, signal, event, lateness)
        assert [e for _, e in state.windows[(signal.name, "p-42")]] == kept


def test_a_duplicated_event_id_counts_once(policy):
    state = CustomerState("cus_1")
    signal = repeat_signal(policy)
    view = make_event("product_view", "2026-11-20T10:00:00Z", {"product_id": "p-42"}, "v-1")
    fired = [count(state, signal, view, 0) for _ in range(3)]
    later = make_event("product_view", "2026-11-20T11:00:00Z", {"product_id": "p-42"}, "v-2")
    fired.append(count(state, signal, later, 0))
    assert fired == [None, None, None, None]


def test_an_early_pair_completed_by_a_late_event_fires_though_newer_events_came_between(policy):
    """Kept entries are not just the latest ``at_least``: a late event can pair with older
    ones (``at_least: 2`` within 1h: 10:00, 13:00, 14:00, then 10:30 late -> 10:00 + 10:30)."""
    signal = dataclasses.replace(repeat_signal(policy), at_least=2, within=HOUR)
    state = CustomerState("cus_1")

    def view(at, event_id):
        event = make_event("product_view", at, {"product_id": "p-42"}, event_id)
        return count(state, signal, event, 12 * HOUR)

    assert view("2026-11-20T10:00:00Z", "a") is None
    assert view("2026-11-20T13:00:00Z", "b") is None
    assert view("2026-11-20T14:00:00Z", "b2") is not None
    fired = view("2026-11-20T10:30:00Z", "c")
    assert fired is not None and fired.triggered_by == ("a", "c") and fired.at == parse("10:30")


def parse(hhmm):
    from operators.model.timefmt import parse_ms

    return parse_ms(f"2026-11-20T{hhmm}:00Z")


def test_entries_older_than_the_lateness_are_dropped(policy):
    signal = dataclasses.replace(repeat_signal(policy), at_least=2, within=HOUR)
    state = CustomerState("cus_1")
    for n, at in enumerate(("01:00", "02:00", "03:00", "09:00")):
        event = make_event("product_view", f"2026-11-20T{at}:00Z", {"product_id": "p"}, f"v{n}")
        count(state, signal, event, HOUR)
    # 09:00 minus 1h lateness: 08:00 settles; of the older, one (at_least - 1) may still
    # pair with a late event, but not 03:00, which is more than within before 08:00.
    assert [e for _, e in state.windows[(signal.name, "p")]] == ["v3"]


def test_a_burst_inside_the_lateness_is_bounded(policy):
    signal = repeat_signal(policy)
    state = CustomerState("cus_1")
    for n in range(500):
        event = make_event(
            "product_view", f"2026-11-20T10:{n // 60:02d}:{n % 60:02d}Z", {"product_id": "p"}
        )
        count(state, signal, event, DAY)
    assert len(state.windows[(signal.name, "p")]) == signal.at_least + MAX_UNSETTLED


def test_groups_per_signal_are_bounded_and_the_least_recent_goes(policy):
    state = CustomerState("cus_1")
    for n in range(MAX_GROUPS + 5):
        views(policy, state, f"2026-11-20T10:{n:02d}:00Z", product=f"p-{n}")
    groups = [g for s, g in state.windows if s == "repeat_product_interest"]
    assert len(groups) == MAX_GROUPS and "p-0" not in groups and f"p-{MAX_GROUPS + 4}" in groups


def fires_somewhere(times, at_least, within, event_id):
    """Reference: does the event ``event_id`` take part in some ``at_least`` events spanning
    at most ``within``, among all ``times`` (index = event id)?"""
    mine = times[event_id]
    others = sorted(t for n, t in enumerate(times) if n != event_id)
    for start in range(len(others) + 1):
        for lo in range(max(0, start - at_least), start + 1):
            run = sorted([mine, *others[lo : lo + at_least - 1]])
            if len(run) == at_least and run[-1] - run[0] <= within:
                return True
    return False


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.integers(0, 20), min_size=1, max_size=12),
    st.integers(1, 4),
    st.integers(0, 5),
    st.integers(0, 6),
)
def test_out_of_order_within_the_lateness_counts_as_if_in_order(offsets, at_least, within, late):
    """Every event that arrives no more than ``lateness`` behind the newest seen fires
    exactly when, among all events so far, it completes some window."""
    signal = dataclasses.replace(CountingSignalFor.signal, at_least=at_least, within=within * HOUR)
    state = CustomerState("cus_1")
    clock = None
    seen: list[int] = []
    for n, offset in enumerate(offsets):
        at = offset * HOUR
        if clock is not None and clock - at > late * HOUR:
            continue  # a late event: ingest marks it, and it is not counted
        clock = at if clock is None else max(clock, at)
        seen.append(at)
        event = dataclasses.replace(
            make_event("help_search", "2026-11-20T00:00:00Z", event_id=f"e{n}"), time=at
        )
        fired = count(state, signal, event, late * HOUR)
        assert (fired is not None) == fires_somewhere(seen, at_least, within * HOUR, len(seen) - 1)
