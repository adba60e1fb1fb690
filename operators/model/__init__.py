"""The shared model: the records that flow in and out, everything kept about a customer, event
time, durations, identifiers and action ids. It imports nothing else of Concierge's."""

from typing import Any


def __getattr__(name: str) -> Any:
    """A record class by its name before 0.8.0, ``operators.model.<class>``, as pickles in
    the recovery snapshots of earlier releases name it (see :mod:`operators.moved`)."""
    from operators.model import records

    value = getattr(records, name, None)
    if isinstance(value, type) and value.__module__ == records.__name__:
        return value
    raise AttributeError(f"module 'operators.model' has no attribute {name!r}")
