"""Fixtures: a real HTTP server on 127.0.0.1, a plugin manager with gigq-notify, a queue."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from gigq.plugin import FakeClock, JobQueue, Worker, make_plugin_manager

import gigq_notify


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """No GIGQ_* settings from the developer, no pyproject above, a fresh notifier."""
    for name in list(os.environ):
        if name.startswith("GIGQ_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    gigq_notify.reset()
    try:
        yield
    finally:
        gigq_notify.reset()


class Recorder:
    """What the test server received, and how it answers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        #: Statuses to answer, in order; 200 once they run out.
        self.statuses: list[int] = []
        #: Seconds to hold each request before answering (cut short at teardown).
        self.delay = 0.0
        #: Headers added to every answer (e.g. a Location).
        self.answer_headers: dict[str, str] = {}
        self.release = threading.Event()
        self.url = ""
        self._lock = threading.Condition()

    def record(self, path: str, headers: dict[str, str], body: bytes, method: str = "POST") -> int:
        with self._lock:
            self.requests.append(
                {
                    "method": method,
                    "path": path,
                    "headers": headers,
                    "json": json.loads(body or b"null"),
                }
            )
            self._lock.notify_all()
            return self.statuses.pop(0) if self.statuses else 200

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until `count` requests arrived (or fail after `timeout` seconds)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} requests arrived, not {count}")
            return list(self.requests)

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r["json"] for r in self.requests]


@pytest.fixture
def make_server() -> Iterator[Callable[[], Recorder]]:
    """A function that starts an HTTP server on 127.0.0.1 (a free port) recording every
    request; all are stopped at teardown."""
    started: list[tuple[Recorder, ThreadingHTTPServer, threading.Thread]] = []

    def start() -> Recorder:
        recorder = Recorder()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = recorder.record(self.path, dict(self.headers), body, self.command)
                if recorder.delay:
                    recorder.release.wait(recorder.delay)
                self.send_response(status)
                for name, value in recorder.answer_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        recorder.url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
        started.append((recorder, httpd, thread))
        return recorder

    try:
        yield start
    finally:
        for recorder, httpd, thread in started:
            recorder.release.set()
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)


@pytest.fixture
def server(make_server: Callable[[], Recorder]) -> Recorder:
    """An HTTP server on 127.0.0.1 (a free port) that records every request."""
    return make_server()


@pytest.fixture
def drip_server() -> Iterator[str]:
    """The URL of a server on 127.0.0.1 that answers a POST one byte every 0.5 s (a whole,
    valid answer after about 20 s); cut short at teardown."""
    stop = threading.Event()
    answer = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nX-Slow: yes\r\n\r\n"

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            for byte in answer:
                if stop.wait(0.5):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/slow"
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def pm() -> Any:
    """A plugin manager with gigq-notify registered (no entry points)."""
    manager = make_plugin_manager(load_entrypoints=False)
    manager.register(gigq_notify, name="notify")
    return manager


@pytest.fixture
def queue(pm: Any) -> Iterator[JobQueue]:
    """A queue on a fresh in-memory store, with a fake clock."""
    with JobQueue(f"memory://notify_{uuid.uuid4().hex}", plugin_manager=pm, clock=FakeClock()) as q:
        yield q


@pytest.fixture
def worker(queue: JobQueue) -> Iterator[Worker]:
    """An inline worker over `queue`."""
    made = Worker(queue, worker_id="w-notify")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def flush() -> Any:
    """A function that waits (bounded) until the process's notifier sent what it has."""

    def wait() -> None:
        notifier = gigq_notify.current()
        assert notifier is not None
        assert notifier.sender.flush(10), "notifications still unsent after 10 s"

    return wait
