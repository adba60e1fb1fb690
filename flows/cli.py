"""The ``concierge`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import schemas
from flows.commands.terminal import guard_output
from operators.model.durations import format_duration
from operators.model.timefmt import InvalidTimestamp, format_ms, parse_ms
from operators.policy.compiled import Policy
from operators.policy.limits import MAX_POLICY_BYTES
from operators.policy.load import Locate, PolicyError, PolicyProblem, load_policy_located

if TYPE_CHECKING:
    from flows.commands.events_check import Census, Found

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEBUG_ENV = "CONCIERGE_DEBUG"


class CommandError(Exception):
    """A problem with the command's input, reported on stderr with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line like every other refusal: the
    command, what is wrong, and where its usage is told (not the usage itself)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def read_policy(path: str, strict: bool = False, warn: Warn | None = None) -> Policy:
    """Load and compile the policy at ``path``, telling ``warn`` (by default: stderr) what
    looks like a typo in it; raise :class:`CommandError` or :class:`PolicyError` when it
    cannot be used (or, ``strict``, when it has such warnings)."""
    policy, warnings, _ = _located_policy(path)
    if strict and warnings:
        raise PolicyError(path, warnings)
    for warning in warnings:
        (warn or print_warning)(path, warning)
    return policy


Warn = Callable[[str, PolicyProblem], None]
"""How a command tells a warning about its policy: (the policy's path, the warning)."""


def print_warning(path: str, warning: PolicyProblem) -> None:
    print(f"concierge: {path}: warning: {warning}", file=sys.stderr)


def log_warning(path: str, warning: PolicyProblem) -> None:
    """A warning about the policy as a log record (``--log-format json``)."""
    logging.getLogger("concierge.policy").warning(
        "%s: warning: %s",
        path,
        warning,
        extra={
            "policy": path,
            "field": ".".join(str(part) for part in warning.path),
            "line": warning.line,
        },
    )


def _located_policy(path: str) -> tuple[Policy, list[PolicyProblem], Locate]:
    """The policy at ``path`` compiled, what looks like a typo in it, and the line of any
    field of it; :class:`CommandError` or :class:`PolicyError` when it cannot be used."""
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_POLICY_BYTES + 1)
    except OSError as err:
        raise CommandError(f"cannot read policy {path}: {err.strerror}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(
            path, [PolicyProblem((), None, f"the policy is over {MAX_POLICY_BYTES:,} bytes")]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"cannot read policy {path}: not UTF-8 text") from None
    return load_policy_located(text, path)


def _timestamp(text: str) -> int:
    pattern = schemas.load("event")["properties"]["timestamp"]["pattern"]
    if re.fullmatch(pattern, text) is None:
        raise argparse.ArgumentTypeError(
            f"not an RFC 3339 timestamp: {text!r} (e.g. 2026-11-20T10:15:00Z)"
        )
    try:
        return parse_ms(text)
    except (InvalidTimestamp, ValueError):
        raise argparse.ArgumentTypeError(
            f"not an RFC 3339 timestamp: {text!r} (e.g. 2026-11-20T10:15:00Z)"
        ) from None


