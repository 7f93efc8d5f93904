"""Fetch a branch of a remote Git repository into a local bare cache (gitpython), for ``edgefleet sync``.

The repository URL comes from configuration but its content is untrusted. Only ordinary transports are accepted
(https, http, ssh, scp-style ``git@host:path``, file and local paths); git's remote helpers such as ``ext::``, which
run commands, are refused before git sees the URL, and gitpython's own unsafe-protocol checks stay on. Fetches have
a timeout, and a size cap (:data:`MAX_FETCH_BYTES`): the cache's object store may not grow by more than that in one
fetch; past it git is stopped, its partial pack deleted, and the fetch refused. A refused URL or branch, or an
oversized fetch, is an :class:`~edgefleet.core.errors.InvalidSpecError` (``InvalidConfig``), a failed fetch a
:class:`~edgefleet.core.errors.TransientError` (the next poll tries again).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import git

from edgefleet.core import errors

FETCH_TIMEOUT_SECONDS = 120
MAX_FETCH_BYTES = 64 * 1024 * 1024
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


def _store_files(objects: Path) -> dict[str, int]:
    """Every file under the object store with its size (temporary files may vanish while this runs)."""
    files: dict[str, int] = {}
    for root, _, names in os.walk(objects):
        for name in names:
            path = os.path.join(root, name)
            try:
                files[path] = os.lstat(path).st_size
            except OSError:
                continue
    return files


def _fetch_bounded(repo: git.Repo, dest: Path, branch: str, max_bytes: int) -> None:
    """``git fetch`` of one branch, stopped once the object store grew by more than ``max_bytes``; then everything
    the fetch wrote is removed again and the branch ref restored, so a refused fetch leaves the cache as it was."""
    objects = dest / "objects"
    ref = f"refs/heads/{branch}"
    before = _store_files(objects)
    base = sum(before.values())
    try:
        old_ref: str | None = repo.git.rev_parse("--verify", "--quiet", ref)
    except git.GitCommandError:
        old_ref = None
    command = [
        "git", "-c", "protocol.ext.allow=never", "--git-dir", str(dest),
        "fetch", "--no-tags", "--prune", "origin", f"+{ref}:{ref}",
    ]  # fmt: skip
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
    oversized = timed_out = False
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) as proc:
        while proc.poll() is None:
            if sum(_store_files(objects).values()) - base > max_bytes:
                oversized = True
            elif time.monotonic() > deadline:
                timed_out = True
            if oversized or timed_out:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.05)
        stderr = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip().replace("\n", " ")
    after = _store_files(objects)
    oversized = oversized or sum(after.values()) - base > max_bytes
    if oversized:
        for path in set(after) - set(before):
            with contextlib.suppress(OSError):
                os.unlink(path)
        for leftover in objects.glob("incoming-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        with contextlib.suppress(git.GitCommandError):
            if old_ref:
                repo.git.update_ref(ref, old_ref)
            else:
                repo.git.update_ref("-d", ref)
        raise errors.InvalidSpecError(
            f"fetching {branch} from {repo.remotes.origin.url} would store more than {max_bytes} bytes; refused "
            "(keep large files out of the fleet repository, or raise --max-fetch-bytes)",
            errors.Reason.INVALID_CONFIG,
        )
    if timed_out:
        raise errors.TransientError(f"fetching {branch} took longer than {FETCH_TIMEOUT_SECONDS}s")
    if proc.returncode != 0:
        raise errors.TransientError(f"fetching {branch} from {repo.remotes.origin.url} failed: {stderr[-500:]}")


def fetch(url: str, branch: str, cache: Path, max_bytes: int = MAX_FETCH_BYTES) -> tuple[git.Repo, str]:
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
        _fetch_bounded(repo, dest, branch, max_bytes)
        return repo, repo.commit(f"refs/heads/{branch}").hexsha
    except git.GitCommandError as exc:
        stderr = (exc.stderr or "").strip().replace("\n", " ")
        raise errors.TransientError(f"fetching {branch} from {url} failed: {stderr or exc}") from exc
    except (git.InvalidGitRepositoryError, ValueError, OSError) as exc:
        raise errors.InvalidSpecError(
            f"cache {dest} for {url} is unusable ({exc}); delete it", errors.Reason.INVALID_CONFIG
        ) from exc


__all__ = ["MAX_FETCH_BYTES", "check_branch", "check_url", "fetch"]
