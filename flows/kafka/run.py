"""``concierge run``: flags, recovery, signals, and the dataflow against Kafka until stopped."""

from __future__ import annotations

import argparse
import functools
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

from flows import logs, metrics, package_version
from flows.capacity import CAPACITY_TICK_MS
from flows.identity import GraphMismatch, IdentityConfig
from flows.identity_store import RocksStore, check_graph
from flows.journey import PACK_IDLE_MS, JourneyConfig, wall_clock_ms
from flows.kafka import health
from flows.kafka.config import (
    ENV_BROKERS,
    KafkaSettings,
    check_settings,
    client_properties,
    ensure_topics,
    wait_for_brokers,
)
from flows.kafka.connectors import (
    STOP,
    FrontierReader,
    KafkaEventSource,
    KafkaRecordSink,
    partitions_of,
    read_versions,
)
from flows.kafka.snapshots import (
    Damage,
    LayoutMismatch,
    SnapshotWatch,
    Unknowable,
    check_partitions,
    check_share,
    drop_unfinished,
    partitions_per_worker,
    purge_forgotten,
    resume_epoch,
)
from flows.kafka.topics import TopicProblem, check_identity, check_layout, check_present, describe
from flows.keys import ACTION_KEY, IDENTITY_KEY, SecretError, with_keys
from flows.learner import MODELS_PART, with_population
from flows.orchestrator import build_flow
from operators.identity.graph import GraphError
from operators.policy.compiled import Policy

log = logging.getLogger("concierge.run")

STOP_GRACE_S = 8.0
"""How long a stop may drain before it is interrupted (``--stop-grace``)."""
INTERRUPTED = "stopped before the dataflow drained; it resumes from the last snapshot"
_GRACE: list[threading.Timer] = []
"""The running stop's grace timer: cancelled once the run is over, drained or not."""
_OVER = threading.Event()
"""Set once the dataflow has returned or failed: a grace running out after it interrupts nothing."""
RECOVERY_PARTITIONS = 1
"""Recovery partitions per worker in a new recovery directory (``--recovery-partitions``):
more restart a process holding many customers faster (docs/performance.md, resuming at
scale), and cost each epoch a little more."""


def run_from_args(policy: Policy, args: argparse.Namespace) -> int:
    """``concierge run``: check the flags, then run until stopped."""
    if not args.brokers:
        print(f"concierge run: no brokers: pass --brokers or set {ENV_BROKERS}", file=sys.stderr)
        return 2
    if (args.process_id is None) != (args.addresses is None):
        print("concierge run: -i/--process-id and -a/--addresses go together", file=sys.stderr)
        return 2
    if args.addresses is not None and args.process_id >= len(args.addresses.split(";")):
        print(
            f"concierge run: -i {args.process_id} names no process of -a "
            f"({len(args.addresses.split(';'))} addresses; -i counts from 0)",
            file=sys.stderr,
        )
        return 2
    try:
        client = client_properties(args.properties, os.environ)
        settings = KafkaSettings(
            args.brokers, args.topic_prefix, client, args.partitions, args.replication_factor
        )
        check_settings(settings)
    except ValueError as err:
        print(f"concierge run: {err}", file=sys.stderr)
        return 2
    return run(
        policy,
        settings,
        recovery_dir=Path(args.recovery_dir),
        state_dir=Path(args.state_dir),
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        log_format=args.log_format,
        snapshot_interval=timedelta(seconds=args.snapshot_interval),
        workers_per_process=args.workers_per_process,
        process_id=args.process_id,
        addresses=args.addresses.split(";") if args.addresses else None,
        stop_at_end=args.stop_at_end,
        connect_timeout=args.connect_timeout,
        max_idle_ms=args.max_idle_ms,
        pack_idle_ms=args.pack_idle_ms,
        recovery_partitions=args.recovery_partitions,
        stop_grace=args.stop_grace,
    )


