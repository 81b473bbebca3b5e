"""Response shapes, for the OpenAPI document only: the routes render JSON themselves (orjson,
amounts as strings) and these models describe exactly what they send."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tripquote.errors import ERROR_CLASSES


class FieldErrorOut(BaseModel):
    """One failing field: JSON path, machine code, human message."""

    path: str = Field(examples=["items[0].unitPrice"])
    code: str = Field(examples=["out_of_range"])
    message: str


class ErrorEnvelope(BaseModel):
    """Every non-2xx response."""

    success: Literal[False]
    errorCode: str = Field(json_schema_extra={"enum": [cls.code for cls in ERROR_CLASSES]})
    message: str
    severity: Literal["LOW", "HIGH", "CRITICAL"]
    retryable: bool
    correlationId: str
    details: dict[str, Any] = Field(
        description="Code-specific: errors[] of FieldErrorOut for validation codes; "
        "expectedVersion/actualVersion/changedFields for conflicts; limit/current for quotas."
    )
    timestamp: int = Field(description="Milliseconds since the Unix epoch.")


class PricingOut(BaseModel):
    """Computed totals, decimal strings in the currency's ISO 4217 minor units."""

    subtotal: str = Field(examples=["6739.50"])
    markupAmount: str = Field(examples=["1010.93"])
    discount: str = Field(examples=["120.00"])
    total: str = Field(examples=["7630.43"])


class ItemOut(BaseModel):
    """A priced item."""

    type: Literal["FLIGHT", "HOTEL", "ACTIVITY", "TRANSFER", "OTHER"]
    description: str
    quantity: int
    unitPrice: str
    lineTotal: str
    details: dict[str, Any]


class QuoteOut(BaseModel):
    """A stored quote."""

    id: str
    agentId: str
    clientId: str
    tripName: str
    destination: str
    startDate: str = Field(examples=["2027-06-12"])
    endDate: str
    travelers: int
    currency: str
    markupPercent: str = Field(examples=["15.00"])
    discount: str
    expiresInDays: int
    notes: str | None
    items: list[ItemOut]
    pricing: PricingOut
    status: Literal["DRAFT", "SENT", "ACCEPTED", "REJECTED", "EXPIRED", "CANCELLED"]
    version: int
    createdAt: str
    lastModifiedBy: str
    lastModifiedAt: str
    sentAt: str | None
    expiresAt: str | None


class SaveEnvelope(BaseModel):
    """A committed create, update or transition."""

    success: Literal[True]
    quoteId: str
    version: int
    savedAt: str
    quote: QuoteOut


class ReadEnvelope(BaseModel):
    """One quote."""

    success: Literal[True]
    quoteId: str
    version: int
    quote: QuoteOut


class ListEnvelope(BaseModel):
    """A page of quotes; pass ``nextCursor`` as ``cursor`` for the next one."""

    success: Literal[True]
    quotes: list[QuoteOut]
    nextCursor: str | None


class RevisionOut(BaseModel):
    """One committed version."""

    version: int
    operation: str
    status: str
    actorId: str
    correlationId: str
    createdAt: str
    snapshot: QuoteOut


class RevisionsEnvelope(BaseModel):
    """A quote's history."""

    success: Literal[True]
    quoteId: str
    revisions: list[RevisionOut]


class RevisionEnvelope(BaseModel):
    """One version of a quote's history."""

    success: Literal[True]
    quoteId: str
    revision: RevisionOut


class ClientOut(BaseModel):
    """A client of the agency."""

    id: str
    agentId: str
    name: str
    email: str | None
    phone: str | None
    createdAt: str


class ClientEnvelope(BaseModel):
    """One client."""

    success: Literal[True]
    clientId: str
    client: ClientOut


class ClientListEnvelope(BaseModel):
    """A page of clients."""

    success: Literal[True]
    clients: list[ClientOut]
    nextCursor: str | None


_ERROR_STATUSES = (400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 429, 500, 503)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": "Error envelope (see docs/errors.md)."}
    for status in _ERROR_STATUSES
}
"""Every route may answer with the envelope at these statuses."""


def ok(model: type[BaseModel], status: int = 200) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: its success model plus every error status."""
    return {status: {"model": model}, **ERROR_RESPONSES}


class HealthOut(BaseModel):
    """``/health/live`` and ``/health/ready`` when the answer is yes."""

    status: Literal["live", "ready"]
    database: Literal["ok"] | None = None
