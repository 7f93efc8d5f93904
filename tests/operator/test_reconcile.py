"""The reconcile pass on an in-memory API server: observe -> plan -> act -> one status patch, compile jobs, and the
explicit status memory of a failed compile. Plus its pure helpers: status patches and classified failures."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import pytest

from edgefleet.adapters import fleet, kube
from edgefleet.api import common, modeldeployment
from edgefleet.core import errors, revisions
from edgefleet.operator import compilation, compilejobs, reconcile
from edgefleet.testing import rollout as sim
from edgefleet.testing.fakekube import FakeKube

NOW = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)
GATE = errors.InvalidSpecError("target x86: int8 drop 0.034 > 0.010", errors.Reason.ACCURACY_GATE_FAILED)


def deployment(
    status: modeldeployment.ModelDeploymentStatus | None = None,
) -> modeldeployment.ModelDeployment:
    return modeldeployment.ModelDeployment(
        metadata=common.ObjectMeta(name="weld", namespace="plant", generation=4),
        spec=sim.spec(),
        status=status,
    )


# -- pure helpers -----------------------------------------------------------------------------------------------


def test_status_patch_sends_null_for_fields_that_became_unset() -> None:
    old = modeldeployment.ModelDeploymentStatus(canary_revision="2.0.0-abc", current_step_index=2, phase="Paused")
    new = modeldeployment.ModelDeploymentStatus(stable_revision="2.0.0-abc", phase="Healthy")
    patch = reconcile.status_patch(old, new)
    assert patch["canaryRevision"] is None and patch["currentStepIndex"] is None
    assert patch["stableRevision"] == "2.0.0-abc" and patch["phase"] == "Healthy"


def test_invalid_spec_stalls_with_the_message() -> None:
    status = reconcile.failed_status(
        deployment(), errors.InvalidSpecError("int8 drop 0.034", "AccuracyGateFailed"), NOW
    )
    by_type = {c.type: c for c in status.conditions}
    assert status.phase == "Stalled" and status.last_error == "int8 drop 0.034"
    assert by_type["Stalled"].reason == "AccuracyGateFailed" and by_type["Stalled"].observed_generation == 4
    assert by_type["Ready"].status == "False" and "Reconciling" not in by_type


def test_transient_error_marks_reconciling_and_keeps_the_phase() -> None:
    before = modeldeployment.ModelDeploymentStatus(phase="Progressing")
    status = reconcile.failed_status(deployment(before), errors.TransientError("API server unreachable"), NOW)
    by_type = {c.type: c for c in status.conditions}
    assert by_type["Reconciling"].reason == "RetryingAfterError" and status.phase == "Progressing"
    assert by_type["Ready"].status == "Unknown"


def test_parse_says_what_is_wrong_and_where() -> None:
    body = deployment().model_dump(by_alias=True, mode="json")
    body["spec"]["rollout"]["steps"] = [{"setWeight": 50}, {"setWeight": 40}]
    with pytest.raises(errors.InvalidSpecError, match=r"weld is invalid: spec\.rollout\.steps.*strictly increase"):
        reconcile.parse(body)


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (errors.TransientError("timeout"), errors.TransientError, None),
        (errors.ConflictError("409"), errors.TransientError, None),
        (GATE, errors.InvalidSpecError, "AccuracyGateFailed"),
        (
            errors.InvalidSpecError("exceeded its memory budget of 3.00 GiB", errors.Reason.COMPILE_MEMORY_EXCEEDED),
            errors.InvalidSpecError,
            "CompileMemoryExceeded",
        ),
        (errors.NotFoundError("gone"), errors.InvalidSpecError, "InvalidSpec"),
    ],
)
def test_failures_are_classified_once(error: errors.EdgefleetError, kind: type[Exception], reason: str | None) -> None:
    classified = reconcile.classify(error)
    assert isinstance(classified, kind)
    assert getattr(classified, "reason", None) == reason


# -- the pass ---------------------------------------------------------------------------------------------------


class Kube(FakeKube):
    """The in-memory API server, counting status patches and failing device reads or writes on request."""

    def __init__(self) -> None:
        super().__init__()
        self.status_patches = 0
        self.fail_device_reads = False
        self.fail_device_writes = False

    async def list(
        self,
        resource: kube.Resource,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> kube.Listing:
        if resource == kube.EDGEDEVICES and self.fail_device_reads:
            raise errors.TransientError("GET edgedevices: connection reset")
        return await super().list(resource, namespace, label_selector=label_selector, field_selector=field_selector)

    async def merge_patch(
        self,
        resource: kube.Resource,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        if subresource == "status":
            self.status_patches += 1
        elif resource == kube.EDGEDEVICES and self.fail_device_writes:
            raise errors.TransientError(f"PATCH {name}: connection reset")
        return await super().merge_patch(resource, namespace, name, patch, subresource)


class Stage:
    """A compile stage that publishes the test template, or raises ``error``; counts its compiles."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.compiles = 0

    async def compile(
        self, spec: modeldeployment.ModelDeploymentSpec, owner: tuple[str, str] | None = None
    ) -> compilation.Published:
        self.compiles += 1
        if self.error is not None:
            raise self.error
        template = sim.template(spec)
        artifacts = tuple(
            modeldeployment.CompiledArtifact(
                target=t.target,
                digest=t.artifact.digest,
                uri=t.artifact.uri,
                size_bytes=t.artifact.size_bytes,
                precision=t.artifact.precision,
            )
            for t in template.targets
        )
        return compilation.Published(template, artifacts, 1.5)


