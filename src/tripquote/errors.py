"""The error taxonomy: one class per error code, rendered by one handler into one envelope.

Every non-2xx response has the shape
``{success: false, errorCode, message, severity, retryable, correlationId, details, timestamp}``
where ``timestamp`` is milliseconds since the Unix epoch. HTTP statuses follow RFC 9110.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Literal


class Severity(StrEnum):
    """How bad an error is for the operator (see ``TripquoteError.alerts_each``)."""

    LOW = "LOW"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class TripquoteError(Exception):
    """Base of every error a client can see; subclasses fix code, status, severity, retryable."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500
    severity: ClassVar[Severity] = Severity.CRITICAL
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "An unexpected error occurred. It has been logged."
    retry_after_seconds: ClassVar[int | None] = None
    caused_by: ClassVar[Literal["system", "caller"]] = "system"
    """``system``: tripquote or its database failed; ``caller``: the request was wrong, stale or
    not allowed, and any agent can cause it at will."""

    @classmethod
    def alerts_each(cls) -> bool:
        """True if each error of this class goes to the alert channels: CRITICAL, system-caused."""
        # Caller-caused CRITICAL codes alert by rate (ops/prometheus/alerts.yml) instead, so no
        # agent can page the on-call at will.
        return cls.severity == Severity.CRITICAL and cls.caused_by == "system"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        http_status: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = details or {}
        self.headers: dict[str, str] = dict(headers or {})
        if self.retry_after_seconds is not None:
            self.headers.setdefault("Retry-After", str(self.retry_after_seconds))
        self.status = http_status or self.http_status
        super().__init__(self.message)


# --- the 17 codes of the note -------------------------------------------------------------


class QuoteValidationFailed(TripquoteError):
    code = "QUOTE_VALIDATION_FAILED"
    http_status = 400
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "The quote is invalid. See details.errors for every failing field."


QUERY_INVALID = "A query parameter is invalid. See details.errors for each one."
"""The QUOTE_VALIDATION_FAILED message when what failed is the URL's query, not a body."""


class QuoteStateInvalid(TripquoteError):
    code = "QUOTE_STATE_INVALID"
    http_status = 409
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "The quote's status does not allow this operation."


class QuoteConflictVersion(TripquoteError):
    code = "QUOTE_CONFLICT_VERSION"
    http_status = 409
    severity = Severity.HIGH
    caused_by = "caller"
    retryable = True
    default_message = "Quote was modified by another agent. Please reload and try again."


class QuoteAlreadySent(TripquoteError):
    code = "QUOTE_ALREADY_SENT"
    http_status = 409
    severity = Severity.CRITICAL
    caused_by = "caller"
    default_message = "The quote has been sent to the client and is locked."


class QuotePersistenceFailed(TripquoteError):
    code = "QUOTE_PERSISTENCE_FAILED"
    http_status = 503
    severity = Severity.CRITICAL
    caused_by = "system"
    retryable = True
    retry_after_seconds = 1
    default_message = "The quote could not be saved. Nothing was written; please retry."


class DatabaseTimeout(TripquoteError):
    code = "DATABASE_TIMEOUT"
    http_status = 503
    severity = Severity.HIGH
    caused_by = "system"
    retryable = True
    retry_after_seconds = 2
    default_message = "The database did not answer in time. Nothing was written; please retry."


class DatabaseTransactionAborted(TripquoteError):
    code = "DATABASE_TRANSACTION_ABORTED"
    http_status = 503
    severity = Severity.CRITICAL
    caused_by = "system"
    retryable = True
    retry_after_seconds = 1
    default_message = "The transaction was aborted by the database. Nothing was written; retry."


class AuthenticationFailed(TripquoteError):
    code = "AUTHENTICATION_FAILED"
    http_status = 401
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "A valid bearer token is required."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        # RFC 6750 §3: a 401 names the scheme it wants.
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="tripquote"')


class TokenRevoked(AuthenticationFailed):
    """AUTHENTICATION_FAILED of a token its agent's tokens were revoked after (``tripquote
    token revoke``): the process refuses that token before any work from then on
    (``agents.auth.remember_refusal``)."""

    default_message = "The bearer token was revoked; ask for a new one."


class AuthorizationFailed(TripquoteError):
    code = "AUTHORIZATION_FAILED"
    http_status = 403
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "You are not allowed to act on this resource."


class ClientNotFound(TripquoteError):
    code = "CLIENT_NOT_FOUND"
    http_status = 404
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "The client does not exist or is not yours."


class AgentNotFound(TripquoteError):
    code = "AGENT_NOT_FOUND"
    http_status = 404
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "The agent named by the token does not exist or is disabled."


class PricingValidationFailed(TripquoteError):
    code = "PRICING_VALIDATION_FAILED"
    http_status = 400
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "The quote's pricing is invalid. See details.errors."


class CurrencyInvalid(TripquoteError):
    code = "CURRENCY_INVALID"
    http_status = 400
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "The currency is not accepted."


class ItemsInconsistent(TripquoteError):
    code = "ITEMS_INCONSISTENT"
    http_status = 400
    severity = Severity.CRITICAL
    caused_by = "caller"
    default_message = "The totals sent differ from the totals computed from the items."


class QuotaExceeded(TripquoteError):
    code = "QUOTA_EXCEEDED"
    http_status = 403
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "A quota was exceeded."


class RateLimitExceeded(TripquoteError):
    code = "RATE_LIMIT_EXCEEDED"
    http_status = 429
    severity = Severity.HIGH
    caused_by = "caller"
    retryable = True
    default_message = "Too many writes. Wait for Retry-After seconds, then retry."


class InternalError(TripquoteError):
    code = "INTERNAL_ERROR"
    http_status = 500
    severity = Severity.CRITICAL
    caused_by = "system"
    default_message = "An unexpected error occurred. It has been logged."


