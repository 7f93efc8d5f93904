"""kopf wiring, and only that: the handlers call :class:`~edgefleet.operator.controller.Controller` and map its
classified failures to kopf's (``TransientError`` -> ``kopf.TemporaryError`` with its delay, ``InvalidSpecError`` ->
``kopf.PermanentError``).

Create, update, resume and a periodic timer (``EDGEFLEET_RESYNC_SECONDS``, the safety net) all run the same reconcile.
Device status changes, the planner's "look again" and the end of a compile do not change the ModelDeployment, so the
controller's own trigger schedule (:mod:`edgefleet.operator.triggers`) runs the same reconcile for those.

Deletion runs behind the ``edgefleet.io/finalizer`` finalizer and removes the model from every device first.
kopf keeps its bookkeeping in annotations, because the status schema is ours. The settings
(:mod:`edgefleet.operator.settings`) are read once, at import: the timer's interval is part of its registration.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from edgefleet.api import common, modeldeployment
from edgefleet.core import errors
from edgefleet.operator import controller, settings

FINALIZER = "edgefleet.io/finalizer"
SETTINGS = settings.OperatorSettings.from_env(os.environ)
_RESOURCE = (common.GROUP, common.VERSION, modeldeployment.PLURAL)
_CONTROLLER: controller.Controller | None = None


def _running() -> controller.Controller:
    if _CONTROLLER is None:
        raise kopf.TemporaryError("the operator is still starting", delay=2)
    return _CONTROLLER


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, logger: controller.Log, **_: Any) -> None:
    """Configure kopf, then start the controller (artifact server, compile pool, device watch, triggers)."""
    global _CONTROLLER
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.edgefleet.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.edgefleet.io", key="last-handled-configuration"
    )
    # Our own events carry every transition; log lines are not turned into events as well.
    settings.posting.level = logging.CRITICAL
    settings.watching.server_timeout = 300
    _CONTROLLER = await controller.Controller.start(SETTINGS)
    logger.info(
        "Started edgefleet operator %s",
        controller.pairs(store_url=SETTINGS.store_url, store_port=_CONTROLLER.store_port, compiler=SETTINGS.compiler),
    )


@kopf.on.cleanup()
async def cleanup(logger: controller.Log, **_: Any) -> None:
    """Stop the controller."""
    global _CONTROLLER
    if _CONTROLLER is None:
        return
    await _CONTROLLER.stop()
    _CONTROLLER = None
    logger.info("Stopped edgefleet operator")


async def _reconcile(body: kopf.Body, logger: controller.Log) -> None:
    try:
        await _running().converge(body, logger)
    except errors.TransientError as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    except errors.InvalidSpecError as exc:
        raise kopf.PermanentError(str(exc)) from exc


@kopf.on.resume(*_RESOURCE)
@kopf.on.create(*_RESOURCE)
@kopf.on.update(*_RESOURCE)
async def on_change(body: kopf.Body, logger: controller.Log, **_: Any) -> None:
    """Every change of a ModelDeployment: reconcile it."""
    await _reconcile(body, logger)


@kopf.timer(*_RESOURCE, interval=SETTINGS.resync_seconds, initial_delay=SETTINGS.resync_seconds)
async def on_timer(body: kopf.Body, logger: controller.Log, **_: Any) -> None:
    """Periodic resync: device reports, pause ends and deadlines do not change the ModelDeployment itself."""
    await _reconcile(body, logger)


@kopf.on.delete(*_RESOURCE)
async def on_delete(body: kopf.Body, logger: controller.Log, **_: Any) -> None:
    """Remove the model from every device before the ModelDeployment goes away."""
    try:
        await _running().remove(body, logger)
    except errors.TransientError as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc


__all__ = ["FINALIZER", "SETTINGS", "cleanup", "on_change", "on_delete", "on_timer", "startup"]
