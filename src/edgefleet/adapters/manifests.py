"""Load YAML manifests from files, directories and Git blobs, safely, keeping line/column of every field.

Manifests come from pull requests, so they are untrusted input: files are size-limited, only ``yaml.SafeLoader``
constructs values, and the walk from YAML nodes to Python values counts nodes so an alias ("billion laughs")
bomb stops with an error instead of expanding. Each :class:`Document` keeps a map from field path to source
position, so validation errors read ``file:line:column: field: message``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from edgefleet.core import errors
from edgefleet.core.documents import Document, FieldPath, Position

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64
MAX_DOCUMENTS = 20_000
YAML_SUFFIXES = (".yaml", ".yml")
_SAFE_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq", "merge")
}


class ManifestError(errors.InvalidSpecError):
    """A file cannot be read as YAML manifests. ``str()`` is ``file:line:column: message``; the position stays
    apart for callers that report it as a diagnostic (``edgefleet validate``)."""

    def __init__(self, source: str, position: Position, message: str) -> None:
        super().__init__(f"{source}:{position.line}:{position.column}: {message}", errors.Reason.INVALID_SPEC)
        self.source = source
        self.position = position
        self.message = message

    def __reduce__(self) -> tuple[type[ManifestError], tuple[str, Position, str]]:  # type: ignore[override]
        return (type(self), (self.source, self.position, self.message))


class _Walker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes = 0
        self.constructor = yaml.constructor.SafeConstructor()
        self.positions: dict[FieldPath, Position] = {}

    def _pos(self, node: yaml.Node) -> Position:
        return Position(node.start_mark.line + 1, node.start_mark.column + 1)

    def walk(self, node: yaml.Node, path: FieldPath, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ManifestError(
                self.source,
                self._pos(node),
                f"document expands to more than {MAX_NODES} YAML nodes (an alias/anchor bomb?); refusing to load",
            )
        if depth > MAX_DEPTH:
            raise ManifestError(self.source, self._pos(node), f"nesting deeper than {MAX_DEPTH} levels")
        self.positions.setdefault(path, self._pos(node))
        if node.tag not in _SAFE_TAGS:
            raise ManifestError(
                self.source, self._pos(node), f"unsupported YAML tag {node.tag!r}; manifests hold plain data only"
            )
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ManifestError(self.source, self._pos(key_node), "mapping keys must be plain scalars")
                key = str(self.constructor.construct_object(key_node))
                if key in out:
                    raise ManifestError(self.source, self._pos(key_node), f"duplicate key {key!r}")
                self.positions[(*path, key)] = self._pos(key_node)
                out[key] = self.walk(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        value = self.constructor.construct_object(node)
        if isinstance(value, dt.datetime | dt.date):
            # YAML 1.1 turns unquoted dates into timestamps; Kubernetes fields hold strings.
            return node.value
        return value


def load_text(text: str, source: str) -> list[Document]:
    """Parse every document in ``text`` (empty documents are skipped); raises :class:`ManifestError`."""
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        raise ManifestError(source, Position(1, 1), f"file is larger than {MAX_FILE_BYTES} bytes; split it")
    documents: list[Document] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=yaml.SafeLoader)):
            if index >= MAX_DOCUMENTS:
                raise ManifestError(source, Position(1, 1), f"more than {MAX_DOCUMENTS} documents in one file")
            if node is None:
                continue
            walker = _Walker(source)
            value = walker.walk(node, (), 0)
            if value is None:
                continue
            documents.append(Document(source, index, value, walker.positions))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        raise ManifestError(source, pos, f"invalid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(source, Position(1, 1), f"invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ManifestError(source, Position(1, 1), "YAML nests too deeply") from exc
    return documents


def load_bytes(data: bytes, source: str) -> list[Document]:
    """Decode UTF-8 and parse; raises :class:`ManifestError` for oversized or undecodable input."""
    if len(data) > MAX_FILE_BYTES:
        raise ManifestError(source, Position(1, 1), f"file is larger than {MAX_FILE_BYTES} bytes; split it")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(source, Position(1, 1), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return load_text(text, source)


MAX_FILES = 5_000


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """YAML files under ``paths`` (files as given, directories recursively, sorted, hidden entries skipped).

    Symlinked YAML files are yielded too, so :func:`load_file` reports them instead of them vanishing silently;
    symlinked directories are not followed. Raises :class:`ManifestError` past :data:`MAX_FILES` files.
    """
    count = 0
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if child.suffix in YAML_SUFFIXES and (child.is_symlink() or child.is_file()):
                    count += 1
                    if count > MAX_FILES:
                        raise ManifestError(str(path), Position(1, 1), f"more than {MAX_FILES} manifest files")
                    yield child
        else:
            yield path


def load_file(path: Path) -> list[Document]:
    """Read and parse one file; raises :class:`ManifestError` (also for unreadable files)."""
    source = str(path)
    if path.is_symlink():
        raise ManifestError(
            source, Position(1, 1), "is a symbolic link; manifests must be regular files (symlinks are not followed)"
        )
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ManifestError(source, Position(1, 1), f"file is {size} bytes, over {MAX_FILE_BYTES}; split it")
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(source, Position(1, 1), f"cannot read: {exc.strerror}") from exc
    return load_bytes(data, source)


def is_kustomization(source: str) -> bool:
    """Whether a file is a kustomize kustomization (not a Kubernetes object)."""
    return Path(source).name in ("kustomization.yaml", "kustomization.yml", "Kustomization")


__all__ = [
    "MAX_FILES",
    "Document",
    "ManifestError",
    "Position",
    "is_kustomization",
    "iter_files",
    "load_bytes",
    "load_file",
    "load_text",
]
