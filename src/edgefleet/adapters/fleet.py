"""The fleet as the operator touches it: EdgeDevices, revision templates and the signing key, over
:class:`~edgefleet.adapters.protocols.KubeClient`.

* :class:`Devices` reads a namespace's EdgeDevices (parsed at the boundary into frozen models) and applies planner
  changes. With :meth:`Devices.watch` enabled (the operator does), reads come from one watch-backed
  :class:`~edgefleet.adapters.informer.Informer` per namespace instead of a LIST per reconcile, and every device
  change is reported to a callback so the operator reacts within a fraction of a second. Each write replaces only
  the entries one deployment owns, conditional on the ``resourceVersion`` it read; on a conflict (another
  deployment or the device changed the object) it re-reads and re-applies the same change, which
  commutes with everyone else's entries.
* :class:`Revisions` keeps :class:`~edgefleet.core.revisions.RevisionTemplate` s in ``apps/v1`` ControllerRevisions, the
  way StatefulSets and DaemonSets keep their history: a derived name per deployment and revision, owned by the
  ModelDeployment so garbage collection removes them with it. Compiled templates survive operator restarts this way, so
  nothing is recompiled and a rollback always knows the stable artifacts.
* :func:`signing_key` reads the ed25519 key from a Secret.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pydantic
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle, informer, kube, oci, protocols
from edgefleet.api import common, edgedevice, modeldeployment
from edgefleet.core import errors, planner, revisions
from edgefleet.core.planner import reachability

LABEL_DEPLOYMENT = "edgefleet.io/deployment"
SIGNING_KEY_ITEM = "signing-key.pem"
WRITE_CONCURRENCY = 32
SYNC_TIMEOUT_SECONDS = 30.0
CONFLICT_RETRIES = 4

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LeaseSeen:
    """A device's Lease as this operator observed it: its ``renewTime`` as written (to notice the next renewal), its
    duration, and when the operator saw that renewal (see :mod:`edgefleet.core.planner.reachability`)."""

    renew_time: str
    duration_seconds: float
    observed_at: dt.datetime

    def contact(self) -> reachability.Contact:
        return reachability.Contact(self.observed_at, self.duration_seconds)


def observe_lease(raw: dict[str, Any], previous: LeaseSeen | None, now: dt.datetime) -> LeaseSeen | None:
    """What the operator knows of a Lease after seeing ``raw`` at ``now`` (pure). A renewal it watched happen counts
    from ``now`` (the device's clock may be wrong); a Lease seen for the first time counts from its ``renewTime``,
    but never from the future. None: not a usable Lease (no renewal time or duration).

    >>> t0 = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)
    >>> lease = {"spec": {"renewTime": "2026-01-05T09:58:00.000000Z", "leaseDurationSeconds": 300}}
    >>> first = observe_lease(lease, None, t0)
    >>> first.observed_at.time(), observe_lease(lease, first, t0 + dt.timedelta(seconds=60)) == first
    (datetime.time(9, 58), True)
    >>> ahead = {"spec": {"renewTime": "2026-01-05T11:00:00.000000Z", "leaseDurationSeconds": 300}}
    >>> observe_lease(ahead, first, t0).observed_at == t0
    True
    """
    spec = raw.get("spec") or {}
    renew, duration = spec.get("renewTime"), spec.get("leaseDurationSeconds")
    if not isinstance(renew, str) or not isinstance(duration, int | float) or duration <= 0:
        return None
    if previous is not None and previous.renew_time == renew:
        return dataclasses.replace(previous, duration_seconds=float(duration))
    if previous is not None:
        return LeaseSeen(renew, float(duration), now)
    try:
        written = dt.datetime.fromisoformat(renew.replace("Z", "+00:00"))
    except ValueError:
        return None
    if written.tzinfo is None:
        written = written.replace(tzinfo=dt.UTC)
    return LeaseSeen(renew, float(duration), min(written, now))


class Devices:
    """The operator's access to EdgeDevices: reads (from a watch-backed cache once :meth:`watch` is on) and
    conflict-safe writes of planner changes; and their Leases, as the operator observed them (:meth:`contacts`)."""

    def __init__(
        self, api: protocols.KubeClient, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    ) -> None:
        self.api = api
        self.clock = clock
        self._watching = False
        self._on_change: Callable[[str], None] | None = None
        self._informers: dict[str, informer.Informer[edgedevice.EdgeDevice]] = {}
        self._keys: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._leases: dict[str, informer.Informer[LeaseSeen]] = {}
        self._lease_waited: set[str] = set()

    def watch(self, on_change: Callable[[str], None] | None = None) -> None:
        """Serve reads from watch-backed caches (one per namespace, started on its first read); ``on_change(ns)``
        is called whenever an EdgeDevice of a cached namespace changes."""
        self._watching, self._on_change = True, on_change

    async def close(self) -> None:
        """Stop every watch."""
        for cache in self._informers.values():
            await cache.stop()
        for leases in self._leases.values():
            await leases.stop()
        self._informers.clear()
        self._leases.clear()

    def _lease_informer(self, namespace: str) -> informer.Informer[LeaseSeen] | None:
        if not self._watching:
            return None
        cache = self._leases.get(namespace)
        if cache is None:
            holder: list[informer.Informer[LeaseSeen]] = []

            def parse(raw: dict[str, Any]) -> LeaseSeen | None:
                name = str((raw.get("metadata") or {}).get("name"))
                return observe_lease(raw, holder[0].get(name) if holder else None, self.clock())

            cache = informer.Informer(
                self.api, kube.LEASES, namespace, parse, on_change=lambda name: self._lease_changed(namespace, name)
            )
            holder.append(cache)
            self._leases[namespace] = cache.start()
        return cache

    def _lease_changed(self, namespace: str, name: str | None) -> None:
        """A renewal only matters at once when it brings a device back (the planner sees expiries on its own)."""
        if self._on_change is None:
            return
        cache = self._leases.get(namespace)
        if name is None:
            if cache is not None:
                for item, listed in cache.named_items():
                    self._keys[(namespace, f"lease/{item}")] = (listed.observed_at,)
                if cache.relists > 1:
                    self._on_change(namespace)  # listed again after a gap: anything may have changed
            return
        key = (namespace, f"lease/{name}")
        seen = cache.get(name) if cache is not None else None
        was = self._keys.get(key)
        self._keys[key] = (seen.observed_at if seen is not None else None,)
        now = self.clock()
        if seen is None or was is None:
            return
        (before,) = was
        if before is not None and now >= before + dt.timedelta(seconds=seen.duration_seconds):
            self._on_change(namespace)  # it was unreachable and renewed its Lease: it is back

    async def contacts(self, namespace: str) -> dict[str, reachability.Contact] | None:
        """The Leases of ``namespace`` by name, as observed (None: they cannot be read now; the planner then judges
        devices by whether they pick up their changes alone)."""
        cache = self._lease_informer(namespace)
        if cache is None:
            try:
                listing = await self.api.list(kube.LEASES, namespace)
            except errors.EdgefleetError as exc:
                log.warning("Failed to list Leases namespace=%s error=%s", namespace, exc)
                return None
            now = self.clock()
            out = {}
            for raw in listing.items:
                seen = observe_lease(raw, None, now)
                if seen is not None:
                    out[str((raw.get("metadata") or {}).get("name"))] = seen.contact()
            return out
        if not cache.synced.is_set():
            if namespace in self._lease_waited:
                return None
            self._lease_waited.add(namespace)
            try:
                await cache.wait_synced(SYNC_TIMEOUT_SECONDS)
            except errors.TransientError:
                log.warning(
                    "Failed to read Leases namespace=%s; reachability falls back to pickup timeouts (can the "
                    "operator list and watch coordination.k8s.io leases?)",
                    namespace,
                )
                return None
        return {item_name: seen.contact() for item_name, seen in cache.named_items()}

    def _informer(self, namespace: str) -> informer.Informer[edgedevice.EdgeDevice] | None:
        if not self._watching:
            return None
        cache = self._informers.get(namespace)
        if cache is None:
            cache = self._informers[namespace] = informer.Informer(
                self.api,
                kube.EDGEDEVICES,
                namespace,
                _parse_device,
                on_change=lambda name: self._changed(namespace, name),
            ).start()
            self._lease_informer(namespace)  # the devices' Leases are read with them: start filling that cache too
        return cache

    def _changed(self, namespace: str, name: str | None) -> None:
        """Pass a device change on, unless only health numbers or timestamps moved (the next resync reads those)."""
        if self._on_change is None:
            return
        if name is not None:
            cache = self._informers.get(namespace)
            device = cache.get(name) if cache is not None else None
            key = trigger_key(device) if device is not None else ()
            if self._keys.get((namespace, name)) == key:
                return
            self._keys[(namespace, name)] = key
        self._on_change(namespace)

    async def devices(self, namespace: str) -> list[edgedevice.EdgeDevice]:
        """Every valid EdgeDevice of ``namespace``; invalid ones are logged and left out."""
        cache = self._informer(namespace)
        if cache is not None:
            await cache.wait_synced(SYNC_TIMEOUT_SECONDS)
            return cache.items()
        out = []
        for raw in (await self.api.list(kube.EDGEDEVICES, namespace)).items:
            parsed = _parse_device(raw)
            if parsed is not None:
                out.append(parsed)
        return out

    async def apply(
        self,
        namespace: str,
        deployment: str,
        changes: Sequence[planner.DeviceChange],
        devices: Sequence[edgedevice.EdgeDevice],
    ) -> int:
        """Write ``changes``; returns how many devices were written. Raises TransientError if some failed."""
        by_name = {d.metadata.name: d for d in devices}
        gate = asyncio.Semaphore(WRITE_CONCURRENCY)
        failures: list[str] = []

        async def one(change: planner.DeviceChange) -> None:
            async with gate:
                try:
                    await self._write(namespace, deployment, change, by_name.get(change.device))
                except errors.NotFoundError:
                    return  # the device was deleted meanwhile: nothing to converge
                except errors.TransientError as exc:
                    failures.append(f"{change.device}: {exc}")

        await asyncio.gather(*(one(c) for c in changes))
        if failures:
            raise errors.TransientError(
                f"could not update {len(failures)} EdgeDevices in {namespace}: {'; '.join(failures[:5])}",
                delay=2.0,
            )
        return len(changes)

    async def _write(
        self,
        namespace: str,
        deployment: str,
        change: planner.DeviceChange,
        device: edgedevice.EdgeDevice | None,
    ) -> None:
        for attempt in range(CONFLICT_RETRIES):
            if device is None or attempt > 0:
                device = _parse_device(await self.api.get(kube.EDGEDEVICES, namespace, change.device))
                if device is None:
                    return
            updated = planner.apply_change(device, deployment, change.desired)
            if attempt > 0 and updated.spec.models == device.spec.models:
                return  # the fresh object already holds this change (the cache we planned from lagged)
            patch: dict[str, Any] = {
                "metadata": {"resourceVersion": device.metadata.resource_version},
                "spec": {"models": [m.to_wire() for m in updated.spec.models]},
            }
            try:
                written = await self.api.merge_patch(kube.EDGEDEVICES, namespace, change.device, patch)
            except errors.ConflictError:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                continue
            cache = self._informers.get(namespace)
            if cache is not None:
                cache.observe(written)  # the next reconcile must not plan this write again from a stale cache
            return


def trigger_key(device: edgedevice.EdgeDevice) -> tuple[Any, ...]:
    """What of a device a rollout decision depends on, apart from the age of its verdict (pure): labels, desired
    models, and per reported model its state, digests, revision and verdict. A status write that changes none of
    these (health numbers, a refreshed timestamp) does not need an immediate reconcile.

    >>> d = edgedevice.EdgeDevice.model_validate({"metadata": {"name": "d", "labels": {"app": "a"}}, "spec": {}})
    >>> trigger_key(d) == trigger_key(d.model_copy())
    True
    """
    reports = tuple(
        (
            m.name,
            m.state,
            m.desired_digest,
            m.active_digest,
            m.active_revision,
            m.health.verdict if m.health is not None else None,
            m.health.reason if m.health is not None else None,
        )
        for m in (device.status.models if device.status is not None else [])
    )
    labels = tuple(sorted((device.metadata.labels or {}).items()))
    return (labels, tuple(json.dumps(m.to_wire(), sort_keys=True) for m in device.spec.models), reports)


def _parse_device(raw: dict[str, Any]) -> edgedevice.EdgeDevice | None:
    try:
        return edgedevice.EdgeDevice.model_validate(raw)
    except pydantic.ValidationError as exc:
        name = (raw.get("metadata") or {}).get("name", "?")
        log.warning("Skipped EdgeDevice with an invalid body", extra={"device": name, "error": str(exc)[:500]})
        return None


class Revisions:
    """Revision templates stored as ControllerRevisions."""

    def __init__(self, api: protocols.KubeClient) -> None:
        self.api = api

    @staticmethod
    def name(deployment: str, revision: str) -> str:
        """The derived object name of a deployment's revision (pure)."""
        return f"{deployment[:200]}-{hashlib.sha256(revision.encode()).hexdigest()[:12]}"

    async def get(self, namespace: str, deployment: str, revision: str) -> revisions.RevisionTemplate | None:
        try:
            raw = await self.api.get(kube.CONTROLLER_REVISIONS, namespace, self.name(deployment, revision))
        except errors.NotFoundError:
            return None
        try:
            template = revisions.RevisionTemplate.model_validate(raw.get("data") or {})
        except pydantic.ValidationError as exc:
            raise errors.InvalidSpecError(
                f"ControllerRevision {namespace}/{self.name(deployment, revision)} does not hold a revision "
                f"template ({exc.error_count()} errors); delete it so the operator compiles again",
                reason=errors.Reason.CORRUPT_REVISION,
            ) from exc
        return template if template.revision == revision else None

    async def put(self, md: modeldeployment.ModelDeployment, template: revisions.RevisionTemplate) -> None:
        namespace = md.metadata.namespace or "default"
        body = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": self.name(md.metadata.name, template.revision),
                "namespace": namespace,
                "labels": {LABEL_DEPLOYMENT: md.metadata.name, "app.kubernetes.io/managed-by": "edgefleet"},
                "ownerReferences": [
                    {
                        "apiVersion": common.API_VERSION,
                        "kind": modeldeployment.KIND,
                        "name": md.metadata.name,
                        "uid": md.metadata.uid,
                        "controller": True,
                        "blockOwnerDeletion": False,
                    }
                ]
                if md.metadata.uid
                else [],
            },
            "data": template.model_dump(mode="json", by_alias=True),
            "revision": md.metadata.generation or 1,
        }
        try:
            await self.api.create(kube.CONTROLLER_REVISIONS, namespace, body)
        except errors.ConflictError:
            existing = await self.get(namespace, md.metadata.name, template.revision)
            if existing != template:
                # Same revision, different artifacts (a compiler that is not deterministic): keep the first,
                # which devices may already run.
                log.warning(
                    "Kept existing revision template",
                    extra={"deployment": md.metadata.name, "revision": template.revision},
                )


