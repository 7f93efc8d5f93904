"""Revisions: the identity of "what a device runs" for one ModelDeployment spec, and its template.

A revision is derived, never random: ``<model version>-<10 hex of sha256>`` over the parts of the spec that end up on a
device or in its artifact (``spec.model``, ``spec.compile`` and ``spec.health``). Changing the rollout policy, the
selector or ``paused`` does not make a new revision, so editing the steps of a running rollout does not restart it.
Equal specs always give equal revisions, across operator restarts and replicas.

A :class:`RevisionTemplate` is everything needed to write a device's ``spec.models`` entry for a revision: the version,
the health thresholds and one signed artifact per compile target with the target's device selector. The operator keeps
the template of the stable revision so that it can return devices to it after the spec moved on. Everything here is
pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from edgefleet.api import common, edgedevice, modeldeployment


def revision_of(spec: modeldeployment.ModelDeploymentSpec) -> str:
    """The deterministic revision of a spec (pure).

    >>> import edgefleet.api.modeldeployment as md
    >>> # Two specs that differ only in rollout policy share a revision; a new model digest does not.
    >>> revision_of(_example_spec()).startswith("1.4.0-")
    True
    >>> revision_of(_example_spec()) == revision_of(_example_spec(steps=[{"setWeight": 100}]))
    True
    >>> revision_of(_example_spec()) == revision_of(_example_spec(sha="b" * 64))
    False
    """
    relevant = {
        "model": spec.model.to_wire(),
        "compile": spec.compile.to_wire(),
        "health": spec.health.to_wire(),
    }
    encoded = json.dumps(relevant, sort_keys=True, separators=(",", ":")).encode()
    return f"{spec.model.version}-{hashlib.sha256(encoded).hexdigest()[:10]}"


class TargetArtifact(BaseModel):
    """The artifact of one compile target and the devices (labels) it is for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: str
    selector: common.LabelSelector
    artifact: edgedevice.ArtifactRef


class RevisionTemplate(BaseModel):
    """What every device of one revision gets, minus the device itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    revision: str
    model_name: str
    version: str
    health: modeldeployment.HealthSpec
    targets: tuple[TargetArtifact, ...]

    def target_for(self, labels: Mapping[str, str]) -> TargetArtifact | None:
        """The first compile target whose selector matches ``labels``, as the compiler assigns them (pure)."""
        return next((t for t in self.targets if t.selector.matches(dict(labels))), None)

    def desired_for(self, deployment: str, labels: Mapping[str, str]) -> edgedevice.DesiredModel | None:
        """The ``spec.models`` entry for a device with ``labels``, or None when no target covers it (pure)."""
        target = self.target_for(labels)
        if target is None:
            return None
        return edgedevice.DesiredModel(
            name=self.model_name,
            deployment=deployment,
            version=self.version,
            revision=self.revision,
            artifact=target.artifact,
            health=self.health,
        )


def template_for(
    spec: modeldeployment.ModelDeploymentSpec, artifacts: Mapping[str, edgedevice.ArtifactRef]
) -> RevisionTemplate:
    """Build the template of ``spec`` from its compiled artifacts, keyed by compile target name (pure).

    Raises ValueError naming the targets that have no artifact, since a partial template would leave a hardware class
    without a model.
    """
    missing = [t.name for t in spec.compile.targets if t.name not in artifacts]
    if missing:
        raise ValueError(f"no compiled artifact for compile target(s) {', '.join(missing)}")
    return RevisionTemplate(
        revision=revision_of(spec),
        model_name=spec.model.name,
        version=spec.model.version,
        health=spec.health,
        targets=tuple(
            TargetArtifact(target=t.name, selector=t.selector, artifact=artifacts[t.name]) for t in spec.compile.targets
        ),
    )


def _example_spec(
    steps: list[dict[str, object]] | None = None, sha: str = "a" * 64
) -> modeldeployment.ModelDeploymentSpec:
    """A minimal valid spec, for the docstring examples above."""
    return modeldeployment.ModelDeploymentSpec.model_validate(
        {
            "model": {
                "name": "weld",
                "version": "1.4.0",
                "uri": "https://models.example.com/weld.onnx",
                "sha256": sha,
                "task": "classification",
            },
            "compile": {
                "targets": [
                    {
                        "name": "x86",
                        "evaluation": {"uri": "https://models.example.com/eval.npz", "sha256": "c" * 64},
                    }
                ]
            },
            "selector": {},
            "rollout": {"steps": steps or [{"setWeight": 10}, {"setWeight": 100}]},
        }
    )


__all__ = ["RevisionTemplate", "TargetArtifact", "revision_of", "template_for"]
