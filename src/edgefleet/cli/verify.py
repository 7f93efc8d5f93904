"""``edgefleet verify``: check a bundle's digest, structure, signature and golden samples, as a device does before
installing (the device then also runs the golden samples).

Example::

    edgefleet verify bundles/sha256-3f2a....bundle --trust-key keys/signing.pem.pub

Exits 0 and prints the manifest summary when the bundle verifies; exits 1 naming the failed check otherwise.
With ``--digest`` the whole bundle must also hash to that ``sha256:<hex>`` value.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from edgefleet.adapters import bundle


def register(subparsers: Any) -> None:
    """Add the ``verify`` verb."""
    p = subparsers.add_parser(
        "verify",
        help="verify a compiled bundle's digest and signature",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("bundle", type=pathlib.Path, help="bundle file")
    p.add_argument("--trust-key", type=pathlib.Path, action="append", required=True, help="ed25519 PEM public key")
    p.add_argument("--digest", help="expected sha256:<hex> of the bundle")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify and summarise; exit code 0 when valid, 1 otherwise."""
    try:
        if args.bundle.stat().st_size > bundle.MAX_BUNDLE_BYTES:
            raise bundle.BundleError(f"bundle is over the {bundle.MAX_BUNDLE_BYTES}-byte limit")
        data = args.bundle.read_bytes()
        keys = [bundle.load_public_key(path.read_bytes()) for path in args.trust_key]
        verified = bundle.open_bundle(data, keys, expected_digest=args.digest)
        samples = bundle.golden_samples(verified)
    except (OSError, bundle.BundleError) as exc:
        print(f"{args.bundle}: verification failed: {exc}", file=sys.stderr)
        return 1
    m = verified.manifest
    model = m.get("model", {})
    variant = m.get("variant", {})
    measurements = m.get("measurements", {})
    print(f"{args.bundle}: OK {verified.digest}")
    print(f"  signed by key {verified.key_id}")
    print(
        f"  model {model.get('name')} {model.get('version')} ({model.get('task')}), source sha256 "
        f"{model.get('sourceSha256')}"
    )
    print(
        f"  target {m.get('target', {}).get('name')}: variant {variant.get('name')} "
        f"({variant.get('precision')}) - {variant.get('reason')}"
    )
    print(
        f"  model.onnx {len(verified.model)} bytes, {measurements.get('sizeRatio')}x smaller than FP32, "
        f"fidelity {measurements.get('fidelity')}"
    )
    where = f"in {bundle.GOLDEN}, {len(verified.golden)} bytes" if verified.golden is not None else "inline"
    print(f"  golden samples {len(samples.samples)} ({where}; rtol {samples.rtol}, atol {samples.atol})")
    return 0