@dataclasses.dataclass
class Cluster:
    kube: Kube
    stage: Stage
    deps: reconcile.Deps

    @classmethod
    def new(cls, stage: Stage | None = None, devices: int = 4) -> Cluster:
        api, stage = Kube(), stage or Stage()
        for device in sim.layout(devices):
            api.put(kube.EDGEDEVICES, "plant", device.to_wire())
        md = sim.Fleet.new(sim.spec(max_unavailable=100), []).md
        wire = md.to_wire()
        wire["metadata"].update(uid="uid-1", generation=1)
        api.put(kube.MODELDEPLOYMENTS, "plant", wire)

        async def compile_stage() -> compilejobs.Stage:
            return stage

        deps = reconcile.Deps(
            api=api,
            devices=fleet.Devices(api),
            templates=fleet.Revisions(api),
            compile_jobs=compilejobs.CompileJobs(),
            compile_stage=compile_stage,
            clock=lambda: NOW,
        )
        return cls(api, stage, deps)

    @property
    def ref(self) -> dict[str, Any]:
        return {"metadata": {"namespace": "plant", "name": sim.NAME}}

    async def reconcile(self) -> reconcile.Outcome:
        return await reconcile.reconcile_model_deployment(self.ref, self.deps)

    async def compiled(self) -> None:
        """Let every running compile job end."""
        for _ in range(10):
            await asyncio.sleep(0)

    @property
    def status(self) -> modeldeployment.ModelDeploymentStatus:
        body = self.kube.objects[(kube.MODELDEPLOYMENTS, "plant", sim.NAME)]
        return modeldeployment.ModelDeploymentStatus.model_validate(body.get("status") or {})

    def set_spec(self, spec: modeldeployment.ModelDeploymentSpec) -> None:
        body = self.kube.objects[(kube.MODELDEPLOYMENTS, "plant", sim.NAME)]
        body["spec"] = spec.to_wire()
        body["metadata"]["generation"] += 1

    def desired(self) -> set[str | None]:
        out: set[str | None] = set()
        for (resource, _, _), body in self.kube.objects.items():
            if resource == kube.EDGEDEVICES:
                out.add(next((m["revision"] for m in body["spec"].get("models", [])), None))
        return out


async def test_a_pass_starts_the_compile_and_the_next_one_rolls_out_what_it_stored() -> None:
    cluster = Cluster.new()
    revision = revisions.revision_of(sim.spec(max_unavailable=100))
    first = await cluster.reconcile()
    assert first.status is not None and first.status.phase == "Compiling" and first.error is None
    assert cluster.status.last_attempted_revision == revision and cluster.status.observed_generation == 1
    assert cluster.kube.status_patches == 1 and cluster.desired() == {None}
    await cluster.compiled()
    assert await cluster.deps.templates.get("plant", sim.NAME, revision) is not None, "the job stored the template"
    second = await cluster.reconcile()
    assert [e.reason for e in second.events][:2] == ["Compiled", "RolloutStarted"]
    assert cluster.status.stable_revision == revision and [a.target for a in cluster.status.artifacts] == [
        "arm64",
        "x86",
    ]
    assert cluster.desired() == {revision} and second.devices_written == 4
    assert cluster.stage.compiles == 1
    assert cluster.deps.compile_jobs.find(compilejobs.JobKey("plant", sim.NAME, revision)) is None, (
        "the outcome is recorded"
    )


async def test_a_running_compile_is_found_not_started_again() -> None:
    cluster = Cluster.new()
    await cluster.reconcile()
    await cluster.reconcile()  # before the job had a chance to run
    await cluster.compiled()
    assert cluster.stage.compiles == 1


async def test_a_compile_stopped_at_its_memory_budget_stalls_with_that_reason() -> None:
    memory = errors.InvalidSpecError(
        "the compile of target 'x86' exceeded its memory budget of 3.00 GiB (3.10 GiB resident while calibrating)",
        errors.Reason.COMPILE_MEMORY_EXCEEDED,
    )
    cluster = Cluster.new(Stage(memory))
    await cluster.reconcile()
    await cluster.compiled()
    await cluster.reconcile()
    status = cluster.status
    assert status.compile_failure is not None and status.compile_failure.reason == "CompileMemoryExceeded"
    by_type = {c.type: c for c in status.conditions}
    assert status.phase == "Stalled" and by_type["Stalled"].reason == "CompileMemoryExceeded"
    assert "exceeded its memory budget" in by_type["Stalled"].message
    assert cluster.desired() == {None}


