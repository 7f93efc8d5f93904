#!/usr/bin/env bash
# Run an image's final install step on a wheel set without a container engine and print the sha256 of every file
# it adds:   bash hack/image-install.sh WHEELDIR
#
# The same commands as the last stage of operator/Dockerfile and edge_reconciler/Containerfile (pip install from
# the wheels, no index, no bytecode; then compileall with hash-based .pyc, which carry no timestamp), into a fresh
# venv standing in for the base image's Python at a fixed path (so script shebangs and direct_url.json match from
# run to run). Files the venv had before the install (its own pip) are not listed. File contents only: timestamps
# and ownership are the image builder's to normalise.
set -euo pipefail
wheels="${1:?usage: image-install.sh WHEELDIR}"
python="${PYTHON:-python3.11}"
fixed="${TMPDIR:-/tmp}/edgefleet-image-install"
rm -rf "${fixed}"; mkdir -p "${fixed}"; trap 'rm -rf "${fixed}"' EXIT
cp -r "${wheels}" "${fixed}/wheels"
"${python}" -m venv "${fixed}/root"
py="${fixed}/root/bin/python"
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
before="$(cd "${fixed}/root" && find . -type f | LC_ALL=C sort)"
"${py}" -m pip install --quiet --no-cache-dir --no-index --no-deps --no-compile "${fixed}"/wheels/*.whl
"${py}" -m compileall -q --invalidation-mode unchecked-hash "$("${py}" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
cd "${fixed}/root"
find . -type f | LC_ALL=C sort | LC_ALL=C comm -13 <(echo "${before}") - | tr '\n' '\0' | xargs -0 sha256sum
