"""Test-only crash points, shared by the SQL adapters: GIGQ_TEST_CRASH="OP:WHEN[,...]" makes
a process `os._exit(137)` right before or right after the COMMIT of a write transaction
labelled OP (see `Writing.op`), as if it were SIGKILLed there. The crash-point tests
(tests/reliability/test_crash_points.py, and the PostgreSQL plugin's) set it in the
processes they start; it is read once per opened database, and nothing else looks at the
labels while it is unset. Never set it in production."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from gigq_core.errors import ConfigError

#: The environment variable naming the crash points.
CRASH_ENV = "GIGQ_TEST_CRASH"
#: The labels write transactions carry (`Writing.op`, or added by `SqlStorage._label`).
CRASH_OPERATIONS = frozenset(
    {
        "submit",
        "claim",
        "start",
        "heartbeat",
        "finish",
        "release",
        "cancel",
        "rescue",
        "requeue",
        "prune",
        "vacuum",
        "register",
        "deregister",
        "pause",
        "resume",
        "kv",
        "import",
    }
)
#: The exit status of a process that stopped at a crash point (that of a SIGKILL).
CRASH_EXIT_CODE = 137

logger = logging.getLogger("gigq.crash")


def crash_points_from(value: str) -> frozenset[str]:
    """Parse GIGQ_TEST_CRASH ("claim:after,finish:before"); a typo is a ConfigError, so a
    test never passes because its crash point silently never fired."""
    points = frozenset(part.strip() for part in value.split(",") if part.strip())
    for point in points:
        op, _, when = point.partition(":")
        if op not in CRASH_OPERATIONS or when not in ("before", "after"):
            raise ConfigError(
                f"{CRASH_ENV}={value!r}: each item must be OPERATION:before or "
                f"OPERATION:after, OPERATION one of {', '.join(sorted(CRASH_OPERATIONS))}"
            )
    return points


def crash_points() -> frozenset[str]:
    """The crash points this process was started with (empty in production)."""
    return crash_points_from(os.environ.get(CRASH_ENV, ""))


def crash_at(points: frozenset[str], labels: Iterable[str], when: str) -> None:
    """Die like a SIGKILLed process if a crash point names one of `labels` at `when`
    ("before" or "after" the COMMIT)."""
    labels = sorted(labels)
    if any(f"{op}:{when}" in points for op in labels):
        logger.warning("crash point %s:%s reached: exiting", labels, when)
        os._exit(CRASH_EXIT_CODE)


__all__ = [
    "CRASH_ENV",
    "CRASH_EXIT_CODE",
    "CRASH_OPERATIONS",
    "crash_at",
    "crash_points",
    "crash_points_from",
]
