"""The real clock."""

from __future__ import annotations

import time
from datetime import datetime, timezone


class SystemClock:
    """Wall-clock UTC time and the monotonic clock."""

    def now(self) -> datetime:
        """The current time, aware UTC."""
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        """Seconds on the monotonic clock."""
        return time.monotonic()


__all__ = ["SystemClock"]
