"""The edgefleet operator: ``kopf run -m edgefleet.operator --all-namespaces``.

Importing this package registers the kopf handlers (:mod:`edgefleet.operator.handlers`, the only module that knows
kopf). They call the :class:`~edgefleet.operator.controller.Controller`, which runs the one reconcile of
:mod:`edgefleet.operator.reconcile` (observe -> plan -> act -> one status patch) per deployment at a time, starts the
compile jobs of :mod:`edgefleet.operator.compilejobs` and keeps the trigger schedule of
:mod:`edgefleet.operator.triggers`. The decisions live in :mod:`edgefleet.core.planner`; the settings in
:mod:`edgefleet.operator.settings`.
"""

from edgefleet.operator import compilation, compilejobs, controller, handlers, metrics, reconcile, settings, triggers

__all__ = ["compilation", "compilejobs", "controller", "handlers", "metrics", "reconcile", "settings", "triggers"]