def run(
    policy: Policy,
    settings: KafkaSettings,
    *,
    recovery_dir: Path,
    state_dir: Path,
    metrics_port: int = 0,
    metrics_host: str = "0.0.0.0",
    snapshot_interval: timedelta = timedelta(seconds=5),
    workers_per_process: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    stop_at_end: bool = False,
    connect_timeout: float = 60.0,
    max_idle_ms: int = 500,
    pack_idle_ms: int = PACK_IDLE_MS,
    log_format: str = "text",
    recovery_partitions: int = RECOVERY_PARTITIONS,
    stop_grace: float = STOP_GRACE_S,
) -> int:
    """Run the dataflow against Kafka until SIGTERM/SIGINT (or the end, with ``stop_at_end``).

    Exit 0 once stopped; 1, with one line on stderr, when the brokers cannot be reached
    within ``connect_timeout`` seconds or the dataflow fails (it resumes from its last
    snapshot when started again).
    """
    logs.configure(log_format)
    fail = _Failure(log_format)
    state_dir.mkdir(parents=True, exist_ok=True)
    processes = len(addresses) if addresses else 1
    try:
        policy, keys_from = with_keys(policy, state_dir)
    except (SecretError, OSError) as err:
        return fail(2, str(err))
    log.info(
        "action ids are signed with the action key from %s; identifiers are digested with "
        "the identity key from %s",
        keys_from[ACTION_KEY.name],
        keys_from[IDENTITY_KEY.name],
    )
    if processes > 1 and keys_from[ACTION_KEY.name] != ACTION_KEY.env:
        log.warning(
            "every process of a cluster must sign action ids with the same key: set %s on "
            "each (feedback read by one process about another's actions is refused otherwise)",
            ACTION_KEY.env,
        )
    if processes > 1 and keys_from[IDENTITY_KEY.name] != IDENTITY_KEY.env:
        return fail(
            2,
            f"every process of a cluster must digest identifiers with the same key: set "
            f"{IDENTITY_KEY.env} on each (one person's events read by two processes would "
            "otherwise become two customers)",
        )
    try:
        check_graph(state_dir / "identity", policy.identity_key)
    except GraphError as err:
        return fail(2, f"{state_dir / 'identity'}: {err}")
    try:
        per_worker = partitions_per_worker(
            recovery_dir, processes * workers_per_process, recovery_partitions
        )
        share = workers_per_process * per_worker  # the partitions this process makes
        mine = range((process_id or 0) * share, ((process_id or 0) + 1) * share)
        check_share(recovery_dir, mine)
    except LayoutMismatch as err:
        return fail(2, str(err))
    damaged = check_partitions(recovery_dir, mine)
    if damaged:
        return fail(1, _damaged(damaged[0]))
    metrics.declare_build(policy, package_version())
    metrics.declare_labels(policy)
    metrics.declare_measurement(policy)
    metrics.declare_dates(policy)
    watch = SnapshotWatch(recovery_dir, mine)
    readiness = health.Readiness(watch.committed, STOP)
    endpoint = None
    if metrics_port:
        try:
            endpoint = health.serve(metrics_host, metrics_port, readiness)
        except OSError as err:  # taken, or a host that is not this machine's
            why = err.strerror or str(err)
            return fail(2, f"cannot serve metrics on {metrics_host} port {metrics_port}: {why}")
        metrics.SNAPSHOT_AGE.set_function(watch.start().age)
        url = f"http://{_url_host(metrics_host)}:{metrics_port}"
        log.info("metrics on %s/metrics; liveness %s/healthz, readiness %s/readyz", url, url, url)
    # From here on a signal stops it cleanly, however far it has got: while it starts (the
    # brokers, the snapshots, the population model's periods), the dataflow then drains as
    # soon as it runs.
    STOP.clear()
    _OVER.clear()
    stop = functools.partial(_request_stop, stop_grace)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run_dataflow(
            policy,
            settings,
            readiness,
            fail,
            recovery_dir=recovery_dir,
            state_dir=state_dir,
            mine=mine,
            per_worker=per_worker,
            processes=processes,
            snapshot_interval=snapshot_interval,
            workers_per_process=workers_per_process,
            process_id=process_id,
            addresses=addresses,
            stop_at_end=stop_at_end,
            connect_timeout=connect_timeout,
            max_idle_ms=max_idle_ms,
            pack_idle_ms=pack_idle_ms,
        )
    except KeyboardInterrupt:  # a second signal, or the grace period, while it started
        log.info("stopped while starting: nothing was read")
        return 0
    finally:
        while _GRACE:
            _GRACE.pop().cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        watch.close()
        if endpoint is not None:
            endpoint.close()


