#!/usr/bin/env bash
# Run the pip steps of an image's build stage without a container engine and print the sha256 of every file the
# image would install:   bash hack/image-wheels.sh agent|operator OUTDIR
#
# The build context is what .dockerignore lets through (copied from `git ls-files`, so local build leftovers cannot
# leak in); a fresh venv gets the pinned backend (requirements/build.txt); the edgefleet wheel is built with the
# Containerfile's SOURCE_DATE_EPOCH; the dependencies are downloaded by hash (requirements/<role>.txt). Run it twice
# and compare: hack/check-image-contents.sh does. (Only the Python layer: the base image is pinned by digest.)
set -euo pipefail
role="${1:?usage: image-wheels.sh agent|operator OUTDIR}"; out="${2:?usage: image-wheels.sh ROLE OUTDIR}"
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3.11}"
epoch="$(sed -n 's/.*SOURCE_DATE_EPOCH=\([0-9]*\).*/\1/p' "${root}/edge_reconciler/Containerfile" | head -1)"
work="$(mktemp -d)"; trap 'rm -rf "${work}"' EXIT
mkdir -p "${work}/ctx" "${out}"
(cd "${root}" && git ls-files -z -- pyproject.toml README.md LICENSE requirements src/edgefleet \
   | grep -zv '^src/edgefleet/testing/' | xargs -0 cp --parents -t "${work}/ctx")
"${python}" -m venv "${work}/venv"
pip="${work}/venv/bin/python -m pip"
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
${pip} install --quiet --require-hashes --no-deps -r "${work}/ctx/requirements/build.txt"
(cd "${work}/ctx" && SOURCE_DATE_EPOCH="${epoch}" ${pip} wheel --quiet --no-deps --no-build-isolation --wheel-dir "${out}" .)
${pip} download --quiet --no-deps --require-hashes --only-binary=:all: --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp \
  --dest "${out}" -r "${work}/ctx/requirements/${role}.txt"
(cd "${out}" && sha256sum -- *.whl | sort -k2)
