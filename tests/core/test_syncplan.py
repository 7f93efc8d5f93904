"""Pure sync planning: order, stamping, pruning only what the inventory holds."""

from __future__ import annotations

import pytest

from edgefleet.core import syncplan
from edgefleet.core.syncplan import ObjectRef


def obj(kind: str, name: str, namespace: str | None = None, api: str = "edgefleet.io/v1alpha1") -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api, "kind": kind, "metadata": meta, "status": {"phase": "x"}}


def namespaced(api_version: str, kind: str) -> bool:
    return kind not in ("Namespace", "CustomResourceDefinition")


def plan(desired: list[dict[str, object]], inventory: list[ObjectRef]) -> syncplan.SyncPlan:
    return syncplan.plan(
        desired, inventory, namespaced=namespaced, default_namespace="fleet", commit="c0ffee",
        repository="https://git.example.com/fleet.git", path="prod",
    )  # fmt: skip


def test_worked_example() -> None:
    a, b, c = (ObjectRef("edgefleet.io/v1alpha1", "ModelDeployment", "fleet", n) for n in "abc")
    result = plan([obj("ModelDeployment", "a"), obj("ModelDeployment", "c")], [a, b])
    assert result.prune == (b,)
    assert result.inventory == (a, c)
    stamped = result.apply[0]["metadata"]
    assert stamped["namespace"] == "fleet"
    assert stamped["annotations"][syncplan.ANNOTATION_COMMIT] == "c0ffee"
    assert stamped["labels"][syncplan.LABEL_SOURCE] == syncplan.source_id("https://git.example.com/fleet.git", "prod")
    assert "status" not in result.apply[0]


def test_namespaces_apply_first_and_prune_last() -> None:
    ns = ObjectRef("v1", "Namespace", "", "old")
    md = ObjectRef("edgefleet.io/v1alpha1", "ModelDeployment", "old", "x")
    result = plan([obj("ModelDeployment", "m", "p"), obj("Namespace", "p", api="v1")], [ns, md])
    assert [o["kind"] for o in result.apply] == ["Namespace", "ModelDeployment"]
    assert result.prune == (md, ns)


def test_same_object_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="also defined"):
        plan([obj("ModelDeployment", "a"), obj("ModelDeployment", "a", "fleet")], [])


def test_planning_is_idempotent() -> None:
    desired = [obj("ModelDeployment", "a"), obj("EdgeDevice", "d1")]
    first = plan(desired, [])
    assert plan(desired, list(first.inventory)) == syncplan.SyncPlan(first.apply, (), first.inventory)
