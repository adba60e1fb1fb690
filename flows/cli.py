"""The ``concierge`` command line."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import schemas
from operators.durations import format_duration
from operators.policy import Policy
from operators.policy_limits import MAX_POLICY_BYTES
from operators.policy_load import PolicyError, PolicyProblem, load_policy
from operators.timefmt import InvalidTimestamp, parse_ms

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A problem with the command's input, reported on stderr with exit code 2."""


def read_policy(path: str) -> Policy:
    """Load and compile the policy at ``path``; raise :class:`CommandError` or
    :class:`PolicyError` when it cannot be used."""
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
    return load_policy(text, path)


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


def _validate(args: argparse.Namespace) -> int:
    policy = read_policy(args.policy)
    print(
        f"{args.policy}: valid (version {policy.version}; {len(policy.document['signals'])} "
        f"signals, {len(policy.moments)} moments, {len(policy.actions)} actions, "
        f"{len(policy.channels)} channels)"
    )
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from flows.replay import replay, stderr_progress

    policy = read_policy(args.policy)
    events = Path(args.events)
    if not events.is_file():
        raise CommandError(f"no events file at {events}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file, not a directory")
    summary = replay(
        policy, events, Path(args.out), args.until, progress=None if args.quiet else stderr_progress
    )
    if not args.quiet:
        print(
            f"replayed {summary['events_in']} records: {summary['events_ok']} events, "
            f"{summary['dead_letters']} dead letters, "
            f"{sum(summary['actions'].values())} actions, "
            f"{sum(summary['decisions'].values())} decisions -> {args.out}",
            file=sys.stderr,
        )
        if summary["late_events"]:
            print(
                f"note: {summary['late_events']} events came more than "
                f"{format_duration(policy.allowed_lateness)} after later ones in the file and "
                "counted in no window (is the file in time order? see ingest.allowed_lateness)",
                file=sys.stderr,
            )
    return EXIT_OK


def _identity(args: argparse.Namespace) -> int:
    from flows.identity_store import RocksStore
    from operators.identifiers import KNOWN_IDENTIFIERS, IdentifierRules, Rejection, mask, normalise
    from operators.identity import is_canonical_id
    from operators.identity_graph import IdentityGraph

    kind, sep, value = args.identifier.partition(":")
    if not is_canonical_id(args.identifier) and (not sep or kind not in KNOWN_IDENTIFIERS):
        raise CommandError(
            f"name an identifier as TYPE:VALUE (types: {', '.join(KNOWN_IDENTIFIERS)}) "
            "or a canonical customer id (cus_...)"
        )
    try:
        store = RocksStore(Path(args.state_dir) / "identity", read_only=True)
    except FileNotFoundError:
        raise CommandError(f"no identity graph under {args.state_dir}") from None
    with store:
        graph = IdentityGraph(store, IdentifierRules())
        if is_canonical_id(args.identifier):
            found = graph.profile(args.identifier)
        else:
            normal = normalise(kind, value, IdentifierRules(), args.region)
            if isinstance(normal, Rejection):
                raise CommandError(f"{kind} {value!r} is {normal.value}")
            found = graph.profile_of(kind, normal)
    if found is None:
        print(f"no profile holds {args.identifier}", file=sys.stderr)
        return EXIT_FAILED
    shown = {
        "customer_id": found["customer_id"],
        "identifiers": [
            {"type": k, "value": mask(k, v)}
            for k, values in found["identifiers"].items()
            for v in values
        ],
        "history": found["history"],
    }
    print(json.dumps(shown, indent=2))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from flows.run import run_from_args

    return run_from_args(read_policy(args.policy), args)


def _demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo

    return run_demo(args)


def parser() -> argparse.ArgumentParser:
    from flows.run import add_run_arguments

    root = argparse.ArgumentParser(
        prog="concierge",
        description="Real-time customer journey orchestration on Kafka, and its offline replay.",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a policy; exit 2 naming each bad field")
    validate.add_argument("policy", metavar="POLICY")
    validate.set_defaults(handler=_validate)

    replay = commands.add_parser(
        "replay", help="run the dataflow over a JSON-lines file with an event-time clock"
    )
    replay.add_argument("--policy", required=True, metavar="POLICY")
    replay.add_argument("--events", required=True, metavar="EVENTS.jsonl")
    replay.add_argument("--out", required=True, metavar="DIR")
    replay.add_argument(
        "--until",
        type=_timestamp,
        metavar="TIMESTAMP",
        help="at the end of the file, advance event time to here (timers due by then fire)",
    )
    replay.add_argument("--quiet", action="store_true", help="print no progress or summary")
    replay.set_defaults(handler=_replay)

    identity = commands.add_parser(
        "identity", help="print the profile holding an identifier, from the identity graph"
    )
    identity.add_argument(
        "--state-dir",
        default=".concierge/state",
        metavar="DIR",
        help="the flow's --state-dir (default: %(default)s)",
    )
    identity.add_argument(
        "--region", default=None, help="region for a phone number without a country code, e.g. ES"
    )
    identity.add_argument(
        "identifier",
        metavar="IDENTIFIER",
        help="TYPE:VALUE (email:ana@example.com) or a canonical id (cus_...)",
    )
    identity.set_defaults(handler=_identity)

    run = commands.add_parser("run", help="run against Kafka and serve Prometheus metrics")
    run.add_argument("--policy", required=True, metavar="POLICY")
    add_run_arguments(run)
    run.set_defaults(handler=_run)

    demo = commands.add_parser(
        "demo", help="embedded broker + generated stream + the flow, then a summary"
    )
    demo.add_argument("--customers", type=int, default=3000)
    demo.add_argument("--events", type=int, default=60000)
    demo.add_argument("--metrics-port", type=int, default=9464)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(handler=_demo)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return EXIT_USAGE
    except CommandError as err:
        print(f"concierge {args.command}: {err}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
