"""Walking the JSON parse trees pglast returns: the one loop the rules and the state tracker share.

A tree is nested dicts and lists; a node of interest is a dict such as {"FuncCall": {...}}. Rules differ
in what they look for and in where they stop descending (a string constant holds nothing more, one
side of an OR bounds nothing), so the caller says which children to read on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

Children = Callable[[dict[str, Any]], Iterable[Any]]


def every_value(node: dict[str, Any]) -> Iterable[Any]:
    """Descend into the whole node."""
    return node.values()


def stop_at(key: str) -> Children:
    """Descend everywhere except into a node of type `key` (it is read, not its insides)."""

    def children(node: dict[str, Any]) -> Iterable[Any]:
        return () if key in node else node.values()

    return children


def walk(tree: Any, children: Children = every_value) -> Iterator[dict[str, Any]]:
    """Every dict in `tree`, depth first. After the caller has read a node, the walk goes on into
    `children(node)`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            yield node
            stack.extend(children(node))
