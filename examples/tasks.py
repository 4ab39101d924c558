"""Job functions used by the examples: plain module-level functions a worker can import."""

from __future__ import annotations

import hashlib
import random


def count_words(text: str) -> dict[str, int]:
    """Count the words of a text."""
    counts: dict[str, int] = {}
    for word in text.lower().split():
        word = word.strip(".,;:!?\"'")
        if word:
            counts[word] = counts.get(word, 0) + 1
    return counts


def merge_counts(parent_results: dict[str, dict[str, int]]) -> dict[str, object]:
    """Fan-in: add up the word counts of every dependency."""
    total: dict[str, int] = {}
    for counts in parent_results.values():
        for word, n in counts.items():
            total[word] = total.get(word, 0) + n
    top = sorted(total.items(), key=lambda item: (-item[1], item[0]))[:5]
    return {"distinct": len(total), "top": top}


def checksum(data: str, rounds: int = 1000) -> str:
    """Some CPU work: an iterated SHA-256."""
    digest = data.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


def flaky(chance: float = 0.5, seed: int | None = None) -> str:
    """Fails now and then, to show retries."""
    if random.Random(seed).random() < chance:
        raise ConnectionError("the service did not answer")
    return "ok"