def _run_dataflow(
    policy: Policy,
    settings: KafkaSettings,
    readiness: health.Readiness,
    fail: _Failure,
    *,
    recovery_dir: Path,
    state_dir: Path,
    mine: range,
    per_worker: int,
    processes: int,
    snapshot_interval: timedelta,
    workers_per_process: int,
    process_id: int | None,
    addresses: list[str] | None,
    stop_at_end: bool,
    connect_timeout: float,
    max_idle_ms: int,
    pack_idle_ms: int,
) -> int:
    """Reach the brokers, prepare the recovery partitions, then run the dataflow until it
    ends or is stopped; the exit code."""
    inputs = settings.input_topics()
    relied_on = inputs + settings.output_topics(policy)
    resuming = _has_partitions(recovery_dir, mine)
    try:
        wait_for_brokers(settings, connect_timeout)
        found = describe(settings, relied_on)
        if resuming:  # an input topic its snapshots read must not be made again, empty
            check_present(recovery_dir, inputs, set(found))
        created = ensure_topics(settings, relied_on)
        if created:
            found = describe(settings, relied_on)
        check_layout(settings, found)
        check_identity(recovery_dir, inputs, found, resuming)
        parts = partitions_of(settings, inputs)
    except TopicProblem as err:
        return fail(2, str(err))
    except RuntimeError as err:  # BrokersUnreachable, or a topic that cannot be made
        return fail(1, str(err))
    if created:
        log.info("created topics: %s", ", ".join(created), extra={"topics": created})
    readiness.started()
    if _prepare_recovery(recovery_dir, mine, processes * workers_per_process * per_worker):
        log.info(
            "resuming from the snapshots in %s: customers' state, timers and input offsets "
            "as of the last one",
            recovery_dir,
            extra={"resuming": True},
        )
    else:
        log.info(
            "no snapshots in %s yet: reading the input topics from the start",
            recovery_dir,
            extra={"resuming": False},
        )

    _drop_unfinished(recovery_dir, mine)
    forgotten = purge_forgotten(recovery_dir, mine)
    if forgotten:
        log.info(
            "dropped %s forgotten customers' empty entries from the snapshots", f"{forgotten:,}"
        )

    # Reading history to its end is a batch job: its timers fire by event time, as in
    # replay, and what is still due fires once the input is read. Tailing fires them on
    # the wall clock.
    policy = with_population(policy)
    population = policy.learning.population if policy.learning is not None else None
    if population is not None:
        try:
            periods = read_versions(settings, population)
        except RuntimeError as err:
            return fail(1, str(err))
        if periods:
            log.info("read %s records of the population model's periods", f"{periods:,}")
    capacity = policy.capacity is not None
    config = JourneyConfig(
        policy,
        wall_clock_timers=not stop_at_end,
        pack_idle_ms=pack_idle_ms,
        barrier=population is not None or capacity,
        end_by_clock=stop_at_end,
    )
    graph_store = _GraphStore(state_dir / "identity")
    identity = IdentityConfig(
        policy.identifier_rules,
        graph_store.open,
        [*parts, MODELS_PART] if population is not None else parts,
        key=policy.identity_key,
        publish=True,
        max_idle_ms=max_idle_ms,
        clock=wall_clock_ms,
        recoverable=True,
        barrier_every=(
            CAPACITY_TICK_MS if capacity else population.every if population is not None else None
        ),
        workers=processes * workers_per_process,
        capacity=capacity,
    )
    source = KafkaEventSource(settings, policy, config.frontier, stop_at_end, readiness)
    flow = build_flow(
        config, identity, source, KafkaRecordSink(settings), settings.max_message_bytes()
    )
    reader = FrontierReader(settings, config.frontier).start()
    if not os.environ.get("CONCIERGE_DEBUG"):
        # A failure is reported in one line below; Rust's backtrace of it would be 60 more.
        os.environ["RUST_BACKTRACE"] = "0"
    log.info("reading %s from %s", ", ".join(settings.input_topics()), settings.brokers)
    ended = False
    try:
        try:
            cli_main(
                flow,
                workers_per_process=workers_per_process,
                process_id=process_id,
                addresses=addresses,
                epoch_interval=snapshot_interval,
                recovery_config=RecoveryConfig(str(recovery_dir)),
            )
        finally:
            _OVER.set()
        ended = True
    except KeyboardInterrupt:
        log.info(INTERRUPTED)
    except Exception as err:  # Bytewax wraps what failed in its own error, traceback and all
        innermost = _innermost(err)
        if STOP.is_set() and isinstance(innermost, KeyboardInterrupt):
            # the stop's grace ran out, or a second signal came, inside a step
            log.info(INTERRUPTED)
        elif isinstance(innermost, GraphMismatch):
            return fail(2, str(innermost))
        else:
            log.error("the dataflow stopped: %s; it resumes from the last snapshot", _cause(err))
            return fail(1, f"the dataflow stopped: {_cause(err)}", logged=True)
    except BaseException as err:  # a Rust panic: in a cluster, another process went away
        if type(err).__name__ != "PanicException":
            raise
        why = "another process of the cluster went away" if addresses else "Bytewax failed"
        log.error("the dataflow stopped: %s (%s); it resumes from the last snapshot", why, err)
        return fail(1, f"the dataflow stopped: {why} ({err})", logged=True)
    finally:
        reader.close()
        graph_store.close()
    if ended:  # else a cluster's worker threads may still have the partitions open
        purge_forgotten(recovery_dir, mine)  # what this run forgot leaves the disk too
    totals = metrics.run_totals()
    log.info("stopped; since it started: %s", metrics.run_counts(totals), extra=totals)
    return 0


