"""Which devices time a compile target's candidates, and what they reported. Pure.

A compile target covers the devices its selector matches (the first target that matches a device is its target, as
the compiler assigns them). Their agents report a hardware class (``status.capabilities.hardwareClass``,
:mod:`edgefleet.core.hwclass`). When the compile host is not of that class, the operator asks a few of them (the
first in canary order, :func:`edgefleet.core.canary.order`, that report the class) to time the in-budget candidates
(``spec.benchmarks``) and chooses from their numbers (:func:`edgefleet.compiler.selection.pool`).

Worked example: target ``edge`` matches devices ``a`` (class ``x86-64-vnni``), ``b`` (``x86-64-vnni``) and ``c``
(no status yet); :func:`classes` is ``("x86-64-vnni",)`` and, with ``per_class=1``, :func:`pick` asks the first of
``a``/``b`` in canary order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edgefleet.api import edgedevice, modeldeployment
from edgefleet.core import canary

Timing = tuple[float, float, tuple[float, ...]]


def request_name(deployment: str, target: str) -> str:
    """The ``spec.benchmarks[].name`` of one deployment's target (a DNS label, at most 63 characters; pure).

    >>> request_name("ocr", "x86-avx2")
    'ocr-x86-avx2'
    """
    name = f"{deployment}-{target}"
    if len(name) <= 63:
        return name
    return f"{name[:54]}-{canary.stable_hash('bench', name) % 16**8:08x}"


def targeted(
    devices: Sequence[edgedevice.EdgeDevice],
    spec: modeldeployment.ModelDeploymentSpec,
    target: str,
) -> list[edgedevice.EdgeDevice]:
    """The devices ``spec`` compiles ``target`` for (pure)."""
    out = []
    for device in devices:
        labels = dict(device.metadata.labels or {})
        if not spec.selector.matches(labels):
            continue
        first = next((t.name for t in spec.compile.targets if t.selector.matches(labels)), None)
        if first == target:
            out.append(device)
    return out


def hardware_class(device: edgedevice.EdgeDevice) -> str | None:
    """The class the device's agent reported, if any (pure)."""
    caps = device.status.capabilities if device.status is not None else None
    return caps.hardware_class if caps is not None else None


def classes(devices: Sequence[edgedevice.EdgeDevice]) -> tuple[str, ...]:
    """The hardware classes these devices report, sorted (pure)."""
    return tuple(sorted({c for c in (hardware_class(d) for d in devices) if c is not None}))


def pick(devices: Sequence[edgedevice.EdgeDevice], salt: str, per_class: int) -> list[str]:
    """Up to ``per_class`` devices of each reported class, first in canary order (pure)."""
    labels = {d.metadata.name: dict(d.metadata.labels or {}) for d in devices if hardware_class(d) is not None}
    by_name = {d.metadata.name: d for d in devices}
    taken: dict[str, int] = {}
    chosen = []
    for name in canary.order(labels, salt):
        cls = hardware_class(by_name[name])
        assert cls is not None
        if taken.get(cls, 0) < per_class:
            taken[cls] = taken.get(cls, 0) + 1
            chosen.append(name)
    return chosen


def results(
    devices: Sequence[edgedevice.EdgeDevice], names: Sequence[str], request: str, revision: str
) -> tuple[dict[str, Mapping[str, Timing]], dict[str, str]]:
    """What the asked devices reported for ``request`` at ``revision`` (pure).

    Returns ``(timings by device -> variant, failures by device -> message)``; a device still running is in
    neither.
    """
    by_name = {d.metadata.name: d for d in devices}
    done: dict[str, Mapping[str, Timing]] = {}
    failed: dict[str, str] = {}
    for name in names:
        device = by_name.get(name)
        status = device.status if device is not None else None
        result = next(
            (r for r in (status.benchmarks if status else []) if r.name == request and r.revision == revision), None
        )
        if result is None or result.state == "Running":
            continue
        if result.state == "Failed":
            failed[name] = result.message or "failed"
            continue
        done[name] = {t.variant: (t.p50_ms, t.p95_ms, tuple(t.rounds_ms)) for t in result.timings}
    return done, failed


__all__ = ["Timing", "classes", "hardware_class", "pick", "request_name", "results", "targeted"]
