"""The dependency graph of a submit: cycle detection and dependencies-first order, shared by
every storage adapter.

Both walks are iterative: a chain of dependencies may be thousands of jobs long, deeper
than Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle in `edges` (node -> nodes it depends on) as a closed path, or None.

    Only nodes that are keys of `edges` take part (edges to stored jobs cannot close a
    cycle: stored jobs never depend on new ones).
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in edges:
        if start in state:
            continue
        path = [start]
        stack = [iter(edges[start])]
        state[start] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif child in edges:
                if state.get(child) == 1:
                    return [*path[path.index(child) :], child]
                if child not in state:
                    state[child] = 1
                    path.append(child)
                    stack.append(iter(edges[child]))
    return None


def topological_order(ids: Sequence[str], edges: Mapping[str, Sequence[str]]) -> list[str]:
    """`ids` ordered so that each follows the ids of the list it depends on (`edges`: id ->
    ids it depends on); stable, and edges to ids outside the list are ignored."""
    members = set(ids)
    done: set[str] = set()
    ordered: list[str] = []
    for root in ids:
        if root in done:
            continue
        done.add(root)
        path = [root]
        stack = [iter(edges.get(root, ()))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                ordered.append(path.pop())
                stack.pop()
            elif child in members and child not in done:
                done.add(child)
                path.append(child)
                stack.append(iter(edges.get(child, ())))
    return ordered


__all__ = ["find_cycle", "topological_order"]