async def signing_key(api: protocols.KubeClient, namespace: str, name: str) -> ed25519.Ed25519PrivateKey:
    """The ed25519 signing key stored under ``signing-key.pem`` in Secret ``namespace/name``."""
    try:
        secret = await api.get(kube.SECRETS, namespace, name)
    except errors.NotFoundError:
        raise errors.InvalidSpecError(
            f"Secret {namespace}/{name} with the artifact signing key does not exist; create it with "
            f"kubectl -n {namespace} create secret generic {name} --from-file={SIGNING_KEY_ITEM}=key.pem",
            reason=errors.Reason.SIGNING_KEY_MISSING,
        ) from None
    encoded = (secret.get("data") or {}).get(SIGNING_KEY_ITEM)
    if not encoded:
        raise errors.InvalidSpecError(
            f"Secret {namespace}/{name} has no {SIGNING_KEY_ITEM} item", reason=errors.Reason.SIGNING_KEY_MISSING
        )
    try:
        return bundle.load_private_key(base64.b64decode(encoded))
    except (bundle.BundleError, ValueError) as exc:
        raise errors.InvalidSpecError(
            f"Secret {namespace}/{name} item {SIGNING_KEY_ITEM}: {exc}", reason=errors.Reason.SIGNING_KEY_INVALID
        ) from exc


async def registry_credentials(
    api: protocols.KubeClient, namespace: str, name: str, host: str
) -> dict[str, oci.Credentials]:
    """Registry credentials from Secret ``namespace/name``: ``.dockerconfigjson`` (type
    ``kubernetes.io/dockerconfigjson``, any hosts) or ``username``/``password`` (``kubernetes.io/basic-auth``, for
    ``host``). Messages name the Secret and its keys, never a value."""
    where = f"Secret {namespace}/{name}"
    try:
        secret = await api.get(kube.SECRETS, namespace, name)
    except errors.NotFoundError:
        raise errors.InvalidSpecError(
            f"{where} with the registry credentials does not exist; create it with kubectl -n {namespace} create "
            f"secret docker-registry {name} --docker-server={host} --docker-username=... --docker-password=...",
            reason=errors.Reason.INVALID_CONFIG,
        ) from None
    try:
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidSpecError(f"{where}: an item is not base64 text", errors.Reason.INVALID_CONFIG) from exc
    return oci.credentials_from_secret(data, host, where)


__all__ = [
    "Devices",
    "LeaseSeen",
    "Revisions",
    "observe_lease",
    "registry_credentials",
    "signing_key",
    "trigger_key",
]
