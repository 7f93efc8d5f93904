"""Pure helpers of the reconcile: status patches and classified failures."""

from __future__ import annotations

import datetime as dt

import pytest

from edgefleet.api import common, modeldeployment
from edgefleet.core import errors
from edgefleet.operator import reconcile
from edgefleet.testing import rollout as sim

NOW = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)


def deployment(
    status: modeldeployment.ModelDeploymentStatus | None = None,
) -> modeldeployment.ModelDeployment:
    return modeldeployment.ModelDeployment(
        metadata=common.ObjectMeta(name="weld", namespace="plant", generation=4),
        spec=sim.spec(),
        status=status,
    )


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
