"""The compile stage: compile a spec for each target in a process pool, sign the bundles, publish them.

The compiler is named by ``module:function`` (``EDGEFLEET_COMPILER``, see :mod:`edgefleet.compiler.jobs`), so the
optimising compiler and the fp32 packager are interchangeable. It runs in a separate process: model optimisation is
CPU-bound for seconds to minutes and must never block the operator's event loop, and a crash in a native library takes
down a worker, not the operator. The worker returns an unsigned :class:`~edgefleet.compiler.jobs.CompiledModel`; this
stage signs it, once, where it publishes it to the artifact store, so the signing key never crosses into the worker.
Equal inputs and key give byte-identical bundles, so a bundle's digest names its content.

A compiler reports a model that cannot meet its accuracy budget as ``InvalidSpecError(reason=ACCURACY_GATE_FAILED)``
with the measured numbers in the message; it passes through unchanged, the deployment becomes ``Stalled`` and nothing
is rolled out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time

from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle, store
from edgefleet.api import edgedevice, modeldeployment
from edgefleet.compiler import jobs
from edgefleet.core import errors, oci, revisions

DEFAULT_COMPILER = jobs.OPTIMISING
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Published:
    """The outcome of compiling one revision: its template and what to record in status."""

    template: revisions.RevisionTemplate
    artifacts: tuple[modeldeployment.CompiledArtifact, ...]
    seconds: float


class CompileStage:
    """Compiles in ``pool``, signs with ``key``, publishes to ``artifacts``."""

    def __init__(
        self,
        pool: concurrent.futures.Executor,
        artifacts: store.ArtifactStore,
        key: ed25519.Ed25519PrivateKey,
        compiler: str = DEFAULT_COMPILER,
        timeout: float = 1800.0,
    ) -> None:
        self.pool = pool
        self.artifacts = artifacts
        self.key = key
        self.compiler = compiler
        self.timeout = timeout

    async def compile(self, spec: modeldeployment.ModelDeploymentSpec) -> Published:
        """Compile every target of ``spec`` and publish the signed bundles.

        Raises InvalidSpecError(reason=ACCURACY_GATE_FAILED) when a target cannot meet its budget, InvalidSpecError
        with another reason when the spec cannot be compiled as written, and TransientError for failures worth
        retrying (fetch errors, a crashed worker, a timeout).
        """
        began = time.monotonic()
        results = await self._compile_all(spec)
        revision = revisions.revision_of(spec)
        refs: dict[str, edgedevice.ArtifactRef] = {}
        recorded = []
        for target, result in zip(spec.compile.targets, results, strict=True):
            digest, data = bundle.build(result.manifest, result.model, self.key)
            stored = await self.artifacts.put(
                data,
                {
                    oci.ANNOTATION_NAME: spec.model.name,
                    oci.ANNOTATION_VERSION: spec.model.version,
                    oci.ANNOTATION_REVISION: revision,
                    "precision": result.precision,
                    "tag": oci.tag_for(revision, target.name),
                },
            )
            log.info("Published bundle target=%s variant=%s digest=%s", target.name, result.variant, digest)
            refs[target.name] = edgedevice.ArtifactRef(
                uri=stored.uri, digest=digest, size_bytes=len(data), precision=result.precision
            )
            recorded.append(
                modeldeployment.CompiledArtifact(
                    target=target.name,
                    digest=digest,
                    uri=stored.uri,
                    size_bytes=len(data),
                    precision=result.precision,
                    variant=result.variant,
                    accuracy_delta=result.accuracy_delta,
                    speedup=result.speedup,
                )
            )
        return Published(revisions.template_for(spec, refs), tuple(recorded), time.monotonic() - began)

    async def _compile_all(self, spec: modeldeployment.ModelDeploymentSpec) -> list[jobs.CompiledModel]:
        """One worker job per target, all at once; every failure becomes a core error."""
        loop = asyncio.get_running_loop()
        wire = spec.to_wire()
        work = [
            loop.run_in_executor(self.pool, jobs.run, self.compiler, jobs.CompileRequest(wire, t.name))
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
