#!/usr/bin/env bash
# Build a real kube-apiserver and etcd from published Go modules and cache them.
#
# The test suite (src/edgefleet/testing/controlplane.py) and `make demo` start these two binaries the way
# controller-runtime's envtest does. Prebuilt envtest tarballs cannot be downloaded on our CI machines, but the
# Go module proxy is reachable, so we compile them once per machine (cold: ~15-25 min on 2 cores) and reuse the
# cache afterwards. Set KUBEBUILDER_ASSETS to a directory that already holds both binaries to skip the build.
set -euo pipefail

KUBE_VERSION="${EDGEFLEET_KUBE_VERSION:-v1.36.3}"
ETCD_VERSION="${EDGEFLEET_ETCD_VERSION:-v3.6.8}"
CACHE_ROOT="${EDGEFLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgefleet}"
OUT="${CACHE_ROOT}/controlplane/${KUBE_VERSION}-etcd${ETCD_VERSION}"
WORK="${CACHE_ROOT}/controlplane-src"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

if [[ -x "${OUT}/kube-apiserver" && -x "${OUT}/etcd" ]]; then
  echo "control plane cached: ${OUT}"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go is needed to build the test control plane (apt-get install golang or see README)" >&2; exit 1; }
mkdir -p "${OUT}" "${WORK}"

minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"; patch="${KUBE_VERSION##*.}"
staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider cluster-bootstrap
code-generator component-base component-helpers controller-manager cri-api cri-client csi-translation-lib
dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission sample-apiserver"

build_etcd() {
  [[ -x "${OUT}/etcd" ]] && return 0
  local dir="${WORK}/etcd-${ETCD_VERSION}"
  mkdir -p "${dir}"; cd "${dir}"
  cat > go.mod <<MOD
module edgefleet.local/etcdbuild

go 1.24

require (
	go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/api/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/client/pkg/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/client/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/pkg/v3 ${ETCD_VERSION}
)
MOD
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "${OUT}/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "${OUT}/etcd.tmp" "${OUT}/etcd"
  echo "built ${OUT}/etcd"
}

build_apiserver() {
  [[ -x "${OUT}/kube-apiserver" ]] && return 0
  local dir="${WORK}/kube-${KUBE_VERSION}"
  mkdir -p "${dir}"; cd "${dir}"
  {
    echo "module edgefleet.local/kubebuild"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes ${KUBE_VERSION}"
    echo
    echo "replace ("
    for m in ${staging}; do echo "	k8s.io/${m} => k8s.io/${m} v0.${minor}.${patch}"; done
    echo ")"
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  go mod tidy
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${pkg}.gitVersion=${KUBE_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
  done
  go build -trimpath -tags notest -ldflags "${ld}" -o "${OUT}/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "${OUT}/kube-apiserver.tmp" "${OUT}/kube-apiserver"
  echo "built ${OUT}/kube-apiserver"
}

build_etcd
build_apiserver
echo "control plane ready: ${OUT}"
