"""Schedules in the queue's key-value store, and enqueueing their due runs.

A run's job carries the unique key `cron:<name>:<tick>` with `unique_scope="success"`, so any
number of workers ticking at once store one job per schedule and tick. After a gap (no worker
ran through several ticks), only the latest missed tick runs, once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gigq.plugin import (
    GigQError,
    InvalidJobError,
    Job,
    StorageError,
    UserError,
    function_path,
)

if TYPE_CHECKING:
    from gigq.plugin import JobQueue, Storage

log = logging.getLogger("gigq.cron")

#: Key-value namespace of the schedules (name -> JSON).
NAMESPACE = "cron"
#: Key-value namespace of each schedule's state (name -> JSON: the latest tick enqueued,
#: "last", and the next tick due, "next"), so a tick compares times and only runs the cron
#: arithmetic when a run is due.
STATE_NAMESPACE = "cron.state"
#: What a schedule name may hold (it becomes part of a unique key).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: The @-aliases a schedule may use instead of five fields.
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class ScheduleExistsError(UserError):
    """A schedule of that name exists."""


class ScheduleNotFoundError(UserError):
    """No schedule has that name."""


@dataclass(frozen=True)
class Schedule:
    """A periodic job: what to submit, and when (a cron expression in a time zone)."""

    #: Unique name of the schedule.
    name: str
    #: Five cron fields (minute hour day-of-month month day-of-week), or an @-alias.
    expression: str
    #: Import path of the function ("package.module:function").
    function: str
    #: Keyword arguments of every run (JSON-serializable).
    params: Mapping[str, Any] = field(default_factory=dict)
    #: Named queue of the runs.
    queue: str = "default"
    #: Priority of the runs.
    priority: int = 0
    #: Attempts allowed per run.
    max_attempts: int = 3
    #: Seconds a run may take, or None for no limit.
    timeout: float | None = 300.0
    #: IANA time zone the expression is read in.
    timezone: str = "UTC"
    #: When the schedule was added; runs start at the first tick after it.
    created_at: datetime | None = None

    def check(self) -> Schedule:
        """Validate every field (InvalidJobError naming the bad one); returns the schedule
        with its function in stored form."""
        if not NAME_PATTERN.fullmatch(self.name):
            raise InvalidJobError(
                f"schedule name {self.name!r} must be letters, digits, '_', '.' or '-' "
                "(at most 100, starting with a letter or digit)"
            )
        _check_expression(self.expression)
        _zone(self.timezone)
        self.next_tick(datetime.now(UTC))  # InvalidJobError for a schedule that never fires
        if not isinstance(self.params, Mapping):
            raise InvalidJobError(f"schedule '{self.name}': params must be a mapping")
        try:
            json.dumps(dict(self.params))
        except (TypeError, ValueError) as err:
            raise InvalidJobError(
                f"schedule '{self.name}': params must be JSON-serializable: {err}"
            ) from None
        except RecursionError:
            raise InvalidJobError(
                f"schedule '{self.name}': params are nested too deeply to serialize "
                "(see the max_nesting_depth setting)"
            ) from None
        if isinstance(self.max_attempts, bool) or not (
            isinstance(self.max_attempts, int) and self.max_attempts >= 1
        ):
            raise InvalidJobError(f"schedule '{self.name}': max_attempts must be at least 1")
        if self.timeout is not None and not 0 < self.timeout < float("inf"):
            raise InvalidJobError(f"schedule '{self.name}': timeout must be positive, or None")
        return replace(self, function=function_path(self.function), params=dict(self.params))

    def latest_tick(self, now: datetime) -> datetime:
        """The latest tick at or before `now` (aware, UTC); InvalidJobError if none."""
        return self._tick(now + timedelta(microseconds=1), backwards=True)

    def next_tick(self, now: datetime) -> datetime:
        """The first tick after `now` (aware, UTC); InvalidJobError if it never fires."""
        return self._tick(now, backwards=False)

    def _tick(self, start: datetime, backwards: bool) -> datetime:
        from croniter import CroniterError

        ticks = _croniter()(self.expression, start.astimezone(_zone(self.timezone)))
        try:
            tick: datetime = ticks.get_prev(datetime) if backwards else ticks.get_next(datetime)
        except CroniterError:
            # With five fields, only a day that no month of the expression has (31
            # February, 31 April) leaves croniter without a date.
            raise InvalidJobError(
                f"cron expression {self.expression!r} never fires: no month in it has that "
                "day of the month"
            ) from None
        return tick.astimezone(UTC)

    def job_for(self, tick: datetime) -> Job:
        """The job of the run at `tick`, with the unique key of that tick."""
        stamp = tick.astimezone(UTC).isoformat()
        return Job(
            self.name,
            self.function,
            params=dict(self.params),
            priority=self.priority,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            description=f"cron '{self.name}' ({self.expression}) for {stamp}",
            queue=self.queue,
            unique_key=unique_key(self.name, tick),
            unique_scope="success",
        )

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(
            {
                "name": self.name,
                "expression": self.expression,
                "function": self.function,
                "params": dict(self.params),
                "queue": self.queue,
                "priority": self.priority,
                "max_attempts": self.max_attempts,
                "timeout": self.timeout,
                "timezone": self.timezone,
                "created_at": self.created_at.isoformat() if self.created_at else None,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        """Rebuild a stored schedule."""
        data = json.loads(text)
        created = data.get("created_at")
        return cls(
            name=data["name"],
            expression=data["expression"],
            function=data["function"],
            params=data.get("params") or {},
            queue=data.get("queue", "default"),
            priority=data.get("priority", 0),
            max_attempts=data.get("max_attempts", 3),
            timeout=data.get("timeout", 300.0),
            timezone=data.get("timezone", "UTC"),
            created_at=datetime.fromisoformat(created) if created else None,
        )


def unique_key(name: str, tick: datetime) -> str:
    """The unique key of schedule `name`'s run at `tick`."""
    return f"cron:{name}:{tick.astimezone(UTC).isoformat()}"


