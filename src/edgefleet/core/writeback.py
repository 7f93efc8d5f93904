"""Rollbacks written back to Git: which revert is due, on which branch, and the edit of one manifest (pure).

After an automatic abort the fleet runs the stable revision while Git still asks for the aborted one. With a fleet
repository configured, the operator closes the loop: it pushes a branch that reverts the deployment's spec to the
stable revision and, with a forge token, opens a pull request on it. A person merges it (or fixes forward).

* **When.** :func:`due`: ``status.abortedRevision`` is set by an automatic abort (not by the abort annotation), and no
  write-back of that revision is recorded in ``status.rollbackWriteBack`` (a failed one is tried again after
  :data:`RETRY_SECONDS`).
* **Where.** One branch per aborted revision (:func:`branch_name`), so running it again, or on another replica, finds
  the branch and does nothing. The branch is created from the base branch and pushed without force; if it exists on
  the remote the revert counts as done (``AlreadyPushed``), whatever it holds.
* **What.** Only the file that defines the deployment changes, and in it only the revision's fields ``spec.model``,
  ``spec.compile`` and ``spec.health`` (rollout policy, comments and every other document stay as they are): each is
  replaced by its text in the last commit where the file's deployment had the stable revision
  (:func:`restore_blocks`). The result must parse and have the stable revision, or nothing is pushed.

Worked example: ``base/adder.yaml`` had 2.0.0 (stable) in commit A and 3.0.0 in commit B (with an unrelated change
to ``README.md``); 3.0.0 is aborted. The branch ``edgefleet/rollback/plant/adder/3.0.0-<hash>`` off ``main`` holds one
commit changing only ``base/adder.yaml``: its ``spec.model`` block is A's again, its rollout steps are B's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import yaml

from edgefleet.api import modeldeployment

BRANCH_PREFIX = "edgefleet/rollback"
REVERTED_KEYS = ("model", "compile", "health")
"""The spec fields a revision is computed from (:func:`edgefleet.core.revisions.revision_of`)."""
RETRY_SECONDS = 300.0


class WriteBackError(ValueError):
    """The revert cannot be written (the message says why); nothing was pushed."""


def due(md: modeldeployment.ModelDeployment, status: modeldeployment.ModelDeploymentStatus, now: dt.datetime) -> bool:
    """Whether the revert of ``status.abortedRevision`` should be written now (pure).

    >>> import datetime as dt
    >>> from edgefleet.api import modeldeployment as m
    >>> md = m.ModelDeployment.model_validate(_example())
    >>> now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> due(md, m.ModelDeploymentStatus(aborted_revision="3.0.0-a", stable_revision="2.0.0-b"), now)
    True
    >>> done = m.RollbackWriteBack(revision="3.0.0-a", outcome="Pushed")
    >>> due(md, m.ModelDeploymentStatus(aborted_revision="3.0.0-a", rollback_write_back=done), now)
    False
    """
    aborted = status.aborted_revision
    if aborted is None or status.stable_revision is None or not md.spec.rollback.automatic:
        return False
    if (md.metadata.annotations or {}).get("edgefleet.io/abort") == aborted:
        return False  # aborted by a person: they chose, Git is theirs to change
    record = status.rollback_write_back
    if record is None or record.revision != aborted:
        return True
    if record.outcome != "Failed" or record.attempted_at is None:
        return False
    return (now - record.attempted_at).total_seconds() >= RETRY_SECONDS


def branch_name(namespace: str, name: str, aborted_revision: str) -> str:
    """The one branch for reverting ``aborted_revision`` of ``namespace/name`` (pure).

    >>> branch_name("plant-north", "weld", "1.4.0-3fa1b2c4d5")
    'edgefleet/rollback/plant-north/weld/1.4.0-3fa1b2c4d5'
    """
    parts = [re.sub(r"[^A-Za-z0-9._-]", "-", p).strip(".-") or "x" for p in (namespace, name, aborted_revision)]
    return "/".join([BRANCH_PREFIX, *parts]).replace("..", ".")


@dataclasses.dataclass(frozen=True)
class Located:
    """The document of a manifest file that defines the deployment."""

    index: int
    """Which YAML document of the file (0-based)."""
    body: dict[str, object]


def locate(text: str, namespace: str, name: str) -> Located | None:
    """The ModelDeployment ``name`` in a manifest file's text (no namespace, or ``namespace``), if it is there."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return None
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict) or doc.get("kind") != modeldeployment.KIND:
            continue
        meta = doc.get("metadata") or {}
        if isinstance(meta, dict) and meta.get("name") == name and meta.get("namespace") in (None, namespace):
            return Located(index, doc)
    return None


