"""What a merge would change in the fleet: the pure core of ``edgefleet plan``.

Given the edgefleet objects at a base and a head revision, and optionally a device inventory, :func:`compare`
returns a :class:`FleetPlan`: which deployments and devices are added, removed or changed (with field-level diffs),
and for each ModelDeployment that would roll out: the targeted devices, the compile target (variant) each gets, and
the rollout wave (setWeight step) in which each is updated, using the same canary order as the operator
(:mod:`edgefleet.core.canary`).

Namespaces: base manifests often carry none and are stamped by kustomize overlays. A ModelDeployment without a
namespace is therefore matched against inventory devices of every namespace, one wave plan per namespace.

Worked example: base has ``weld`` at 1.3.0, head at 1.4.0 and ``steps: [{setWeight: 25}, {setWeight: 100}]``, and
the inventory holds 8 matching devices. The plan shows ``weld`` changed (``spec.model.version: 1.3.0 -> 1.4.0``),
8 devices targeted, 2 in wave 1 (25 %) and 6 in wave 2 (100 %).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any, Literal

from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import canary

Action = Literal["added", "removed", "changed", "unchanged"]
_MISSING = "<unset>"


@dataclasses.dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclasses.dataclass(frozen=True)
class ObjectChange:
    kind: str
    namespace: str
    name: str
    action: Action
    changes: tuple[FieldChange, ...] = ()


@dataclasses.dataclass(frozen=True)
class DeviceWave:
    device: str
    namespace: str
    wave: int
    weight: int
    target: str | None
    unreachable: bool = False
    """Its Lease expired (as the inventory's cluster says now): the operator fills its place in a canary step from
    reachable devices, and it gets the new stable revision when it returns."""


@dataclasses.dataclass(frozen=True)
class RolloutPreview:
    deployment: str
    namespace: str
    model: str
    from_version: str | None
    to_version: str
    weights: tuple[int, ...]
    devices: tuple[DeviceWave, ...]

    @property
    def unmatched(self) -> tuple[DeviceWave, ...]:
        """Targeted devices that match no compile target (they would get no variant)."""
        return tuple(d for d in self.devices if d.target is None)

    @property
    def unreachable(self) -> tuple[DeviceWave, ...]:
        """Targeted devices known to be unreachable now."""
        return tuple(d for d in self.devices if d.unreachable)


@dataclasses.dataclass(frozen=True)
class FleetPlan:
    """What merging head into base would change: the objects, and the rollouts it would start."""

    objects: tuple[ObjectChange, ...]
    rollouts: tuple[RolloutPreview, ...]

    @property
    def changed(self) -> tuple[ObjectChange, ...]:
        return tuple(o for o in self.objects if o.action != "unchanged")

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": [dataclasses.asdict(o) for o in self.changed],
            "rollouts": [
                {
                    **dataclasses.asdict(r),
                    "unmatched": [d.device for d in r.unmatched],
                    "unreachable": [d.device for d in r.unreachable],
                }
                for r in self.rollouts
            ],
        }


Obj = modeldeployment.ModelDeployment | edgedevice.EdgeDevice


def diff(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Field-level differences between two JSON values (pure).

    >>> diff({"a": 1, "b": [1, 2]}, {"a": 2, "b": [1, 2]})
    [FieldChange(path='a', before=1, after=2)]
    """
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[FieldChange] = []
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{key}" if path else str(key)
            out.extend(diff(before.get(key, _MISSING), after.get(key, _MISSING), sub))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            out.extend(diff(b, a, f"{path}[{i}]"))
        return out
    return [] if before == after else [FieldChange(path, before, after)]


def _comparable(obj: Obj) -> dict[str, Any]:
    wire = obj.to_wire()
    wire.pop("status", None)
    meta = wire.get("metadata", {})
    return {
        "metadata": {k: meta[k] for k in ("labels", "annotations") if k in meta},
        "spec": wire.get("spec", {}),
    }


def _key(obj: Obj) -> tuple[str, str, str]:
    return (obj.kind, obj.metadata.namespace or "", obj.metadata.name)


def _preview(
    md: modeldeployment.ModelDeployment,
    previous: modeldeployment.ModelDeployment | None,
    inventory: Sequence[edgedevice.EdgeDevice],
    unreachable: Collection[tuple[str, str]],
) -> RolloutPreview:
    weights = tuple(s.set_weight for s in md.spec.rollout.steps if s.set_weight is not None)
    namespaces = (
        [md.metadata.namespace] if md.metadata.namespace else sorted({d.metadata.namespace or "" for d in inventory})
    )
    waves_out: list[DeviceWave] = []
    for ns in namespaces:
        matching = {
            d.metadata.name: dict(d.metadata.labels or {})
            for d in inventory
            if (d.metadata.namespace or "") == ns and md.spec.selector.matches(dict(d.metadata.labels or {}))
        }
        ordered = canary.order(matching, md.metadata.name)
        lost = {name for name in matching if (ns, name) in unreachable}
        # Unreachable devices take no place in a canary step (reachable ones fill it), as the operator plans it.
        held_back = canary.line_keepers(matching, md.metadata.name) | lost
        wave_of = canary.waves(ordered, weights, held_back)
        for name in ordered:
            labels = matching[name]
            target = next((t.name for t in md.spec.compile.targets if t.selector.matches(labels)), None)
            wave = wave_of[name]
            waves_out.append(DeviceWave(name, ns, wave + 1, weights[wave], target, name in lost))
    return RolloutPreview(
        deployment=md.metadata.name,
        namespace=md.metadata.namespace or "",
        model=md.spec.model.name,
        from_version=previous.spec.model.version if previous else None,
        to_version=md.spec.model.version,
        weights=weights,
        devices=tuple(waves_out),
    )


def compare(
    base: Sequence[Obj],
    head: Sequence[Obj],
    inventory: Sequence[edgedevice.EdgeDevice] = (),
    unreachable: Collection[tuple[str, str]] = (),
) -> FleetPlan:
    """Compare two revisions of a fleet repository (pure). See the module docstring for an example.

    ``unreachable`` names the inventory devices known to be unreachable now, as (namespace, name): they are marked,
    and kept out of the canary steps the way the operator keeps them out."""
    before = {_key(o): o for o in base}
    after = {_key(o): o for o in head}
    objects: list[ObjectChange] = []
    rollouts: list[RolloutPreview] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old is None and new is not None:
            objects.append(ObjectChange(*key, action="added"))
        elif new is None:
            objects.append(ObjectChange(*key, action="removed"))
        else:
            assert old is not None
            changes = tuple(diff(_comparable(old), _comparable(new)))
            objects.append(ObjectChange(*key, action="changed" if changes else "unchanged", changes=changes))
        if isinstance(new, modeldeployment.ModelDeployment) and (old is None or objects[-1].action == "changed"):
            previous = old if isinstance(old, modeldeployment.ModelDeployment) else None
            rollouts.append(_preview(new, previous, inventory, set(unreachable)))
    return FleetPlan(tuple(objects), tuple(rollouts))


def _fmt(value: Any) -> str:
    if value == _MISSING:
        return "_unset_"
    text = str(value) if not isinstance(value, dict | list) else repr(value)
    return f"`{text if len(text) <= 80 else text[:77] + '...'}`"


def to_markdown(result: FleetPlan, base: str, head: str, max_devices: int = 50) -> str:
    """Render a plan as a pull-request comment (pure)."""
    lines = [f"### edgefleet plan `{base}` → `{head}`", ""]
    changed = result.changed
    if not changed:
        lines.append("No changes to edgefleet resources.")
        return "\n".join(lines) + "\n"
    counts = {a: sum(1 for o in changed if o.action == a) for a in ("added", "changed", "removed")}
    lines.append(", ".join(f"**{n}** {a}" for a, n in counts.items() if n))
    lines += ["", "| Action | Kind | Namespace | Name | Changes |", "| --- | --- | --- | --- | --- |"]
    for o in changed:
        # One change per row (the object's cells only on its first): a table cell with <br> runs the changes
        # together wherever HTML is not rendered (terminals, CI logs, rich's Markdown).
        items = [f"`{c.path}`: {_fmt(c.before)} → {_fmt(c.after)}" for c in o.changes[:12]]
        if len(o.changes) > 12:
            items.append(f"… {len(o.changes) - 12} more")
        for i, item in enumerate(items or ["—"]):
            head = f"| {o.action} | {o.kind} | {o.namespace or '—'} | {o.name} |" if i == 0 else "| | | | |"
            lines.append(f"{head} {item} |")
    for r in result.rollouts:
        version = f"{r.from_version} → {r.to_version}" if r.from_version else f"new at {r.to_version}"
        lines += ["", f"#### Rollout of `{r.deployment}` (model `{r.model}` {version})", ""]
        if not r.devices:
            lines.append("No devices in the inventory match its selector (pass `--inventory` or `--kubeconfig`).")
            continue
        lines.append(f"{len(r.devices)} devices targeted; steps {', '.join(f'{w}%' for w in r.weights)}.")
        lines += ["", "| Wave | Weight | Devices |", "| --- | --- | --- |"]
        for wave, weight in enumerate(r.weights, start=1):
            names = [
                f"{d.namespace + '/' if d.namespace else ''}{d.device}{' (unreachable)' if d.unreachable else ''}"
                for d in r.devices
                if d.wave == wave
            ]
            shown = ", ".join(names[:max_devices]) + (
                f" … (+{len(names) - max_devices})" if len(names) > max_devices else ""
            )
            lines.append(f"| {wave} | {weight}% | {len(names)}: {shown or '—'} |")
        if r.unmatched:
            lines += [
                "",
                f"⚠ {len(r.unmatched)} targeted devices match no compile target and would get no variant.",
            ]
        if r.unreachable:
            lines += [
                "",
                f"⚠ {len(r.unreachable)} targeted devices are unreachable now (their Lease expired): reachable devices "
                "take their place in the canary steps, the rollout completes without them, and they get the new "
                "stable revision when they return.",
            ]
    return "\n".join(lines) + "\n"


__all__ = [
    "DeviceWave",
    "FieldChange",
    "FleetPlan",
    "ObjectChange",
    "RolloutPreview",
    "compare",
    "diff",
    "to_markdown",
]
