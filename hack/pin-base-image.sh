#!/usr/bin/env bash
# Re-resolve the base image digest and write it into both Containerfiles (needs registry access and crane or skopeo).
#   bash hack/pin-base-image.sh [python:3.11-slim-bookworm]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ref="${1:-python:3.11-slim-bookworm}"
if command -v crane >/dev/null; then digest="$(crane digest "${ref}")"
elif command -v skopeo >/dev/null; then digest="$(skopeo inspect --format '{{.Digest}}' "docker://docker.io/library/${ref}")"
else echo "error: crane or skopeo is needed to resolve ${ref}" >&2; exit 1; fi
for f in "${root}/operator/Dockerfile" "${root}/edge_reconciler/Containerfile"; do
  sed -i "s|^ARG PYTHON_IMAGE=.*|ARG PYTHON_IMAGE=${ref}@${digest}|" "${f}"
done
echo "pinned ${ref}@${digest}"
