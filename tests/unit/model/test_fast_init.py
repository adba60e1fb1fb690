"""operators/model/fast_init.py: the cheaper __init__ builds what the dataclass's own would."""

import dataclasses
import pickle

import pytest

from operators.model.fast_init import fast_init
from operators.model.records import Decision, Origin, Outcome
from tests.conftest import make_event


def twins():
    """The same class twice: as the dataclass made it, and with fast_init."""

    def define():
        @dataclasses.dataclass(frozen=True, slots=True)
        class Sample:
            name: str
            at: int
            tags: tuple[str, ...] = ()
            origin: Origin = dataclasses.field(default_factory=Origin)
            note: str | None = None

        return Sample

    return define(), fast_init(define())


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("a", 1), {}),
        (("a", 1, ("x",)), {}),
        (("a",), {"at": 2, "note": "n"}),
        ((), {"name": "a", "at": 3, "origin": Origin(file="f", line=4), "tags": ("y", "z")}),
    ],
)
def test_it_builds_the_same_object_from_the_same_arguments(args, kwargs):
    slow, fast = twins()
    built, expected = fast(*args, **kwargs), slow(*args, **kwargs)
    assert dataclasses.astuple(built) == dataclasses.astuple(expected)
    assert repr(built).replace("Sample", "") == repr(expected).replace("Sample", "")
    assert fast(*args, **kwargs) == built and hash(fast(*args, **kwargs)) == hash(built)


def test_it_refuses_what_the_dataclass_refuses():
    slow, fast = twins()
    for cls in (slow, fast):
        with pytest.raises(TypeError):
            cls("a")  # a required field missing
        with pytest.raises(TypeError):
            cls("a", 1, unknown=2)
        with pytest.raises(dataclasses.FrozenInstanceError):
            cls("a", 1).at = 2
    assert fast("a", 1).origin is not fast("a", 1).origin, "a fresh default from its factory"


def test_it_needs_a_frozen_slotted_dataclass():
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        a: int

    for cls in (NoSlots, NotFrozen):
        with pytest.raises(TypeError, match="frozen dataclass with slots"):
            fast_init(cls)


def test_the_engines_records_survive_pickling_and_keep_their_defaults():
    event = make_event("product_view", "2026-11-20T10:00:00Z", {"product_id": "p-1"})
    assert event.late is False and event.rejected_identifiers == ()
    assert pickle.loads(pickle.dumps(event)) == event
    decision = Decision("cus_a", 1, "nudge", Outcome.SENT, "eligible", "m", None, 1.0, (), (), "v")
    assert decision.rule is None and decision.until is None
    assert pickle.loads(pickle.dumps(decision)) == decision
