"""Delivering one notification (webhook, command) and the bounded background sender."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gigq_notify._config import NotifyConfig

log = logging.getLogger("gigq.notify")

#: Most bytes of a command's output kept for the log.
_OUTPUT_LIMIT = 2000
#: HTTP statuses worth another try.
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Outcome:
    """How sending to one target went."""

    #: "webhook" or "command".
    target: str
    #: True when the target accepted the notification.
    ok: bool
    #: A short sentence: the HTTP status, the exit code, or the error.
    detail: str
    #: Tries made.
    tries: int


def environment(event: Mapping[str, Any]) -> dict[str, str]:
    """The variables a command receives: `GIGQ_EVENT`, `GIGQ_<FIELD>`, `GIGQ_JOB_<FIELD>`,
    `GIGQ_ERROR_TYPE` / `GIGQ_ERROR_MESSAGE`, and the whole event as JSON in `GIGQ_PAYLOAD`."""
    found: dict[str, str] = {"GIGQ_PAYLOAD": _clean(json.dumps(event, default=str))}
    for key, value in event.items():
        if isinstance(value, Mapping):
            prefix = "GIGQ_JOB_" if key == "job" else f"GIGQ_{key.upper()}_"
            for inner, item in value.items():
                found[prefix + inner.upper()] = _text(item)
        else:
            found[f"GIGQ_{key.upper()}"] = _text(value)
    return found


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple | dict):
        return _clean(json.dumps(value, default=str))
    return _clean(str(value))


def _clean(text: str) -> str:
    return text.replace("\0", "\\0")  # the one character an environment cannot hold


def send_webhook(config: NotifyConfig, event: Mapping[str, Any]) -> tuple[bool, str, bool]:
    """POST the event as JSON once: (accepted, detail, worth retrying)."""
    # Imported here: urllib.request costs every `gigq` command ~30 ms at start-up.
    import urllib.error
    import urllib.request

    assert config.webhook_url is not None
    body = json.dumps(event, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "gigq-notify"}
    headers.update(config.headers)
    request = urllib.request.Request(config.webhook_url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=config.timeout) as response:
            response.read(65536)
            return True, f"HTTP {response.status}", False
    except urllib.error.HTTPError as err:
        err.close()
        return False, f"HTTP {err.code} {err.reason}", err.code in _RETRY_STATUSES
    except (urllib.error.URLError, OSError, ValueError) as err:  # refused, DNS, timeout
        reason = getattr(err, "reason", err)
        return False, f"{type(reason).__name__}: {reason}", True


def run_command(config: NotifyConfig, event: Mapping[str, Any]) -> tuple[bool, str, bool]:
    """Run the command once, without a shell, the event in its environment."""
    env = dict(os.environ)
    env.update(environment(event))
    try:
        process = subprocess.Popen(
            list(config.command),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills its children
        )
    except OSError as err:
        return False, f"cannot run {config.command[0]!r}: {err.strerror or err}", False
    try:
        output, _ = process.communicate(timeout=config.timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return False, f"timed out after {config.timeout:g} s (killed)", True
    if process.returncode == 0:
        return True, "exit 0", False
    text = output.decode(errors="replace")[-_OUTPUT_LIMIT:].strip()
    detail = f"exit {process.returncode}" + (f": {text}" if text else "")
    return False, detail, True


def deliver(
    config: NotifyConfig,
    event: Mapping[str, Any],
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    """Send one event to every configured target, retrying each up to `config.retries`."""
    outcomes = []
    targets: list[tuple[str, Callable[..., tuple[bool, str, bool]]]] = []
    if config.webhook_url:
        targets.append(("webhook", send_webhook))
    if config.command:
        targets.append(("command", run_command))
    for name, send in targets:
        tries = 0
        while True:
            tries += 1
            ok, detail, again = send(config, event)
            if ok or not again or tries > config.retries:
                break
            sleep(min(5.0, config.backoff * 2 ** (tries - 1)))
        outcomes.append(Outcome(target=name, ok=ok, detail=detail, tries=tries))
    return outcomes


class Sender:
    """Sends events from one background thread, so a hook only puts them in a bounded queue.

    `submit` never blocks: when `queue_size` events are waiting, the new one is dropped and
    logged. `flush` waits a bounded time for what is queued.
    """

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config
        self.dropped = 0
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue(config.queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, event: Mapping[str, Any]) -> bool:
        """Queue an event for sending; False (and a warning) when the queue is full."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                dropped = self.dropped
            if dropped == 1 or dropped % 100 == 0:
                log.warning(
                    "gigq-notify: %d notification(s) dropped: %d are waiting to be sent "
                    "(queue_size); is the webhook or command slow?",
                    dropped,
                    self.config.queue_size,
                )
            return False
        return True

    def _ensure_thread(self) -> None:
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            if alive and self._pid == os.getpid():
                return
            if self._pid and self._pid != os.getpid():
                # A forked child: the parent's thread and queue do not exist here.
                self._queue = queue.Queue(self.config.queue_size)
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="gigq-notify", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                for outcome in deliver(self.config, event):
                    if not outcome.ok:
                        log.warning(
                            "gigq-notify: %s for event %s failed after %d tries: %s",
                            outcome.target,
                            event.get("event"),
                            outcome.tries,
                            outcome.detail,
                        )
            except Exception:  # a bug in delivery must not end the thread: log and go on
                log.exception("gigq-notify: sending event %s failed", event and event.get("event"))
            finally:
                self._queue.task_done()

    def pending(self) -> int:
        """Events queued or being sent."""
        return self._queue.unfinished_tasks

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every queued event to be sent; True if done."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float) -> bool:
        """Flush (bounded), then end the thread; True if nothing was left unsent."""
        done = self.flush(timeout)
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            thread.join(timeout=0.5)
        if not done:
            log.warning(
                "gigq-notify: %d notification(s) not sent within %g s", self.pending(), timeout
            )
        return done


__all__ = ["Outcome", "Sender", "deliver", "environment", "run_command", "send_webhook"]
