"""Job functions the tests submit (module-level, so a worker imports them by name)."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


def fail(message: str = "boom") -> None:
    """Raise ValueError."""
    raise ValueError(message)


def fail_without_settings() -> None:
    """Drop the notify settings from this process's environment, then raise ValueError."""
    import os

    for name in [n for n in os.environ if n.startswith("GIGQ_NOTIFY_")]:
        del os.environ[name]
    raise ValueError("no GIGQ_NOTIFY_* here")
