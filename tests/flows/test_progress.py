"""When a wall-clock timer may fire in Kafka mode (flows/progress.py)."""

from flows.progress import InputFrontier


def test_with_every_partition_caught_up_the_wall_clock_rules():
    frontier = InputFrontier()
    frontier.update("events#0", 500, caught_up=True)
    frontier.update("events#1", None, caught_up=True)
    assert frontier.safe_until(1_000) == 1_000


def test_a_partition_reading_a_backlog_holds_timers_back_to_where_it_has_read():
    frontier = InputFrontier()
    frontier.update("events#0", 900, caught_up=True)
    frontier.update("events#1", 400, caught_up=False)
    assert frontier.safe_until(1_000) == 400
    frontier.update("events#1", 950, caught_up=True)
    assert frontier.safe_until(1_000) == 1_000


def test_before_a_partition_has_read_anything_no_timer_fires():
    frontier = InputFrontier()
    frontier.update("events#0", None, caught_up=False)
    assert frontier.safe_until(1_000) < 0
