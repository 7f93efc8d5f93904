"""The edgefleet operator: ``kopf run -m edgefleet.operator --all-namespaces``.

Importing this package registers the kopf handlers (:mod:`edgefleet.operator.handlers`); the decisions live in
:mod:`edgefleet.core.planner` and the one reconcile function in :mod:`edgefleet.operator.reconcile`.
"""

from edgefleet.operator import compilation, handlers, metrics, reconcile

__all__ = ["compilation", "handlers", "metrics", "reconcile"]
