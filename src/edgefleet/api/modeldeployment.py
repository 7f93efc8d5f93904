"""``ModelDeployment``: which model version a fleet should run, how to compile it, and how to roll it out.

A ModelDeployment is what a fleet team commits to Git. The operator compiles ``spec.model`` once per
``spec.compile.targets`` entry (one per hardware class), then walks ``spec.rollout.steps`` over the EdgeDevices that
``spec.selector`` picks, judging each step by the health verdicts the devices compute against ``spec.health``.

Worked example of the step rules (mirrored by CEL rules in the CRD)::

    steps: [{setWeight: 10}, {analysis: {durationSeconds: 60, minSamples: 200}},
            {setWeight: 50}, {pause: {durationSeconds: 300}}, {setWeight: 100}]

is valid: every step sets exactly one of setWeight/pause/analysis, the weights 10, 50, 100 strictly increase and
the last one is 100.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, JsonValue, field_validator, model_validator

from edgefleet.api import addresses, common
from edgefleet.api.common import ApiModel, Condition, LabelSelector, Name, ObjectMeta

KIND = "ModelDeployment"
PLURAL = "modeldeployments"

TaskKind = Literal["classification", "detection", "regression", "anomaly-score", "other"]
Precision = Literal["auto", "int8", "fp16", "fp32"]
Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
Phase = Literal["Pending", "Compiling", "Progressing", "Paused", "Healthy", "Degraded", "RolledBack", "Stalled"]

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# Model and dataset sources: fetched by the operator, so only network schemes it knows how to fetch safely.
SOURCE_URI = r"^(https?|oci)://[^\s]+$"
# The CEL mirror of check_fetchable_uri's host rules (edgefleet.api.addresses: one policy for pydantic, CEL, fetchers).
NO_METADATA_HOST_RULE: dict[str, JsonValue] = dict(addresses.CEL_RULE)


class ModelSource(ApiModel):
    """The source model: an FP32 ONNX file identified by URI and pinned by digest."""

    name: Name = Field(description="Model name; one device runs at most one version of each name.")
    version: Annotated[str, Field(max_length=128, pattern=common.SEMVER)] = Field(
        description="Semantic version of the model, e.g. 1.4.0."
    )
    uri: Annotated[str, Field(max_length=2048, pattern=SOURCE_URI)] = Field(
        description=(
            "Where the operator fetches the ONNX file: http, https, or an OCI artifact by digest "
            "(oci://host/repository@sha256:<manifest>; its one .onnx layer is the model)."
        ),
        json_schema_extra={"x-kubernetes-validations": [NO_METADATA_HOST_RULE]},
    )
    sha256: Annotated[str, Field(pattern=common.SHA256_HEX)] = Field(
        description="Lower-case hex sha256 of the ONNX file; the fetch is rejected when it differs."
    )
    task: TaskKind = Field(description="What the model outputs; selects the accuracy metrics of the gate.")

    @field_validator("uri")
    @classmethod
    def _no_link_local(cls, uri: str) -> str:
        return check_oci_reference(check_fetchable_uri(uri))


def check_fetchable_uri(uri: str) -> str:
    """Reject URIs whose host is not canonical, is never fetched, or that carry credentials (pure); see
    :func:`edgefleet.api.addresses.check_uri`, whose rules the CRD's CEL rule mirrors.

    >>> check_fetchable_uri("https://models.example.com/a.onnx")
    'https://models.example.com/a.onnx'
    """
    addresses.check_uri(uri)
    if ".." in uri.split("?", 1)[0]:
        raise ValueError("must not contain '..' path segments")
    return uri


def check_oci_reference(uri: str) -> str:
    """An ``oci://`` URI must pin a digest: ``oci://host[:port]/repository@sha256:<64 hex>`` (pure; other schemes
    pass through).

    >>> check_oci_reference("oci://registry.example/models/weld@sha256:" + "a" * 64)[:29]
    'oci://registry.example/models'
    >>> check_oci_reference("oci://registry.example/models/weld:1.0")
    Traceback (most recent call last):
    ...
    ValueError: must pin a manifest digest: oci://host[:port]/repository@sha256:<64 hex>, not a tag
    """
    if not uri.startswith("oci://"):
        return uri
    host = r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
    component = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
    if not re.fullmatch(rf"oci://({host})/{component}(/{component})*@sha256:[a-f0-9]{{64}}", uri):
        raise ValueError("must pin a manifest digest: oci://host[:port]/repository@sha256:<64 hex>, not a tag")
    return uri


class DatasetRef(ApiModel):
    """A ``.npz`` dataset (one array per model input, optional ``labels``), pinned by digest."""

    uri: Annotated[str, Field(max_length=2048, pattern=SOURCE_URI)] = Field(
        description="Where to fetch the .npz.",
        json_schema_extra={"x-kubernetes-validations": [NO_METADATA_HOST_RULE]},
    )
    sha256: Annotated[str, Field(pattern=common.SHA256_HEX)] = Field(description="Lower-case hex sha256 of the file.")

    @field_validator("uri")
    @classmethod
    def _no_link_local(cls, uri: str) -> str:
        return check_oci_reference(check_fetchable_uri(uri))


class QuantizationOptions(ApiModel):
    """Knobs for INT8. Leave unset to let the compiler search them."""

    method: Literal["auto", "dynamic", "static"] = Field(default="auto", description="Weight-only or calibrated.")
    format: Literal["auto", "QDQ", "QOperator"] = Field(default="auto", description="Graph format of quantized ops.")
    per_channel: bool | None = Field(default=None, description="Per-channel weight scales (needs opset >= 13).")
    calibration_method: Literal["auto", "MinMax", "Entropy", "Percentile"] = Field(
        default="auto", description="How activation ranges are calibrated for static quantization."
    )
    reduce_range: bool | None = Field(default=None, description="7-bit weights, for CPUs without VNNI.")
    exclude_nodes: list[Annotated[str, Field(max_length=256)]] | None = Field(
        default=None, max_length=256, description="Node names always kept in float."
    )


class PruningOptions(ApiModel):
    """Unstructured magnitude pruning of weights (no fine-tuning, so the accuracy gate decides)."""

    sparsity: float = Field(ge=0.0, le=0.95, description="Share of weights set to zero, 0 to 0.95.")


class AccuracyBudget(ApiModel):
    """How far a compiled variant may drift from the FP32 source on the evaluation set."""

    max_accuracy_drop: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description=(
            "Classification: allowed drop of labelled accuracy and of top-1 agreement with FP32 (0.01 = 1 point)."
        ),
    )
    max_relative_error: float = Field(
        default=0.01,
        ge=0.0,
        le=10.0,
        description="Regression, scores and other outputs: allowed mean relative error against FP32.",
    )


class CompileTarget(ApiModel):
    """One hardware class: which devices it covers and how to compile for them."""

    name: Name = Field(description="Hardware class name, e.g. x86-avx2 or arm64-a72.")
    selector: LabelSelector = Field(
        default_factory=LabelSelector, description="Devices (among spec.selector) that get this variant."
    )
    precision: Precision = Field(default="auto", description="auto measures candidates and picks the best in budget.")
    optimize_for: Literal["latency", "size"] = Field(
        default="latency",
        description="latency: never slower than FP32; size: smallest variant within budget.",
    )
    quantization: QuantizationOptions | None = Field(default=None, description="INT8 options.")
    pruning: PruningOptions | None = Field(default=None, description="Magnitude pruning before quantization.")
    calibration: DatasetRef | None = Field(default=None, description="Calibration set, needed for static INT8.")
    evaluation: DatasetRef = Field(description="Evaluation set for the accuracy gate.")
    accuracy_budget: AccuracyBudget = Field(default_factory=AccuracyBudget, description="The accuracy gate.")


class CompileSpec(ApiModel):
    """Compilation targets, one per hardware class."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.targets.all(t, self.targets.exists_one(u, u.name == t.name))",
                    "message": "compile target names must be unique",
                }
            ]
        }
    )

    # A list-map keyed by name: server-side apply merges entries by target name, so a client-side apply followed
    # by a server-side one (or two field managers owning different targets) does not conflict on the whole list.
    targets: Annotated[list[CompileTarget], common.list_map("name", 16)] = Field(
        min_length=1, description="One entry per hardware class, keyed by name."
    )

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[CompileTarget]) -> list[CompileTarget]:
        common.require_unique([t.name for t in targets], "compile target names")
        return targets


