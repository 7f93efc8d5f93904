"""``edgefleet rollout status|pause|resume|promote|abort|retry|undo NAME``: follow and steer a rollout.

Steering writes annotations the operator reads on every reconcile; each names what it acts on, so repeating a command,
or the operator restarting, never acts twice (see :mod:`edgefleet.core.planner`):

* ``pause`` sets ``edgefleet.io/paused: "true"``; ``resume`` removes it (``spec.paused`` in Git still wins);
* ``promote`` sets ``edgefleet.io/promote: <canaryRevision>/<currentStepIndex>``, completing the current pause or
  analysis step;
* ``promote --full`` sets ``edgefleet.io/promote-full: <canaryRevision>``: every remaining step is skipped up to the
  last ``setWeight: 100`` (still within ``maxUnavailable`` and maintenance windows);
* ``abort`` (and ``undo`` while a canary runs) sets ``edgefleet.io/abort: <canaryRevision>``: every device returns to
  stable and that revision is not retried until the spec changes;
* ``retry`` sets ``edgefleet.io/retry: <abortedRevision>/<token>`` and removes the abort annotation: the aborted
  revision rolls out again from step 1, once per token.

A verb that cannot act now refuses with exit 1 and says why: ``promote`` on a ``setWeight`` step (it completes by
itself; ``--full`` skips ahead), any promote while held, ``undo`` with nothing rolling out (Git is the source of
truth: revert there). ``rollout status`` shows the steps with the current one marked, stable and canary with their
device counts; with ``--watch`` it follows the rollout until it ends, with the exit codes of
:mod:`edgefleet.cli.watching` (0 complete, 1 failed, 3 ``--timeout``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from edgefleet.api import modeldeployment
from edgefleet.cli import cluster, status, tables, watching
from edgefleet.core import planner


def steps_view(md: modeldeployment.ModelDeployment) -> list[dict[str, Any]]:
    """The steps with their state: done, current or pending (pure)."""
    st = md.status or modeldeployment.ModelDeploymentStatus()
    current = st.current_step_index
    out = []
    for i, step in enumerate(md.spec.rollout.steps):
        if st.canary_revision is None:
            state = "done" if st.phase == "Healthy" else "-"
        elif current is not None and i < current:
            state = "done"
        elif i == current:
            state = "current"
        else:
            state = "pending"
        out.append({"index": i, "step": planner.describe_step(step), "state": state})
    return out


STEP_COLUMNS = [
    tables.Column("#", lambda r: str(r["index"] + 1)),
    tables.Column("STEP", lambda r: r["step"]),
    tables.Column(
        "STATE",
        lambda r: str({"current": "> current"}.get(r["state"], r["state"])),
        style=lambda r: {"done": "green", "current": "cyan"}.get(r["state"]),
    ),
]


def progress(md: modeldeployment.ModelDeployment) -> RenderableType | str:
    """The steps with the current one marked, stable and canary with their device counts, and the Ready message."""
    view = status.summary(md)
    counts = view["devices"]
    title = f"Rollout of {view['namespace']}/{view['name']}: {view['version']}"
    steps = tables.render(STEP_COLUMNS, steps_view(md), title)
    line = (
        f"{view['phase'] or '-'}: stable {view['stableRevision'] or '-'} on {counts.get('stable', 0)} devices; "
        f"canary {view['canaryRevision'] or '-'}: {counts.get('updated', 0)}/{counts.get('targeted', 0)} updated, "
        f"{counts.get('healthy', 0)} healthy, {counts.get('failed', 0)} failed"
    )
    reach = status.reachability_line(view.get("reachability") or {})
    if not tables.is_terminal():
        return "\n".join([str(steps), line, reach, view["message"] or ""])
    bar = ProgressBar(total=max(1, counts.get("targeted", 0)), completed=counts.get("updated", 0), width=40)
    grid = Table.grid(padding=(0, 1))
    grid.add_row(status.styled_phase(view["phase"]), bar)
    return Group(steps, grid, Text(line), Text(reach), Text(view["message"] or ""))


async def _status(cl: cluster.Cluster, args: argparse.Namespace) -> int:
    def data(current: modeldeployment.ModelDeployment) -> dict[str, Any]:
        return {**status.summary(current), "stepStates": steps_view(current)}

    if not args.watch:
        md = await cl.deployment(args.name)
        if args.output == "json":
            print(json.dumps(data(md), indent=2, sort_keys=True))
        else:
            tables.emit(progress(md))
        return watching.EXIT_FAILED if (md.status and md.status.phase in watching.FAILED) else watching.EXIT_OK

    async def fetch() -> tuple[Any, RenderableType | str, int | None]:
        md = await cl.deployment(args.name)
        return data(md), progress(md), watching.outcome(md)

    return await watching.follow(
        fetch,
        interval=args.interval,
        timeout=args.timeout,
        json_output=args.output == "json",
        what=f"the rollout of ModelDeployment {cl.namespace}/{args.name}",
    )


def _refuse(md: modeldeployment.ModelDeployment, message: str) -> SystemExit:
    return SystemExit(f"error: {md.metadata.namespace}/{md.metadata.name}: {message}")


def _held(md: modeldeployment.ModelDeployment) -> str:
    if md.spec.paused:
        return "spec.paused is true (change it in Git to go on)"
    if (md.metadata.annotations or {}).get(planner.ANNOTATION_PAUSED) == "true":
        return f"it is held by annotation {planner.ANNOTATION_PAUSED} (edgefleet rollout resume {md.metadata.name})"
    return ""


def signal_for(action: str, md: modeldeployment.ModelDeployment, *, full: bool = False) -> dict[str, str | None]:
    """The annotations that ask the operator for ``action`` (pure); SystemExit saying why when it cannot act now."""
    st = md.status or modeldeployment.ModelDeploymentStatus()
    name = md.metadata.name
    if action == "pause":
        return {planner.ANNOTATION_PAUSED: "true"}
    if action == "resume":
        return {planner.ANNOTATION_PAUSED: None}
    if action == "retry":
        if st.aborted_revision is None:
            raise _refuse(md, f"no aborted revision to retry (phase {st.phase})")
        token = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return {planner.ANNOTATION_RETRY: f"{st.aborted_revision}/{token}", planner.ANNOTATION_ABORT: None}
    if st.canary_revision is None or st.current_step_index is None:
        if action == "undo":
            raise _refuse(
                md,
                f"no rollout in progress: every device is on stable revision {st.stable_revision}, which is what "
                "the spec asks for; to go back further, revert the change in Git (the cluster follows Git)",
            )
        raise _refuse(md, f"no rollout in progress (phase {st.phase}); nothing to {action}")
    if action in ("abort", "undo"):
        return {planner.ANNOTATION_ABORT: st.canary_revision}
    held = _held(md)
    if held:
        raise _refuse(md, f"cannot promote while {held}")
    steps = md.spec.rollout.steps
    index = st.current_step_index
    if full:
        final = max(i for i, step in enumerate(steps) if step.set_weight == 100)
        if index >= final:
            raise _refuse(md, f"already on its last step ({index + 1}/{len(steps)}); nothing to skip")
        return {planner.ANNOTATION_PROMOTE_FULL: st.canary_revision}
    step = steps[index] if index < len(steps) else None
    if step is not None and step.set_weight is not None:
        raise _refuse(
            md,
            f"step {index + 1}/{len(steps)} ({planner.describe_step(step)}) completes by itself once its devices run "
            f"the canary; nothing to promote. To skip every remaining step: edgefleet rollout promote {name} --full",
        )
    return {planner.ANNOTATION_PROMOTE: f"{st.canary_revision}/{index}"}


VERBS = {
    "pause": "Paused",
    "resume": "Resumed",
    "promote": "Promoted",
    "abort": "Aborted",
    "retry": "Retrying",
    "undo": "Rolling back",
}


async def _steer(cl: cluster.Cluster, args: argparse.Namespace) -> int:
    md = await cl.deployment(args.name)
    full = bool(getattr(args, "full", False))
    annotations = signal_for(args.action, md, full=full)
    await cl.annotate(args.name, annotations)
    note = ""
    if args.action == "resume" and md.spec.paused:
        note = " (spec.paused is still true in the manifest; change it in Git to resume)"
    if args.action == "promote" and full:
        note = " past every remaining step"
    if args.action == "undo":
        note = " to stable; revert the change in Git too, or the next spec change rolls out again"
    print(f"{VERBS[args.action]} rollout of ModelDeployment {cl.namespace}/{args.name}{note}", file=sys.stderr)
    return 0


async def _run(cl: cluster.Cluster, args: argparse.Namespace) -> int:
    if args.action == "status":
        return await _status(cl, args)
    return await _steer(cl, args)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``edgefleet rollout``."""
    return cluster.run(_run, args)


