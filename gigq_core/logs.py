"""Logging set-up for programs that use GigQ (logger `gigq`), and text made safe to show.

Job names, errors, queue names and worker ids are written by whoever submits jobs. Shown raw
on a terminal, an escape sequence in them could clear the screen, set the window title or
the clipboard; in a log, a newline in them could forge a whole record. `printable()` is the
one rule for both: the CLI applies it to what it prints, and the `gigq` log handler to each
record.
"""

from __future__ import annotations

import logging
import re
from types import TracebackType
from typing import TextIO

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

#: Characters never shown raw: C0 controls, DEL and C1 controls (terminal escapes, line
#: breaks), the line and paragraph separators, the bidirectional overrides, embeddings,
#: isolates and marks (they reorder what follows on the line, "Trojan Source"), and the
#: invisible zero-width space, byte-order mark and soft hyphen.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)
_UNSAFE_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\xad\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with control characters and bidi overrides written as escapes (`\\x1b`, `\\n`,
    `\\u202e`), so it cannot drive a terminal or break a line; `keep_newlines` keeps "\\n"
    (for a multi-line message such as a traceback)."""
    pattern = _UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE
    return pattern.sub(_escape, text)


class _PrintableFormatter(logging.Formatter):
    """A formatter whose record stays one line: the message is escaped whole; a traceback
    keeps its line breaks but nothing else."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei: _ExcInfo) -> str:
        return printable(super().formatException(ei), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return printable(super().formatStack(stack_info), keep_newlines=True)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """The handler `setup_logging` adds (once) to the `gigq` logger."""


def setup_logging(level: int | str = logging.INFO) -> logging.Logger:
    """Send the `gigq` logger's records to stderr with a timestamp; returns the logger."""
    logger = logging.getLogger("gigq")
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    return logger


__all__ = ["printable", "setup_logging"]
