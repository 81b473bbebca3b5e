"""Webhook subscription request bodies and the API form of subscriptions and deliveries."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from tripquote.quotes.schemas import AwareDateTime, Whole
from tripquote.quotes.serialize import fmt_instant
from tripquote.webhooks.events import EventType

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
"""Standard Webhooks: a secret of 24 to 64 random bytes, shown as ``whsec_`` + base64."""


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form, ``whsec_<base64 of 32 bytes>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


EventTypes = list[EventType]

_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:{_OCTET}(?:\.{_OCTET}){{3}}|(?:{_LABEL}\.)*{_TOP_LABEL})"
URL_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://{_HOST}(?::{_PORT})?(?:[/?#][!-~]*)?$"
"""An endpoint's form: ``http(s)://`` (the scheme in any case: RFC 3986 §3.1) and a host, an
IPv4 address (four numbers 0 to 255, no leading zero) or a host name (RFC 1123 §2.1: labels
of letters, digits and hyphens, neither first nor last a hyphen, at most 63 characters, the
last starting with a letter, as a top-level domain does: a name ending in a number is read
as an IPv4 address, RFC 3986 §3.2.2); an IPv6 endpoint by its name; an optional port (1 to
65535), then visible ASCII (RFC 3986 characters, percent-encoded beyond them); no user or
password. In production ``urls.check`` further takes only ``https`` and public addresses
(WEBHOOK_URL_REFUSED)."""

Url = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=2048, pattern=URL_PATTERN)
]
OverlapSeconds = Annotated[int, Strict(), Field(ge=0, le=30 * 86_400), Whole]


class SubscriptionIn(BaseModel):
    """``POST /api/agents/webhooks`` body; unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    url: Url = Field(
        description="The endpoint: https in production (http too in development).",
        examples=["https://crm.example.com/hooks/tripquote"],
    )
    eventTypes: EventTypes = Field(min_length=1, max_length=32, examples=[["quote.accepted"]])
    enabled: StrictBool = True


def _null_not_shown(schema: dict[str, Any]) -> None:
    """The OpenAPI form of a PATCH body whose fields default to None for "not sent": each
    field without its ``null`` alternative and default (a null sent is refused, ``_not_null``)."""
    for field in schema.get("properties", {}).values():
        if field.get("default", 0) is None:
            del field["default"]
        kinds = [kind for kind in field.pop("anyOf", []) if kind != {"type": "null"}]
        if len(kinds) == 1:
            field.update(kinds[0])
        elif kinds:
            field["anyOf"] = kinds


class SubscriptionPatch(BaseModel):
    """``PATCH /api/agents/webhooks/{id}`` body: the fields sent change; unknown ones are
    rejected."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_null_not_shown)

    url: Url | None = None
    eventTypes: EventTypes | None = Field(default=None, min_length=1, max_length=32)
    enabled: StrictBool | None = None

    @field_validator("url", "eventTypes", "enabled", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        """A field sent as ``null`` is refused (``required``, "<field> must not be null."), as
        the quotes' PATCH refuses it: None here means "not sent", never a value."""
        if value is None:
            raise PydanticCustomError("required", f"{info.field_name} must not be null.")
        return value


class RotationIn(BaseModel):
    """``POST /api/agents/webhooks/{id}/rotate-secret`` body: ``{}`` for the default overlap."""

    model_config = ConfigDict(extra="forbid")

    overlapSeconds: OverlapSeconds | None = Field(
        default=None,
        description="How long the previous secret still signs (both signatures sent); "
        "default TRIPQUOTE_WEBHOOK_SECRET_OVERLAP_SECONDS.",
    )


class ReplayIn(BaseModel):
    """``POST /api/agents/webhooks/{id}/replay`` body: which deliveries go out again."""

    model_config = ConfigDict(extra="forbid")

    since: AwareDateTime = Field(
        description="Deliveries created at or after this instant (ISO 8601)."
    )
    until: AwareDateTime | None = Field(default=None, description="... and before this one.")
    includeDelivered: StrictBool = Field(
        default=False, description="Also those delivered already (else the dead-lettered only)."
    )

    @field_validator("until")
    @classmethod
    def _after_since(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and until <= since:
            raise PydanticCustomError("date_order", "until must be after since")
        return until


def distinct(types: list[str]) -> list[str]:
    """``types`` without repeats, in the order given."""
    return list(dict.fromkeys(types))


def subscription_to_api(row: Any) -> dict[str, Any]:
    """The API form of a ``webhook_subscriptions`` row (never its secrets)."""
    return {
        "id": row["id"],
        "url": row["url"],
        "eventTypes": list(row["event_types"]),
        "enabled": row["enabled"],
        "disabledReason": row["disabled_reason"],
        "previousSecretExpiresAt": (
            fmt_instant(row["previous_secret_expires_at"])
            if row["previous_secret_expires_at"] is not None
            else None
        ),
        "createdAt": fmt_instant(row["created_at"]),
        "updatedAt": fmt_instant(row["updated_at"]),
    }


def delivery_to_api(row: Any) -> dict[str, Any]:
    """The API form of a ``webhook_deliveries`` row: attempts, status, last response code
    and duration, never a response body (none is stored)."""

    def instant(value: datetime | None) -> str | None:
        return fmt_instant(value) if value is not None else None

    return {
        "id": str(row["id"]),
        "eventId": row["event_id"],
        "eventType": row["type"],
        "quoteId": row["quote_id"],
        "version": row["version"],
        "status": row["status"],
        "attempts": row["attempts"],
        "createdAt": instant(row["created_at"]),
        "lastAttemptAt": instant(row["last_attempt_at"]),
        "lastStatusCode": row["last_status_code"],
        "lastDurationMs": row["last_duration_ms"],
        "lastError": row["last_error"],
        "nextAttemptAt": instant(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "deliveredAt": instant(row["delivered_at"]),
    }


# --- the answers, as the OpenAPI document shows them ------------------------------------


class WebhookOut(BaseModel):
    """A subscription (never its secret)."""

    id: str
    url: str
    eventTypes: list[str]
    enabled: bool
    disabledReason: Literal["disabled", "gone"] | None
    previousSecretExpiresAt: str | None
    createdAt: str
    updatedAt: str


class WebhookEnvelope(BaseModel):
    """One subscription."""

    success: Literal[True]
    webhook: WebhookOut


class WebhookWithSecret(WebhookEnvelope):
    """A subscription and its new signing secret, shown this once (``whsec_…``)."""

    secret: str


class WebhookListEnvelope(BaseModel):
    """The agency's subscriptions."""

    success: Literal[True]
    webhooks: list[WebhookOut]


class WebhookDeleted(BaseModel):
    """A subscription deleted."""

    success: Literal[True]
    webhookId: str


class DeliveryOut(BaseModel):
    """A delivery of one event to one subscription."""

    id: str
    eventId: str
    eventType: str
    quoteId: str
    version: int
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    createdAt: str
    lastAttemptAt: str | None
    lastStatusCode: int | None
    lastDurationMs: float | None
    lastError: str | None
    nextAttemptAt: str | None
    deliveredAt: str | None


class DeliveryListEnvelope(BaseModel):
    """A page of a subscription's deliveries, newest first."""

    success: Literal[True]
    deliveries: list[DeliveryOut]
    nextCursor: str | None


class ReplayEnvelope(BaseModel):
    """How many deliveries were queued again."""

    success: Literal[True]
    webhookId: str
    replayed: int
    since: str
