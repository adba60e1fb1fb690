"""``concierge run``: flags, recovery, signals, and the dataflow against Kafka until stopped."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from types import FrameType

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from flows import metrics
from flows.customer import JourneyConfig
from flows.identity import IdentityConfig
from flows.identity_store import RocksStore
from flows.kafka import (
    DEFAULT_PREFIX,
    ENV_BROKERS,
    ENV_PREFIX,
    STOP,
    KafkaEventSource,
    KafkaRecordSink,
    KafkaSettings,
    client_properties,
    ensure_topics,
)
from flows.orchestrator import build_flow
from operators.policy import Policy

log = logging.getLogger("concierge.run")

STOP_GRACE_S = 8.0


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``concierge run``."""
    parser.add_argument(
        "--brokers",
        default=os.environ.get(ENV_BROKERS),
        help=f"bootstrap servers, host:port,... [env: {ENV_BROKERS}]",
    )
    parser.add_argument(
        "--topic-prefix",
        default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help="prefix of every topic name (default: %(default)s)",
    )
    parser.add_argument(
        "--recovery-dir",
        default=".concierge/recovery",
        metavar="DIR",
        help="where progress and state snapshots go (default: %(default)s)",
    )
    parser.add_argument(
        "--state-dir",
        default=".concierge/state",
        metavar="DIR",
        help="where the identity graph lives (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        metavar="PORT",
        help="Prometheus /metrics port; 0 turns it off (default: %(default)s)",
    )
    parser.add_argument(
        "-X",
        dest="properties",
        action="append",
        default=[],
        metavar="PROPERTY=VALUE",
        help=f"a librdkafka property for every client (also env {ENV_PREFIX}*)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=3,
        help="partitions of topics this creates (default: %(default)s)",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=-1,
        help="replication of topics this creates; -1: the broker's default",
    )
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between recovery snapshots (default: %(default)s)",
    )
    parser.add_argument("-w", "--workers-per-process", type=int, default=1)
    parser.add_argument(
        "-i",
        "--process-id",
        type=int,
        default=None,
        help="this process's index in a cluster (with -a)",
    )
    parser.add_argument(
        "-a",
        "--addresses",
        default=None,
        help="host:port of every process in the cluster, separated by ;",
    )
    parser.add_argument(
        "--stop-at-end",
        action="store_true",
        help="stop once the input topics are read to their end",
    )


def run_from_args(policy: Policy, args: argparse.Namespace) -> int:
    """``concierge run``: check the flags, then run until stopped."""
    if not args.brokers:
        print(f"concierge run: no brokers: pass --brokers or set {ENV_BROKERS}", file=sys.stderr)
        return 2
    if (args.process_id is None) != (args.addresses is None):
        print("concierge run: -i/--process-id and -a/--addresses go together", file=sys.stderr)
        return 2
    try:
        client = client_properties(args.properties, os.environ)
    except ValueError as err:
        print(f"concierge run: {err}", file=sys.stderr)
        return 2
    settings = KafkaSettings(
        args.brokers, args.topic_prefix, client, args.partitions, args.replication_factor
    )
    return run(
        policy,
        settings,
        recovery_dir=Path(args.recovery_dir),
        state_dir=Path(args.state_dir),
        metrics_port=args.metrics_port,
        snapshot_interval=timedelta(seconds=args.snapshot_interval),
        workers_per_process=args.workers_per_process,
        process_id=args.process_id,
        addresses=args.addresses.split(";") if args.addresses else None,
        stop_at_end=args.stop_at_end,
    )


def run(
    policy: Policy,
    settings: KafkaSettings,
    *,
    recovery_dir: Path,
    state_dir: Path,
    metrics_port: int = 0,
    snapshot_interval: timedelta = timedelta(seconds=5),
    workers_per_process: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    stop_at_end: bool = False,
) -> int:
    """Run the dataflow against Kafka until SIGTERM/SIGINT (or the end, with ``stop_at_end``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if metrics_port:
        try:
            metrics.serve(metrics_port)
        except OSError as err:
            print(
                f"concierge run: cannot serve metrics on port {metrics_port}: {err.strerror}",
                file=sys.stderr,
            )
            return 2
        log.info("metrics on http://0.0.0.0:%d/metrics", metrics_port)
    created = ensure_topics(settings, settings.input_topics() + settings.output_topics(policy))
    if created:
        log.info("created topics: %s", ", ".join(created))
    state_dir.mkdir(parents=True, exist_ok=True)
    processes = len(addresses) if addresses else 1
    _prepare_recovery(recovery_dir, workers_per_process, processes, process_id or 0)

    # Reading history to its end is a batch job: its timers fire by event time, as in
    # replay, and what is still due fires once the input is read. Tailing fires them on
    # the wall clock.
    config = JourneyConfig(policy, wall_clock_timers=not stop_at_end)
    graph_store = _GraphStore(state_dir / "identity")
    identity = IdentityConfig(policy.identifier_rules, graph_store.open)
    source = KafkaEventSource(
        settings, policy, config.frontier, identity.counters, config.end_of_input, stop_at_end
    )
    flow = build_flow(config, identity, source, KafkaRecordSink(settings))
    STOP.clear()
    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("reading %s from %s", ", ".join(settings.input_topics()), settings.brokers)
    try:
        cli_main(
            flow,
            workers_per_process=workers_per_process,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=snapshot_interval,
            recovery_config=RecoveryConfig(str(recovery_dir)),
        )
    except KeyboardInterrupt:
        log.info("stopped before the dataflow drained; it resumes from the last snapshot")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        graph_store.close()
    log.info("stopped")
    return 0


class _GraphStore:
    """The identity graph's RocksDB, opened by whichever worker owns the identity step."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._store: RocksStore | None = None

    def open(self) -> RocksStore:
        if self._store is None:
            self._store = RocksStore(self._path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _prepare_recovery(directory: Path, workers: int, processes: int, process_id: int) -> None:
    """On first start, create this process's share of the recovery partitions.

    Bytewax fixes their number (one per worker in the cluster) and needs each
    to exist on some process; process ``n`` keeps parts ``n*w .. n*w+w-1``, so
    it works with one volume per process as with one shared directory.
    """
    directory.mkdir(parents=True, exist_ok=True)
    mine = range(process_id * workers, (process_id + 1) * workers)
    if all((directory / f"part-{n}.sqlite3").exists() for n in mine):
        return
    with tempfile.TemporaryDirectory(prefix=".recovery-init-", dir=directory.parent) as staging:
        init_db_dir(Path(staging), workers * processes)
        for n in mine:
            target = directory / f"part-{n}.sqlite3"
            if not target.exists():
                os.replace(Path(staging) / f"part-{n}.sqlite3", target)


def _request_stop(signum: int, frame: FrameType | None) -> None:
    """First signal: end the input so the dataflow drains and snapshots. If it has not
    finished within the grace period, or on a second signal, interrupt it."""
    if STOP.is_set():
        raise KeyboardInterrupt
    log.info("%s: stopping", signal.Signals(signum).name)
    STOP.set()
    timer = threading.Timer(STOP_GRACE_S, _interrupt_main)
    timer.daemon = True
    timer.start()


def _interrupt_main() -> None:
    import _thread

    _thread.interrupt_main()
