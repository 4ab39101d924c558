"""The exactly-once check: every submitted id seen once, none twice, none unknown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


class ExactlyOnceError(Exception):
    """A job ran (or was stored) twice, never, or without having been submitted."""


@dataclass(frozen=True)
class Check:
    """The outcome of comparing the ids seen with the ids submitted."""

    what: str
    expected: int
    seen: int
    duplicates: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every id was seen exactly once and nothing else was."""
        return not (self.duplicates or self.lost or self.unexpected)

    def describe(self) -> str:
        """One paragraph saying what went wrong (or that nothing did)."""
        if self.ok:
            return f"{self.what}: {self.expected} ids, each exactly once"
        parts = [f"{self.what}: expected {self.expected} ids exactly once, saw {self.seen} lines"]
        if self.duplicates:
            extra = sum(self.duplicates.values()) - len(self.duplicates)
            parts.append(
                f"{len(self.duplicates)} duplicated ({extra} extra runs), e.g. "
                + ", ".join(f"{k} x{v}" for k, v in list(self.duplicates.items())[:3])
            )
        if self.lost:
            parts.append(f"{len(self.lost)} lost, e.g. {', '.join(self.lost[:3])}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unknown, e.g. {', '.join(self.unexpected[:3])}")
        return "; ".join(parts)


def compare(what: str, expected: Iterable[str], seen: Iterable[str]) -> Check:
    """Compare ids seen (in any order, with repeats) with the expected ids."""
    wanted = Counter(expected)
    if any(n > 1 for n in wanted.values()):
        raise ValueError(f"{what}: the expected ids are not distinct")
    counts = Counter(seen)
    return Check(
        what=what,
        expected=len(wanted),
        seen=sum(counts.values()),
        duplicates={k: n for k, n in counts.items() if n > 1},
        lost=[k for k in wanted if k not in counts],
        unexpected=[k for k in counts if k not in wanted],
    )


def read(path: Path) -> list[str]:
    """The ids in a ledger file, one per line (an absent file is an empty ledger)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return text.splitlines()


def verify(what: str, expected: Iterable[str], seen: Iterable[str]) -> Check:
    """`compare`, raising ExactlyOnceError when the check fails."""
    check = compare(what, expected, seen)
    if not check.ok:
        raise ExactlyOnceError(check.describe())
    return check


def verify_ledger(what: str, path: Path, expected: Iterable[str]) -> Check:
    """Check the ledger file at `path` against the expected ids; raises ExactlyOnceError."""
    return verify(what, expected, read(path))
