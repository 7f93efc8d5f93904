"""Parsed manifest documents with source positions, shared by validation and planning.

A :class:`Document` is the value of one YAML document plus the 1-based line/column of every field path, so a
problem found anywhere in the pipeline can be reported as ``file:line:column: field: message``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

FieldPath = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class Position:
    """1-based line and column in a source file."""

    line: int
    column: int


@dataclasses.dataclass(frozen=True)
class Document:
    """One YAML document: its value, where it came from, and the position of every field path."""

    source: str
    index: int
    value: Any
    positions: dict[FieldPath, Position]

    def position(self, path: Iterable[str | int]) -> Position:
        """Position of the deepest known prefix of ``path`` (the document start when none is known)."""
        key = tuple(path)
        while key:
            if key in self.positions:
                return self.positions[key]
            key = key[:-1]
        return self.positions.get((), Position(1, 1))

    @property
    def kind(self) -> str:
        return str(self.value.get("kind", "")) if isinstance(self.value, dict) else ""

    @property
    def api_version(self) -> str:
        return str(self.value.get("apiVersion", "")) if isinstance(self.value, dict) else ""

    @property
    def name(self) -> str:
        meta = self.value.get("metadata") if isinstance(self.value, dict) else None
        return str(meta.get("name", "")) if isinstance(meta, dict) else ""

    @property
    def namespace(self) -> str:
        meta = self.value.get("metadata") if isinstance(self.value, dict) else None
        return str(meta.get("namespace") or "") if isinstance(meta, dict) else ""


def format_path(path: Iterable[str | int]) -> str:
    """``("spec", "rollout", "steps", 2, "setWeight")`` -> ``spec.rollout.steps[2].setWeight`` (pure)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


__all__ = ["Document", "FieldPath", "Position", "format_path"]
