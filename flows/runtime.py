"""How the interpreter is set up for a long run of the dataflow."""

from __future__ import annotations

import ctypes
import gc
import threading
import time
from collections.abc import Callable

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


TRIM_EVERY_S = 10.0
"""How often the process hands the memory it freed back to the system."""


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where there is none (musl, macOS)."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


def start_trimming(every_s: float = TRIM_EVERY_S) -> None:
    """Every ``every_s``, give the system back the pages malloc holds free.

    The flow frees what a customer used while live when it packs them, but malloc keeps
    the freed pages: 400-700 bytes per customer of the process's resident memory after a
    burst of new customers (``bench/memory.py``). The call releases the GIL; it takes
    milliseconds.
    """
    trim = _malloc_trim()
    if trim is None:
        return

    def loop() -> None:
        while True:
            time.sleep(every_s)
            trim()

    threading.Thread(target=loop, name="concierge-malloc-trim", daemon=True).start()