async def test_a_failed_compile_is_recorded_in_status_and_not_retried_for_the_same_generation() -> None:
    cluster = Cluster.new(Stage(GATE))
    revision = revisions.revision_of(sim.spec(max_unavailable=100))
    await cluster.reconcile()
    await cluster.compiled()
    recorded = await cluster.reconcile()
    status = cluster.status
    assert status.last_attempted_revision == revision
    assert status.compile_failure == modeldeployment.CompileFailure(
        generation=1, reason="AccuracyGateFailed", message=str(GATE)
    )
    assert status.phase == "Stalled" and status.last_error == str(GATE)
    by_type = {c.type: c for c in status.conditions}
    assert (by_type["Stalled"].reason, by_type["Ready"].status) == ("AccuracyGateFailed", "False")
    assert "Reconciling" not in by_type and by_type["Stalled"].observed_generation == 1
    assert [(e.type, e.reason) for e in recorded.events] == [("Warning", "AccuracyGateFailed")]
    assert recorded.error is None and recorded.requeue_after is None, "a recorded verdict is a result, not an error"
    for _ in range(3):  # resyncs: the verdict stands, nothing is compiled or rolled out, status does not move
        again = await cluster.reconcile()
        await cluster.compiled()
        assert again.events == () and cluster.status == status
    assert cluster.stage.compiles == 1 and cluster.desired() == {None}
    # A new generation of the spec is compiled again.
    cluster.set_spec(sim.spec(max_unavailable=100, deadline=900))
    again = await cluster.reconcile()
    await cluster.compiled()
    assert again.status is not None and again.status.phase == "Compiling" and again.status.compile_failure is None
    assert cluster.stage.compiles == 2


async def test_a_transient_compile_failure_is_retried_on_the_next_pass() -> None:
    cluster = Cluster.new(Stage(errors.TransientError("the compiler process died", delay=30.0)))
    await cluster.reconcile()
    await cluster.compiled()
    patches = cluster.kube.status_patches
    failed = await cluster.reconcile()
    assert isinstance(failed.error, errors.TransientError) and failed.error.delay == 30.0
    assert cluster.kube.status_patches == patches + 1
    reconciling = next(c for c in cluster.status.conditions if c.type == "Reconciling")
    assert reconciling.reason == "RetryingAfterError" and "process died" in reconciling.message
    assert cluster.status.compile_failure is None
    cluster.stage.error = None
    await cluster.reconcile()
    await cluster.compiled()
    assert cluster.stage.compiles == 2
    await cluster.reconcile()
    assert cluster.status.stable_revision is not None and cluster.status.last_error is None


@pytest.mark.parametrize("where", ["device reads", "device writes", "stable template"])
async def test_a_pass_that_fails_still_ends_in_exactly_one_status_patch(where: str) -> None:
    cluster = Cluster.new()
    await cluster.reconcile()
    await cluster.compiled()
    await cluster.reconcile()  # the first revision is stable and being installed
    before = cluster.status
    patches = cluster.kube.status_patches
    if where == "device reads":
        cluster.kube.fail_device_reads = True
    elif where == "device writes":
        cluster.kube.put(kube.EDGEDEVICES, "plant", sim.device("late").to_wire())  # the pass must write it
        cluster.kube.fail_device_writes = True
    else:
        stable = fleet.Revisions.name(sim.NAME, before.stable_revision or "")
        del cluster.kube.objects[(kube.CONTROLLER_REVISIONS, "plant", stable)]
    outcome = await cluster.reconcile()
    assert outcome.error is not None
    assert cluster.kube.status_patches == patches + 1
    status = cluster.status
    assert status.last_error == str(outcome.error)
    if isinstance(outcome.error, errors.TransientError):
        assert any(c.type == "Reconciling" and c.reason == "RetryingAfterError" for c in status.conditions)
        assert status.stable_revision == before.stable_revision and status.phase == before.phase
    else:
        assert status.phase == "Stalled" and outcome.error.reason == "StableRevisionMissing"


async def test_a_deployment_that_is_gone_is_not_patched() -> None:
    cluster = Cluster.new()
    del cluster.kube.objects[(kube.MODELDEPLOYMENTS, "plant", sim.NAME)]
    outcome = await cluster.reconcile()
    assert outcome.status is None and outcome.error is None and cluster.kube.status_patches == 0


async def test_a_pass_that_fails_after_a_compile_ended_leaves_its_outcome_for_the_next_pass() -> None:
    cluster = Cluster.new()
    await cluster.reconcile()
    await cluster.compiled()
    cluster.kube.fail_device_writes = True
    failed = await cluster.reconcile()
    assert isinstance(failed.error, errors.TransientError) and cluster.status.artifacts == []
    cluster.kube.fail_device_writes = False
    recorded = await cluster.reconcile()
    assert "Compiled" in [e.reason for e in recorded.events] and len(cluster.status.artifacts) == 2
    assert cluster.stage.compiles == 1
