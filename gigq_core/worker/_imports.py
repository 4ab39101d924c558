"""Jobs whose module this worker cannot import: handed back, not failed, and not claimed
for a while.

A worker started in the wrong folder (or without `--path`) cannot find a job's module, yet
another worker may well run the job: failing it there would let a misconfigured worker
destroy work. So the attempt is handed back (the storage does not count it; see
`execution.decide` for the limit), the worker says at ERROR what it looked for, where, and
how to mend it, and it stops claiming the jobs of that module for a while (30 s, doubling
at each new failure up to 10 min), while it goes on serving every other function. The
back-off is published in the key-value store under `NAMESPACE` (key: the worker id), for
`gigq workers`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from gigq_core.errors import GigQError
from gigq_core.execution import AttemptResult
from gigq_core.logs import printable
from gigq_core.ports import Clock, Storage
from gigq_core.records import JobRecord
from gigq_core.reload import is_user_path, python_prefixes

log = logging.getLogger("gigq")

#: Key-value namespace of the modules each worker cannot import (key: worker id; value:
#: JSON object of module name to the UTC time its back-off ends).
NAMESPACE = "worker.cannot_import"
#: The first back-off, in seconds; each new failure after one ends doubles it, up to LONGEST.
FIRST_BACKOFF = 30.0
LONGEST_BACKOFF = 600.0
#: Most import path entries a log line names one by one.
SHOWN_PATHS = 6


@attrs.define
class _Blocked:
    """A module this worker cannot import, and its back-off."""

    #: Seconds of the current back-off.
    pause: float
    #: When it ends, on the clock's monotonic time and in UTC.
    until: float
    until_utc: datetime


def describe_import_path(path: Sequence[str] | None = None) -> str:
    """`sys.path`, shortened for a log line: the folders user code may come from, each by
    its absolute path (the current one marked), then how many belong to Python and its
    installed packages, which hold no job module of a user's."""
    entries = sys.path if path is None else path
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    prefixes = python_prefixes()
    shown: list[str] = []
    python = 0
    for entry in entries:
        full = os.path.abspath(entry or cwd or ".")
        if not is_user_path(os.path.realpath(full), prefixes):
            python += 1
            continue
        text = f"{full} (the current folder)" if full == cwd else full
        if text not in shown:
            shown.append(text)
    parts = shown[:SHOWN_PATHS]
    if len(shown) > SHOWN_PATHS:
        parts.append(f"{len(shown) - SHOWN_PATHS} more")
    if python:
        parts.append(f"{python} folder{'s' * (python != 1)} of Python and installed packages")
    return ", ".join(parts) or "(empty)"


def _covers(module: str, function: str) -> bool:
    """Whether `function` ("module:name") is in `module` or a package below it."""
    owner = function.partition(":")[0]
    return owner == module or owner.startswith(module + ".")


class ImportBackoff:
    """The modules this worker cannot import, each with its back-off (thread-safe: inline
    job threads report their attempts too)."""

    def __init__(self, worker_id: str, storage: Storage, clock: Clock) -> None:
        self.worker_id = worker_id
        self.storage = storage
        self.clock = clock
        self._lock = threading.Lock()
        self._blocked: dict[str, _Blocked] = {}

    def active(self) -> bool:
        """Whether some module's jobs are not to be claimed now."""
        if not self._blocked:  # the common case, without the lock
            return False
        now = self.clock.monotonic()
        with self._lock:
            return any(entry.until > now for entry in self._blocked.values())

    def blocks(self, function: str) -> bool:
        """Whether the jobs of `function` are not to be claimed now."""
        if not self._blocked:
            return False
        now = self.clock.monotonic()
        with self._lock:
            return any(
                entry.until > now and _covers(module, function)
                for module, entry in self._blocked.items()
            )

    def attempt_ended(self, record: JobRecord, attempt: AttemptResult) -> None:
        """Learn from an ended attempt: its module cannot be imported here (back off), or
        was (forget that it could not)."""
        if attempt.unimportable is not None:
            self._failed(record, attempt.unimportable)
        elif self._blocked and attempt.status in ("completed", "failed", "timeout"):
            self._imported(record.function)

    def _failed(self, record: JobRecord, module: str) -> None:
        now = self.clock.monotonic()
        with self._lock:
            entry = self._blocked.get(module)
            if entry is not None and entry.until > now:
                return  # claimed with others before the back-off began: it is said already
            pause = FIRST_BACKOFF if entry is None else min(entry.pause * 2, LONGEST_BACKOFF)
            until_utc = self.clock.now() + timedelta(seconds=pause)
            self._blocked[module] = _Blocked(pause=pause, until=now + pause, until_utc=until_utc)
            published = self._published()
        log.error(
            "worker %s cannot import module '%s' for job %s (%r, function %s): it is not on "
            "this worker's import path: %s. Start the worker in the folder of your code, or "
            "pass --path DIR. The job is handed back (its attempt not counted) for a worker "
            "that can run it, and this worker claims no job of '%s' for %g s (until %s UTC)",
            self.worker_id,
            module,
            record.id,
            printable(record.name),
            printable(record.function),
            printable(describe_import_path()),
            module,
            pause,
            f"{until_utc:%Y-%m-%d %H:%M:%S}",
        )
        self._publish(published)

    def _imported(self, function: str) -> None:
        with self._lock:
            found = [m for m in self._blocked if _covers(m, function)]
            if not found:
                return
            for module in found:
                del self._blocked[module]
            published = self._published()
        log.info(
            "worker %s imports %s again; it claims its jobs again",
            self.worker_id,
            ", ".join(f"'{m}'" for m in found),
        )
        self._publish(published)

    def _published(self) -> str | None:
        """What the key-value store should hold for this worker (under the lock)."""
        if not self._blocked:
            return None
        return json.dumps(
            {module: e.until_utc.isoformat() for module, e in sorted(self._blocked.items())}
        )

    def _publish(self, value: str | None) -> None:
        try:
            self.storage.kv_set(NAMESPACE, self.worker_id, value)
        except GigQError as err:  # `gigq workers` shows less; the worker goes on
            log.warning("worker %s: could not record its import back-off: %s", self.worker_id, err)

    def clear(self) -> None:
        """Forget every back-off and its record (the worker stops)."""
        with self._lock:
            had = bool(self._blocked)
            self._blocked.clear()
        if had:
            self._publish(None)


def read_published(storage: Storage) -> dict[str, dict[str, datetime]]:
    """The import back-offs workers published: worker id -> module -> when it ends (UTC).
    A value that cannot be read is left out."""
    found: dict[str, dict[str, datetime]] = {}
    for worker_id, text in storage.kv_items(NAMESPACE).items():
        try:
            value = json.loads(text)
            found[worker_id] = {
                str(module): datetime.fromisoformat(str(until)) for module, until in value.items()
            }
        except (ValueError, TypeError, AttributeError):
            continue
    return found


__all__ = [
    "FIRST_BACKOFF",
    "LONGEST_BACKOFF",
    "NAMESPACE",
    "ImportBackoff",
    "describe_import_path",
    "read_published",
]