HELP = {
    "status": "show the steps, stable and canary; --watch follows until it ends (exit 0 done, 1 failed, 3 timeout)",
    "pause": "hold the rollout: no device moves forward until resumed (a rollback still proceeds)",
    "resume": "lift the hold set by pause (spec.paused in Git still holds)",
    "promote": "complete the current pause or analysis step; --full skips every remaining step",
    "abort": "return every device to stable; the revision is not retried until the spec changes",
    "retry": "roll an aborted revision out again from step 1",
    "undo": "roll the running canary back to stable now (like abort); Git still asks for it until reverted",
}


def register(subparsers: Any) -> None:
    """Add ``rollout`` and its verbs to the ``edgefleet`` command."""
    parser = subparsers.add_parser(
        "rollout",
        help="follow or steer a rollout",
        description="Follow or steer the rollout of one ModelDeployment (as kubectl argo rollouts does for Rollouts).",
    )
    verbs = parser.add_subparsers(dest="action", metavar="VERB", required=True)
    for verb, text in HELP.items():
        sub = verbs.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        sub.add_argument("name", help="the ModelDeployment")
        if verb == "status":
            sub.add_argument("-w", "--watch", action="store_true", help="follow until the rollout ends")
            sub.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
            sub.add_argument(
                "--timeout",
                type=watching.parse_duration,
                default=None,
                help="with --watch: give up (exit 3) after this",
            )
        if verb == "promote":
            sub.add_argument("--full", action="store_true", help="skip every remaining step up to setWeight 100")
        cluster.add_cluster_arguments(sub)
        sub.set_defaults(func=run)


__all__ = ["HELP", "STEP_COLUMNS", "progress", "register", "run", "signal_for", "steps_view"]
