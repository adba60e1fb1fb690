"""The getting-started page, run to the letter: every ``$ `` command of its ``console``
blocks, in order, in a directory of its own holding the repository's ``examples/``, with
``concierge`` on the PATH as ``. .venv/bin/activate`` puts it there.

What a block shows below a command is what the command prints (stdout and stderr, as a
terminal shows them), compared line by line once these vary no more: a log line's time, the
directory of this machine's keys, and a record ``tail`` shows (which partition it reads first
is the broker's choice: the record must be one the topic holds, with the fields the page
shows). Two commands are started "in another terminal": ``concierge broker`` and
``concierge run``; a block with no command is what ``run`` prints when stopped with Ctrl-C.
The broker's port, 9092, is the page's unless this machine has it in use (a free one then
takes its place in the commands and outputs alike); ``run`` serves its metrics on 9464, which
must be free.

``python tests/docs/tour.py --write`` runs the tour and writes what the commands printed
into the page (its records as ``tail`` shows them too), for a change that changes them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from flows.kafka.broker import free_port, port_is_free

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started.md"
BIN = Path(sys.executable).parent

SKIPPED = ("make install", ". .venv/bin/activate")
"""Commands the suite's own environment has done already."""
LOG_TIME = re.compile(r"^(\^C)?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
KEY_DIR = re.compile(r"\S*/concierge/(action|identity)\.key")
SIGNATURE = re.compile(r"(\.[a-z_]+\.)[0-9a-f]{32}\b")
"""An action id's signature: the machine's action key signs it."""


@dataclass
class Step:
    """One ``$ `` command and what the page shows it print."""

    command: str
    shown: list[str]
    start: int
    """The line of the page the shown output starts at (0-based)."""


@dataclass
class Block:
    steps: list[Step] = field(default_factory=list)
    stopped: list[str] | None = None
    """What ``run`` prints when stopped (a block with no command)."""
    stopped_at: int = 0


def blocks(text: str) -> list[Block]:
    """The page's ``console`` blocks, in order."""
    lines, found, block = text.split("\n"), [], None
    for n, line in enumerate(lines):
        if line == "```console":
            block = Block()
            continue
        if block is None:
            continue
        if line == "```":
            found.append(block)
            block = None
        elif line.startswith("$ "):
            block.steps.append(Step(line[2:], [], n + 1))
        elif block.steps:
            block.steps[-1].shown.append(line)
        else:
            if block.stopped is None:
                block.stopped, block.stopped_at = [], n
            block.stopped.append(line)
    return found


def normal(line: str) -> str:
    line = KEY_DIR.sub("KEYS", LOG_TIME.sub("TIME ", line.rstrip()))
    return SIGNATURE.sub(r"\1SIGNATURE", line)


def _servable(port: int) -> bool:
    """Whether a server could listen on ``port`` now, as ``run``'s HTTP endpoint binds (past
    connections still closing there, which :func:`port_is_free` counts as busy)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Tour:
    """Runs the page's commands and keeps what each printed."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "examples").symlink_to(ROOT / "examples")
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        self.env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        self.env["COLUMNS"] = "100"
        # the broker refuses a port :func:`port_is_free` calls busy: another then
        self.ports = {"9092": "9092" if port_is_free(9092) else str(free_port())}
        # ``run`` serves its metrics on 9464 by default, and the page's ``run`` names no
        # port: it must be free (a run stopped just before may still hold it a moment).
        deadline = time.monotonic() + 30
        while not _servable(9464):
            assert time.monotonic() < deadline, "port 9464, where the page's run serves, is taken"
            time.sleep(0.5)
        self.broker: subprocess.Popen[str] | None = None
        self.flow: subprocess.Popen[str] | None = None
        self.flow_log = workdir / "run.log"
        self.broker_log = workdir / "broker.log"
        self.unreachable = "reached"
        self.printed: dict[int, list[str]] = {}
        """The page's line a step's output starts at -> what it printed."""

    def port(self, text: str) -> str:
        for shown, used in self.ports.items():
            text = text.replace(shown, used)
        return text

    def unport(self, text: str) -> str:
        for shown, used in self.ports.items():
            text = text.replace(used, shown) if used != shown else text
        return text

    def run(self, block: Block) -> None:
        for step in block.steps:
            if step.command.startswith(SKIPPED):
                self.printed[step.start] = step.shown
            elif step.command.startswith("concierge broker"):
                self.printed[step.start] = self._broker(step)
            elif step.command.startswith("concierge run"):
                self.printed[step.start] = self._run(step)
            else:
                self.printed[step.start] = self._command(step)
        if block.stopped is not None:
            self.printed[block.stopped_at] = self._stop()

    def _command(self, step: Step) -> list[str]:
        if step.command.startswith(("concierge tail", "curl")):
            self._settled()
        done = subprocess.run(
            ["bash", "-c", self.port(step.command)],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{step.command!r} failed ({done.returncode}):\n{done.stdout}"
        return self.unport(done.stdout).splitlines()

    def _background(self, step: Step, log: Path) -> subprocess.Popen[str]:
        """``step``'s command started as in another terminal: its output goes on being written
        (to ``log`` here; a pipe nobody reads would stop it once full)."""
        with log.open("w") as output:
            return subprocess.Popen(
                ["bash", "-c", f"exec {self.port(step.command)}"],
                cwd=self.workdir,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def _broker(self, step: Step) -> list[str]:
        self.broker = self._background(step, self.broker_log)
        shown = len(step.shown)
        self._until(lambda: len(self.broker_log.read_text().splitlines()) >= shown, "the broker")
        return [self.unport(line) for line in self.broker_log.read_text().splitlines()[:shown]]

    def _run(self, step: Step) -> list[str]:
        self.flow = self._background(step, self.flow_log)
        self._until(lambda: "concierge.run reading " in self.flow_log.read_text(), "run to read")
        return [self.unport(line) for line in self.flow_log.read_text().splitlines()]

    def _metrics(self) -> str:
        try:
            url = "http://127.0.0.1:9464/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError as err:
            self.unreachable = repr(err)
            return ""

    def _settled(self) -> None:
        """Wait until the flow has read what was produced and decided it: its counts of
        records in and of decisions stand still for 3 s, timers fired (the wall clock is
        past every one of the generated week)."""
        counts = re.compile(r"^concierge_(records_in|decisions)_total\S* (\S+)$", re.M)
        last, since = None, time.monotonic()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            now = counts.findall(self._metrics())
            if now != last:
                last, since = now, time.monotonic()
            elif now and time.monotonic() - since > 3:
                return
            time.sleep(0.3)
        alive = self.flow is not None and self.flow.poll() is None
        raise AssertionError(
            f"the flow did not settle within 300 s: {last} (alive: {alive}; the metrics: "
            f"{self.unreachable}; its log: {self.flow_log.read_text()[-2000:]})"
        )

    def _stop(self) -> list[str]:
        assert self.flow is not None
        before = len(self.flow_log.read_text().splitlines())
        self.flow.send_signal(signal.SIGINT)
        assert self.flow.wait(60) == 0
        lines = self.flow_log.read_text().splitlines()[before:]
        return ["^C" + lines[0], *lines[1:]] if lines else ["^C"]

    def _until(self, condition, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.flow is None or self.flow.poll() is None, self.flow_log.read_text()
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def close(self) -> None:
        """Stop what is still running, the broker's own child (Tansu) with it."""
        for process in (self.flow, self.broker):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)


PROGRESS = re.compile(r"^[a-z]+: reading \d+%")
"""A progress line: one every 5 s of a long read, so as many as the machine is slow."""


def differences(shown: list[str], printed: list[str], command: str) -> list[str]:
    """What differs between what the page shows and what was printed, once normalised."""
    if command.startswith("concierge tail"):
        return _tail_differences(shown, printed)
    a = [normal(x) for x in shown if not PROGRESS.match(x)]
    b = [normal(x) for x in printed if not PROGRESS.match(x)]
    if a == b:
        return []
    return [f"{command or 'run, stopped'}:", *(f"  page:    {x}" for x in a)] + [
        f"  printed: {x}" for x in b
    ]


def _tail_differences(shown: list[str], printed: list[str]) -> list[str]:
    """Records: as many, each a JSON object (which ones is the broker's choice); the summary
    line the same."""
    if len(shown) != len(printed) or shown[-1:] != printed[-1:]:
        return ["tail:", *(f"  page:    {x}" for x in shown), *(f"  printed: {x}" for x in printed)]
    return [f"tail: not a JSON object: {x}" for x in printed[:-1] if not _an_object(x)]


def _an_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def tour(workdir: Path) -> tuple[list[Block], Tour]:
    page = blocks(PAGE.read_text())
    runner = Tour(workdir)
    try:
        for block in page:
            runner.run(block)
    finally:
        runner.close()
    return page, runner


def write(page: list[Block], runner: Tour) -> None:
    """Put what the commands printed into the page."""
    lines = PAGE.read_text().split("\n")
    spans = []
    for block in page:
        for step in block.steps:
            spans.append((step.start, step.shown, runner.printed[step.start], step.command))
        if block.stopped is not None:
            at = block.stopped_at
            spans.append((at, block.stopped, runner.printed[at], ""))
    for start, shown, printed, command in sorted(spans, key=lambda s: s[0], reverse=True):
        if differences(shown, printed, command):  # else the page's lines stay as they are
            lines[start : start + len(shown)] = [
                line.rstrip() for line in printed if not PROGRESS.match(line)
            ]
    PAGE.write_text("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/docs/tour.py --write")
    blocks_run, ran = tour(Path(tempfile.mkdtemp(prefix="tour-")))
    write(blocks_run, ran)
    print(f"wrote what the commands printed into {PAGE.relative_to(ROOT)}")
