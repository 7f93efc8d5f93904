"""The compile stage: compile a spec for each target in a process pool, sign the bundles, publish them.

The compiler itself sits behind :class:`~edgefleet.core.compiling.Compiler`, a plain callable from a ``CompileRequest``
to a ``CompileResult`` named by ``module:function`` (``EDGEFLEET_COMPILER``), so the optimising compiler and the fp32
packager (:mod:`edgefleet.adapters.passthrough`) are interchangeable. It runs in a separate process: model optimisation
is CPU-bound for seconds to minutes and must never block the operator's event loop, and a crash in a native library
takes down a worker, not the operator. Signing stays in the operator process, so the key never crosses into the worker.

A compiler reports a model that cannot meet its accuracy budget by raising ``AccuracyGateError`` with the measured
numbers in the message; the deployment then becomes ``Stalled`` and nothing is rolled out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time

from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle, compilers, store
from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import compiling, errors, revisions

DEFAULT_COMPILER = "edgefleet.adapters.compilers:optimise"


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

        Raises InvalidSpecError(reason="AccuracyGateFailed") when a target cannot meet its budget and TransientError for
        failures worth retrying (fetch errors, a crashed worker, a timeout).
        """
        began = time.monotonic()
        loop = asyncio.get_running_loop()
        wire = spec.to_wire()
        jobs = [
            loop.run_in_executor(
                self.pool, compilers.run_in_worker, self.compiler, compiling.CompileRequest(wire, t.name)
            )
            for t in spec.compile.targets
        ]
        try:
            results = await asyncio.wait_for(asyncio.gather(*jobs), self.timeout)
        except compiling.AccuracyGateError as exc:
            raise errors.InvalidSpecError(str(exc), reason="AccuracyGateFailed") from exc
        except errors.EdgefleetError:
            raise
        except TimeoutError as exc:
            raise errors.TransientError(f"compiling took longer than {self.timeout:.0f}s", delay=60.0) from exc
        except concurrent.futures.process.BrokenProcessPool as exc:
            raise errors.TransientError(f"the compiler process died ({exc}); retrying", delay=30.0) from exc
        except Exception as exc:
            raise errors.TransientError(f"compiler failed: {type(exc).__name__}: {exc}", delay=60.0) from exc
        refs: dict[str, edgedevice.ArtifactRef] = {}
        recorded = []
        for target, result in zip(spec.compile.targets, results, strict=True):
            digest, data = bundle.build(result.manifest, result.model, self.key)
            stored = await self.artifacts.put(data)
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


__all__ = [
    "DEFAULT_COMPILER",
    "CompileStage",
    "Published",
]
