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

from gigq_notify._config import ENV_PREFIX, NotifyConfig
from gigq_notify._redaction import redact
from gigq_notify._webhook import send_webhook

log = logging.getLogger("gigq.notify")

#: Most bytes of a command's output kept for the log.
_OUTPUT_LIMIT = 2000
#: Most bytes of one `GIGQ_<FIELD>` variable of a command; Linux refuses to start a program
#: with a variable over 128 KiB (and all of them over about 2 MiB), so longer values are
#: shortened there, and the whole event is on the command's standard input.
VALUE_LIMIT = 8192
#: Most bytes of `GIGQ_PAYLOAD`; past that its longest strings are shortened.
PAYLOAD_LIMIT = 65536


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
    `GIGQ_ERROR_TYPE` / `GIGQ_ERROR_MESSAGE`, and the event as JSON in `GIGQ_PAYLOAD`.

    Each fits an environment whatever the event's size: a value longer than `VALUE_LIMIT`
    bytes is cut (with a marker saying so), and `GIGQ_PAYLOAD` over `PAYLOAD_LIMIT` has its
    long strings cut and `"truncated": true`. The whole event is on standard input.
    """
    found: dict[str, str] = {"GIGQ_PAYLOAD": _payload(event)}
    for key, value in event.items():
        if isinstance(value, Mapping):
            prefix = "GIGQ_JOB_" if key == "job" else f"GIGQ_{key.upper()}_"
            for inner, item in value.items():
                found[prefix + inner.upper()] = _cut(_text(item), VALUE_LIMIT)
        else:
            found[f"GIGQ_{key.upper()}"] = _cut(_text(value), VALUE_LIMIT)
    return found


def _cut(text: str, limit: int) -> str:
    """`text`, or its start and a marker, in at most `limit` bytes of UTF-8."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    room = limit - 120  # the marker below, whatever the number in it
    kept = encoded[:room].decode(errors="ignore")
    left = len(text) - len(kept)
    return f"{kept}... [cut: {left} more characters: the whole event is on standard input]"


def _shortened(value: Any, chars: int) -> Any:
    if isinstance(value, str) and len(value) > chars:
        return f"{value[:chars]}... [cut: {len(value) - chars} more characters]"
    if isinstance(value, Mapping):
        return {key: _shortened(item, chars) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_shortened(item, chars) for item in value]
    return value


def _payload(event: Mapping[str, Any]) -> str:
    """The event as JSON, in at most `PAYLOAD_LIMIT` bytes: still JSON when shortened."""
    text = json.dumps(event, default=str)  # ASCII: one byte per character
    chars = 4096
    while len(text) > PAYLOAD_LIMIT and chars >= 16:
        text = json.dumps({**_shortened(event, chars), "truncated": True}, default=str)
        chars //= 4
    if len(text) > PAYLOAD_LIMIT:  # thousands of fields: only what names the event
        text = json.dumps({"event": str(event.get("event")), "truncated": True})
    return text


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple | dict):
        return _clean(json.dumps(value, default=str))
    return _clean(str(value))


def _clean(text: str) -> str:
    text = text.replace("\0", "\\0")  # the one character an environment cannot hold
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate (from a job's error, say) cannot either
        text = text.encode(errors="backslashreplace").decode()
    return text


def run_command(config: NotifyConfig, event: Mapping[str, Any]) -> tuple[bool, str, bool]:
    """Run the command once, without a shell: the event in its environment and, whole, as
    JSON on its standard input. Never given gigq-notify's own settings (`GIGQ_NOTIFY_*`:
    a webhook token has no business there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(environment(event))
    try:
        process = subprocess.Popen(
            list(config.command),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills its children
        )
    except OSError as err:
        return False, f"cannot run {config.command[0]!r}: {err.strerror or err}", False
    try:
        # A command that does not read its input still runs: communicate() ignores the
        # broken pipe, and the timeout bounds the whole run either way.
        output, _ = process.communicate(
            json.dumps(event, default=str).encode(), timeout=config.timeout
        )
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
            # What a target answers may quote the settings: never show their secrets.
            detail = redact(detail, config.secrets)
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