class PauseStep(ApiModel):
    """Hold the rollout. Without durationSeconds it waits for `edgefleet rollout promote`."""

    duration_seconds: int | None = Field(default=None, ge=0, le=30 * 24 * 3600, description="How long to wait.")


class AnalysisStep(ApiModel):
    """Judge the updated devices' health verdicts before going on."""

    duration_seconds: int = Field(default=60, ge=0, le=7 * 24 * 3600, description="Observation window.")
    min_samples: int = Field(
        default=100,
        ge=0,
        le=100_000_000,
        description="Inference samples the updated devices must report in total.",
    )


class RolloutStep(ApiModel):
    """Exactly one of setWeight, pause or analysis."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",
                    "message": "each step sets exactly one of setWeight, pause or analysis",
                }
            ]
        }
    )

    set_weight: int | None = Field(default=None, ge=1, le=100, description="Percent of targeted devices updated.")
    pause: PauseStep | None = Field(default=None, description="Wait, for a time or until promoted.")
    analysis: AnalysisStep | None = Field(default=None, description="Wait for health evidence.")

    @model_validator(mode="after")
    def _exactly_one(self) -> RolloutStep:
        if sum(x is not None for x in (self.set_weight, self.pause, self.analysis)) != 1:
            raise ValueError("each step sets exactly one of setWeight, pause or analysis")
        return self


class MaintenanceWindow(ApiModel):
    """A weekly window in which devices may be switched; outside all windows, updates wait."""

    days: list[Weekday] = Field(min_length=1, max_length=7, description="Days the window opens.")
    start: Annotated[str, Field(pattern=HHMM)] = Field(description="Opening time, HH:MM, 24h.")
    end: Annotated[str, Field(pattern=HHMM)] = Field(description="Closing time, HH:MM; before start means overnight.")
    time_zone: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z_+\-/0-9]+$")] = Field(
        default="UTC", description="IANA time zone name."
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r}; use an IANA name like Europe/Berlin") from exc
        return zone

    @model_validator(mode="after")
    def _not_empty(self) -> MaintenanceWindow:
        if self.start == self.end:
            raise ValueError("start and end must differ (an empty window never opens)")
        return self


_STEPS_RULE = (
    "self.filter(s, has(s.setWeight)).size() > 0"
    " && self.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()"
    " && self.filter(s, has(s.setWeight)).all(s, self.filter(t, has(t.setWeight) && t.setWeight == s.setWeight)"
    ".size() == 1)"
    " && self.filter(s, has(s.setWeight)).map(s, s.setWeight)[self.filter(s, has(s.setWeight)).size() - 1] == 100"
)


class PrestageSpec(ApiModel):
    """Download ahead of activation: devices that a later step will switch download and verify the canary into their
    inactive slot early, while activation still follows the steps, maintenance windows and ``maxUnavailable``."""

    max_concurrent_per_site: int = Field(
        default=10,
        ge=1,
        le=10_000,
        description=(
            "Devices of one site (label edgefleet.io/site) downloading ahead at once; a site stages one device first, "
            "so its cache holds the artifact before the others ask for it."
        ),
    )
    max_bytes_per_second_per_site: int | None = Field(
        default=None, ge=1, description="Bandwidth budget of one site's downloads ahead, shared by its stagers."
    )


class RolloutSpec(ApiModel):
    """The staged rollout policy."""

    steps: Annotated[
        list[RolloutStep],
        Field(
            min_length=1,
            max_length=32,
            json_schema_extra={
                "x-kubernetes-validations": [
                    {
                        "rule": _STEPS_RULE,
                        "message": "setWeight values must strictly increase and the last one must be 100",
                    }
                ]
            },
        ),
    ] = Field(description="Ordered steps; setWeight values strictly increase and end at 100.")
    success_threshold: float = Field(
        default=0.8, ge=0.0, le=1.0, description="Share of updated devices that must report healthy."
    )
    max_unavailable: Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=r"^(100|[1-9]?[0-9])%$")] = Field(
        default="25%",
        description="Devices that may be switching at once, as a count or a percentage.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",
                    "message": "must be a count >= 0 or a percentage from 0% to 100%",
                }
            ]
        },
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=10,
        le=7 * 24 * 3600,
        description="A step with no progress for this long fails the rollout.",
    )
    maintenance_windows: list[MaintenanceWindow] | None = Field(
        default=None,
        max_length=32,
        description="When set, devices are only switched inside one of these windows.",
    )
    max_unreachable: Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=r"^(100|[1-9]?[0-9])%$")] = Field(
        default="20%",
        description=(
            "Above this many unreachable targeted devices (a count or a percentage) the rollout holds until enough "
            "return; percentages round down."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",
                    "message": "must be a count >= 0 or a percentage from 0% to 100%",
                }
            ]
        },
    )
    pickup_timeout_seconds: int = Field(
        default=120,
        ge=5,
        le=7 * 24 * 3600,
        description=(
            "A device that reports nothing for a change it was given within this long counts as unreachable (not "
            "failed); another reachable device takes its place."
        ),
    )
    desired_validity_seconds: int = Field(
        default=12 * 3600,
        ge=10,
        le=30 * 24 * 3600,
        description=(
            "How long a desired entry stays valid without a refresh; the operator refreshes entries of reachable "
            "devices before half of it has passed, and a device never begins an install from an expired entry."
        ),
    )
    prestage: PrestageSpec | None = Field(
        default=None, description="Download the canary into devices' inactive slots before their step switches them."
    )

    @field_validator("steps")
    @classmethod
    def _weights(cls, steps: list[RolloutStep]) -> list[RolloutStep]:
        weights = [s.set_weight for s in steps if s.set_weight is not None]
        if not weights:
            raise ValueError("at least one setWeight step is needed, and the last must be 100")
        for i in range(1, len(weights)):
            if weights[i] <= weights[i - 1]:
                raise ValueError(f"setWeight values must strictly increase ({weights[i]} after {weights[i - 1]})")
        if weights[-1] != 100:
            raise ValueError(f"the last setWeight must be 100 (got {weights[-1]})")
        return steps


class HealthSpec(ApiModel):
    """Thresholds each device evaluates locally over live traffic; breaking one rolls the device back."""

    latency_p95_ms: float = Field(default=50.0, gt=0, le=600_000, description="Maximum p95 inference latency, ms.")
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Maximum share of failed inferences.")
    min_samples: int = Field(default=50, ge=1, le=10_000_000, description="Samples before a verdict is given.")
    window_seconds: int = Field(default=60, ge=1, le=86_400, description="Sliding window of the evaluation.")
    fail_on_non_finite: bool = Field(default=True, description="Any NaN/Inf output makes the model unhealthy.")


class RollbackSpec(ApiModel):
    """What happens when a rollout fails."""

    automatic: bool = Field(default=True, description="Return updated devices to stable without a person.")


class ModelDeploymentSpec(ApiModel):
    """Desired model version, compilation and rollout policy for a set of devices."""

    model: ModelSource = Field(description="The source model.")
    compile: CompileSpec = Field(description="How to compile the model per hardware class.")
    selector: LabelSelector = Field(description="EdgeDevices in this namespace that run the model.")
    rollout: RolloutSpec = Field(description="Staged rollout policy.")
    health: HealthSpec = Field(default_factory=HealthSpec, description="Device-side health thresholds.")
    rollback: RollbackSpec = Field(default_factory=RollbackSpec, description="Rollback policy.")
    paused: bool = Field(default=False, description="Stop progressing (devices keep their current model).")


class DeviceCounts(ApiModel):
    """How many targeted devices are in each state."""

    targeted: int = Field(default=0, ge=0, description="Devices the selector matches.")
    updated: int = Field(
        default=0,
        ge=0,
        description=(
            "Devices whose desired state is devices.revision: the canary while a rollout runs, else the revision "
            "the spec asks for (after an abort, the aborted one: 0 once every device is back on stable)."
        ),
    )
    healthy: int = Field(default=0, ge=0, description="Updated devices reporting a healthy verdict.")
    failed: int = Field(default=0, ge=0, description="Updated devices reporting failure or rollback.")
    staged: int = Field(
        default=0, ge=0, description="Devices not yet updated that hold the canary verified in their inactive slot."
    )
    revision: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="The revision that updated, healthy and failed count."
    )
    stable: int = Field(default=0, ge=0, description="Targeted devices whose desired state is the stable revision.")


class UnreachableDevice(ApiModel):
    """A targeted device the operator cannot count on now."""

    name: Name = Field(description="The EdgeDevice.")
    reason: Literal["LeaseExpired", "NotPickedUp"] = Field(
        description="LeaseExpired: its Lease was not renewed within its duration; NotPickedUp: it reported nothing "
        "for the change it was given within rollout.pickupTimeoutSeconds."
    )
    since: dt.datetime | None = Field(default=None, description="When it became unreachable.")


class Reachability(ApiModel):
    """Which targeted devices can be reached, and whether that holds the rollout."""

    reachable: int = Field(default=0, ge=0, description="Targeted devices the rollout can count on.")
    unreachable: int = Field(default=0, ge=0, description="Targeted devices that are unreachable.")
    devices: list[UnreachableDevice] = Field(
        default_factory=list,
        max_length=20,
        description="The unreachable devices, longest unreachable first (20 at most).",
    )
    held_since: dt.datetime | None = Field(
        default=None, description="Since when the rollout is held because more than maxUnreachable are unreachable."
    )
    recovering_since: dt.datetime | None = Field(
        default=None,
        description="While held: since when at most maxUnreachable are unreachable (it resumes after 60 s in a row).",
    )


class CompiledArtifact(ApiModel):
    """One compiled, signed variant of the model."""

    target: Name = Field(description="Compile target (hardware class) name.")
    digest: Annotated[str, Field(pattern=common.DIGEST)] = Field(description="sha256 digest of the bundle.")
    uri: Annotated[str, Field(max_length=2048)] = Field(description="Where devices download the bundle.")
    size_bytes: int = Field(ge=0, description="Bundle size in bytes.")
    precision: Literal["int8", "fp16", "fp32"] = Field(description="Chosen precision.")
    variant: Annotated[str, Field(max_length=128)] | None = Field(default=None, description="Chosen variant name.")
    accuracy_delta: float | None = Field(default=None, description="Measured accuracy drop against FP32.")
    speedup: float | None = Field(default=None, description="Measured latency speedup against FP32.")
    selected_by: Annotated[str, Field(max_length=1024)] | None = Field(
        default=None,
        description="Whose timings chose the variant: the compile host, or benchmarks of devices of that class.",
    )


class CompileFailure(ApiModel):
    """Why the compile of ``status.lastAttemptedRevision`` failed: that spec is not compiled again until it changes."""

    generation: int = Field(ge=0, description="The metadata.generation whose compile failed.")
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=common.CONDITION_REASON)] = Field(
        description="CamelCase reason, e.g. AccuracyGateFailed or SourceDigestMismatch."
    )
    message: Annotated[str, Field(max_length=32768)] = Field(
        default="", description="What failed, with the measured numbers."
    )


class RolloutFailure(ApiModel):
    """The last failed rollout: kept while its revision is aborted (RolledBack) or failing in place (Degraded)."""

    revision: Annotated[str, Field(max_length=256)] = Field(description="The revision that failed.")
    message: Annotated[str, Field(max_length=32768)] = Field(
        default="", description="What happened, with the evidence (devices, verdicts, samples)."
    )


WriteBackOutcome = Literal["Pushed", "AlreadyPushed", "Failed"]


class RollbackWriteBack(ApiModel):
    """The branch (and pull request) that reverts the spec in Git after an automatic abort, one per aborted revision."""

    revision: Annotated[str, Field(max_length=256)] = Field(description="The aborted revision this revert is for.")
    outcome: WriteBackOutcome = Field(description="Pushed, AlreadyPushed (the branch existed) or Failed.")
    branch: Annotated[str, Field(max_length=256)] | None = Field(default=None, description="The pushed branch.")
    commit: Annotated[str, Field(max_length=64)] | None = Field(default=None, description="The revert commit.")
    pull_request: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="URL of the pull request opened on the branch (with a forge token)."
    )
    message: Annotated[str, Field(max_length=4096)] = Field(default="", description="What was done, or what failed.")
    attempted_at: dt.datetime | None = Field(default=None, description="When it was written (or last tried).")


class ModelDeploymentStatus(ApiModel):
    """Observed state of a ModelDeployment, written by the operator."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status describes (set when a reconcile completes)."
    )
    conditions: Annotated[list[Condition], common.list_map("type", 16)] = Field(
        default_factory=list, description="Ready always; Reconciling/Stalled only when True."
    )
    phase: Phase | None = Field(default=None, description="One-word summary for kubectl get.")
    stable_revision: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="Revision every device falls back to."
    )
    canary_revision: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="Revision being rolled out."
    )
    aborted_revision: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="Revision that failed and is not retried until the spec changes."
    )
    current_step_index: int | None = Field(
        default=None, ge=0, description="0-based index into spec.rollout.steps (the operator's memory)."
    )
    current_step: int | None = Field(
        default=None,
        ge=1,
        description='1-based number of the current step, as conditions and the CLI say it ("Step 3/6").',
    )
    step_started_at: dt.datetime | None = Field(default=None, description="When the current step began.")
    devices: DeviceCounts = Field(default_factory=DeviceCounts, description="Device counts.")
    reachability: Reachability = Field(
        default_factory=Reachability, description="Reachable and unreachable targeted devices."
    )
    artifacts: list[CompiledArtifact] = Field(
        default_factory=list,
        max_length=16,
        description="Compiled variants of the canary (or stable) revision.",
    )
    last_attempted_revision: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="Revision the operator last started to compile."
    )
    compile_failure: CompileFailure | None = Field(
        default=None, description="Why the compile of lastAttemptedRevision failed, for this generation of the spec."
    )
    rollout_failure: RolloutFailure | None = Field(
        default=None, description="The failed rollout of abortedRevision, or of the canary while Degraded."
    )
    last_error: Annotated[str, Field(max_length=32768)] | None = Field(
        default=None, description="Last error the operator met."
    )
    last_retry: Annotated[str, Field(max_length=512)] | None = Field(
        default=None, description="The edgefleet.io/retry value last honoured (each value retries once)."
    )
    rollback_write_back: RollbackWriteBack | None = Field(
        default=None, description="The revert of an automatic abort written back to the fleet's Git repository."
    )


class ModelDeployment(ApiModel):
    """A model version and its rollout policy over a fleet of EdgeDevices."""

    api_version: Literal["edgefleet.io/v1alpha1"] = Field(default="edgefleet.io/v1alpha1")
    kind: Literal["ModelDeployment"] = Field(default="ModelDeployment")
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None
