"""The test and demo harness of edgefleet: not product code.

Like ``kopf.testing``, this package ships in the distribution so that tests, benchmarks and ``make demo`` can run
the real components against real infrastructure, but no product package (``api``, ``core``, ``adapters``,
``compiler``, ``operator``, ``edge_reconciler``, ``cli``) imports it (an import-linter contract says so). Its
third-party needs are the ``[testing]`` extra. What it holds:

- :mod:`~edgefleet.testing.controlplane`: a real local kube-apiserver + etcd (envtest style), the CRDs installed;
- :mod:`~edgefleet.testing.fileserver`, :mod:`~edgefleet.testing.artifact_server`: HTTP servers for source models
  and bundles; :mod:`~edgefleet.testing.apiproxy`, :mod:`~edgefleet.testing.tcpproxy`: switchable proxies;
- :mod:`~edgefleet.testing.fleetsim`: the fleet simulator (``python -m edgefleet.testing.fleetsim``);
- :mod:`~edgefleet.testing.demo`: ``make demo`` (``python -m edgefleet.testing.demo``);
- :mod:`~edgefleet.testing.examples`: the example-model builders (``python -m edgefleet.testing.examples``);
- models, bundles, simulated devices, the operator process, in-memory fakes and the chaos fleet that tests and
  benchmarks share.

Importing it allows fetches from loopback addresses for this process and the processes it starts
(``EDGEFLEET_FETCH_ALLOW=loopback``, :mod:`edgefleet.api.addresses`): every server of the harness listens on
127.0.0.1. A product process never imports it, so devices and operators keep the strict default.
"""

import os

from edgefleet.api import addresses

os.environ.setdefault(addresses.ENV_ALLOW, "loopback")
