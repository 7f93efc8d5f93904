"""The two failure classes every layer speaks (STYLE rule 4).

Adapters convert vendor exceptions into one of these; the operator maps ``TransientError`` to a kopf temporary
error plus ``Reconciling=True`` and ``InvalidSpecError`` to a permanent error plus ``Stalled=True``.
"""

from __future__ import annotations


class EdgefleetError(Exception):
    """Base of edgefleet's own errors."""


class TransientError(EdgefleetError):
    """The cause may go away by itself (network, API server, busy store): retry after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay

    def __reduce__(self) -> tuple[type[TransientError], tuple[str, float]]:
        # Keep the delay across process boundaries (compile workers); the default pickles only the message.
        return (type(self), (str(self), self.delay))


class InvalidSpecError(EdgefleetError):
    """The spec cannot be satisfied as written; retrying will not help until it changes."""

    def __init__(self, message: str, reason: str = "InvalidSpec") -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidSpecError], tuple[str, str]]:
        # Keep the reason across process boundaries (compile workers); the default pickles only the message.
        return (type(self), (str(self), self.reason))


__all__ = ["EdgefleetError", "InvalidSpecError", "TransientError"]
