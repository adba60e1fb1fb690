"""Kafka mode's settings: where the cluster is, how clients connect, what the topics are
called, and reaching the cluster before the flow starts.

Clients take ``bootstrap.servers`` from ``--brokers`` (else ``KAFKA_BOOTSTRAP_SERVERS``)
and every other librdkafka property from ``-X`` flags or ``CONCIERGE_KAFKA_<PROPERTY>``
environment variables. librdkafka's own log lines and error reports go through the
``concierge.librdkafka`` logger; a line that keeps repeating (a broker that is down is
reported by every client thread at every reconnection) is written once a minute, with how
many were left out.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from operators.model.encoding import (
    ACTIONS_PREFIX,
    AUDIT,
    CONVERSIONS,
    DEAD_LETTERS,
    DECISIONS,
    FRONTIER,
    GRANTS,
    MODELS,
    TRANSFERS,
    TRIALS,
)
from operators.model.records import DEFAULT_MESSAGE_MAX_BYTES

if TYPE_CHECKING:
    from operators.policy.compiled import Policy

log = logging.getLogger("concierge.kafka")
CLIENT_LOG = logging.getLogger("concierge.librdkafka")

ENV_BROKERS = "KAFKA_BOOTSTRAP_SERVERS"
ENV_PREFIX = "CONCIERGE_KAFKA_"
DEFAULT_PREFIX = "concierge."


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Where the cluster is, how clients connect, and what the topics are called."""

    brokers: str
    prefix: str
    client: Mapping[str, str]
    partitions: int = 3
    replication_factor: int = -1

    def config(self, **extra: Any) -> dict[str, Any]:
        """A librdkafka config: the bootstrap servers, ``extra``, then the user's properties."""
        return {"bootstrap.servers": self.brokers, "logger": CLIENT_LOG, **extra, **self.client}

    def max_message_bytes(self) -> int:
        """The largest record the producers send (librdkafka's ``message.max.bytes``)."""
        return int(self.client.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))

    def events_topic(self) -> str:
        return self.prefix + "events"

    def feedback_topic(self) -> str:
        return self.prefix + "feedback"

    def transfers_topic(self) -> str:
        """Internal: merged profiles' contexts on their way back into the flow."""
        return self.prefix + TRANSFERS

    def models_topic(self) -> str:
        """Internal: the population model's versions, from the learner back into the
        identity step (learning with a ``population`` section)."""
        return self.prefix + MODELS

    def grants_topic(self) -> str:
        """Internal: the capacity owner's answers, back into the identity step (a policy
        with ``capacity``). One partition."""
        return self.prefix + GRANTS

    def frontier_topic(self) -> str:
        """Internal: how far the whole input has got, as the identity step says; every
        process reads it. One partition, compacted (only the latest mark matters)."""
        return self.prefix + FRONTIER

    def topic(self, name: str) -> str:
        """The topic a user names (``events``, ``actions.email``): ``name`` under the prefix,
        or as it is when it has the prefix already."""
        return name if name.startswith(self.prefix) else self.prefix + name

    def input_topics(self) -> list[str]:
        return [self.events_topic(), self.feedback_topic()]

    def output_topics(self, policy: Policy) -> list[str]:
        streams = [ACTIONS_PREFIX + channel for channel in policy.channels]
        streams += [DECISIONS, DEAD_LETTERS, AUDIT, TRANSFERS, FRONTIER]
        if policy.conversions_by_type:
            streams.append(CONVERSIONS)
        if policy.learning is not None:
            streams.append(TRIALS)
            if policy.learning.population_every is not None:
                streams.append(MODELS)
        if policy.capacity is not None:
            streams.append(GRANTS)
        return [self.prefix + stream for stream in streams]


def client_properties(flags: list[str], environ: Mapping[str, str]) -> dict[str, str]:
    """librdkafka properties from ``CONCIERGE_KAFKA_*`` variables, overridden by ``-X`` flags.

    In a variable's name ``_`` stands for ``.`` and ``__`` for ``_``
    (``CONCIERGE_KAFKA_SASL_PASSWORD`` is ``sasl.password``). A variable that
    names no librdkafka property (Kubernetes adds ``*_SERVICE_HOST`` ones) is
    skipped with a warning; a bad ``-X`` flag, or a value librdkafka refuses, is a
    :class:`ValueError` naming it.
    """
    properties = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        words = name[len(ENV_PREFIX) :].lower().split("__")
        prop = "_".join(word.replace("_", ".") for word in words)
        problem = _property_problem(prop, value)
        if problem is None:
            properties[prop] = value
        elif problem == _NO_SUCH_PROPERTY:
            log.warning("ignoring %s: %r is not a librdkafka property", name, prop)
        else:
            raise ValueError(f"{name}: {problem}")
    for flag in flags:
        name, sep, value = flag.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"-X takes PROPERTY=VALUE, not {flag!r}")
        problem = _property_problem(name, value)
        if problem == _NO_SUCH_PROPERTY:
            raise ValueError(f"-X {name}: not a librdkafka property")
        if problem is not None:
            raise ValueError(f"-X {name}: {problem}")
        properties[name] = value
    return properties


_NO_SUCH_PROPERTY = "no such property"


def _property_problem(name: str, value: str) -> str | None:
    """Why librdkafka refuses ``name=value`` (or :data:`_NO_SUCH_PROPERTY`), or None."""
    from confluent_kafka import KafkaException, Producer

    try:
        Producer({name: value, "log_level": 0})
    except KafkaException as err:
        message: str = err.args[0].str()
        if "No such configuration property" in message:
            return _NO_SUCH_PROPERTY
        # "Failed to create ...": the value is fine alone; check_settings judges the whole.
        return None if message.startswith("Failed to create") else message
    except (TypeError, ValueError) as err:
        return str(err)
    return None