# --- codes added where the note has none ---------------------------------------------------


class QuoteNotFound(TripquoteError):
    code = "QUOTE_NOT_FOUND"
    http_status = 404
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "The quote does not exist or is not visible to you."


class TripAlreadyStarted(TripquoteError):
    code = "TRIP_ALREADY_STARTED"
    http_status = 422
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = (
        "The trip has started: a quote can only be sent before its start date. See details.errors."
    )


class IdempotencyKeyReused(TripquoteError):
    code = "IDEMPOTENCY_KEY_REUSED"
    http_status = 422
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "This Idempotency-Key was already used with a different request."


class IdempotencyKeyInUse(TripquoteError):
    code = "IDEMPOTENCY_KEY_IN_USE"
    http_status = 409
    severity = Severity.HIGH
    caused_by = "caller"
    retryable = True
    retry_after_seconds = 1
    default_message = "A request with this Idempotency-Key is still in progress. Retry shortly."


class ServiceNotReady(TripquoteError):
    code = "SERVICE_NOT_READY"
    http_status = 503
    severity = Severity.HIGH
    caused_by = "system"
    retryable = True
    retry_after_seconds = 5
    default_message = "The service cannot reach its database right now."


class SaveOutcomeUnknown(TripquoteError):
    code = "SAVE_OUTCOME_UNKNOWN"
    http_status = 503
    severity = Severity.CRITICAL
    caused_by = "system"
    retryable = True
    retry_after_seconds = 5
    default_message = (
        "The connection to the database was lost while the save was being committed, and "
        "whether it was saved could not be found out in time. Retry only with the same "
        "Idempotency-Key, or read the quote first."
    )


class WebhookNotFound(TripquoteError):
    code = "WEBHOOK_NOT_FOUND"
    http_status = 404
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = "The webhook subscription does not exist or is not your agency's."


class WebhookUrlRefused(TripquoteError):
    code = "WEBHOOK_URL_REFUSED"
    http_status = 422
    severity = Severity.HIGH
    caused_by = "caller"
    default_message = (
        "The webhook URL is not allowed: in production an https URL whose host resolves only "
        "to public addresses. See details.errors."
    )


class NotFound(TripquoteError):
    code = "NOT_FOUND"
    http_status = 404
    severity = Severity.LOW
    caused_by = "caller"
    default_message = "No such route."


class MethodNotAllowed(TripquoteError):
    code = "METHOD_NOT_ALLOWED"
    http_status = 405
    severity = Severity.LOW
    caused_by = "caller"
    default_message = "This method is not allowed on this route."


class PayloadTooLarge(TripquoteError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413
    severity = Severity.LOW
    caused_by = "caller"
    default_message = "The request body is larger than the configured limit."


class UnsupportedMediaType(TripquoteError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415
    severity = Severity.LOW
    caused_by = "caller"
    default_message = "Send the body as JSON: Content-Type: application/json."


# --- the client's proposal page (issue 16): rendered as pages on /p/…, as envelopes on the
# agent's /proposal routes ----------------------------------------------------------------


class ProposalNotFound(TripquoteError):
    code = "PROPOSAL_NOT_FOUND"
    http_status = 404
    severity = Severity.LOW
    caused_by = "caller"
    default_message = "This proposal link is not valid. Ask your travel agent for a new one."


class ProposalExpired(TripquoteError):
    code = "PROPOSAL_EXPIRED"
    http_status = 410
    severity = Severity.LOW
    caused_by = "caller"
    default_message = "This offer has expired. Ask your travel agent for a new one."


class ProposalClosed(TripquoteError):
    code = "PROPOSAL_CLOSED"
    http_status = 409
    severity = Severity.LOW
    caused_by = "caller"
    default_message = (
        "This proposal can no longer be answered: the quote changed since it was sent."
    )


class ProposalAlreadyAnswered(TripquoteError):
    code = "PROPOSAL_ALREADY_ANSWERED"
    http_status = 409
    severity = Severity.LOW
    caused_by = "caller"
    default_message = "This proposal was already answered."


class ProposalFormInvalid(TripquoteError):
    code = "PROPOSAL_FORM_INVALID"
    http_status = 400
    severity = Severity.LOW
    caused_by = "caller"
    default_message = "The form is incomplete. See the fields marked."


ERROR_CLASSES: tuple[type[TripquoteError], ...] = (
    QuoteValidationFailed,
    QuoteStateInvalid,
    QuoteConflictVersion,
    QuoteAlreadySent,
    QuotePersistenceFailed,
    DatabaseTimeout,
    DatabaseTransactionAborted,
    AuthenticationFailed,
    AuthorizationFailed,
    ClientNotFound,
    AgentNotFound,
    PricingValidationFailed,
    CurrencyInvalid,
    ItemsInconsistent,
    QuotaExceeded,
    RateLimitExceeded,
    InternalError,
    QuoteNotFound,
    TripAlreadyStarted,
    IdempotencyKeyReused,
    IdempotencyKeyInUse,
    ServiceNotReady,
    SaveOutcomeUnknown,
    WebhookNotFound,
    WebhookUrlRefused,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    ProposalNotFound,
    ProposalExpired,
    ProposalClosed,
    ProposalAlreadyAnswered,
    ProposalFormInvalid,
)
"""Every code, in the order of the documented table (docs/errors.md)."""

ERRORS_BY_CODE: dict[str, type[TripquoteError]] = {cls.code: cls for cls in ERROR_CLASSES}


def field_error(path: str, code: str, message: str) -> dict[str, str]:
    """An entry of details.errors: ``{path, code, message}``, path like ``items[0].unitPrice``."""
    return {"path": path, "code": code, "message": message}
