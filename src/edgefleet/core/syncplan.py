"""GitOps sync decisions: what to apply, in which order, and what to prune (pure).

``edgefleet sync`` keeps an *inventory* of every object it applied from one repository path (stored in a
ConfigMap, as Flux does). A sync applies the objects at the new commit and prunes inventory entries that Git no
longer has; objects it never created are never touched. Each applied object is stamped with the source commit so a
rollout traces back to a Git commit.

Worked example: inventory ``{md/a, md/b}``, Git now holds ``{md/a, md/c}`` -> apply ``a, c`` (stamped with the
commit), prune ``b``; the new inventory is ``{md/a, md/c}``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

ANNOTATION_COMMIT = "edgefleet.io/source-commit"
ANNOTATION_PATH = "edgefleet.io/source-path"
ANNOTATION_REPO = "edgefleet.io/source-repository"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_SOURCE = "edgefleet.io/sync-source"
MANAGER = "edgefleet-sync"

# Applied first (and pruned last), so that objects created in the same commit find them.
_FIRST = ("Namespace", "CustomResourceDefinition")


@dataclasses.dataclass(frozen=True, order=True)
class ObjectRef:
    """Identity of a Kubernetes object; ``namespace`` is empty for cluster-scoped kinds."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    def to_line(self) -> str:
        return f"{self.api_version} {self.kind} {self.namespace or '-'} {self.name}"

    @classmethod
    def from_line(cls, line: str) -> ObjectRef:
        api_version, kind, namespace, name = line.split(" ")
        return cls(api_version, kind, "" if namespace == "-" else namespace, name)


@dataclasses.dataclass(frozen=True)
class SyncPlan:
    apply: tuple[dict[str, Any], ...]
    prune: tuple[ObjectRef, ...]
    inventory: tuple[ObjectRef, ...]


def source_id(repository: str, path: str) -> str:
    """Stable short id of a repository path, used in labels and the inventory name (pure)."""
    return hashlib.sha256(f"{repository}\n{path.strip('/')}".encode()).hexdigest()[:12]


def ref(obj: dict[str, Any], namespaced: bool, default_namespace: str) -> ObjectRef:
    meta = obj.get("metadata") or {}
    namespace = (meta.get("namespace") or default_namespace) if namespaced else ""
    return ObjectRef(str(obj["apiVersion"]), str(obj["kind"]), namespace, str(meta["name"]))


def plan(
    desired: Sequence[dict[str, Any]],
    inventory: Sequence[ObjectRef],
    *,
    namespaced: Callable[[str, str], bool],
    default_namespace: str,
    commit: str,
    repository: str,
    path: str,
    sources: Sequence[str] = (),
) -> SyncPlan:
    """Objects to apply (stamped, ordered) and inventory entries to prune (pure).

    ``sources[i]`` is the file ``desired[i]`` came from. Raises ValueError when Git defines one object twice.
    """
    sid = source_id(repository, path)
    stamped: list[tuple[int, ObjectRef, dict[str, Any]]] = []
    seen: dict[ObjectRef, str] = {}
    for i, obj in enumerate(desired):
        is_namespaced = namespaced(str(obj["apiVersion"]), str(obj["kind"]))
        identity = ref(obj, is_namespaced, default_namespace)
        where = sources[i] if i < len(sources) else "?"
        if identity in seen:
            raise ValueError(f"{where}: {identity} is also defined in {seen[identity]}")
        seen[identity] = where
        body = copy.deepcopy(obj)
        meta = body.setdefault("metadata", {})
        if is_namespaced:
            meta["namespace"] = identity.namespace
        meta.setdefault("labels", {}).update({LABEL_MANAGED_BY: MANAGER, LABEL_SOURCE: sid})
        meta.setdefault("annotations", {}).update(
            {ANNOTATION_COMMIT: commit, ANNOTATION_REPO: repository, ANNOTATION_PATH: where}
        )
        body.pop("status", None)
        rank = _FIRST.index(identity.kind) if identity.kind in _FIRST else len(_FIRST)
        stamped.append((rank, identity, body))
    stamped.sort(key=lambda item: (item[0], item[1]))
    current = {identity for _, identity, _ in stamped}
    gone = [r for r in inventory if r not in current]
    # Prune ordinary objects before namespaces and CRDs (the reverse of the apply order).
    gone.sort(key=lambda r: (_FIRST.index(r.kind) if r.kind in _FIRST else -1, r))
    return SyncPlan(
        apply=tuple(body for _, _, body in stamped),
        prune=tuple(gone),
        inventory=tuple(sorted(current)),
    )


__all__ = ["ObjectRef", "SyncPlan", "plan", "ref", "source_id"]
