"""Replay scenarios drive the installed ``concierge`` command, as a CX designer would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

CONCIERGE = str(Path(sys.executable).with_name("concierge"))


@dataclass
class ReplayResult:
    out: Path
    returncode: int
    stderr: str

    def lines(self, name: str) -> list[dict[str, Any]]:
        path = self.out / name
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]

    def summary(self) -> dict[str, Any]:
        loaded: dict[str, Any] = orjson.loads((self.out / "summary.json").read_bytes())
        return loaded


def concierge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONCIERGE, *args], capture_output=True, text=True, timeout=timeout)


def replayer(tmp_path: Path, default_policy: Path) -> Callable[..., ReplayResult]:
    """``concierge replay`` of an events file into a new directory under ``tmp_path``."""
    counter = iter(range(1000))

    def run(events: Path, *extra: str, policy: Path | None = None) -> ReplayResult:
        out = tmp_path / f"out-{next(counter)}"
        done = concierge(
            "replay",
            "--policy",
            str(policy or default_policy),
            "--events",
            str(events),
            "--out",
            str(out),
            *extra,
        )
        return ReplayResult(out, done.returncode, done.stderr)

    return run


@pytest.fixture
def replay(tmp_path, reference_policy_path):
    return replayer(tmp_path, reference_policy_path)
