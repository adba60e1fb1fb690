"""The module names of releases before 0.8.0, for the pickles their recovery snapshots hold.

Bytewax snapshots a customer's journey, and the identity step's state, as pickles, and a
pickle names each class by its module. 0.8.0 grouped this package's modules by stage
(``operators.state`` became ``operators.model.state``); so that a snapshot taken before still
resumes, importing an old name gives a module that hands out the new one's attributes. The
old ``operators.model`` is the package of the same name now: its ``__getattr__`` answers for
the record classes (:mod:`operators.model.records`). The old ``operators.policy``,
``operators.identity`` and ``operators.context`` are packages now too, and need no answer: no
snapshot holds what they held (the compiled policy, functions).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

MOVED = {
    "operators.records": "operators.model.encoding",
    "operators.timefmt": "operators.model.timefmt",
    "operators.durations": "operators.model.durations",
    "operators.fast_init": "operators.model.fast_init",
    "operators.identifiers": "operators.model.identifiers",
    "operators.action_ids": "operators.model.action_ids",
    "operators.handover": "operators.model.handover",
    "operators.state": "operators.model.state",
    "operators.state_records": "operators.model.state_records",
    "operators.bounded": "operators.model.bounded",
    "operators.policy_checks": "operators.policy.checks",
    "operators.policy_compile": "operators.policy.compiler",
    "operators.policy_limits": "operators.policy.limits",
    "operators.policy_load": "operators.policy.load",
    "operators.policy_typos": "operators.policy.typos",
    "operators.text": "operators.policy.text",
    "operators.identity_graph": "operators.identity.graph",
    "operators.resolution": "operators.identity.resolution",
    "operators.merging": "operators.identity.merging",
    "operators.alignment": "operators.identity.alignment",
    "operators.signals": "operators.context.signals",
    "operators.windows": "operators.context.windows",
    "operators.moments": "operators.context.moments",
    "operators.decay": "operators.context.decay",
    "operators.absences": "operators.context.absences",
    "operators.dates": "operators.context.dates",
    "operators.attributes": "operators.context.attributes",
    "operators.timezones": "operators.context.timezones",
    "operators.suppression": "operators.context.suppression",
    "operators.consent": "operators.context.consent",
    "operators.reachability": "operators.context.reachability",
    "operators.sends": "operators.context.sends",
    "operators.feedback": "operators.context.feedback",
    "operators.decide": "operators.decisions.decide",
    "operators.eligibility": "operators.decisions.eligibility",
    "operators.caps": "operators.decisions.caps",
    "operators.cooldowns": "operators.decisions.cooldowns",
    "operators.fatigue": "operators.decisions.fatigue",
    "operators.quiet_hours": "operators.decisions.quiet_hours",
    "operators.holdouts": "operators.measurement.holdouts",
    "operators.conversions": "operators.measurement.conversions",
    "operators.lift": "operators.measurement.lift",
}
"""Old module name -> where it lives now."""


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name, and makes it a module that delegates to the new one."""

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def exec_module(self, module: ModuleType) -> None:
        new = importlib.import_module(MOVED[module.__name__])

        def delegate(name: str) -> Any:
            return getattr(new, name)

        module.__getattr__ = delegate  # type: ignore[method-assign]


def install() -> None:
    """Let the old names be imported (once per process)."""
    if not any(isinstance(finder, _OldNames) for finder in sys.meta_path):
        sys.meta_path.append(_OldNames())