def restore_blocks(head: str, old: str, index: int, keys: tuple[str, ...] = REVERTED_KEYS) -> str:
    """``head`` with the ``spec.<key>`` blocks of document ``index`` taken from ``old`` (pure).

    Text-level, so comments, key order and every other line of the file stay as they are. A key missing from ``old``
    is removed from ``head``; one missing from ``head`` is appended to the end of its ``spec``. Raises WriteBackError
    when the document has no block-style ``spec`` mapping to edit.

    >>> head = "kind: ModelDeployment\\nspec:\\n  model:\\n    version: 3.0.0  # bad\\n  rollout: {steps: []}\\n"
    >>> old = "kind: ModelDeployment\\nspec:\\n  model:\\n    version: 2.0.0\\n  rollout: {}\\n"
    >>> print(restore_blocks(head, old, 0, ("model",)), end="")
    kind: ModelDeployment
    spec:
      model:
        version: 2.0.0
      rollout: {steps: []}
    """
    head_docs, old_docs = _split_documents(head), _split_documents(old)
    if index >= len(head_docs) or index >= len(old_docs):
        raise WriteBackError(f"document {index + 1} is missing")
    doc, old_doc = head_docs[index], old_docs[index]
    old_blocks = {key: old_doc[start:end] for key, (start, end) in _spec_blocks(old_doc).items()}
    for key in keys:
        blocks = _spec_blocks(doc)
        replacement = old_blocks.get(key)
        if replacement is not None:
            replacement = _reindent(replacement, _child_indent(doc))
        if key in blocks:
            start, end = blocks[key]
            doc = doc[:start] + (replacement or []) + doc[end:]
        elif replacement is not None:
            _, spec_end = _spec_range(doc)
            doc = doc[:spec_end] + replacement + doc[spec_end:]
    head_docs[index] = doc
    return "".join(line for d in head_docs for line in d)


def _split_documents(text: str) -> list[list[str]]:
    """Lines of each YAML document, ``---`` separators kept with the document they open."""
    docs: list[list[str]] = [[]]
    for line in text.splitlines(keepends=True):
        if line.rstrip() == "---" or line.startswith("--- "):
            docs.append([line])
        else:
            docs[-1].append(line)
    if len(docs) > 1 and not any(_significant(line) for line in docs[0]):
        docs[1] = docs[0] + docs[1]  # comments before the first separator belong to the first document
        docs.pop(0)
    return docs


def _significant(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#") and stripped != "---"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _spec_range(doc: list[str]) -> tuple[int, int]:
    """Line range of the block-style ``spec:`` mapping's body (after the ``spec:`` line)."""
    for i, line in enumerate(doc):
        if _indent(line) == 0 and re.match(r"spec:\s*(#.*)?$", line.rstrip("\n")):
            end = i + 1
            while end < len(doc) and (not _significant(doc[end]) or _indent(doc[end]) > 0):
                end += 1
            while end > i + 1 and not _significant(doc[end - 1]):
                end -= 1  # trailing blank lines and comments belong to what follows
            return i + 1, end
    raise WriteBackError("the ModelDeployment has no block-style spec: mapping to edit")


def _child_indent(doc: list[str]) -> int | None:
    start, end = _spec_range(doc)
    children = [_indent(doc[i]) for i in range(start, end) if _significant(doc[i])]
    return min(children) if children else None


def _reindent(block: list[str], indent: int | None) -> list[str]:
    """``block`` shifted so its first line starts at ``indent`` columns (the head file's spec indentation)."""
    if indent is None or not block:
        return block
    delta = indent - _indent(block[0])
    if delta == 0:
        return block
    if delta > 0:
        return [(" " * delta + line) if line.strip() else line for line in block]
    return [line[-delta:] if line[:-delta].strip() == "" else line for line in block]


def _spec_blocks(doc: list[str]) -> dict[str, tuple[int, int]]:
    """``key -> (first line, end line)`` of each direct child of ``spec`` (the key's line and its block)."""
    start, end = _spec_range(doc)
    children = [i for i in range(start, end) if _significant(doc[i])]
    if not children:
        return {}
    child_indent = min(_indent(doc[i]) for i in children)
    heads = [i for i in children if _indent(doc[i]) == child_indent and not doc[i].lstrip().startswith("- ")]
    blocks: dict[str, tuple[int, int]] = {}
    for n, first in enumerate(heads):
        key = doc[first].strip().split(":", 1)[0].strip("'\"")
        last = heads[n + 1] if n + 1 < len(heads) else end
        while last > first + 1 and not _significant(doc[last - 1]):
            last -= 1
        blocks[key] = (first, last)
    return blocks


def commit_message(namespace: str, name: str, aborted: str, stable: str, evidence: str) -> str:
    """The revert commit's message: what, why, and the evidence of the abort (pure)."""
    body = evidence.strip() or f"Revision {aborted} was aborted."
    return (
        f"Roll back {namespace}/{name} to {stable}\n\n"
        f"The edgefleet operator aborted revision {aborted} and returned every device to the stable revision\n"
        f"{stable}. This commit makes Git say what the fleet runs: spec.model, spec.compile and spec.health\n"
        f"are those of the last commit with revision {stable}; the rollout policy is unchanged.\n\n{body}\n"
    )


def _example() -> dict[str, object]:
    return {
        "metadata": {"name": "adder", "namespace": "plant"},
        "spec": {
            "model": {
                "name": "adder",
                "version": "3.0.0",
                "uri": "https://models.example.com/a.onnx",
                "sha256": "a" * 64,
                "task": "regression",
            },
            "compile": {
                "targets": [{"name": "x86", "evaluation": {"uri": "https://m.example/e.npz", "sha256": "b" * 64}}]
            },
            "selector": {},
            "rollout": {"steps": [{"setWeight": 100}]},
        },
    }


__all__ = [
    "BRANCH_PREFIX",
    "RETRY_SECONDS",
    "REVERTED_KEYS",
    "Located",
    "WriteBackError",
    "branch_name",
    "commit_message",
    "due",
    "locate",
    "restore_blocks",
]
