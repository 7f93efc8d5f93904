#!/usr/bin/env bash
# Install the OCI registry the tests start: Debian's docker-registry package (CNCF distribution 2.8.x), and
# nginx-light (a plain HTTP cache per site in front of it, src/edgefleet/testing/httpcache.py).
#
# The test fixture (src/edgefleet/testing/registry.py) starts `docker-registry serve <config>` on 127.0.0.1 with TLS
# and htpasswd auth, and in proxy mode as a per-site pull-through cache. Nothing here runs a daemon: the package's
# systemd unit is not used (and there is no init system in CI). Set EDGEFLEET_REGISTRY_BIN to a `registry` binary
# you already have to skip the install. Prints the binary's path on the last line.
set -euo pipefail

if [[ -n "${EDGEFLEET_REGISTRY_BIN:-}" ]]; then
  echo "${EDGEFLEET_REGISTRY_BIN}"
  exit 0
fi
bin=/usr/bin/docker-registry
if [[ ! -x "${bin}" || ! -x /usr/sbin/nginx ]]; then
  [[ "$(id -u)" == 0 ]] || { echo "error: installing docker-registry needs root (apt-get install docker-registry)" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the packages' post-install from starting daemons (a registry on :5000, nginx on :80).
  policy=/usr/sbin/policy-rc.d
  created=0
  if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' > "${policy}"; chmod +x "${policy}"; created=1
  fi
  trap '[[ ${created} == 1 ]] && rm -f "${policy}"' EXIT
  if ! apt-get install -y --no-install-recommends docker-registry nginx-light >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends docker-registry nginx-light >&2
  fi
fi
echo "${bin}"
