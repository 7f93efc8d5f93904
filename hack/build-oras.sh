#!/usr/bin/env bash
# Build the real `oras` CLI (oras.land/oras cmd/oras) from Go modules and cache the binary; print its path on the
# last line.
#
#   bash hack/build-oras.sh        -> ~/.cache/edgefleet/tools/oras-v1.3.6/oras
#
# The registry tests use it to prove interoperability: oras pulls what the operator pushed, and the agent pulls what
# oras pushed. Like hack/build-control-plane.sh: GOTOOLCHAIN=local (never download a toolchain), a static binary, a
# cache that a clean CI clone fills itself when it is missing. Set EDGEFLEET_TOOL_ORAS=/path/to/oras to use a binary
# you already have.
set -euo pipefail

VERSION="${EDGEFLEET_ORAS_VERSION:-v1.3.6}"
CACHE_ROOT="${EDGEFLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgefleet}"
OUT="${CACHE_ROOT}/tools/oras-${VERSION}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

if [[ -n "${EDGEFLEET_TOOL_ORAS:-}" ]]; then
  echo "${EDGEFLEET_TOOL_ORAS}"
  exit 0
fi
if [[ -x "${OUT}/oras" ]]; then
  echo "${OUT}/oras"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go is needed to build oras (apt-get install golang)" >&2; exit 1; }
mkdir -p "${OUT}"
start=$(date +%s)
# go install PACKAGE@VERSION honours exactly the module's own go.mod and go.sum (checked against the checksum DB).
GOBIN="${OUT}/.gobin" go install -trimpath \
  -ldflags "-s -w -X oras.land/oras/internal/version.Version=${VERSION#v} -X oras.land/oras/internal/version.BuildMetadata=" \
  "oras.land/oras/cmd/oras@${VERSION}" >&2
mv "${OUT}/.gobin/oras" "${OUT}/oras"
rmdir "${OUT}/.gobin"
echo "built oras ${VERSION} in $(( $(date +%s) - start )) s" >&2
echo "${OUT}/oras"
