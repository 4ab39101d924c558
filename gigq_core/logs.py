"""Logging set-up for programs that use GigQ (logger `gigq`)."""

from __future__ import annotations

import logging


def setup_logging(level: int | str = logging.INFO) -> logging.Logger:
    """Send the `gigq` logger's records to stderr with a timestamp; returns the logger."""
    logger = logging.getLogger("gigq")
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    logger.setLevel(level)
    if not any(getattr(h, "_gigq", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._gigq = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger


__all__ = ["setup_logging"]
