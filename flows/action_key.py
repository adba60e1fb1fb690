"""The deployment's action key, which signs action ids (see :mod:`operators.action_ids`).

It comes from ``CONCIERGE_ACTION_KEY`` when that is set (a cluster's processes must all
use the same key: give them this variable, e.g. from a Kubernetes Secret); else from
``action.key`` under ``--state-dir``; else from this machine's key,
``$XDG_CONFIG_HOME/concierge/action.key`` (``~/.config/concierge/action.key``), created on
first use from 32 random bytes, readable by its owner only. ``run`` copies the machine's key
under its state directory, so a deployment keeps its key with its state. Replay takes the key
the same way (without a state directory), so on the same machine, or with the same variable,
it issues the ids Kafka mode does and accepts feedback from it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

from operators.action_ids import PUBLIC_KEY

log = logging.getLogger("concierge.key")

ENV_KEY = "CONCIERGE_ACTION_KEY"
KEY_FILE = "action.key"
MIN_SECRET = 16
"""The shortest secret accepted from the environment, in characters."""


class ActionKeyError(ValueError):
    """A key that cannot be used: too short, or a file that holds no key."""


def machine_key_path() -> Path:
    """Where this machine's (this user's) action key lives."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "concierge" / KEY_FILE


def load_action_key(state_dir: Path | None = None) -> tuple[bytes, str]:
    """The action key, and where it came from (for a log line)."""
    secret = os.environ.get(ENV_KEY)
    if secret is not None:
        if len(secret.strip()) < MIN_SECRET:
            raise ActionKeyError(f"{ENV_KEY} must be at least {MIN_SECRET} characters")
        kept = state_dir / KEY_FILE if state_dir is not None else None
        if kept is not None and kept.is_file() and _read(kept) != secret.strip().encode():
            log.warning(
                "%s differs from the key in %s: feedback about actions issued under that "
                "key will be refused",
                ENV_KEY,
                kept,
            )
        return secret.strip().encode(), ENV_KEY
    if state_dir is not None and (state_dir / KEY_FILE).is_file():
        return _read(state_dir / KEY_FILE), str(state_dir / KEY_FILE)
    machine = machine_key_path()
    try:
        key, made = _read_or_create(machine)
        where = f"{machine}{' (created)' if made else ''}"
    except OSError as err:
        if state_dir is None:
            log.warning(
                "cannot keep an action key at %s (%s): action ids are signed with the public "
                "key; set %s",
                machine,
                err.strerror,
                ENV_KEY,
            )
            return PUBLIC_KEY, "the public key"
        key, made = _read_or_create(state_dir / KEY_FILE)
        return key, f"{state_dir / KEY_FILE}{' (created)' if made else ''}"
    if state_dir is not None:
        _read_or_create(state_dir / KEY_FILE, key)
    return key, where


def _read(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if len(text) < MIN_SECRET:
        raise ActionKeyError(f"{path} holds no action key (at least {MIN_SECRET} characters)")
    return text.encode()


def _read_or_create(path: Path, key: bytes | None = None) -> tuple[bytes, bool]:
    """The key in ``path``; if there is none, ``key`` (or a new random one) written there
    first. Two processes creating it at once agree on the one that got there first."""
    if path.is_file():
        return _read(path), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = key or secrets.token_hex(32).encode()
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(key + b"\n")
        try:
            os.link(staging, path)
        except FileExistsError:
            return _read(path), False
    finally:
        with contextlib.suppress(OSError):
            staging.unlink()
    return key, True
