"""A new user follows docs/getting-started.md to the letter, and every command works as
shown (tests/docs/tour.py runs it; about a minute and a half, so with `make test-scale`)."""

import pytest

from tests.docs.tour import differences, tour


@pytest.mark.scale
def test_every_command_of_the_getting_started_page_prints_what_the_page_shows(tmp_path):
    page, ran = tour(tmp_path)
    wrong = []
    for block in page:
        for step in block.steps:
            wrong += differences(step.shown, ran.printed[step.start], step.command)
        if block.stopped is not None:
            wrong += differences(block.stopped, ran.printed[block.stopped_at], "")
    assert not wrong, "\n".join(
        ["the page and the commands disagree (python tests/docs/tour.py --write):", *wrong]
    )
