#!/usr/bin/env bash
# Build one Go tool from published Go modules and cache the binary; print its path on the last line.
#
#   bash hack/build-go-tool.sh helm          -> ~/.cache/edgefleet/tools/helm-v3.22.0/helm
#   bash hack/build-go-tool.sh argocd-lua    -> ~/.cache/edgefleet/tools/argocd-lua-<source hash>/argocd-lua
#
# Two kinds of tool, one table below:
#   remote  NAME  MODULE  VERSION  PACKAGE  [LDFLAGS]   a released command, built with `go install PACKAGE@VERSION`
#   local   NAME  DIR                                  a small program of ours under hack/tools/DIR (its own go.mod
#                                                      and go.sum pin every dependency); cached by a hash of DIR
# Add a tool by adding one line. Like hack/build-control-plane.sh: GOTOOLCHAIN=local (never download a toolchain),
# static binaries, a cache that a clean CI clone fills itself when it is missing.
# Set EDGEFLEET_TOOL_<NAME>=/path/to/binary (NAME upper-cased, '-' as '_') to use a binary you already have.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE_ROOT="${EDGEFLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgefleet}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

tools() {
  cat <<'TABLE'
remote helm       helm.sh/helm/v3  v3.22.0  helm.sh/helm/v3/cmd/helm  -X helm.sh/helm/v3/internal/version.version=v3.22.0
local  argocd-lua argocd-lua
local  kstatus    kstatus
TABLE
}

name="${1:?usage: build-go-tool.sh NAME (one of: $(tools | awk '{print $2}' | tr '\n' ' '))}"
override_var="EDGEFLEET_TOOL_$(echo "${name}" | tr 'a-z-' 'A-Z_')"
if [[ -n "${!override_var:-}" ]]; then
  echo "${!override_var}"
  exit 0
fi
line="$(tools | awk -v n="${name}" '$2 == n')"
[[ -n "${line}" ]] || { echo "error: unknown Go tool '${name}'; known: $(tools | awk '{print $2}' | tr '\n' ' ')" >&2; exit 2; }
read -r kind _ a b c d <<<"${line}"

if [[ "${kind}" == remote ]]; then
  module="${a}" version="${b}" package="${c}" ldextra="${d:-}"
  out="${CACHE_ROOT}/tools/${name}-${version}"
else
  src="${ROOT}/hack/tools/${a}"
  hash="$(cd "${src}" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
  out="${CACHE_ROOT}/tools/${name}-${hash}"
fi
bin="${out}/${name}"
if [[ -x "${bin}" ]]; then
  echo "${bin}"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go is needed to build ${name} (apt-get install golang)" >&2; exit 1; }
mkdir -p "${out}"
start=$(date +%s)
if [[ "${kind}" == remote ]]; then
  # go install PACKAGE@VERSION honours exactly the module's own go.mod and go.sum (checked against the checksum DB).
  GOBIN="${out}/.gobin" go install -trimpath -ldflags "-s -w ${ldextra}" "${package}@${version}" >&2
  mv "${out}/.gobin/$(basename "${package}")" "${bin}"
  rmdir "${out}/.gobin"
  echo "built ${name} ${module}@${version} in $(( $(date +%s) - start )) s" >&2
else
  (cd "${src}" && go build -mod=readonly -trimpath -ldflags "-s -w" -o "${bin}.tmp" .) >&2
  mv "${bin}.tmp" "${bin}"
  echo "built ${name} from hack/tools/${a} in $(( $(date +%s) - start )) s" >&2
fi
echo "${bin}"
