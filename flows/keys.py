"""The deployment's two secrets: the action key, which signs action ids (see
:mod:`operators.model.action_ids`), and the identity key, which digests identifiers (see
:mod:`operators.model.identifiers`).

Each comes from its variable when that is set (``CONCIERGE_ACTION_KEY``,
``CONCIERGE_IDENTITY_KEY``: a cluster's processes must all use the same keys, so give them
these variables, e.g. from a Kubernetes Secret); else from its file under ``--state-dir``
(``action.key``, ``identity.key``); else from this machine's key,
``$XDG_CONFIG_HOME/concierge/<file>`` (``~/.config/concierge/``), created on first use from
32 random bytes, readable by its owner only. ``run`` copies the machine's key under its state
directory, so a deployment keeps its keys with its state. Replay and the tools take the keys
the same way (without a state directory), so on the same machine, or with the same
variables, replay issues the action ids Kafka mode does and its identity graph digests
identifiers as Kafka mode's does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from operators.model.action_ids import PUBLIC_KEY, keyed
from operators.model.identifiers import PUBLIC_IDENTITY_KEY, IdentityKey
from operators.policy.compiled import Policy

log = logging.getLogger("concierge.key")

MIN_SECRET = 16
"""The shortest secret accepted from the environment, in characters."""


@dataclass(frozen=True)
class Secret:
    """One of the deployment's keys: where it is looked for, and what a wrong one breaks."""

    env: str
    file: str
    name: str
    public: bytes
    mismatch: str
    """What follows when the variable differs from the key kept with the state."""
    unkept: str
    """What the public key means, when no key can be kept on this machine."""


ACTION_KEY = Secret(
    "CONCIERGE_ACTION_KEY",
    "action.key",
    "action key",
    PUBLIC_KEY,
    "feedback about actions issued under that key will be refused",
    "action ids are signed with the public key",
)
IDENTITY_KEY = Secret(
    "CONCIERGE_IDENTITY_KEY",
    "identity.key",
    "identity key",
    PUBLIC_IDENTITY_KEY,
    "the identity graph digested under that key will refuse to open",
    "identifiers are digested with the public key",
)


class SecretError(ValueError):
    """A key that cannot be used: too short, or a file that holds no key."""


def machine_key_path(secret: Secret = ACTION_KEY) -> Path:
    """Where this machine's (this user's) copy of a key lives."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "concierge" / secret.file


def load_action_key(state_dir: Path | None = None) -> tuple[bytes, str]:
    """The action key, and where it came from (for a log line)."""
    return load_key(ACTION_KEY, state_dir)


def load_key(secret: Secret, state_dir: Path | None = None, keep: bool = True) -> tuple[bytes, str]:
    """A key, and where it came from (for a log line). ``keep``: the key of a state directory
    that has none yet is kept there (``run``); a tool that only reads it says False."""
    given = os.environ.get(secret.env)
    kept = state_dir / secret.file if state_dir is not None else None
    if given is not None:
        if len(given.strip()) < MIN_SECRET:
            raise SecretError(f"{secret.env} must be at least {MIN_SECRET} characters")
        if kept is not None and kept.is_file() and _read(kept, secret) != given.strip().encode():
            log.warning("%s differs from the key in %s: %s", secret.env, kept, secret.mismatch)
        return given.strip().encode(), secret.env
    if kept is not None and kept.is_file():
        return _read(kept, secret), str(kept)
    if not keep:
        kept = None
    machine = machine_key_path(secret)
    try:
        key, made = _read_or_create(machine, secret)
        where = f"{machine}{' (created)' if made else ''}"
    except OSError as err:
        if kept is None:
            log.warning(
                "cannot keep an %s at %s (%s): %s; set %s",
                secret.name,
                machine,
                err.strerror,
                secret.unkept,
                secret.env,
            )
            return secret.public, "the public key"
        key, made = _read_or_create(kept, secret)
        return key, f"{kept}{' (created)' if made else ''}"
    if kept is not None:
        _read_or_create(kept, secret, key)
    return key, where


def _read(path: Path, secret: Secret) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if len(text) < MIN_SECRET:
        raise SecretError(f"{path} holds no {secret.name} (at least {MIN_SECRET} characters)")
    return text.encode()


def _read_or_create(path: Path, secret: Secret, key: bytes | None = None) -> tuple[bytes, bool]:
    """The key in ``path``; if there is none, ``key`` (or a new random one) written there
    first. Two processes creating it at once agree on the one that got there first."""
    if path.is_file():
        return _read(path, secret), False
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
            return _read(path, secret), False
    finally:
        with contextlib.suppress(OSError):
            staging.unlink()
    return key, True


def with_keys(policy: Policy, state_dir: Path | None = None) -> tuple[Policy, dict[str, str]]:
    """``policy`` with the deployment's action and identity keys, and where each came from."""
    action, action_from = load_key(ACTION_KEY, state_dir)
    identity, identity_from = load_key(IDENTITY_KEY, state_dir)
    keyed_policy = dataclasses.replace(
        policy, action_ids=keyed(action), identity_key=IdentityKey(identity)
    )
    return keyed_policy, {ACTION_KEY.name: action_from, IDENTITY_KEY.name: identity_from}
