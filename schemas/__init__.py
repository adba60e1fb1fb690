"""The JSON Schemas of Concierge's records and policy: the single source of truth.

The schema files sit beside this module so they ship with the package; code
loads them by name through :func:`load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

DIRECTORY = Path(__file__).resolve().parent
NAMES = ("event", "action", "decision", "conversion", "trial", "dead_letter", "audit", "policy")


def path(name: str) -> Path:
    """Return the file path of the schema called ``name`` (e.g. ``"event"``)."""
    if name not in NAMES:
        raise KeyError(f"no schema called {name!r}; known: {', '.join(NAMES)}")
    return DIRECTORY / f"{name}.schema.json"


def load(name: str) -> dict[str, Any]:
    """Return the parsed schema called ``name``."""
    loaded: dict[str, Any] = orjson.loads(path(name).read_bytes())
    return loaded
