"""The compile stage: compile a spec for each target in a process pool, sign the bundles, publish them.

The compiler is named by ``module:function`` (``EDGEFLEET_COMPILER``, see :mod:`edgefleet.compiler.jobs`), so the
optimising compiler and the fp32 packager are interchangeable. It runs in a separate process: model optimisation is
CPU-bound for seconds to minutes and must never block the operator's event loop, and a crash in a native library takes
down a worker, not the operator. The worker returns an unsigned :class:`~edgefleet.compiler.jobs.CompiledModel`; this
stage signs it, once, where it publishes it to the artifact store, so the signing key never crosses into the worker.
Equal inputs and key give byte-identical bundles, so a bundle's digest names its content.

A compiler reports a model that cannot meet its accuracy budget as ``InvalidSpecError(reason=ACCURACY_GATE_FAILED)``
with the measured numbers in the message; it passes through unchanged, the deployment becomes ``Stalled`` and nothing
is rolled out. The same holds for a compile that would exceed the memory budget (``CompileMemoryExceeded``: the worker
stops it, see :func:`edgefleet.compiler.jobs.run`) and for a bundle a device would reject (``BundleRejected``:
:func:`edgefleet.adapters.bundle.build` opens every bundle before it is published).

Hardware classes: the compile host's timings decide only for targets whose devices report the host's class (or no
class yet). For another class the compiler returns FP32 with the in-budget alternatives; this stage publishes all of
them, asks canary devices of the class to time them (:mod:`edgefleet.operator.devicebench`), and chooses with
:func:`edgefleet.compiler.selection.choose` from the devices' numbers, keeping FP32 when none arrive in time.
``status.artifacts[].selectedBy`` says which happened.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle, store
from edgefleet.api import edgedevice, modeldeployment
from edgefleet.compiler import jobs, memory, selection
from edgefleet.core import errors, oci, revisions
from edgefleet.operator import devicebench

DEFAULT_COMPILER = jobs.OPTIMISING
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Published:
    """The outcome of compiling one revision: its template and what to record in status."""

    template: revisions.RevisionTemplate
    artifacts: tuple[modeldeployment.CompiledArtifact, ...]
    seconds: float


class CompileStage:
    """Compiles in ``pool``, signs with ``key``, publishes to ``artifacts``; asks devices through ``benchmarks``."""

    def __init__(
        self,
        pool: concurrent.futures.Executor,
        artifacts: store.ArtifactStore,
        key: ed25519.Ed25519PrivateKey,
        compiler: str = DEFAULT_COMPILER,
        timeout: float = 1800.0,
        memory_budget_bytes: int = memory.DEFAULT_BUDGET_BYTES,
        benchmarks: devicebench.DeviceBenchmarks | None = None,
    ) -> None:
        self.pool = pool
        self.artifacts = artifacts
        self.key = key
        self.compiler = compiler
        self.timeout = timeout
        self.memory_budget_bytes = memory_budget_bytes
        self.benchmarks = benchmarks

    async def compile(
        self, spec: modeldeployment.ModelDeploymentSpec, owner: tuple[str, str] | None = None
    ) -> Published:
        """Compile every target of ``spec`` and publish the signed bundles.

        ``owner`` is the deployment's (namespace, name): with it, targets whose devices are of another hardware class
        than the compile host are chosen from device benchmarks. Raises InvalidSpecError(reason=ACCURACY_GATE_FAILED)
        when a target cannot meet its budget, InvalidSpecError with another reason when the spec cannot be compiled
        as written, and TransientError for failures worth retrying (fetch errors, a crashed worker, a timeout).
        """
        began = time.monotonic()
        classes: dict[str, tuple[str, ...]] = {}
        if self.benchmarks is not None and owner is not None:
            classes = await self.benchmarks.classes(owner[0], spec)
        results = await self._compile_all(spec, classes)
        revision = revisions.revision_of(spec)
        refs: dict[str, edgedevice.ArtifactRef] = {}
        recorded = []
        for target, result in zip(spec.compile.targets, results, strict=True):
            if result.alternatives:
                ref, artifact = await self._choose_on_devices(spec, target, result, revision, owner)
            else:
                ref, artifact = await self._publish(
                    spec, revision, target, result.selected, result.model, result.manifest, result.golden
                )
                artifact = artifact.model_copy(update={"selected_by": "timed on the compile host"})
            refs[target.name] = ref
            recorded.append(artifact)
        return Published(revisions.template_for(spec, refs), tuple(recorded), time.monotonic() - began)

    async def _publish(
        self,
        spec: modeldeployment.ModelDeploymentSpec,
        revision: str,
        target: modeldeployment.CompileTarget,
        candidate: selection.Candidate,
        model: bytes,
        manifest: Any,
        golden: bytes | None,
        task: str = "",
        alternative: bool = False,
    ) -> tuple[edgedevice.ArtifactRef, modeldeployment.CompiledArtifact]:
        """Seal, check and store one candidate's bundle, labelled with the model's name, version and revision (an OCI
        registry keeps them as annotations, and tags it ``<revision>-<target>``; an alternative offered to the
        devices' benchmark gets ``<revision>-<target>-<variant>``)."""
        try:
            digest, data = bundle.build(manifest, model, self.key, golden)
        except bundle.BundleError as exc:
            raise errors.InvalidSpecError(
                f"compile target {target.name!r}: {exc}", errors.Reason.BUNDLE_REJECTED
            ) from exc
        stored = await self.artifacts.put(
            data,
            {
                oci.ANNOTATION_NAME: spec.model.name,
                oci.ANNOTATION_VERSION: spec.model.version,
                oci.ANNOTATION_REVISION: revision,
                "precision": candidate.precision,
                "tag": oci.tag_for(revision, f"{target.name}-{candidate.name}" if alternative else target.name),
            },
        )
        log.info("Published bundle target=%s variant=%s digest=%s", target.name, candidate.name, digest)
        ref = edgedevice.ArtifactRef(uri=stored.uri, digest=digest, size_bytes=len(data), precision=candidate.precision)
        artifact = modeldeployment.CompiledArtifact(
            target=target.name,
            digest=digest,
            uri=stored.uri,
            size_bytes=len(data),
            precision=candidate.precision,
            variant=candidate.name,
            accuracy_delta=selection.severity(task or str(manifest["model"]["task"]), candidate.fidelity),
        )
        return ref, artifact

    async def _choose_on_devices(
        self,
        spec: modeldeployment.ModelDeploymentSpec,
        target: modeldeployment.CompileTarget,
        result: jobs.CompiledModel,
        revision: str,
        owner: tuple[str, str] | None,
    ) -> tuple[edgedevice.ArtifactRef, modeldeployment.CompiledArtifact]:
        """Publish FP32 and the alternatives, time them on devices of the class, keep the one the rule picks."""
        task = spec.model.task
        offered = [(result.selected, result.model, result.manifest, result.golden)] + [
            (a.candidate, a.model, a.manifest, a.golden) for a in result.alternatives
        ]
        published = {}
        for i, (candidate, model, manifest, golden) in enumerate(offered):
            published[candidate.name] = await self._publish(
                spec, revision, target, candidate, model, manifest, golden, task=task, alternative=i > 0
            )
        cls = result.hardware_class or "unknown"
        measured = None
        if self.benchmarks is not None and owner is not None:
            measured = await self.benchmarks.measure(
                owner[0],
                owner[1],
                spec,
                target.name,
                revision,
                [edgedevice.BenchmarkCandidate(variant=name, artifact=ref) for name, (ref, _) in published.items()],
            )
        pooled = selection.pool(list(measured.timings.values())) if measured is not None else {}
        fp32 = result.selected
        if fp32.name not in pooled:
            why = measured.describe(cls) if measured is not None else f"no devices of class {cls} to ask"
            ref, artifact = published[fp32.name]
            note = f"FP32: no benchmarks from devices of class {cls} ({why})"
            return ref, artifact.model_copy(update={"selected_by": note[:1024]})
        timed = [dataclasses.replace(c, latency=pooled.get(c.name)) for c in result.candidates if c.name in published]
        budget = selection.Budget(target.accuracy_budget.max_accuracy_drop, target.accuracy_budget.max_relative_error)
        choice = selection.choose(task, timed, budget, target.precision, target.optimize_for)
        chosen = choice.selected or next(c for c in timed if c.name == fp32.name)
        ref, artifact = published[chosen.name]
        reference = next(c for c in timed if c.name == fp32.name)
        speedup = None
        if chosen.latency is not None and reference.latency is not None:
            ratio, _ = selection.speed_ratio(chosen.latency, reference.latency)
            speedup = 1 / ratio if ratio > 0 else None
        assert measured is not None
        note = f"{measured.describe(cls)}; {chosen.name}: {choice.reason}"
        log.info("Chose variant from device benchmarks target=%s variant=%s", target.name, chosen.name)
        return ref, artifact.model_copy(update={"selected_by": note[:1024], "speedup": speedup})

    async def _compile_all(
        self, spec: modeldeployment.ModelDeploymentSpec, classes: Mapping[str, tuple[str, ...]]
    ) -> list[jobs.CompiledModel]:
        """One worker job per target, all at once; every failure becomes a core error."""
        loop = asyncio.get_running_loop()
        wire = spec.to_wire()
        work = [
            loop.run_in_executor(
                self.pool,
                jobs.run,
                self.compiler,
                jobs.CompileRequest(wire, t.name, self.memory_budget_bytes, classes.get(t.name, ())),
            )
            for t in spec.compile.targets
        ]
        try:
            return list(await asyncio.wait_for(asyncio.gather(*work), self.timeout))
        except errors.EdgefleetError:
            raise
        except TimeoutError as exc:
            raise errors.TransientError(f"compiling took longer than {self.timeout:.0f}s", delay=60.0) from exc
        except concurrent.futures.process.BrokenProcessPool as exc:
            raise errors.TransientError(f"the compiler process died ({exc}); retrying", delay=30.0) from exc
        except Exception as exc:
            raise errors.TransientError(f"compiler failed: {type(exc).__name__}: {exc}", delay=60.0) from exc


__all__ = [
    "DEFAULT_COMPILER",
    "CompileStage",
    "Published",
]
