"""Headless Chromium (Debian's package, which ``make test`` installs) driven over the
DevTools protocol on a pipe: open a page, collect what its console said, evaluate
JavaScript in it, take a screenshot. No library between: the protocol is JSON messages
separated by NUL bytes on file descriptors 3 (to Chromium) and 4 (from it)."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest

NO_BROWSER = (
    "SKIPPED: headless Chromium is not installed, so the report was not checked in a "
    "browser (`make test` installs Debian's chromium when it may: see the Makefile)"
)


def chromium() -> str:
    """The Chromium binary; the test is skipped, saying why, when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        print(f"\n{NO_BROWSER}\n", flush=True)
        pytest.skip(NO_BROWSER)
    return found


class Page:
    """One page in a headless Chromium; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        self._profile = tempfile.TemporaryDirectory(
            prefix="concierge-chromium-", ignore_cleanup_errors=True
        )
        to_browser, self._send = os.pipe()
        self._receive, from_browser = os.pipe()
        os.set_inheritable(to_browser, True)
        os.set_inheritable(from_browser, True)
        self._process = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            close_fds=False,  # the child's fds 3 and 4 are made in preexec_fn, after closing
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: _as_fds_3_and_4(to_browser, from_browser),
            start_new_session=True,  # its renderers with it, to be stopped together
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.console: list[dict[str, Any]] = []
        """What the page said on its console, and the exceptions it threw."""
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        self.call("Page.navigate", url=url)
        self._wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page as a PNG."""
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """A DevTools command on the page; its result."""
        return self._call(method, session=self._session, **params)

    def _call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._send, orjson.dumps(message) + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def _wait_for(self, event: str) -> dict[str, Any]:
        while True:
            message = self._read()
            if message.get("method") == event:
                return message

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._receive, 1 << 16)
            if not chunk:
                raise AssertionError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = orjson.loads(raw)
        self._note(message)
        return message

    def _note(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            texts = [str(arg.get("value", arg.get("description", ""))) for arg in params["args"]]
            self.console.append({"level": params["type"], "text": " ".join(texts)})
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.console.append({"level": "exception", "text": text})
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.console.append({"level": entry["level"], "text": entry.get("text", "")})

    def errors(self) -> list[dict[str, Any]]:
        """What the console said at the error level, and every exception."""
        return [c for c in self.console if c["level"] in ("error", "exception", "assert")]

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self._call("Browser.close")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        os.close(self._send)
        os.close(self._receive)
        self._profile.cleanup()


def _as_fds_3_and_4(to_browser: int, from_browser: int) -> None:
    """In the child: Chromium reads commands on fd 3 and writes replies on fd 4."""
    moved = os.dup(from_browser)  # in case from_browser is fd 3
    os.dup2(to_browser, 3)
    os.dup2(moved, 4)
