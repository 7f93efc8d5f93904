"""The one error tree every layer speaks (STYLE rules 4 and 5).

Every failure edgefleet raises is an ``EdgefleetError``, classified once where its cause is known:

- ``TransientError(message, delay)``: the cause may go away by itself (network, API server, busy store). The
  operator maps it to a kopf temporary error and ``Reconciling=True``; loops retry after ``delay`` seconds.
  ``ConflictError`` (an optimistic-concurrency conflict) is one.
- ``InvalidSpecError(message, reason)``: the input cannot be satisfied as written; retrying will not help until it
  changes. ``reason`` is a ``Reason`` (a CamelCase condition reason). The operator maps it to a kopf permanent error
  and ``Stalled=True``. ``Reason.is_compile_failure`` says which reasons mean "this spec's compile failed", the
  fact the operator records in ``status.lastAttemptedRevision`` so that it never recompiles a failed spec.
- ``NotFoundError``: the named object or file does not exist (neither retryable nor the spec's fault by itself).
- ``IntegrityError``: untrusted bytes failed a check (digest, signature, size, shape, canonical packing). The
  caller decides whether that is transient (try another mirror) or final (reject the artifact).

Adapters convert vendor exceptions into these inside the adapter; nothing above an adapter catches a vendor type.
Subclasses exist only where a caller must tell one case from another (e.g. ``ConflictError`` to re-read and retry).
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Why a spec cannot be satisfied: the ``reason`` of a Stalled condition, an event, or a CLI error.

    >>> Reason.ACCURACY_GATE_FAILED.is_compile_failure
    True
    >>> Reason.STABLE_REVISION_MISSING.is_compile_failure
    False
    >>> Reason("SourceMissing") is Reason.SOURCE_MISSING
    True
    """

    # The object itself
    INVALID_SPEC = "InvalidSpec"
    INVALID_CONFIG = "InvalidConfig"
    REJECTED = "Rejected"
    UNKNOWN_KIND = "UnknownKind"
    # What the operator needs besides the spec
    STABLE_REVISION_MISSING = "StableRevisionMissing"
    CORRUPT_REVISION = "CorruptRevision"
    SIGNING_KEY_MISSING = "SigningKeyMissing"
    SIGNING_KEY_INVALID = "SigningKeyInvalid"
    COMPILER_MISSING = "CompilerMissing"
    # Compile failures: the spec's model cannot be compiled as asked
    ACCURACY_GATE_FAILED = "AccuracyGateFailed"
    ACCURACY_BUDGET_UNREACHABLE = "AccuracyBudgetUnreachable"
    INVALID_INPUT = "InvalidInput"
    COMPILER_ERROR = "CompilerError"
    SOURCE_DIGEST_MISMATCH = "SourceDigestMismatch"
    SOURCE_MISSING = "SourceMissing"
    SOURCE_SCHEME = "SourceScheme"
    SOURCE_TOO_LARGE = "SourceTooLarge"
    SOURCE_FORBIDDEN = "SourceForbidden"
    INVALID_MODEL = "InvalidModel"
    UNSUPPORTED_MODEL = "UnsupportedModel"
    COMPILE_MEMORY_EXCEEDED = "CompileMemoryExceeded"
    BUNDLE_REJECTED = "BundleRejected"
    # Artifacts a device cannot install as the spec names them (the device rejects the digest until it changes)
    DOWNLOAD_FAILED = "DownloadFailed"
    TRUNCATED = "Truncated"
    OVERSIZED = "Oversized"
    FORBIDDEN_ADDRESS = "ForbiddenAddress"

    @property
    def is_compile_failure(self) -> bool:
        """True for reasons that mean the spec's compile failed (recorded, never retried for the same revision)."""
        return self in _COMPILE_FAILURES


_COMPILE_FAILURES = frozenset(
    {
        Reason.ACCURACY_GATE_FAILED,
        Reason.ACCURACY_BUDGET_UNREACHABLE,
        Reason.INVALID_INPUT,
        Reason.COMPILER_ERROR,
        Reason.SOURCE_DIGEST_MISMATCH,
        Reason.SOURCE_MISSING,
        Reason.SOURCE_SCHEME,
        Reason.SOURCE_TOO_LARGE,
        Reason.SOURCE_FORBIDDEN,
        Reason.INVALID_MODEL,
        Reason.UNSUPPORTED_MODEL,
        Reason.COMPILE_MEMORY_EXCEEDED,
        Reason.BUNDLE_REJECTED,
    }
)


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


class ConflictError(TransientError):
    """An optimistic-concurrency conflict (HTTP 409): re-read the object and try again."""


class InvalidSpecError(EdgefleetError):
    """The spec cannot be satisfied as written; retrying will not help until it changes."""

    def __init__(self, message: str, reason: Reason | str = Reason.INVALID_SPEC) -> None:
        super().__init__(message)
        self.reason = Reason(reason)

    def __reduce__(self) -> tuple[type[InvalidSpecError], tuple[str, str]]:
        # Keep the reason across process boundaries (compile workers); the default pickles only the message.
        return (type(self), (str(self), self.reason.value))


class NotFoundError(EdgefleetError):
    """The named object, file or artifact does not exist."""


class IntegrityError(EdgefleetError):
    """Untrusted bytes failed a check (digest, signature, size limit, structure, canonical packing)."""


__all__ = [
    "ConflictError",
    "EdgefleetError",
    "IntegrityError",
    "InvalidSpecError",
    "NotFoundError",
    "Reason",
    "TransientError",
]