class _Failure:
    """The line a failed run ends with: ``concierge run: ...`` on stderr, or with
    ``--log-format json`` a log line (the log has it already when ``logged``)."""

    def __init__(self, log_format: str) -> None:
        self._json = log_format == "json"

    def __call__(self, code: int, message: str, logged: bool = False) -> int:
        if not self._json:
            print(f"concierge run: {message}", file=sys.stderr)
        elif not logged:
            log.error("%s", message, extra={"exit_code": code})
        return code


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _innermost(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def _cause(err: BaseException) -> str:
    """The innermost error's first line: what actually went wrong."""
    err = _innermost(err)
    lines = [line for line in str(err).splitlines() if line.strip()]
    for line in reversed(lines):
        if ": " in line and not line.startswith((" ", "File ")):
            return line.strip()
    return lines[-1].strip() if lines else type(err).__name__


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


def _drop_unfinished(directory: Path, mine: range) -> None:
    """Leave out what a killed run wrote for an epoch it did not finish (see
    :func:`flows.kafka.snapshots.drop_unfinished`)."""
    try:
        resume_at = resume_epoch(directory)
    except Unknowable:
        log.warning(
            "the recovery partitions in %s are not the whole cluster's (one volume per "
            "process): what a killed run left of an epoch it did not finish stays "
            "(docs/limits.md)",
            directory,
        )
        return
    if resume_at is not None and (dropped := drop_unfinished(directory, mine, resume_at)):
        log.info(
            "left out %s snapshot entries of epochs from %d, which the last run did not "
            "finish: every step resumes from the epoch before",
            f"{dropped:,}",
            resume_at,
        )


def _damaged(damage: Damage) -> str:
    return (
        f"recovery partition {damage.path} is damaged ({damage.problem}): the customers' "
        "state and the input offsets it held are lost since its last good backup. Restore "
        f"{damage.path.parent} and --state-dir together from that backup, or move both "
        "aside to start afresh from the beginning of the input topics (docs/operations.md, "
        "Runbook: RecoveryStoreDamaged)"
    )


def _prepare_recovery(directory: Path, mine: range, count: int) -> bool:
    """On first start, create this process's share (``mine``) of the cluster's ``count``
    recovery partitions; whether they were there already (a restart, resuming from them).

    Bytewax fixes their number when they are made, and needs each to exist on some process:
    :data:`RECOVERY_PARTITIONS` per worker (``--recovery-partitions``), each process keeping
    a block of them (process ``n`` of workers ``w`` with ``k`` each keeps parts ``n*w*k ..
    (n+1)*w*k-1``), so it works with one volume per process as with one shared directory.
    More than one per worker keeps a restart quick: Bytewax reads a partition's snapshots a
    thousand keys at a time, each read going over the whole partition.

    Before this process's dataflow, and with Bytewax's own SQLite (``init_db_dir``, which
    closes what it opens): nothing here is the second copy of SQLite that
    :mod:`flows.kafka.snapshots` warns of.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if _has_partitions(directory, mine):
        return True
    with tempfile.TemporaryDirectory(prefix=".recovery-init-", dir=directory.parent) as staging:
        init_db_dir(Path(staging), count)
        for n in mine:
            target = directory / f"part-{n}.sqlite3"
            if not target.exists():
                os.replace(Path(staging) / f"part-{n}.sqlite3", target)
    return False


def _has_partitions(directory: Path, mine: range) -> bool:
    """Whether this process's recovery partitions are all there (it resumes from them)."""
    return all((directory / f"part-{n}.sqlite3").exists() for n in mine)


def _request_stop(grace: float, signum: int, frame: FrameType | None) -> None:
    """First signal: end the input so the dataflow drains and snapshots. If it has not
    finished within ``grace`` seconds, or on a second signal, interrupt it."""
    if STOP.is_set():
        if _OVER.is_set():
            return  # the grace ran out as the dataflow ended: it drained
        raise KeyboardInterrupt
    log.info("%s: stopping", signal.Signals(signum).name)
    STOP.set()
    if grace <= 0:  # no drain at all: interrupted here, as it runs
        _grace_ran_out(grace)
        raise KeyboardInterrupt
    timer = threading.Timer(grace, _interrupt_main, (grace,))
    timer.daemon = True
    _GRACE.append(timer)
    timer.start()


def _interrupt_main(grace: float) -> None:
    """Interrupt the dataflow: SIGINT to the main thread, whose handler (a second signal)
    raises ``KeyboardInterrupt`` where the dataflow next runs Python, unless it has
    returned by then (it drained: the stop is a clean one)."""
    if _OVER.is_set():
        return
    _grace_ran_out(grace)
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


def _grace_ran_out(grace: float) -> None:
    log.warning(
        "the stop did not drain within its grace (--stop-grace %g s): interrupting it; the "
        "next start resumes from the last snapshot and reads what came after it again",
        grace,
    )