def _croniter() -> Any:
    """croniter's iterator class, imported on first use (it is not needed at startup)."""
    from croniter import croniter

    return croniter


def _check_expression(expression: str) -> None:
    text = expression.strip()
    fields = text.split()
    if not (text in ALIASES or len(fields) == 5) or not _croniter().is_valid(text):
        raise InvalidJobError(
            f"cron expression {expression!r} is not valid: give five fields "
            "(minute hour day-of-month month day-of-week), e.g. '*/5 * * * *', "
            f"or one of {', '.join(ALIASES)}"
        )


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidJobError(
            f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)"
        ) from None


# -- the store -----------------------------------------------------------------------------


def add_schedule(queue: JobQueue, schedule: Schedule, replace_existing: bool = False) -> Schedule:
    """Store a schedule (checked); its runs start at the first tick after now.

    Its first run's job is checked now exactly as submit checks a job (the function policy,
    the queue's limits on names, params nesting and size; the same errors): a run the
    queue refuses would only fail at every tick.
    """
    now = queue.clock.now()
    checked = replace(schedule.check(), created_at=now)
    upcoming = checked.next_tick(now)
    _check_run(queue, checked.job_for(upcoming), now)
    storage = queue.storage
    if storage.kv_get(NAMESPACE, checked.name) is not None and not replace_existing:
        raise ScheduleExistsError(
            f"schedule '{checked.name}' exists; remove it first, or add it with --replace"
        )
    storage.kv_set(NAMESPACE, checked.name, checked.to_json())
    storage.kv_set(STATE_NAMESPACE, checked.name, _state_json(None, upcoming))
    return checked


def _check_run(queue: JobQueue, job: Job, now: datetime) -> None:
    """Validate a run's job as `queue.submit` would, storing nothing."""
    # The queue's own validation, with its settings, serializer and retry strategies, so
    # cron add refuses exactly what a tick's submit would; JobQueue has no public way yet.
    queue._record(job, now)


