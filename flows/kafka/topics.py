"""What ``run`` checks of the topics it relies on before it reads them.

- **Their layout**: ``<prefix>frontier`` must have one partition (one reader in every process
  follows it in order) and be compacted (only the latest mark matters); a topic keyed by
  customer that is compacted keeps only each customer's latest record, so no input, output
  or transfers topic may be. A topic an operator created beforehand is taken as it is, so
  it is checked, not assumed.
- **The input topics' identity**: the snapshots in ``--recovery-dir`` hold offsets into the
  input topics they were taken from. A topic deleted and created again (same name, another
  topic id), or given more partitions, is another topic: those offsets mean nothing in it.
  So the topics' ids and partition counts are kept beside the snapshots
  (``input-topics.json``), and a resume against others is refused; so is a resume whose
  input topic is gone (creating it would start an empty one under old offsets).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from flows.kafka.config import KafkaSettings

REMEMBERED = "input-topics.json"
"""Under ``--recovery-dir``: the input topics the snapshots there were taken from."""


@dataclass(frozen=True, slots=True)
class Topic:
    """What identifies a topic, and its layout."""

    topic_id: str
    partitions: int
    compacted: bool


class TopicProblem(Exception):
    """A topic ``run`` must not run against; the message says which and what to do."""


def describe(settings: KafkaSettings, names: list[str], timeout: float = 30.0) -> dict[str, Topic]:
    """The topics among ``names`` that exist, as the brokers describe them."""
    admin = AdminClient(settings.config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    names = [name for name in names if name in existing]
    if not names:
        return {}
    found = {}
    try:
        described = admin.describe_topics(TopicCollection(names), request_timeout=timeout)
        configs = admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, name) for name in names], request_timeout=timeout
        )
        policies = {
            resource.name: future.result(timeout).get("cleanup.policy")
            for resource, future in configs.items()
        }
        for name, future in described.items():
            topic = future.result(timeout)
            policy = policies.get(name)
            compacted = policy is not None and "compact" in str(policy.value or "")
            found[name] = Topic(str(topic.topic_id), len(topic.partitions), compacted)
    except KafkaException as err:
        what = err.args[0].str()
        raise RuntimeError(f"cannot describe topics {', '.join(names)}: {what}") from None
    return found


def check_layout(settings: KafkaSettings, topics: dict[str, Topic]) -> None:
    """Raise :class:`TopicProblem` for the first topic laid out so ``run`` would go wrong."""
    frontier = settings.frontier_topic()
    for name, topic in sorted(topics.items()):
        if name == frontier:
            if topic.partitions != 1:
                raise TopicProblem(
                    f"topic {name} has {topic.partitions} partitions; it needs 1 (every "
                    "process reads the marks in it in order): delete it (it holds only "
                    "progress marks) and run creates it as it should be"
                )
            if not topic.compacted:
                raise TopicProblem(
                    f"topic {name} is not compacted; it needs cleanup.policy=compact (only "
                    "the latest mark matters): set it, or delete the topic and run creates it"
                )
        elif topic.compacted:
            raise TopicProblem(
                f"topic {name} is compacted (cleanup.policy=compact), which would keep only "
                "each customer's latest record: set cleanup.policy=delete on it"
            )


def check_identity(
    directory: Path, inputs: list[str], topics: dict[str, Topic], resuming: bool
) -> None:
    """Refuse (:class:`TopicProblem`) to resume the snapshots in ``directory`` against input
    topics other than the ones they were taken from; remember the ones a fresh start reads."""
    path = directory / REMEMBERED
    remembered = _read(path)
    if resuming and remembered is not None:
        for name in inputs:
            before = remembered.get(name)
            now = topics.get(name)
            if before is None:
                continue
            what = _changed(before, now)
            if what is not None:
                raise TopicProblem(
                    f"input topic {name} {what} since the snapshots in {directory} were "
                    "taken, so the offsets they resume from mean nothing in it. To read it from "
                    "its start, move --recovery-dir and --state-dir aside (a fresh start); to "
                    "go on, bring the old topic back"
                )
    if not resuming or remembered is None or any(name not in remembered for name in inputs):
        _write(path, {name: topics[name] for name in inputs if name in topics})


def check_present(directory: Path, inputs: list[str], existing: set[str]) -> None:
    """Refuse (:class:`TopicProblem`) to resume the snapshots in ``directory`` when an input
    topic they were taken from is gone: creating it again would resume old offsets in an
    empty topic."""
    remembered = _read(directory / REMEMBERED) or {}
    for name in inputs:
        if name in remembered and name not in existing:
            raise TopicProblem(
                f"input topic {name} is gone, but the snapshots in {directory} were taken "
                "reading it. To read a new one from its start, move --recovery-dir and "
                "--state-dir aside (a fresh start); to go on, bring the old topic back"
            )


def _changed(before: Topic, now: Topic | None) -> str | None:
    if now is None:
        return "is gone"
    if now.topic_id != before.topic_id:
        return f"was deleted and created again (topic id {before.topic_id}, now {now.topic_id})"
    if now.partitions != before.partitions:
        return f"went from {before.partitions} partitions to {now.partitions}"
    return None


def _read(path: Path) -> dict[str, Topic] | None:
    try:
        recorded = json.loads(path.read_text())
        return {name: Topic(**facts) for name, facts in recorded.items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as err:
        raise TopicProblem(f"{path} cannot be read ({err}): remove it to start afresh") from None


def _write(path: Path, topics: dict[str, Topic]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({name: asdict(topic) for name, topic in topics.items()}, indent=2)
    fd, staged = tempfile.mkstemp(prefix=".input-topics-", dir=path.parent)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")
    os.replace(staged, path)
