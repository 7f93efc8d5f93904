"""Write the revert of an automatic abort to the fleet's Git repository: a branch, pushed, and a pull request.

What to write is decided in :mod:`edgefleet.core.writeback`; this adapter does the Git and forge I/O with the ``git``
command (``GIT_TERMINAL_PROMPT=0``, timeouts, no hooks of the repository run: a fresh clone has none). The repository
is untrusted content: only regular ``.yaml``/``.yml`` files up to :data:`MAX_FILE_BYTES` are read, YAML is loaded
safely, and the one file written is a path ``git ls-files`` listed. The push is never forced: a branch that already
exists on the remote means the revert was written before (``AlreadyPushed``). Git credentials come from the usual
places (a credential helper, ``~/.git-credentials``, an SSH key); ``token`` is only for the forge's pull-request API
(Gitea and GitHub accept ``Authorization: token <token>`` on ``POST /repos/{owner}/{repo}/pulls``); that request
follows no redirect (the token goes nowhere else; the usual ``https_proxy`` applies), and its answer is read up to 1 MB.

:func:`revert` is blocking (run it in a thread) and never raises for an expected failure: the returned record says
``Failed`` and why.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from edgefleet.adapters import gitsource
from edgefleet.api import addresses, modeldeployment
from edgefleet.core import errors, revisions, writeback

GIT_TIMEOUT_SECONDS = 120
MAX_FILE_BYTES = 1_000_000
MAX_HISTORY = 500
FORGE_TIMEOUT_SECONDS = 30
MAX_LINK_CHARS = 2048


@dataclasses.dataclass(frozen=True)
class Config:
    """Where rollbacks are written back (``EDGEFLEET_WRITEBACK_*``, see :mod:`edgefleet.operator.settings`)."""

    repository: str
    branch: str = "main"
    path: str = ""
    token: str | None = None
    forge_api: str | None = None
    """Base URL of the forge's API, e.g. ``https://gitea.example.com/api/v1`` or ``https://api.github.com``."""
    forge_repo: str | None = None
    """``owner/name`` of the repository on the forge."""
    author_name: str = "edgefleet-operator"
    author_email: str = "edgefleet-operator@localhost"
    workdir: Path | None = None


class _Failed(Exception):
    pass


