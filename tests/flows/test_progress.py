"""What the identity step tells every process (flows/progress.py)."""

from flows.progress import FrontierMark, InputFrontier


def test_timers_fire_below_what_the_identity_step_has_settled_and_never_past_the_wall_clock():
    frontier = InputFrontier()
    assert frontier.safe_until(1_000) < 0, "nothing heard yet: no timer fires"
    frontier.apply(FrontierMark(400, False, None, 990, "r"))
    assert frontier.safe_until(1_000) == 399
    frontier.apply(FrontierMark(5_000, False, None, 995, "r"))
    assert frontier.safe_until(1_000) == 1_000


def test_the_latest_mark_wins_even_when_it_is_lower_after_a_restart():
    frontier = InputFrontier()
    frontier.apply(FrontierMark(900, False, None, 1, "before"))
    frontier.apply(FrontierMark(600, False, None, 2, "after"))
    assert frontier.safe_until(10_000) == 599


def test_a_drained_mark_ends_the_input_at_its_time_and_survives_the_wire():
    frontier = InputFrontier()
    mark = FrontierMark.decode(FrontierMark(700, True, 1_234, 1_234, "r").encode())
    frontier.apply(mark)
    assert frontier.drained and frontier.end_at == 1_234
