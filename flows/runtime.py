"""How the interpreter is set up for a long run of the dataflow."""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 20, 100)
"""Python's cycle collector runs after every 700 allocations by default, and each run walks
every young object; the flow allocates a few dozen objects per event and frees almost all of
them by reference counting, so those runs found nothing and cost a fifth of a replay's CPU.
From the flow's start it runs every 50,000 allocations instead (the oldest generation every
100 million)."""


def tune_gc() -> None:
    """Set the cycle collector up for the flow: what start-up built (modules, the policy)
    is moved out of its sight for good, and it runs less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
