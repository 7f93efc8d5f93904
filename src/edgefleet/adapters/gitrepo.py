"""Read manifests from a Git repository at a given revision (gitpython), without checking anything out.

Repository content is untrusted: only regular blobs ending in .yaml/.yml are read (symlinks and submodules are
skipped), each is size-checked before its bytes are loaded, and parsing goes through
:mod:`edgefleet.adapters.manifests`. Git errors become :class:`~edgefleet.core.errors.InvalidSpecError` (reason
``InvalidConfig``) with the repository and revision named.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import git

from edgefleet.adapters import manifests
from edgefleet.core import errors
from edgefleet.core.documents import Document

MAX_FILES = 5_000
_REGULAR_MODES = (0o100644, 0o100755)


def _invalid(message: str) -> errors.InvalidSpecError:
    """The repository, revision or path cannot be read as asked; the message names them."""
    return errors.InvalidSpecError(message, errors.Reason.INVALID_CONFIG)


def open_repo(path: Path) -> git.Repo:
    try:
        return git.Repo(path, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise _invalid(f"{path}: not a Git repository") from exc


def init(path: Path, message: str, name: str = "Fleet Team", email: str = "fleet@example.com") -> git.Repo:
    """Create a repository on ``main`` at ``path`` and commit everything in it (demo and test fleets)."""
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", name)
        config.set_value("user", "email", email)
    repo.git.add(A=True)
    repo.index.commit(message)
    return repo


def resolve(repo: git.Repo, rev: str) -> git.Commit:
    try:
        return repo.commit(rev)
    except (git.BadName, ValueError, git.GitCommandError) as exc:
        raise _invalid(f"{repo.working_dir}: unknown revision {rev!r}") from exc


def read_documents(repo: git.Repo, rev: str, subpath: str = "") -> list[Document]:
    """Every YAML document under ``subpath`` at ``rev``; kustomization files are skipped.

    Sources are reported as ``<rev>:<path>``. Raises InvalidSpecError (:class:`manifests.ManifestError` for a file).
    """
    commit = resolve(repo, rev)
    tree = commit.tree
    clean = PurePosixPath(subpath.strip("/")) if subpath.strip("/") else None
    if clean is not None:
        if ".." in clean.parts:
            raise _invalid(f"path {subpath!r} must stay inside the repository")
        try:
            tree = tree / str(clean)
        except KeyError as exc:
            raise _invalid(f"{rev}: path {subpath!r} does not exist") from exc
    if not isinstance(tree, git.Tree):
        raise _invalid(f"{rev}: {subpath!r} is not a directory")
    documents: list[Document] = []
    files = 0
    for item in tree.traverse():
        if not isinstance(item, git.Blob) or item.mode not in _REGULAR_MODES:
            continue
        path = str(item.path)
        if not path.endswith(manifests.YAML_SUFFIXES) or manifests.is_kustomization(path):
            continue
        if any(part.startswith(".") for part in PurePosixPath(path).parts):
            continue
        files += 1
        source = f"{rev}:{path}"
        if files > MAX_FILES:
            raise _invalid(f"{rev}: more than {MAX_FILES} manifest files under {subpath or '/'}")
        if item.size > manifests.MAX_FILE_BYTES:
            raise manifests.ManifestError(
                source,
                manifests.Position(1, 1),
                f"file is {item.size} bytes, over {manifests.MAX_FILE_BYTES}",
            )
        documents.extend(manifests.load_bytes(item.data_stream.read(), source))
    return documents


__all__ = ["init", "open_repo", "read_documents", "resolve"]
