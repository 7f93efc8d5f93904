#!/usr/bin/env bash
# Build each image's wheel set twice from scratch (hack/image-wheels.sh, no shared pip cache) and show they are
# byte-identical, that the files the image's install step adds from each are byte-identical too (hack/image-install.sh,
# .pyc included), and that the agent's set holds none of the operator's packages.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "${tmp}"' EXIT
for role in agent operator; do
  bash "${root}/hack/image-wheels.sh" "${role}" "${tmp}/${role}-1" > "${tmp}/${role}-1.sha256"
  bash "${root}/hack/image-wheels.sh" "${role}" "${tmp}/${role}-2" > "${tmp}/${role}-2.sha256"
  if diff "${tmp}/${role}-1.sha256" "${tmp}/${role}-2.sha256" >/dev/null; then
    echo "${role}: $(wc -l < "${tmp}/${role}-1.sha256") wheels, identical in two builds"
  else
    echo "${role}: the two builds differ:"; diff "${tmp}/${role}-1.sha256" "${tmp}/${role}-2.sha256"; exit 1
  fi
  grep edgefleet- "${tmp}/${role}-1.sha256"
  bash "${root}/hack/image-install.sh" "${tmp}/${role}-1" > "${tmp}/${role}-1.installed"
  bash "${root}/hack/image-install.sh" "${tmp}/${role}-2" > "${tmp}/${role}-2.installed"
  if diff "${tmp}/${role}-1.installed" "${tmp}/${role}-2.installed" >/dev/null; then
    echo "${role}: $(wc -l < "${tmp}/${role}-1.installed") files installed (incl. $(grep -c '\.pyc$' "${tmp}/${role}-1.installed") .pyc), identical in two builds"
  else
    echo "${role}: the installed files differ:"; diff "${tmp}/${role}-1.installed" "${tmp}/${role}-2.installed" | head -20; exit 1
  fi
done
for pkg in kopf kubernetes onnx- GitPython rich; do
  if grep -qi "  ${pkg}" "${tmp}/agent-1.sha256"; then echo "agent image holds ${pkg}"; exit 1; fi
done
echo "agent: no operator/CLI/compiler packages"
