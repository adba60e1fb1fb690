"""The process's HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``, on
``--metrics-host``:``--metrics-port``; any other path is 404.

``/healthz`` answers 200 while the process runs: a liveness probe restarts a process that
no longer answers. ``/readyz`` answers 200 once this process works: it reached the brokers
and found its topics, its dataflow has committed a recovery snapshot (every worker of the
cluster is running, the recovery store is written), and each input partition it was given
has had its first answer from the brokers (records, or its end); 503 before that and from
the moment it is asked to stop, with the reason in the body. A broker outage after that
does not make it unready: nothing would send it traffic anyway, and unready pods would
hold node drains back; the alerts cover it (lag, silence, Kafka errors, snapshot age).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app


class Readiness:
    """What ``/readyz`` says, from what the run has reached so far. Thread-safe: the
    dataflow's workers report, the endpoint's threads ask."""

    def __init__(self, committed: Callable[[], bool], stopping: threading.Event) -> None:
        self._committed = committed
        self._stopping = stopping
        self._lock = threading.Lock()
        self._started = False
        self._unread: set[str] = set()

    def started(self) -> None:
        """The brokers answered and the topics are there: the dataflow starts."""
        self._started = True

    def expect(self, partition: str) -> None:
        """This process was given ``partition`` of the input to read."""
        with self._lock:
            self._unread.add(partition)

    def reached(self, partition: str) -> None:
        """The brokers answered ``partition``'s first read (records, or its end)."""
        with self._lock:
            self._unread.discard(partition)

    def why_not(self) -> str | None:
        """None when ready; otherwise why not, in a few words."""
        if self._stopping.is_set():
            return "stopping"
        if not self._started:
            return "starting: the brokers have not answered yet"
        if not self._committed():
            return "starting: the dataflow has not committed its first snapshot yet"
        with self._lock:
            unread = sorted(self._unread)
        if unread:
            return f"starting: no answer from the brokers yet for {', '.join(unread)}"
        return None


class Endpoint:
    """The HTTP server, on a thread of its own."""

    def __init__(self, host: str, port: int, readiness: Readiness) -> None:
        # IPv4 or IPv6, as the host says (the standard server assumes IPv4).
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        server = type("Server", (_Server,), {"address_family": found[0][0]})
        self._server: WSGIServer = make_server(
            host, port, _routes(readiness), server, handler_class=_QuietHandler
        )
        # Polled for a stop every 0.2 s (not 0.5): it is part of how fast the process stops.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.2,), name="metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Endpoint:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve(host: str, port: int, readiness: Readiness) -> Endpoint:
    """Serve the three paths on ``host``:``port`` from a background thread; ``OSError`` if
    the address cannot be bound."""
    return Endpoint(host, port, readiness).start()


Start = Callable[[str, list[tuple[str, str]]], Any]


def _routes(readiness: Readiness) -> Callable[[dict[str, Any], Start], Iterable[bytes]]:
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            answer: Iterable[bytes] = metrics(environ, start)
            return answer
        if path == "/healthz":
            return _text(start, "200 OK", "ok")
        if path == "/readyz":
            why = readiness.why_not()
            if why is None:
                return _text(start, "200 OK", "ready")
            return _text(start, "503 Service Unavailable", f"not ready: {why}")
        return _text(start, "404 Not Found", "not found: try /metrics, /healthz or /readyz")

    return app


def _text(start: Start, status: str, body: str) -> list[bytes]:
    data = f"{body}\n".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    start(status, headers)
    return [data]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    """A request still being answered does not hold the process's exit back."""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every few seconds are not worth a log line each."""
