"""gigq_core.graph: cycles and dependencies-first order, on chains deeper than Python's
recursion limit."""

from __future__ import annotations

import sys

from gigq_core.graph import find_cycle, topological_order


def test_find_cycle_returns_a_closed_path_or_none() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    # Edges to nodes outside the batch (stored jobs) never close a cycle.
    assert find_cycle({"a": ["stored"], "b": ["a", "stored"]}) is None


def test_topological_order_is_stable_and_dependencies_first() -> None:
    edges = {"a": ["c"], "b": [], "c": ["b", "stored"]}
    assert topological_order(["a", "b", "c"], edges) == ["b", "c", "a"]
    assert topological_order(["b", "a"], {"a": [], "b": []}) == ["b", "a"]


def test_chains_longer_than_the_recursion_limit() -> None:
    length = sys.getrecursionlimit() * 3
    ids = [f"j{i}" for i in range(length)]
    edges = {ids[i]: [ids[i + 1]] if i + 1 < length else [] for i in range(length)}
    assert find_cycle(edges) is None
    assert topological_order(ids, edges) == ids[::-1]
    edges[ids[-1]] = [ids[0]]
    cycle = find_cycle(edges)
    assert cycle is not None and len(cycle) == length + 1
