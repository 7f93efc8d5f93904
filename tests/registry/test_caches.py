"""Per-site pull-through caches (distribution 2.8 in proxy mode) in front of a token-auth origin: devices pull through
their site's cache, and the origin serves each artifact per site, not per device (counted in the registries' own logs).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgefleet.adapters import bundle, oci
from edgefleet.core import oci as core_oci
from edgefleet.edge_reconciler import config
from edgefleet.testing import artifact_server, httpcache, onnx_models, registry
from edgefleet.testing.agent_harness import Harness, desired, eventually

pytestmark = pytest.mark.slow
SITES, DEVICES_PER_SITE = 2, 3


async def test_origin_serves_each_artifact_per_site_not_per_device(
    tmp_path: Path, tls: registry.Certificates, signing_key: ed25519.Ed25519PrivateKey
) -> None:
    tb = onnx_models.make_bundle(signing_key, "demo", "1.0.0", pad_bytes=64 * 1024)
    with contextlib.ExitStack() as stack:
        origin = stack.enter_context(
            registry.running(tmp_path / "origin", tls, auth=registry.TEST_CREDENTIALS, token_auth=True)
        )
        caches = [
            stack.enter_context(registry.running(tmp_path / f"site-{s}", tls, proxy_of=origin)) for s in range(SITES)
        ]
        server = stack.enter_context(artifact_server.running())
        creds = oci.credentials_from_docker_config(origin.docker_config(), "test")
        store = oci.OciStore(f"{origin.host}/edgefleet", credentials=creds, ca_file=tls.ca_file)
        uri = (await store.put(tb.data)).uri
        await store.close()
        auth = tmp_path / "auth.json"
        auth.write_text(__import__("json").dumps(origin.docker_config()))

        async def device(site: int, index: int) -> dict[str, object]:
            root = tmp_path / f"device-{site}-{index}"
            root.mkdir()
            harness = Harness(root, signing_key, server)
            settings = config.ArtifactsConfig(
                ca_file=tls.ca_file,
                credentials_file=auth,
                mirrors=[config.MirrorConfig(url=caches[site].url, origins=[origin.host])],
            )
            async with harness.running(artifact_config=settings):
                harness.want(desired(tb, uri))
                await eventually(lambda: harness.model_status().get("state") == "Active", timeout=30)
                return dict(harness.model_status()["download"])

        # One device per site first (what rollout.prestage does: a site stages one device before the others), then
        # the rest of every site at once.
        first = await asyncio.gather(*(device(s, 0) for s in range(SITES)))
        rest = await asyncio.gather(*(device(s, i) for s in range(SITES) for i in range(1, DEVICES_PER_SITE)))

    for report in [*first, *rest]:
        assert report["failures"] == [] and report["source"] in [c.url for c in caches]
    manifest = core_oci.Reference.parse(uri).digest
    blobs = {core_oci.sha256(data): len(data) for data in bundle.members(tb.data).values()}
    served = origin.served()
    assert set(served) == {manifest, *blobs}  # the config blob is never fetched
    # Distribution 2.8's proxy fetches a missing blob from the origin twice (once to store it, once to answer the
    # first request); every later device of the site is served from the cache.
    assert served[manifest].requests == SITES
    for digest, size in blobs.items():
        assert served[digest].requests == 2 * SITES, (digest, served[digest])
        assert served[digest].bytes == 2 * SITES * size
    for cache in caches:
        from_cache = cache.served()
        for digest, size in blobs.items():
            assert from_cache[digest].requests == DEVICES_PER_SITE
            assert from_cache[digest].bytes == DEVICES_PER_SITE * size
    origin_bytes = sum(s.bytes for d, s in served.items() if d in blobs)
    device_bytes = SITES * DEVICES_PER_SITE * sum(blobs.values())
    assert origin_bytes == 2 * SITES * sum(blobs.values()) < device_bytes


async def test_http_caches_make_the_origin_serve_each_artifact_once_per_site(
    tmp_path: Path,
    tls: registry.Certificates,
    origin: registry.Registry,
    store: oci.OciStore,
    signing_key: ed25519.Ed25519PrivateKey,
) -> None:
    """nginx with proxy_cache_lock per site (a plain HTTP cache holding the registry credentials): every device of
    every site asks at once, and the origin still serves each blob and the manifest exactly once per site."""
    tb = onnx_models.make_bundle(signing_key, "demo", "1.0.0", pad_bytes=96 * 1024)
    uri = (await store.put(tb.data)).uri
    await store.close()
    with contextlib.ExitStack() as stack:
        caches = [stack.enter_context(httpcache.running(tmp_path / f"nginx-{s}", origin)) for s in range(SITES)]
        server = stack.enter_context(artifact_server.running())
        before = origin.served()

        async def device(site: int, index: int) -> dict[str, object]:
            root = tmp_path / f"device-{site}-{index}"
            root.mkdir()
            harness = Harness(root, signing_key, server)
            settings = config.ArtifactsConfig(
                ca_file=tls.ca_file, mirrors=[config.MirrorConfig(url=caches[site].url, origins=[origin.host])]
            )  # no credentials on the devices: the site cache holds them
            async with harness.running(artifact_config=settings):
                harness.want(desired(tb, uri))
                await eventually(lambda: harness.model_status().get("state") == "Active", timeout=30)
                return dict(harness.model_status()["download"])

        reports = await asyncio.gather(*(device(s, i) for s in range(SITES) for i in range(DEVICES_PER_SITE)))
        after = origin.served()
    assert all(r == {"source": caches[i // DEVICES_PER_SITE].url, "failures": []} for i, r in enumerate(reports))
    manifest = core_oci.Reference.parse(uri).digest
    blobs = {core_oci.sha256(data): len(data) for data in bundle.members(tb.data).values()}
    for digest in [manifest, *blobs]:
        old = before.get(digest, registry.Served(0, 0))
        assert after[digest].requests - old.requests == SITES, (digest, after[digest], old)
    for digest, size in blobs.items():
        assert after[digest].bytes - before.get(digest, registry.Served(0, 0)).bytes == SITES * size
        for cache in caches:
            assert cache.served()[digest] == registry.Served(DEVICES_PER_SITE, DEVICES_PER_SITE * size)