def _bounded(kind: type, low: float, high: float | None = None) -> Any:
    """An argparse type: a ``kind`` number from ``low`` to ``high`` (inclusive)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value != value or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{text} is out of range ({low}..{high if high is not None else 'any'})"
            )
        return value

    return parse


PORT = _bounded(int, 0, 65535)
COUNT = _bounded(int, 1)
SECONDS = _bounded(float, 0.001, 86400 * 365)


def _validate(args: argparse.Namespace) -> int:
    policy, warnings, locate = _located_policy(args.policy)
    census = None
    if args.events is not None:
        census = _census(policy, args.events)
        warnings = warnings + [
            PolicyProblem(path, locate(path), message)
            for path, message in _event_warnings(policy, census, args.events, locate)
        ]
    if args.strict and warnings:
        raise PolicyError(args.policy, warnings)
    for warning in warnings:
        print_warning(args.policy, warning)
    print(
        f"{args.policy}: valid (version {policy.version}; {len(policy.document['signals'])} "
        f"signals, {len(policy.moments)} moments, {len(policy.actions)} actions, "
        f"{len(policy.channels)} channels)"
    )
    if census is None:
        return EXIT_OK
    from flows.commands.events_check import census_text, not_events_text

    print(census_text(census, _events_name(args.events)))
    bad = not_events_text(census, _events_name(args.events))
    if bad is not None:
        print(f"concierge validate: note: {bad}", file=sys.stderr)
    if census.read_error is not None:
        print(
            f"concierge validate: {args.events} could not be read to its end "
            f"({census.read_error}); it was checked up to there",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _census(policy: Policy, name: str) -> Census:
    """What the events file ``name`` holds of what ``policy`` names (progress on stderr
    while it is read, if that is a terminal and reading takes a while)."""
    from flows.commands.events_check import Wanted, reading_progress, take_census
    from flows.replay import open_events

    events = _readable_events(name)
    try:
        file = open_events(events)
    except OSError as err:
        raise CommandError(f"cannot read {events}: {err.strerror}") from None
    with file:
        progress = None
        if sys.stderr.isatty():
            size = None if name == "-" else events.stat().st_size
            progress = reading_progress(file, size, lambda line: print(line, file=sys.stderr))
        return take_census(
            file, Wanted.of(dict(policy.document)), policy.max_record_bytes, progress
        )


def _event_warnings(policy: Policy, census: Census, name: str, locate: Locate) -> list[Found]:
    from flows.commands.events_check import event_warnings

    if not census.events:
        return []  # nothing to tell the policy's names by: the census line says so
    return event_warnings(dict(policy.document), census, _events_name(name), locate)


def _events_name(name: str) -> str:
    from flows.replay import STDIN, STDIN_NAME

    return STDIN_NAME if name == STDIN else Path(name).name


def _readable_events(name: str) -> Path:
    """The events file ``name`` (``-``: standard input), once it is known to be readable;
    :class:`CommandError` if it is not."""
    events = Path(name)
    if name == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise CommandError("--events -: standard input is closed")
        return events
    if not events.is_file():
        raise CommandError(f"no events file at {events}")
    try:
        events.open("rb").close()
    except OSError as err:
        raise CommandError(f"cannot read {events}: {err.strerror}") from None
    return events


def _replay(args: argparse.Namespace) -> int:
    from flows.keys import SecretError
    from flows.replay import replay, stderr_progress
    from flows.runtime import tune_gc

    policy = read_policy(args.policy)
    events = _readable_events(args.events)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file, not a directory")
    _check_outputs(events if args.events != "-" else None, out)
    _check_writable(out)
    tune_gc()
    try:
        summary = replay(
            policy, events, out, args.until, progress=None if args.quiet else stderr_progress
        )
    except SecretError as err:
        raise CommandError(str(err)) from None
    if "read_error" in summary:
        print(
            f"concierge replay: {args.events} could not be read to its end "
            f"({summary['read_error']}); the outputs hold what came before",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if not args.quiet:
        print(
            f"replayed {summary['events_in']:,} records: {summary['events_ok']:,} events, "
            f"{summary['dead_letters']:,} dead letters, "
            f"{sum(summary['actions'].values()):,} actions, "
            f"{sum(summary['decisions'].values()):,} decisions -> {args.out}",
            file=sys.stderr,
        )
        _tell_pending(summary["pending_at_end"])
        for name, reasons in summary.get("bad_dates", {}).items():
            if any(reasons.values()):
                told = ", ".join(f"{n:,} {reason}" for reason, n in reasons.items() if n)
                print(
                    f"note: {name}: {told} (events that start it without a usable date "
                    "start no timer; see summary.json bad_dates)",
                    file=sys.stderr,
                )
        if summary["late_events"]:
            what = (
                "went to dlq.jsonl as late_event"
                if policy.dead_letter_late
                else "counted in no window"
            )
            print(
                f"note: {summary['late_events']:,} events came more than "
                f"{format_duration(policy.allowed_lateness)} after later ones in the file and "
                f"{what} (is the file in time order? see ingest.allowed_lateness)",
                file=sys.stderr,
            )
    return EXIT_OK


def _tell_pending(pending: dict[str, Any]) -> None:
    """Say what the replay did not do: timers and decisions still waiting at its end, and
    an ``--until`` that cut event time short of the last event."""
    end, last = pending["at"], pending["last_event"]
    if end is not None and last is not None and parse_ms(end) < parse_ms(last):
        print(
            f"warning: --until {end} is before the file's last event ({last}): timers due "
            "between them did not fire (counted below as still pending)",
            file=sys.stderr,
        )
    waiting = [
        *(f"{n:,} {name} timers" for name, n in pending["timers"].items()),
        *(f"{n:,} {name} decisions" for name, n in pending["decisions"].items()),
    ]
    if waiting and end is not None:
        print(
            f"note: still pending at {end}, the end of event time: {', '.join(waiting)} "
            "(--until later lets them fire; see summary.json pending_at_end)",
            file=sys.stderr,
        )


def _check_outputs(events: Path | None, out: Path) -> None:
    """Raise :class:`CommandError` where replaying into ``out`` would destroy its own input
    (``events`` is, or lies in, an output it replaces) or write through a symbolic link
    (into whatever the link names)."""
    from flows.replay import outputs_in

    if not out.is_dir():
        return
    kept = [*out.glob("part-*.sqlite3"), *(out / k for k in ("identity.key", "action.key"))]
    if any(path.exists() for path in kept):
        raise CommandError(
            f"--out {out} holds concierge run's recovery partitions or keys: replay would "
            "replace its identity graph; replay into another --out"
        )
    for output in outputs_in(out):
        if output.is_symlink():
            raise CommandError(
                f"{output} is a symbolic link, where replay writes: remove it, or replay into "
                "another --out"
            )
        if events is not None and (
            _same_file(events, output)
            or (output.is_dir() and output.resolve() in events.resolve().parents)
        ):
            raise CommandError(
                f"--events {events} is {output}, an output this replay replaces: copy it "
                "out of --out first, or replay into another --out"
            )


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.samefile(other)
    except OSError:
        return False


def _check_writable(out: Path) -> None:
    """Raise :class:`CommandError` unless replay can write its files into ``out``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".concierge-probe-"):
            pass
    except OSError as err:
        raise CommandError(f"cannot write to --out {out}: {err.strerror}") from None


