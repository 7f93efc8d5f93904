"""Fetch a branch of a remote Git repository into a local bare cache (gitpython), for ``edgefleet sync``.

The repository URL comes from configuration but its content is untrusted. Only ordinary transports are accepted
(https, http, ssh, scp-style ``git@host:path``, file and local paths); git's remote helpers such as ``ext::``, which
run commands, are refused before git sees the URL, and gitpython's own unsafe-protocol checks stay on. Fetches have
a timeout. A refused URL or branch is an :class:`~edgefleet.core.errors.InvalidSpecError` (``InvalidConfig``), a
failed fetch a :class:`~edgefleet.core.errors.TransientError` (the next poll tries again).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import git

from edgefleet.core import errors

FETCH_TIMEOUT_SECONDS = 120
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^:]")
_BRANCH = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)[A-Za-z0-9._/-]+(?<![./])$")


def check_url(url: str) -> str:
    """Accept only plain transports (pure).

    >>> check_url("https://git.example.com/fleet.git")
    'https://git.example.com/fleet.git'
    """
    if url.startswith(("https://", "http://", "ssh://", "file://", "/")) or _SCP_LIKE.match(url):
        return url
    raise errors.InvalidSpecError(
        f"repository URL {url!r} must be https://, http://, ssh://, git@host:path, file:// or an absolute path",
        errors.Reason.INVALID_CONFIG,
    )


def check_branch(branch: str) -> str:
    """A plain branch name (pure); refuses option-like and malformed names."""
    if branch.startswith("-") or not _BRANCH.match(branch) or branch.endswith(".lock"):
        raise errors.InvalidSpecError(f"invalid branch name {branch!r}", errors.Reason.INVALID_CONFIG)
    return branch


def fetch(url: str, branch: str, cache: Path) -> tuple[git.Repo, str]:
    """Clone or update the bare cache of ``url`` and return it with the commit ``branch`` points at."""
    check_url(url)
    check_branch(branch)
    dest = cache / hashlib.sha256(url.encode()).hexdigest()[:16]
    try:
        if not (dest / "HEAD").exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(dest, bare=True)
            repo.create_remote("origin", url)
        else:
            repo = git.Repo(dest)
        repo.git.fetch(
            "--no-tags",
            "--prune",
            "origin",
            f"+refs/heads/{branch}:refs/heads/{branch}",
            kill_after_timeout=FETCH_TIMEOUT_SECONDS,
        )
        return repo, repo.commit(f"refs/heads/{branch}").hexsha
    except git.GitCommandError as exc:
        stderr = (exc.stderr or "").strip().replace("\n", " ")
        raise errors.TransientError(f"fetching {branch} from {url} failed: {stderr or exc}") from exc
    except (git.InvalidGitRepositoryError, ValueError, OSError) as exc:
        raise errors.InvalidSpecError(
            f"cache {dest} for {url} is unusable ({exc}); delete it", errors.Reason.INVALID_CONFIG
        ) from exc


__all__ = ["check_branch", "check_url", "fetch"]
