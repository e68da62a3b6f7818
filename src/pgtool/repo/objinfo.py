"""`ObjectInfo`, what listing or probing a store says about one object (its own module, stdlib only and no
dataclasses: archive-wal's local path imports it once per segment)."""

from __future__ import annotations


class ObjectInfo:
    """One stored object: name relative to the repository, size in bytes (stored, framed size)."""

    __slots__ = ("name", "size")

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectInfo):
            return NotImplemented
        return (self.name, self.size) == (other.name, other.size)

    def __hash__(self) -> int:
        return hash((self.name, self.size))

    def __repr__(self) -> str:
        return f"ObjectInfo(name={self.name!r}, size={self.size})"
