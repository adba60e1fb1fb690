"""``concierge generate``: the demo's realistic event stream, to a file or standard output.

The stream is :class:`flows.commands.generator.Generator`'s: with the same flags it is the same,
byte for byte (a ``.gz`` file too: its header carries no time or name), so a replay of it
can be repeated anywhere.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from flows.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from flows.commands.generator import MINUTES_BETWEEN_SESSIONS, Generator, minutes_between_sessions
from flows.commands.terminal import counted, stderr_is_a_terminal
from operators.model.timefmt import format_ms

STDOUT = "-"
PROGRESS_EVERY_S = 5.0
WRITE_BATCH = 1000


def generate_from_args(args: argparse.Namespace) -> int:
    """Write the stream the flags describe; say what was written on stderr."""
    pace = (
        MINUTES_BETWEEN_SESSIONS
        if args.days is None
        else minutes_between_sessions(args.days, args.events)
    )
    generator = Generator(args.customers, args.seed, format_ms(args.start), args.broken, pace)
    name = "standard output" if args.out == STDOUT else args.out
    try:
        with _opened(args.out) as out:
            _write(generator, args.events, out, stderr_is_a_terminal())
    except _Unwritable as err:
        print(f"concierge generate: cannot write {args.out}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # ``generate | head``: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_OK
    except OSError as err:
        print(f"concierge generate: writing {name} failed: {err.strerror or err}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"wrote {counted(args.events, 'event')} ({generator.broken:,} broken) from "
        f"{counted(args.customers, 'customer')}, {_span(generator)}, to {name}",
        file=sys.stderr,
    )
    return EXIT_OK


class _Unwritable(Exception):
    """``--out`` names a file that cannot be opened for writing."""


@contextmanager
def _opened(out: str) -> Iterator[IO[bytes]]:
    """Standard output for ``-``, else the file, gzip-compressed when its name ends ``.gz``."""
    if out == STDOUT:
        stdout: IO[bytes] = sys.stdout.buffer
        yield stdout
        stdout.flush()
        return
    with ExitStack() as stack:
        try:
            file = stack.enter_context(Path(out).open("wb"))
        except OSError as err:
            raise _Unwritable(err.strerror or str(err)) from None
        if not out.endswith(".gz"):
            yield file
            return
        # No name and no time in the header: the same stream gives the same bytes.
        with gzip.GzipFile("", "wb", 6, file, mtime=0) as compressed:
            yield compressed  # type: ignore[misc]


def _write(generator: Generator, count: int, out: IO[bytes], progress: bool) -> None:
    started = last = time.monotonic()
    batch: list[bytes] = []
    written = 0
    for raw in generator.events(count):
        batch.append(raw)
        if len(batch) < WRITE_BATCH:
            continue
        out.write(b"\n".join(batch) + b"\n")
        written += len(batch)
        batch = []
        if progress and (now := time.monotonic()) - last >= PROGRESS_EVERY_S:
            last = now
            print(f"generate: {_progress_text(written, count, now - started)}", file=sys.stderr)
    if batch:
        out.write(b"\n".join(batch) + b"\n")


def _progress_text(done: int, total: int, elapsed: float) -> str:
    from flows.replay import progress_text

    return f"{progress_text(done, total, elapsed)} ({done:,} of {total:,} events)"


def _span(generator: Generator) -> str:
    """The days the well-formed events cover, in UTC."""
    if generator.first_at is None or generator.last_at is None:
        return "no well-formed events"
    first, last = (
        datetime.fromtimestamp(at / 1000, UTC) for at in (generator.first_at, generator.last_at)
    )
    days = (generator.last_at - generator.first_at) / 86_400_000
    return f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC ({days:.1f} days)"
