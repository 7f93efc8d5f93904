"""Read manifests from a Git repository at a given revision (gitpython), without checking anything out.

Repository content is untrusted. Trees are read from their raw objects by :func:`_entries` (not through gitpython's
tree objects, which raise a bare ``ValueError`` on a hostile entry), and every entry name is checked: an entry named
``..``, ``.``, ``.git``, or holding ``/``, ``\\`` or NUL (git fsck only warns about these) is a positioned
:class:`~edgefleet.adapters.manifests.ManifestError` naming ``<rev>:<path>``. Only regular blobs ending in .yaml/.yml
are read; a symlinked manifest is reported, never silently skipped; submodules are skipped. Each blob is size-checked
before its bytes are loaded, at most :data:`MAX_FILES` manifests and :data:`MAX_TOTAL_BYTES` bytes are read, and
parsing goes through :mod:`edgefleet.adapters.manifests`. Git errors become
:class:`~edgefleet.core.errors.InvalidSpecError` (reason ``InvalidConfig``) with the repository and revision named.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import git

from edgefleet.adapters import manifests
from edgefleet.core import errors
from edgefleet.core.documents import Document

MAX_FILES = 5_000
MAX_TOTAL_BYTES = 256 * 1024 * 1024
MAX_DEPTH = 64
_REGULAR_MODES = (0o100644, 0o100755)
_TREE, _SYMLINK, _SUBMODULE = 0o040000, 0o120000, 0o160000


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


def _entries(repo: git.Repo, binsha: bytes, where: str) -> list[tuple[int, str, bytes]]:
    """``(mode, name, binsha)`` of one tree object, parsed from its raw bytes; names are checked here."""
    try:
        stream = repo.odb.stream(binsha)
        if stream.type != b"tree":
            raise _invalid(f"{where}: not a tree object")
        data = stream.read()
    except (ValueError, OSError, git.BadObject) as exc:
        raise _invalid(f"{where}: unreadable tree ({type(exc).__name__})") from exc
    out: list[tuple[int, str, bytes]] = []
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        nul = data.find(b"\0", space + 1)
        if space < 0 or nul < 0 or nul + 21 > len(data):
            raise _invalid(f"{where}: malformed tree object")
        try:
            mode = int(data[pos:space], 8)
        except ValueError:
            raise _invalid(f"{where}: malformed tree object") from None
        raw_name = data[space + 1 : nul]
        name = raw_name.decode("utf-8", errors="replace")
        path = f"{where}{name}"  # where is "<rev>:" or "<rev>:<dir>/"
        if (
            not raw_name
            or raw_name in (b".", b"..")
            or raw_name.lower() == b".git"
            or any(c in raw_name for c in (b"/", b"\\", b"\0"))
        ):
            raise manifests.ManifestError(
                path,
                manifests.Position(1, 1),
                f"tree entry {name!r} is not a valid path (git fsck warns about it); remove it from the repository",
            )
        out.append((mode, name, data[nul + 1 : nul + 21]))
        pos = nul + 21
    return out


def _walk(repo: git.Repo, binsha: bytes, rev: str, prefix: str, depth: int = 0) -> list[tuple[int, str, bytes]]:
    """Every non-tree entry under a tree, as ``(mode, path relative to the walk's root, binsha)``."""
    if depth > MAX_DEPTH:
        raise _invalid(f"{rev}:{prefix}: directories nest deeper than {MAX_DEPTH} levels")
    found: list[tuple[int, str, bytes]] = []
    for mode, name, sha in _entries(repo, binsha, f"{rev}:{prefix}"):
        path = f"{prefix}{name}"
        if mode == _TREE:
            found.extend(_walk(repo, sha, rev, f"{path}/", depth + 1))
        else:
            found.append((mode, path, sha))
    return found


def read_documents(repo: git.Repo, rev: str, subpath: str = "") -> list[Document]:
    """Every YAML document under ``subpath`` at ``rev``; kustomization files are skipped.

    Sources are reported as ``<rev>:<path>``. Raises InvalidSpecError (:class:`manifests.ManifestError` for a file
    or a tree entry).
    """
    commit = resolve(repo, rev)
    binsha = commit.tree.binsha
    clean = PurePosixPath(subpath.strip("/")) if subpath.strip("/") else None
    prefix = ""
    if clean is not None:
        if ".." in clean.parts:
            raise _invalid(f"path {subpath!r} must stay inside the repository")
        for part in clean.parts:
            match = [(m, s) for m, n, s in _entries(repo, binsha, f"{rev}:{prefix}") if n == part]
            if not match:
                raise _invalid(f"{rev}: path {subpath!r} does not exist")
            if match[0][0] != _TREE:
                raise _invalid(f"{rev}: {subpath!r} is not a directory")
            binsha = match[0][1]
            prefix = f"{prefix}{part}/"
    documents: list[Document] = []
    files = 0
    total = 0
    for mode, path, sha in _walk(repo, binsha, rev, prefix):
        if not path.endswith(manifests.YAML_SUFFIXES) or manifests.is_kustomization(path):
            continue
        if any(part.startswith(".") for part in PurePosixPath(path).parts):
            continue
        source = f"{rev}:{path}"
        if mode == _SYMLINK:
            raise manifests.ManifestError(
                source, manifests.Position(1, 1), "is a symbolic link; manifests must be regular files (not followed)"
            )
        if mode not in _REGULAR_MODES:
            continue  # submodules: their commits are not in this repository
        files += 1
        if files > MAX_FILES:
            raise _invalid(f"{rev}: more than {MAX_FILES} manifest files under {subpath or '/'}")
        try:
            info = repo.odb.info(sha)
        except (ValueError, OSError, git.BadObject) as exc:
            raise _invalid(f"{source}: unreadable blob ({type(exc).__name__})") from exc
        if info.size > manifests.MAX_FILE_BYTES:
            raise manifests.ManifestError(
                source, manifests.Position(1, 1), f"file is {info.size} bytes, over {manifests.MAX_FILE_BYTES}"
            )
        total += info.size
        if total > MAX_TOTAL_BYTES:
            raise _invalid(f"{rev}: manifests under {subpath or '/'} hold more than {MAX_TOTAL_BYTES} bytes")
        documents.extend(manifests.load_bytes(repo.odb.stream(sha).read(), source))
    return documents


__all__ = ["init", "open_repo", "read_documents", "resolve"]
