"""Job functions the tests submit (module-level, so a worker imports them by name)."""

from __future__ import annotations

from gigq.plugin import current_job


def flaky(failures: int) -> str:
    """Fail the first `failures` attempts, then return "ok"."""
    if current_job().attempt <= failures:
        raise ConnectionError(f"attempt {current_job().attempt} failed")
    return "ok"


def broken() -> None:
    """Always raise PermissionError."""
    raise PermissionError("no access")
