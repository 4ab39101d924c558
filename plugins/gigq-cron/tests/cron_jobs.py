"""Job functions the schedules run (module-level, so a worker imports them by name)."""

from __future__ import annotations

from typing import Any


def echo(**params: Any) -> dict[str, Any]:
    """Return the params."""
    return params