def remove_schedule(queue: JobQueue, name: str) -> None:
    """Delete a schedule (its runs already queued stay); ScheduleNotFoundError if unknown."""
    storage = queue.storage
    if storage.kv_get(NAMESPACE, name) is None:
        raise ScheduleNotFoundError(f"no schedule named '{name}'")
    storage.kv_set(NAMESPACE, name, None)
    storage.kv_set(STATE_NAMESPACE, name, None)


def list_schedules(queue: JobQueue) -> list[Schedule]:
    """Every stored schedule, by name; a stored value that cannot be read is logged."""
    return _load(queue.storage)


def states(queue: JobQueue) -> dict[str, tuple[datetime | None, datetime | None]]:
    """(latest tick enqueued, next tick due) per schedule name."""
    return {
        name: _read_state(text) for name, text in queue.storage.kv_items(STATE_NAMESPACE).items()
    }


def _state_json(last: datetime | None, next_tick: datetime | None) -> str:
    return json.dumps(
        {
            "last": last.isoformat() if last else None,
            "next": next_tick.isoformat() if next_tick else None,
        }
    )


def _read_state(text: str | None) -> tuple[datetime | None, datetime | None]:
    """(last, next) from the stored state; (None, None) when missing or unreadable."""
    if not text:
        return None, None
    try:
        data = json.loads(text)
        last, upcoming = data.get("last"), data.get("next")
        return (
            datetime.fromisoformat(last) if last else None,
            datetime.fromisoformat(upcoming) if upcoming else None,
        )
    except (ValueError, TypeError, AttributeError):
        return None, None


def _load(storage: Storage) -> list[Schedule]:
    found = []
    for name, text in sorted(storage.kv_items(NAMESPACE).items()):
        try:
            found.append(Schedule.from_json(text))
        except (ValueError, KeyError, TypeError) as err:
            log.warning("cron schedule %r cannot be read and is skipped: %r", name, err)
    return found


def run_due(queue: JobQueue, now: datetime | None = None) -> list[str]:
    """Submit the due run of every schedule (at most one each); returns the job ids.

    Safe from any number of workers at once: each run's unique key names its schedule and
    tick, so concurrent submits of it store one job. A schedule that is not due costs a
    comparison of two times.
    """
    now = queue.clock.now() if now is None else now
    storage = queue.storage
    known = storage.kv_items(STATE_NAMESPACE)
    ids = []
    for schedule in _load(storage):
        last, due = _read_state(known.get(schedule.name))
        if due is not None and now < due:
            continue
        try:
            tick = schedule.latest_tick(now)
            upcoming = schedule.next_tick(tick)
        except Exception as err:  # a stored schedule croniter refuses: skip it, keep the others
            log.warning("cron schedule '%s' is skipped: %s", schedule.name, err)
            continue
        stale = (schedule.created_at is not None and tick <= schedule.created_at) or (
            last is not None and tick <= last
        )
        if not stale:
            try:
                ids.append(queue.submit(schedule.job_for(tick)))
            except StorageError:
                raise  # transient: the next tick tries again
            except GigQError as err:  # this run can never be stored (policy, params): say so
                log.error(
                    "cron schedule '%s': the run of %s cannot be submitted: %s",
                    schedule.name,
                    tick.isoformat(),
                    err,
                )
            last = tick
        _record(storage, schedule.name, last, upcoming)
    return ids


def _record(storage: Storage, name: str, last: datetime | None, upcoming: datetime) -> None:
    """Store the state, unless another worker already recorded a later tick."""
    current, _ = _read_state(storage.kv_get(STATE_NAMESPACE, name))
    if current is not None and (last is None or current > last):
        return
    storage.kv_set(STATE_NAMESPACE, name, _state_json(last, upcoming))


__all__ = [
    "ALIASES",
    "NAMESPACE",
    "STATE_NAMESPACE",
    "Schedule",
    "ScheduleExistsError",
    "ScheduleNotFoundError",
    "add_schedule",
    "list_schedules",
    "remove_schedule",
    "run_due",
    "states",
    "unique_key",
]
