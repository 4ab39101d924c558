"""Job functions the tests submit (module-level, so a worker imports them by name)."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


def fail(message: str = "boom") -> None:
    """Raise ValueError."""
    raise ValueError(message)