def _identity(args: argparse.Namespace) -> int:
    from flows.identity_store import ProfileQueryError, find_profile
    from flows.keys import IDENTITY_KEY, SecretError, load_key
    from operators.model.identifiers import IdentifierRules, IdentityKey

    state_dir = Path(args.state_dir)
    try:
        secret, _ = load_key(IDENTITY_KEY, state_dir, keep=False)
        found, asked = find_profile(
            state_dir / "identity",
            args.identifier,
            IdentifierRules(),
            IdentityKey(secret),
            args.region,
        )
    except FileNotFoundError:
        raise CommandError(f"no identity graph under {args.state_dir}") from None
    except (ProfileQueryError, SecretError) as err:
        raise CommandError(str(err)) from None
    if found is None:
        print(f"concierge identity: no profile holds {asked}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(_shown_profile(found), indent=2))
    return EXIT_OK


def _shown_profile(found: dict[str, Any]) -> dict[str, Any]:
    """A profile as ``concierge identity`` prints it: identifiers masked (the graph keeps no
    other form to show), each as ``{"type", "value"}`` wherever they appear; times in RFC
    3339; each history entry naming the profile it is about (a merge: the one that went on,
    and the one retired)."""

    def identifier(kind: str, masked: str) -> dict[str, str]:
        return {"type": kind, "value": masked}

    history = []
    for entry in found["history"]:
        shown = {
            "at": format_ms(entry["at"]),
            "event": entry["event"],
            "event_id": entry["event_id"],
        }
        if entry["event"] == "merged":
            shown["profile"] = entry["survivor"]
            shown["retired"] = entry["retired"]
            shown["identifiers"] = [identifier(k, v) for k, v in entry["identifiers"]]
        else:  # created (graphs written by 0.5.0 or before do not say whose)
            shown["profile"] = entry.get("customer_id")
        history.append(shown)
    return {
        "customer_id": found["customer_id"],
        "identifiers": [
            identifier(k, v) for k, values in found["identifiers"].items() for v in values
        ],
        "history": history,
    }


def _lift(args: argparse.Namespace) -> int:
    from flows.measure import learning_table, lift_table

    path = Path(args.replay) / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise CommandError(f"no replay output at {args.replay} (no summary.json)") from None
    except (OSError, ValueError) as err:
        raise CommandError(f"cannot read {path}: {err}") from None
    lifts, learned = summary.get("lift"), summary.get("learning")
    if lifts is None and learned is None:
        raise CommandError(
            f"the replay at {args.replay} measured no conversions: its policy has no "
            "conversions section (see the README's Measurement)"
        )
    if args.json:
        shown = lifts if learned is None else {"actions": lifts or {}, "learning": learned["lift"]}
        print(json.dumps(shown, indent=2))
        return EXIT_OK
    tables = [lift_table(lifts)] if lifts is not None else []
    if learned is not None:
        tables.append(learning_table(learned))
    print("\n\n".join(tables))
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    from flows.commands.explain import ExplainError, NotFound, explain, render

    events = None
    if args.events is not None:
        events = Path(args.events)
        if args.events != "-" and not events.is_file():
            raise CommandError(f"no events file at {events}")
    try:
        explained = explain(Path(args.replay), args.who, events, args.region)
    except ExplainError as err:
        raise CommandError(str(err)) from None
    except NotFound as err:
        print(f"concierge explain: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(explained, indent=2, ensure_ascii=False) if args.json else render(explained))
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from flows.commands.report import is_report, write_report
    from flows.commands.report_data import ReportError, read_run

    dirs = [Path(args.replay)]
    if args.compare:  # the other run is the baseline: left, and the change is from it
        dirs.insert(0, Path(args.compare))
    try:
        runs = [read_run(path) for path in dirs]
    except ReportError as err:
        raise CommandError(str(err)) from None
    out = Path(args.out) if args.out else Path(args.replay) / "report.html"
    if out.is_symlink() or (out.exists() and not out.is_dir() and not is_report(out)):
        raise CommandError(
            f"--out {out} is there and is not a report (it would be overwritten): name a new "
            "file, or remove it first"
        )
    try:
        write_report(runs, out)
    except OSError as err:
        raise CommandError(f"cannot write {out}: {err.strerror}") from None
    print(out)
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from flows.commands.diff import DiffError, compare, input_warning, read_replay, render

    try:
        before = read_replay(Path(args.before))
        after = read_replay(Path(args.after))
    except DiffError as err:
        raise CommandError(str(err)) from None
    diff = compare(before, after, args.sample)
    warning = input_warning(diff)
    if warning is not None:
        print(f"concierge diff: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(diff, indent=2))
    else:
        print(render(diff))
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from flows.commands.evaluate import EvaluateError, as_record, estimate, render

    policy = read_policy(args.policy)
    if policy.learning is None:
        raise CommandError(f"{args.policy} has no learning section: nothing was logged to evaluate")
    events = _readable_events(args.events)
    try:
        result = estimate(Path(args.replay), events, policy.learning, args.candidate)
    except EvaluateError as err:
        raise CommandError(str(err)) from None
    if result.warning is not None:
        print(f"concierge evaluate: {result.warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(as_record(args.candidate, result), indent=2))
    else:
        print(render(args.candidate, result))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from flows.kafka.run import run_from_args
    from flows.runtime import start_trimming, tune_gc

    if args.log_format == "json":  # a log pipeline reads stderr: the warnings go there as records
        from flows import logs

        logs.configure(args.log_format)
        policy = read_policy(args.policy, warn=log_warning)
    else:
        policy = read_policy(args.policy)
    tune_gc()
    start_trimming()
    return run_from_args(policy, args)


def _broker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from flows.kafka.broker import EmbeddedBroker, port_is_free

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.port and not port_is_free(args.port):
        raise CommandError(
            f"port {args.port} on 127.0.0.1 is in use: give another with --port, or leave "
            "--port out for a free one"
        )
    try:
        broker = EmbeddedBroker(args.port or None).start()
    except (RuntimeError, OSError) as err:
        print(f"concierge broker: {err}", file=sys.stderr)
        return EXIT_FAILED
    try:
        print(broker.bootstrap, flush=True)
        print(
            f"embedded broker (Tansu, memory only) on {broker.bootstrap}; try\n"
            f"  concierge run --policy POLICY --brokers {broker.bootstrap}\n"
            "Ctrl-C or SIGTERM stops it (its topics go with it)",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            if not broker.running():
                print(f"concierge broker: the broker stopped: {broker.log_tail()}", file=sys.stderr)
                return EXIT_FAILED
    finally:
        broker.stop()
    print("concierge broker: stopped", file=sys.stderr)
    return EXIT_OK


def _forget(args: argparse.Namespace) -> int:
    from flows.commands.forget import forget_from_args

    return forget_from_args(args)


def _generate(args: argparse.Namespace) -> int:
    from flows.commands.generate import generate_from_args

    return generate_from_args(args)


def _produce(args: argparse.Namespace) -> int:
    from flows.commands.produce import produce_from_args

    return produce_from_args(args)


def _tail(args: argparse.Namespace) -> int:
    from flows.commands.tail import tail_from_args

    return tail_from_args(args)


def _demo(args: argparse.Namespace) -> int:
    from flows.commands.demo import run_demo

    return run_demo(args)


def _command(commands: Any, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return command


def _add_who(command: argparse.ArgumentParser, name: str, metavar: str) -> None:
    """The customer a command is about, and the region their phone number is read in."""
    command.add_argument(
        "--region", default=None, help="region for a phone number without a country code, e.g. ES"
    )
    command.add_argument(
        name,
        metavar=metavar,
        help="TYPE:VALUE (email:ana@example.com) or a canonical id (cus_...)",
    )


def parser() -> argparse.ArgumentParser:
    root = _Parser(
        prog="concierge",
        description="Real-time customer journey orchestration on Kafka, and its offline replay.",
        epilog="example:\n"
        "  concierge replay --policy examples/policy.yaml --events week.jsonl --out out/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"concierge {_version()}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = _command(
        commands,
        "validate",
        "check a policy; exit 2 naming each bad field",
        "concierge validate examples/policy.yaml --events week.jsonl",
    )
    validate.add_argument("policy", metavar="POLICY", help="the policy file (YAML)")
    validate.add_argument(
        "--events",
        metavar="EVENTS.jsonl",
        help="also warn of event types, event fields and consent purposes the policy names "
        "that no event of this file has (JSON lines; gzip is read as such; - reads stdin)",
    )
    validate.add_argument(
        "--strict",
        action="store_true",
        help="refuse (exit 2) a policy with warnings too: a name used once that is close to "
        "another (an event type, a consent purpose), likely a typo; with --events, a name "
        "no event has",
    )
    validate.set_defaults(handler=_validate)

    generate = _command(
        commands,
        "generate",
        "write a realistic event stream (the demo's) as JSON lines, to try replay and run on",
        "concierge generate --events 20000 --days 7 --out week.jsonl",
    )
    _add_generate_arguments(generate)
    generate.set_defaults(handler=_generate)

    replay = _command(
        commands,
        "replay",
        "run the dataflow over a JSON-lines file with an event-time clock",
        "concierge replay --policy examples/policy.yaml --events week.jsonl --out out/ "
        "--until 2026-11-30T00:00:00Z",
    )
    replay.add_argument("--policy", required=True, metavar="POLICY", help="the policy file")
    replay.add_argument(
        "--events",
        required=True,
        metavar="EVENTS.jsonl",
        help="one JSON event per line; gzip-compressed is read as such; - reads stdin",
    )
    replay.add_argument(
        "--out", required=True, metavar="DIR", help="where the outputs go (replaced)"
    )
    replay.add_argument(
        "--until",
        type=_timestamp,
        metavar="TIMESTAMP",
        help="at the end of the file, advance event time to here (timers due by then fire)",
    )
    replay.add_argument("--quiet", action="store_true", help="print no progress or summary")
    replay.set_defaults(handler=_replay)

    identity = _command(
        commands,
        "identity",
        "print the profile holding an identifier, from the identity graph",
        "concierge identity --state-dir .concierge/state email:ana@example.com",
    )
    identity.add_argument(
        "--state-dir",
        default=".concierge/state",
        metavar="DIR",
        help="the flow's --state-dir (default: %(default)s)",
    )
    _add_who(identity, "identifier", "IDENTIFIER")
    identity.set_defaults(handler=_identity)

    lift = _command(
        commands,
        "lift",
        "what sending added: conversion rates sent vs held out per action, from a replay",
        "concierge lift out/",
    )
    lift.add_argument("replay", metavar="DIR", help="a replay's --out directory")
    lift.add_argument("--json", action="store_true", help="print the figures as JSON")
    lift.set_defaults(handler=_lift)

    explain = _command(
        commands,
        "explain",
        "one customer's timeline in a replay: events, signals, moments, decisions, actions",
        "concierge explain --replay out/ --events week.jsonl email:ana@example.com",
    )
    explain.add_argument(
        "--replay", required=True, metavar="DIR", help="a replay's --out directory"
    )
    explain.add_argument(
        "--events",
        metavar="EVENTS.jsonl",
        help="the file that was replayed, to show the customer's events too (- reads stdin)",
    )
    explain.add_argument("--json", action="store_true", help="print the timeline as JSON")
    _add_who(explain, "who", "WHO")
    explain.set_defaults(handler=_explain)

    report = _command(
        commands,
        "report",
        "one self-contained HTML page with charts about a replay, or two side by side",
        "concierge report after/ --compare before/ --out report.html",
    )
    report.add_argument("replay", metavar="DIR", help="a replay's --out directory")
    report.add_argument(
        "--compare",
        metavar="OTHER_DIR",
        help="another replay, shown beside it (e.g. the old policy)",
    )
    report.add_argument(
        "--out", metavar="FILE.html", help="where the page goes (default: DIR/report.html)"
    )
    report.set_defaults(handler=_report)

    diff = _command(
        commands,
        "diff",
        "what a policy change does: two replays of the same events compared",
        "concierge diff out-before/ out-after/",
    )
    diff.add_argument("before", metavar="BEFORE_DIR", help="the replay of the old policy")
    diff.add_argument("after", metavar="AFTER_DIR", help="the replay of the new policy")
    diff.add_argument("--json", action="store_true", help="print the comparison as JSON")
    diff.add_argument(
        "--sample",
        type=_bounded(int, 0, 10_000),
        default=10,
        metavar="N",
        help="how many changed customers to show, with what changed (default 10)",
    )
    diff.set_defaults(handler=_diff)

    evaluate = _command(
        commands,
        "evaluate",
        "what a candidate policy would have earned, estimated from a replay's learning logs",
        "concierge evaluate out/ --policy policy.yaml --events week.jsonl --candidate static",
    )
    evaluate.add_argument("replay", metavar="DIR", help="a replay's --out directory")
    evaluate.add_argument(
        "--policy", required=True, metavar="POLICY", help="the policy replayed (its rewards)"
    )
    evaluate.add_argument(
        "--events", required=True, metavar="EVENTS.jsonl", help="the events it replayed"
    )
    evaluate.add_argument(
        "--candidate",
        default="static",
        metavar="NAME",
        help="static (the first channel that passes, the template), greedy (learning without "
        "exploring) or prefer:CHANNEL[,CHANNEL...] (default static)",
    )
    evaluate.add_argument("--json", action="store_true", help="print the estimate as JSON")
    evaluate.set_defaults(handler=_evaluate)

    run = _command(
        commands,
        "run",
        "run against Kafka and serve Prometheus metrics",
        "concierge run --policy examples/policy.yaml --brokers kafka-1:9092 "
        "-X security.protocol=SSL",
    )
    run.add_argument("--policy", required=True, metavar="POLICY", help="the policy file")
    _add_run_arguments(run)
    run.set_defaults(handler=_run)

    forget = _command(
        commands,
        "forget",
        "ask the running flow to erase a person: an erasure request on its events topic",
        "concierge forget --brokers kafka-1:9092 email:ana@example.com",
    )
    _add_client_arguments(forget)
    forget.add_argument(
        "--region", default=None, help="region for a phone number without a country code, e.g. ES"
    )
    forget.add_argument(
        "--timeout",
        type=_bounded(float, 1, 3600),
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the brokers to take it (default: %(default)s)",
    )
    forget.add_argument(
        "identifiers",
        nargs="+",
        metavar="IDENTIFIER",
        help="TYPE:VALUE (email:ana@example.com); several erase whoever holds any of them",
    )
    forget.set_defaults(handler=_forget)

    produce = _command(
        commands,
        "produce",
        "write a JSON-lines file (or stdin) to a topic, each record keyed by its identifier",
        "concierge produce --brokers 127.0.0.1:9092 week.jsonl",
    )
    _add_client_arguments(produce)
    produce.add_argument(
        "--topic",
        default="events",
        metavar="NAME",
        help="the topic, under --topic-prefix unless it starts with it (default: %(default)s; "
        "feedback for channel outcomes)",
    )
    produce.add_argument(
        "--partitions",
        type=COUNT,
        default=3,
        metavar="N",
        help="partitions of the topic if this creates it (default: %(default)s, as run)",
    )
    _add_connect_timeout(produce)
    produce.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="one JSON event per line; gzip-compressed is read as such; - or none reads stdin",
    )
    produce.set_defaults(handler=_produce)

    tail = _command(
        commands,
        "tail",
        "print a topic's records as JSON lines: to its end, or --follow",
        "concierge tail --brokers 127.0.0.1:9092 actions.email --follow",
    )
    _add_client_arguments(tail)
    tail.add_argument(
        "--follow",
        action="store_true",
        help="keep printing new records until Ctrl-C or SIGTERM (from the end, unless "
        "--from-beginning)",
    )
    tail.add_argument(
        "--from-beginning",
        action="store_true",
        help="with --follow: print the records already there first",
    )
    tail.add_argument("--max", type=COUNT, default=None, metavar="N", help="stop after N records")
    _add_connect_timeout(tail)
    tail.add_argument(
        "topic",
        metavar="TOPIC",
        help="decisions, dlq, audit, conversions, actions.<channel>, events ..., under "
        "--topic-prefix unless it starts with it",
    )
    tail.set_defaults(handler=_tail)

    broker = _command(
        commands,
        "broker",
        "run the embedded broker in the foreground, for trying run by hand",
        "concierge broker --port 9092",
    )
    broker.add_argument(
        "--port",
        type=PORT,
        default=0,
        metavar="PORT",
        help="the loopback port to listen on (default: a free one); the address goes to stdout",
    )
    broker.set_defaults(handler=_broker)

    demo = _command(
        commands,
        "demo",
        "embedded broker + generated stream + the flow, then a summary",
        "concierge demo --customers 1000 --events 20000",
    )
    demo.add_argument("--customers", type=COUNT, default=3000, help="customers in the stream")
    demo.add_argument("--events", type=COUNT, default=60000, help="events in the stream")
    demo.add_argument(
        "--metrics-port",
        type=PORT,
        default=9464,
        metavar="PORT",
        help="serve metrics here while the flow runs; 0 turns them off (default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated stream")
    _add_log_format(demo)
    demo.set_defaults(handler=_demo)
    return root


def _add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the cluster is and how to reach it, as for ``concierge run``."""
    from flows.kafka.config import DEFAULT_PREFIX, ENV_BROKERS, ENV_PREFIX

    parser.add_argument(
        "--brokers",
        default=os.environ.get(ENV_BROKERS),
        metavar="LIST",
        help=f"bootstrap servers, host:port,... [env: {ENV_BROKERS}]",
    )
    parser.add_argument(
        "--topic-prefix",
        default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help="prefix of every topic name (default: %(default)s)",
    )
    parser.add_argument(
        "-X",
        dest="properties",
        action="append",
        default=[],
        metavar="PROPERTY=VALUE",
        help=f"a librdkafka property for every client (also env {ENV_PREFIX}*)",
    )


def _add_connect_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--connect-timeout",
        type=_bounded(float, 0.1, 3600),
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the brokers to answer (default: %(default)s)",
    )


def _add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``concierge generate``."""
    from flows.commands.generator import BAD_SHARE, START

    parser.add_argument(
        "--customers",
        type=COUNT,
        default=3000,
        metavar="N",
        help="customers the events come from (default: %(default)s)",
    )
    parser.add_argument(
        "--events",
        type=COUNT,
        default=60000,
        metavar="N",
        help="records to write, broken ones included (default: %(default)s)",
    )
    parser.add_argument(
        "--days",
        type=_bounded(float, 0.001, 3650),
        default=None,
        metavar="D",
        help="about how many days of event time they cover (default: a session every 15 s "
        "on average, 2.6 days for 60,000)",
    )
    parser.add_argument(
        "--start",
        type=_timestamp,
        default=START,
        metavar="TIMESTAMP",
        help="the time of the first event, RFC 3339 (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=7,
        metavar="N",
        help="another seed, another stream; the same flags, the same bytes (default: %(default)s)",
    )
    parser.add_argument(
        "--broken",
        type=_bounded(float, 0, 1),
        default=BAD_SHARE,
        metavar="SHARE",
        help="the share of broken records (bad JSON, missing fields, bad timestamps), 0 to 1 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        default="-",
        metavar="FILE",
        help="where to write; a name ending .gz is gzip-compressed; - is stdout (default)",
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``concierge run``."""
    _add_client_arguments(parser)
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
        type=PORT,
        default=9464,
        metavar="PORT",
        help="port of /metrics, /healthz and /readyz; 0 turns them off (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-host",
        default="0.0.0.0",
        metavar="HOST",
        help="address /metrics, /healthz and /readyz listen on, e.g. 127.0.0.1 for this "
        "machine only (default: %(default)s, every interface)",
    )
    _add_log_format(parser)
    parser.add_argument(
        "--partitions",
        type=COUNT,
        default=3,
        metavar="N",
        help="partitions of topics this creates (default: %(default)s)",
    )
    parser.add_argument(
        "--replication-factor",
        type=_bounded(int, -1, 32767),
        default=-1,
        metavar="N",
        help="replication of topics this creates; -1: the broker's default",
    )
    parser.add_argument(
        "--snapshot-interval",
        type=SECONDS,
        default=5.0,
        metavar="SECONDS",
        help="seconds between recovery snapshots (default: %(default)s)",
    )
    parser.add_argument(
        "--recovery-partitions",
        type=COUNT,
        default=1,
        metavar="N",
        help="recovery partitions (SQLite files) per worker in a new recovery directory; one "
        "made before keeps its own (default: %(default)s). More restart a process holding "
        "many customers faster: a million in 140 s with 16, 24 minutes with one",
    )
    parser.add_argument(
        "--stop-grace",
        type=_bounded(float, 0, 86400),
        default=8.0,
        metavar="SECONDS",
        help="how long a SIGTERM or SIGINT lets the dataflow drain and take its last snapshot "
        "before it is interrupted, to resume from the snapshot before (default: %(default)s); "
        "a process holding a million customers snapshots them all as it stops: give it 60",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_bounded(float, 0, 86400),
        default=60.0,
        metavar="SECONDS",
        help="how long to keep trying to reach the brokers at start (default: %(default)s)",
    )
    parser.add_argument(
        "-w",
        "--workers-per-process",
        type=COUNT,
        default=1,
        metavar="N",
        help="worker threads in this process (default: %(default)s)",
    )
    parser.add_argument(
        "-i",
        "--process-id",
        type=_bounded(int, 0),
        default=None,
        metavar="INDEX",
        help="this process's index in a cluster (with -a)",
    )
    parser.add_argument(
        "-a",
        "--addresses",
        default=None,
        metavar="ADDRESSES",
        help="host:port of every process in the cluster, separated by ;",
    )
    parser.add_argument(
        "--stop-at-end",
        action="store_true",
        help="stop once the input topics are read to their end (every process of a cluster)",
    )
    parser.add_argument(
        "--max-idle-ms",
        type=_bounded(int, 0, 3_600_000),
        default=500,
        metavar="MS",
        help="how long an event waits for a quiet input partition before it is resolved "
        "without it (default: %(default)s); partitions still reading are always waited for",
    )
    parser.add_argument(
        "--pack-idle-ms",
        type=_bounded(int, 0, 86_400_000),
        default=10_000,
        metavar="MS",
        help="how long a customer stays live after their last event or timer before they are "
        "packed into their compact form (default: %(default)s); lower saves memory, costs "
        "CPU for customers whose events come further apart",
    )


def _add_log_format(parser: argparse.ArgumentParser) -> None:
    from flows.logs import FORMATS

    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="the log on stderr: text lines, or one JSON object a line (default: %(default)s)",
    )


def _version() -> str:
    from flows import package_version

    return package_version()


def main(argv: list[str] | None = None) -> int:
    guard_output()  # before argparse, which quotes what it is given in its errors
    args = parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return EXIT_USAGE
    except CommandError as err:
        print(f"concierge {args.command}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"concierge {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # ``concierge diff ... | head``: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_OK
    except Exception as err:  # the last resort: one line, and the traceback only on request
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        print(
            f"concierge {args.command}: failed: {type(err).__name__}: {err} "
            f"(set {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