def _git(cwd: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ASKPASS": "/bin/false",
        "LC_ALL": "C",
    }
    try:
        return subprocess.run(
            ["git", "-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            env=env,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _Failed(f"git {args[0]} failed: {exc}") from exc


def _must(cwd: Path | None, *args: str) -> str:
    result = _git(cwd, *args)
    if result.returncode != 0:
        raise _Failed(f"git {' '.join(args[:2])} failed: {result.stderr.strip()[-800:]}")
    return result.stdout


def revert(
    config: Config,
    md: modeldeployment.ModelDeployment,
    status: modeldeployment.ModelDeploymentStatus,
    now: dt.datetime,
) -> modeldeployment.RollbackWriteBack:
    """Push the revert branch of ``status.abortedRevision`` (and open a pull request); the record of what happened."""
    aborted, stable = status.aborted_revision, status.stable_revision
    assert aborted is not None and stable is not None
    namespace = md.metadata.namespace or "default"
    branch = writeback.branch_name(namespace, md.metadata.name, aborted)

    def record(
        outcome: modeldeployment.WriteBackOutcome, message: str, **extra: str | None
    ) -> modeldeployment.RollbackWriteBack:
        return modeldeployment.RollbackWriteBack(
            revision=aborted, outcome=outcome, branch=branch, message=message[:4096], attempted_at=now, **extra
        )

    try:
        gitsource.check_url(config.repository)
        gitsource.check_branch(config.branch)
    except errors.InvalidSpecError as exc:
        return record("Failed", str(exc))
    work = Path(tempfile.mkdtemp(prefix="edgefleet-writeback-", dir=config.workdir))
    try:
        return _revert(config, md, status, branch, work, record)
    except _Failed as exc:
        return record("Failed", str(exc))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _revert(
    config: Config,
    md: modeldeployment.ModelDeployment,
    status: modeldeployment.ModelDeploymentStatus,
    branch: str,
    work: Path,
    make: Callable[..., modeldeployment.RollbackWriteBack],
) -> modeldeployment.RollbackWriteBack:
    aborted, stable = status.aborted_revision or "", status.stable_revision or ""
    namespace, name = md.metadata.namespace or "default", md.metadata.name
    repo = work / "repo"
    _must(None, "clone", "--quiet", "--no-tags", "--single-branch", "--branch", config.branch, "--", config.repository, str(repo))  # noqa: E501  # fmt: skip
    remote = _git(repo, "ls-remote", "--exit-code", "--heads", "origin", f"refs/heads/{branch}")
    if remote.returncode == 0:
        return make("AlreadyPushed", f"branch {branch} exists on the remote; left as it is (never force-pushed)")
    path = _find_manifest(repo, config.path, namespace, name)
    head_text = (repo / path).read_text()
    located = writeback.locate(head_text, namespace, name)
    assert located is not None
    old_text, old_commit = _stable_version(repo, path, namespace, name, stable)
    new_text = writeback.restore_blocks(head_text, old_text, located.index)
    check = writeback.locate(new_text, namespace, name)
    if check is None or _revision(check.body) != stable:
        raise _Failed(f"the edited {path} does not have revision {stable}; nothing pushed")
    if new_text == head_text:
        return make("AlreadyPushed", f"{path} on {config.branch} already has the stable revision {stable}")
    _must(repo, "checkout", "--quiet", "-b", branch)
    (repo / path).write_text(new_text)
    _must(repo, "add", "--", path)
    evidence = status.rollout_failure.message if status.rollout_failure is not None else ""
    message = writeback.commit_message(namespace, name, aborted, stable, evidence)
    message += f"\nReverted-To: {old_commit}\n"
    author = f"{config.author_name} <{config.author_email}>"
    _must(
        repo,
        "-c", f"user.name={config.author_name}", "-c", f"user.email={config.author_email}",
        "commit", "--quiet", "--no-verify", "--author", author, "-m", message,
    )  # fmt: skip
    changed = _must(repo, "diff", "--name-only", f"origin/{config.branch}", "HEAD").split()
    if changed != [path]:
        raise _Failed(f"the revert commit would change {changed}, not only {path}; nothing pushed")
    commit = _must(repo, "rev-parse", "HEAD").strip()
    pushed = _git(repo, "push", "--porcelain", "origin", f"refs/heads/{branch}:refs/heads/{branch}")
    if pushed.returncode != 0:
        if "[rejected]" in pushed.stdout or "already exists" in pushed.stderr or "fetch first" in pushed.stderr:
            return make("AlreadyPushed", f"branch {branch} appeared on the remote meanwhile; left as it is")
        raise _Failed(f"git push failed: {pushed.stderr.strip()[-800:]}")
    text = f"pushed {branch} ({commit[:12]}): {path} back to {stable} from {old_commit[:12]}"
    pull = None
    if config.token and config.forge_api and config.forge_repo:
        try:
            pull = _open_pull_request(config, branch, message)
            text += f"; pull request {pull}"
        except _Failed as exc:
            text += f"; no pull request: {exc}"
    return make("Pushed", text, commit=commit, pull_request=pull)


def _find_manifest(repo: Path, subpath: str, namespace: str, name: str) -> str:
    clean = str(PurePosixPath(subpath.strip("/"))) if subpath.strip("/") else "."
    listed = _must(repo, "ls-files", "-s", "-z", "--", clean)
    found = []
    for entry in filter(None, listed.split("\0")):
        meta, path = entry.split("\t", 1)
        mode = meta.split()[0]
        if mode not in ("100644", "100755") or not path.endswith((".yaml", ".yml")):
            continue  # symlinks, submodules and other files are never read
        file = repo / path
        if file.stat().st_size > MAX_FILE_BYTES:
            continue
        if writeback.locate(file.read_text(errors="replace"), namespace, name) is not None:
            found.append(path)
    if not found:
        raise _Failed(f"no manifest of ModelDeployment {namespace}/{name} under {clean!r} on the base branch")
    if len(found) > 1:
        raise _Failed(f"ModelDeployment {namespace}/{name} is defined in several files ({', '.join(found)})")
    return found[0]


def _revision(body: dict[str, object]) -> str | None:
    try:
        spec = modeldeployment.ModelDeploymentSpec.model_validate(body.get("spec"))
    except ValueError:
        return None
    return revisions.revision_of(spec)


def _stable_version(repo: Path, path: str, namespace: str, name: str, stable: str) -> tuple[str, str]:
    """The file's text in the newest commit where the deployment has revision ``stable``, and that commit."""
    commits = _must(repo, "log", f"--max-count={MAX_HISTORY}", "--format=%H", "--", path).split()
    for commit in commits:
        shown = _git(repo, "show", f"{commit}:{path}")
        if shown.returncode != 0 or len(shown.stdout) > MAX_FILE_BYTES:
            continue
        located = writeback.locate(shown.stdout, namespace, name)
        if located is not None and _revision(located.body) == stable:
            return shown.stdout, commit
    raise _Failed(f"no commit of {path} (of the last {MAX_HISTORY}) has the stable revision {stable}")


def _open_pull_request(config: Config, branch: str, message: str) -> str:
    title, _, body = message.partition("\n\n")
    payload = json.dumps({"title": title, "head": branch, "base": config.branch, "body": body}).encode()
    url = f"{str(config.forge_api).rstrip('/')}/repos/{config.forge_repo}/pulls"
    if not url.startswith(("https://", "http://")):
        raise _Failed(f"forge API {config.forge_api!r} must be an http(s) URL")
    try:
        addresses.check_uri(url)
    except addresses.AddressError as exc:
        raise _Failed(f"forge API {config.forge_api!r}: {exc}") from None
    request = urllib.request.Request(
        url,
        data=payload,
        method="POST",
        headers={
            "Authorization": f"token {config.token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    try:
        with _NO_REDIRECTS.open(request, timeout=FORGE_TIMEOUT_SECONDS) as response:
            answer = json.loads(response.read(1_000_000) or b"{}")
    except urllib.error.HTTPError as exc:
        exc.close()
        if 300 <= exc.code < 400:  # the token is never sent on to wherever a redirect points
            raise _Failed(f"the forge answered {exc.code} (a redirect, not followed: set the API's own URL)") from None
        raise _Failed(f"the forge answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _Failed(f"the forge could not be reached: {exc}") from exc
    link = answer.get("html_url") or answer.get("url") if isinstance(answer, dict) else None
    if not isinstance(link, str) or not link.startswith(("https://", "http://")) or len(link) > MAX_LINK_CHARS:
        raise _Failed(
            f"the forge's answer has no usable html_url (an http(s) URL of at most {MAX_LINK_CHARS} characters)"
        )
    return link


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


__all__ = ["Config", "revert"]