def check_settings(settings: KafkaSettings) -> None:
    """Raise :class:`ValueError` if librdkafka refuses the client settings taken together
    (``sasl.mechanism`` without a SASL ``security.protocol``, say). Opens no connection."""
    from confluent_kafka import Consumer, KafkaException, Producer

    client = {**settings.client, "log_level": 0}
    try:
        Producer(client)
        Consumer({**client, "group.id": "concierge-settings-check"}).close()
    except KafkaException as err:
        raise ValueError(f"the Kafka client settings are refused: {err.args[0].str()}") from None


class BrokersUnreachable(RuntimeError):
    """The cluster did not answer within the connection timeout."""


def wait_for_brokers(settings: KafkaSettings, timeout: float, first_wait: float = 1.0) -> None:
    """Return once the cluster answers a metadata request; retry with backoff, one log line
    per attempt, and raise :class:`BrokersUnreachable` after ``timeout`` seconds."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    last_error: list[str] = []
    quiet = {"log_level": 0} if "log_level" not in settings.client else {}
    admin = AdminClient({**settings.config(error_cb=lambda e: last_error.append(e.str())), **quiet})
    started = time.monotonic()
    wait = first_wait
    attempt = 0
    while True:
        attempt += 1
        left = timeout - (time.monotonic() - started)
        try:
            admin.list_topics(timeout=max(min(2.0 * attempt, 10.0, left), MIN_ATTEMPT_S))
            if attempt > 1:
                log.info(
                    "reached the brokers at %s (attempt %d)",
                    settings.brokers,
                    attempt,
                    extra={"attempt": attempt},
                )
            return
        except KafkaException as err:
            admin.poll(0)
            reason = last_error[-1] if last_error else err.args[0].str()
        elapsed = time.monotonic() - started
        if timeout - elapsed < MIN_ATTEMPT_S:  # no time left for another attempt
            tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
            raise BrokersUnreachable(
                f"cannot reach the brokers at {settings.brokers} after {_seconds(elapsed)} "
                f"and {tries}: {reason}"
            )
        pause = min(wait, timeout - elapsed - MIN_ATTEMPT_S)  # the last attempt ends in time
        log.warning(
            "cannot reach the brokers at %s (attempt %d, %s so far): %s; next try in %s",
            settings.brokers,
            attempt,
            _seconds(elapsed),
            reason,
            _seconds(pause),
            extra={"attempt": attempt, "waited_s": round(elapsed, 1), "next_try_s": pause},
        )
        time.sleep(pause)
        wait = min(wait * 2, 15.0)


MIN_ATTEMPT_S = 0.2
"""The least time one attempt to reach the brokers is given, the last one too."""


def _seconds(value: float) -> str:
    """A time taken, as truly as a person needs it: ``1.5 s``, ``12 s``."""
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def client_settings(
    brokers: str | None, prefix: str, flags: list[str], partitions: int = 3
) -> KafkaSettings:
    """The settings of a command that talks to the cluster (``--brokers``, ``--topic-prefix``,
    ``-X``), its clients quiet unless ``-X log_level`` says otherwise: the command reports what
    goes wrong in its own words. A :class:`ValueError` says what is missing or refused."""
    if not brokers:
        raise ValueError(f"no brokers: pass --brokers or set {ENV_BROKERS}")
    client = {"log_level": "0", **client_properties(flags, os.environ)}
    settings = KafkaSettings(brokers, prefix, client, partitions)
    check_settings(settings)
    return settings


def list_topics(settings: KafkaSettings, timeout: float) -> dict[str, int]:
    """The cluster's topics and their partition counts; :class:`BrokersUnreachable`, in one
    line, when the brokers do not answer within ``timeout`` seconds (librdkafka keeps trying
    to connect until then)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[str] = []
    admin = AdminClient(settings.config(error_cb=lambda e: errors.append(e.str())))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as err:
        admin.poll(0)
        reason = errors[-1] if errors else err.args[0].str()
        raise BrokersUnreachable(
            f"cannot reach the brokers at {settings.brokers} within {timeout:g} s: {reason}"
        ) from None
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def ensure_topics(settings: KafkaSettings, topics: list[str], timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.config())
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as err:
        raise RuntimeError(f"cannot list topics: {err.args[0].str()}") from None
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(t, 1, settings.replication_factor, config={"cleanup.policy": "compact"})
            if t == settings.frontier_topic()
            else NewTopic(t, 1, settings.replication_factor)
            if t in (settings.models_topic(), settings.grants_topic())
            else NewTopic(t, settings.partitions, settings.replication_factor)
            for t in missing
        ],
        request_timeout=timeout,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout)
            created.append(topic)
        except KafkaException as err:
            if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create topic {topic}: {err.args[0].str()}") from None
    return created


class RepeatFilter(logging.Filter):
    """Lets a message through once per ``every`` seconds; numbers in it (offsets, timings)
    do not make it a different message. The next one through says how many were left out."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self._every = every
        self._seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        shape = _DIGITS.sub("#", f"{record.name}:{record.msg}:{record.args}")
        now = time.monotonic()
        last, left_out = self._seen.get(shape, (-self._every, 0))
        if now - last < self._every:
            self._seen[shape] = (last, left_out + 1)
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[shape] = (now, 0)
        if left_out:
            record.msg = f"{record.msg} ({left_out} more like it in the last {now - last:.0f}s)"
            record.left_out = left_out
        return True


_DIGITS = re.compile(r"\d+")
CLIENT_LOG.addFilter(RepeatFilter())
