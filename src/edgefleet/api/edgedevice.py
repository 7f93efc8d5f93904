"""``EdgeDevice``: one device of the fleet. The operator writes its desired models; the device reports status.

``metadata.labels`` carry where the device is and what it is (``edgefleet.io/site``, ``edgefleet.io/line``,
``edgefleet.io/hardware-class``); ModelDeployment selectors and compile targets match on them. ``spec.models`` is
the desired state, one entry per model name, written only by the operator. ``status`` is written only by the
device's agent and holds metadata only: versions, digests, states and health summaries, never inputs or outputs.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, field_validator

from edgefleet.api import addresses, common
from edgefleet.api.common import ApiModel, Condition, Name, ObjectMeta
from edgefleet.api.modeldeployment import HealthSpec

KIND = "EdgeDevice"
PLURAL = "edgedevices"

ModelState = Literal["Pending", "Downloading", "Verifying", "Installing", "Active", "RolledBack", "Failed"]
Verdict = Literal["Pending", "Healthy", "Unhealthy"]
# Artifact bundles are downloaded by devices; http is allowed because the embedded store serves plain HTTP on a
# trusted network and every bundle is verified by digest and ed25519 signature before use. oci:// names an OCI
# artifact by digest (oci://host/repository@sha256:<manifest>), pushed by the operator's registry backend.
ARTIFACT_URI = r"^(https?|oci)://[^\s]+$"


class ArtifactRef(ApiModel):
    """A compiled, signed bundle for one hardware class."""

    uri: Annotated[str, Field(max_length=2048, pattern=ARTIFACT_URI)] = Field(
        description="Download URL.", json_schema_extra={"x-kubernetes-validations": [dict(addresses.CEL_RULE)]}
    )
    digest: Annotated[str, Field(pattern=common.DIGEST)] = Field(description="sha256 of the bundle bytes.")
    size_bytes: int = Field(ge=1, le=4 * 1024**3, description="Exact bundle size; larger downloads are cut off.")
    precision: Literal["int8", "fp16", "fp32"] = Field(description="Precision of the compiled model.")

    @field_validator("uri")
    @classmethod
    def _safe(cls, uri: str) -> str:
        from edgefleet.api.modeldeployment import check_fetchable_uri, check_oci_reference

        return check_oci_reference(check_fetchable_uri(uri))


class PrestagedArtifact(ApiModel):
    """A later revision to download and verify into the inactive slot ahead of activation (``rollout.prestage``).

    The device keeps serving its desired version; it switches only when ``artifact`` becomes the desired one.
    """

    version: Annotated[str, Field(max_length=128, pattern=common.SEMVER)] = Field(description="Model version.")
    revision: Annotated[str, Field(max_length=256)] = Field(description="Rollout revision of the artifact.")
    artifact: ArtifactRef = Field(description="The bundle to stage.")
    max_bytes_per_second: int | None = Field(
        default=None, ge=1, description="Pace of this download (the site's bandwidth budget shared by its stagers)."
    )


class DesiredValidity(ApiModel):
    """How long a desired entry may be acted on, in the style of Uptane's timestamp role.

    The operator stamps every entry it writes and refreshes ``expiresAt`` while the entry stays current and the device
    is reachable; a device never *begins* an install (nor switches to one) from an entry past ``expiresAt``: it keeps
    serving its active model and reports why. So a device that boots from its journal's cached spec after weeks
    offline cannot install a revision that was aborted or superseded meanwhile.
    """

    assigned_at: dt.datetime = Field(
        description="When the operator first asked this device for this revision (kept by refreshes)."
    )
    expires_at: dt.datetime = Field(description="After this the device does not begin installing from this entry.")


class DesiredModel(ApiModel):
    """One model the device should run."""

    name: Name = Field(description="Model name (unique per device).")
    deployment: Name = Field(description="The ModelDeployment that owns this entry.")
    version: Annotated[str, Field(max_length=128, pattern=common.SEMVER)] = Field(description="Model version.")
    revision: Annotated[str, Field(max_length=256)] = Field(description="Rollout revision the entry belongs to.")
    artifact: ArtifactRef = Field(description="The bundle to install.")
    health: HealthSpec = Field(default_factory=HealthSpec, description="Thresholds evaluated on the device.")
    validity: DesiredValidity | None = Field(
        default=None, description="When the entry was assigned and until when it may be acted on (None: no expiry)."
    )

    def expired(self, now: dt.datetime) -> bool:
        """The entry carries a validity that ended before ``now`` (pure)."""
        return self.validity is not None and now >= self.validity.expires_at

    def same_target(self, other: DesiredModel | None) -> bool:
        """Asks for the same thing as ``other``: equal apart from the validity stamp (pure)."""
        return other is not None and self.model_copy(update={"validity": None}) == other.model_copy(
            update={"validity": None}
        )

    prestage: PrestagedArtifact | None = Field(
        default=None, description="A later revision to download into the inactive slot now, switched to later."
    )


class BenchmarkCandidate(ApiModel):
    """One compiled variant a device is asked to time."""

    variant: Annotated[str, Field(min_length=1, max_length=128)] = Field(description="Candidate variant name.")
    artifact: ArtifactRef = Field(description="Its signed bundle (verified like an install, never served).")


class BenchmarkRequest(ApiModel):
    """Time these candidates off the request path and report the numbers (written by the operator).

    The device downloads and verifies each bundle, then runs them interleaved on its golden inputs for at most
    ``budgetSeconds`` in a low-priority thread, and reports ``status.benchmarks``.
    """

    name: Name = Field(description="Request name, unique per device (the deployment and compile target).")
    revision: Annotated[str, Field(max_length=256)] = Field(description="Revision whose candidates these are.")
    # At most 4 (FP32 and the compiler's 3 alternatives): every candidate's URI carries the address policy's CEL
    # rule, and 8 requests x 4 candidates is what keeps the CRD within the API server's rule-cost budget.
    candidates: Annotated[list[BenchmarkCandidate], Field(min_length=1, max_length=4)] = Field(
        description="The candidates, FP32 first."
    )
    rounds: int = Field(default=7, ge=3, le=15, description="Interleaved timing rounds.")
    budget_seconds: float = Field(default=20.0, gt=0, le=120, description="Wall-time bound of the whole benchmark.")


class EdgeDeviceSpec(ApiModel):
    """Desired state of the device, written by the operator."""

    models: Annotated[list[DesiredModel], common.list_map("name", 32)] = Field(
        default_factory=list, description="Models the device should serve, one per name."
    )
    benchmarks: Annotated[list[BenchmarkRequest], common.list_map("name", 8)] = Field(
        default_factory=list, description="Candidates to time on this device's hardware (compile-time selection)."
    )

    @field_validator("models")
    @classmethod
    def _unique(cls, models: list[DesiredModel]) -> list[DesiredModel]:
        common.require_unique([m.name for m in models], "model names")
        return models


class Capabilities(ApiModel):
    """What the device can run, detected by the agent at start."""

    arch: Annotated[str, Field(max_length=32)] | None = Field(default=None, description="CPU architecture.")
    cpu_flags: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list,
        max_length=64,
        description="Relevant instruction-set flags (avx2, avx512f, vnni...).",
    )
    cpu_count: int | None = Field(default=None, ge=0, description="Logical CPUs.")
    memory_bytes: int | None = Field(default=None, ge=0, description="Physical memory.")
    execution_providers: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=16, description="onnxruntime execution providers available."
    )
    onnxruntime_version: Annotated[str, Field(max_length=32)] | None = Field(default=None, description="ORT version.")
    hardware_class: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="Class from the usable CPU flags (x86-64-amx, x86-64-vnni, arm64-dotprod, ...)."
    )


class HealthSummary(ApiModel):
    """Aggregates of the last health window: numbers about traffic, never the traffic itself."""

    verdict: Verdict = Field(description="Pending until minSamples were seen.")
    samples: int = Field(default=0, ge=0, description="Inferences in the window.")
    errors: int = Field(default=0, ge=0, description="Failed inferences in the window.")
    non_finite: int = Field(default=0, ge=0, description="Inferences with NaN/Inf outputs.")
    latency_p50_ms: float | None = Field(default=None, ge=0, description="p50 latency, ms.")
    latency_p95_ms: float | None = Field(default=None, ge=0, description="p95 latency, ms.")
    reason: Annotated[str, Field(max_length=1024)] | None = Field(default=None, description="Why unhealthy.")
    evaluated_at: dt.datetime | None = Field(default=None, description="When the verdict was computed.")


class DownloadReport(ApiModel):
    """Where the last download of a model came from, and why the sources tried before it failed."""

    source: Annotated[str, Field(max_length=2048)] = Field(description="The mirror or origin that served it.")
    failures: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=8, description="Sources skipped before it (down, errors, bad bytes)."
    )


class ModelStatus(ApiModel):
    """Where one model stands on the device."""

    name: Name = Field(description="Model name.")
    state: ModelState = Field(description="Install state.")
    desired_digest: Annotated[str, Field(pattern=common.DIGEST)] | None = Field(
        default=None, description="Digest the device is converging to."
    )
    active_version: Annotated[str, Field(max_length=128)] | None = Field(default=None, description="Serving now.")
    active_digest: Annotated[str, Field(pattern=common.DIGEST)] | None = Field(default=None, description="Serving.")
    active_revision: Annotated[str, Field(max_length=256)] | None = Field(default=None, description="Serving.")
    previous_version: Annotated[str, Field(max_length=128)] | None = Field(default=None, description="Other slot.")
    previous_digest: Annotated[str, Field(pattern=common.DIGEST)] | None = Field(default=None, description="Other.")
    health: HealthSummary | None = Field(default=None, description="Last health verdict of the active model.")
    staged_digest: Annotated[str, Field(pattern=common.DIGEST)] | None = Field(
        default=None, description="Bundle verified in the inactive slot ahead of activation (prestage)."
    )
    download: DownloadReport | None = Field(default=None, description="Source of the last download.")
    last_transition_time: dt.datetime | None = Field(default=None, description="When state last changed.")
    message: Annotated[str, Field(max_length=4096)] | None = Field(default=None, description="Details.")


class BenchmarkTiming(ApiModel):
    """What one candidate measured on the device: batch-1 latency over all runs and the median of each round."""

    variant: Annotated[str, Field(min_length=1, max_length=128)] = Field(description="Candidate variant name.")
    digest: Annotated[str, Field(pattern=common.DIGEST)] = Field(description="The bundle that was timed.")
    p50_ms: float = Field(ge=0, description="Median latency, ms.")
    p95_ms: float = Field(ge=0, description="95th percentile latency, ms.")
    rounds_ms: Annotated[list[Annotated[float, Field(ge=0)]], Field(max_length=15)] = Field(
        default_factory=list, description="20th percentile of each interleaved round, ms (round i ran under one load)."
    )


class BenchmarkResult(ApiModel):
    """The outcome of one benchmark request (metadata only: timings, never inputs or outputs)."""

    name: Name = Field(description="The request's name.")
    revision: Annotated[str, Field(max_length=256)] = Field(description="The request's revision.")
    state: Literal["Running", "Done", "Failed"] = Field(description="Where the benchmark stands.")
    timings: Annotated[list[BenchmarkTiming], Field(max_length=4)] = Field(
        default_factory=list, description="One entry per candidate, in the order of the request."
    )
    message: Annotated[str, Field(max_length=1024)] | None = Field(default=None, description="Why it failed.")


class EdgeDeviceStatus(ApiModel):
    """Observed state, reported by the device's agent."""

    observed_generation: int | None = Field(default=None, description="Generation of spec last acted on.")
    agent_version: Annotated[str, Field(max_length=64)] | None = Field(default=None, description="Agent version.")
    capabilities: Capabilities | None = Field(default=None, description="Detected hardware and runtimes.")
    models: Annotated[list[ModelStatus], common.list_map("name", 32)] = Field(
        default_factory=list, description="Per-model state."
    )
    benchmarks: Annotated[list[BenchmarkResult], common.list_map("name", 8)] = Field(
        default_factory=list, description="Results of spec.benchmarks, by request name."
    )
    conditions: Annotated[list[Condition], common.list_map("type", 16)] = Field(
        default_factory=list,
        description=(
            "Ready (reason Converged once every desired model is served), Healthy; Reconciling/Stalled only when True."
        ),
    )


class EdgeDevice(ApiModel):
    """An edge device and the models it should run."""

    api_version: Literal["edgefleet.io/v1alpha1"] = Field(default="edgefleet.io/v1alpha1")
    kind: Literal["EdgeDevice"] = Field(default="EdgeDevice")
    metadata: ObjectMeta
    spec: EdgeDeviceSpec = Field(default_factory=EdgeDeviceSpec)
    status: EdgeDeviceStatus | None = None


__all__ = [
    "ArtifactRef",
    "BenchmarkCandidate",
    "BenchmarkRequest",
    "BenchmarkResult",
    "BenchmarkTiming",
    "Capabilities",
    "DesiredModel",
    "DesiredValidity",
    "DownloadReport",
    "EdgeDevice",
    "EdgeDeviceSpec",
    "EdgeDeviceStatus",
    "HealthSummary",
    "ModelStatus",
    "Name",
    "PrestagedArtifact",
]
