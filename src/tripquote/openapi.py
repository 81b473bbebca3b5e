"""Shapes for the OpenAPI document only: the routes render JSON themselves (orjson, amounts as
strings) and these models describe exactly what they send; ``responses`` documents a route's
success, the errors it really raises and the headers that come with each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tripquote import etags
from tripquote.errors import (
    ERROR_CLASSES,
    AuthenticationFailed,
    DatabaseTimeout,
    DatabaseTransactionAborted,
    InternalError,
    PayloadTooLarge,
    QuotePersistenceFailed,
    QuoteValidationFailed,
    RateLimitExceeded,
    TripquoteError,
    UnsupportedMediaType,
)
from tripquote.quotes.schemas import QuoteIn


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

    id: str = Field(
        description="The item's id (a UUID), kept from version to version: send it back with "
        "the item in a PATCH's `items` to edit that item.",
        examples=["01a2493d-90b2-7df8-9a89-0bb96bdcd1e9"],
    )
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


class ProposalAnswerOut(BaseModel):
    """The client's answer on the link."""

    status: Literal["ACCEPTED", "REJECTED"]
    signerName: str | None
    answeredAt: str
    declineReason: str | None
    proposalHash: str = Field(description="SHA-256 of the proposal the page showed.")


class ProposalOut(BaseModel):
    """A quote's proposal as sent: its client link and what became of it."""

    url: str | None = Field(description="The client's link; null once it ended.")
    version: int = Field(description="The quote's version sent.")
    proposalHash: str = Field(description="SHA-256 (hex) of the proposal's JSON text.")
    createdAt: str
    expiresAt: str
    endedAt: str | None
    endedReason: Literal["REVOKED", "SUPERSEDED", "CANCELLED"] | None
    page: Literal[
        "OPEN", "ANSWERED", "PROPOSAL_NOT_FOUND", "PROPOSAL_EXPIRED", "PROPOSAL_CLOSED"
    ] = Field(
        description="What the client's link shows now: the answer form (OPEN), the "
        "answer's confirmation (ANSWERED), or the refusal page it answers with (its error "
        "code: ended, expired, or the quote no longer at the version sent)."
    )
    views: int
    firstViewedAt: str | None
    lastViewedAt: str | None
    answer: ProposalAnswerOut | None


class ProposalEnvelope(BaseModel):
    """A quote's latest proposal."""

    success: Literal[True]
    quoteId: str
    proposal: ProposalOut


class SendEnvelope(SaveEnvelope):
    """A committed send, with the proposal it made (its client link)."""

    proposal: ProposalOut | None = Field(
        description="The proposal the send made; null only when it could not be read after "
        "the send committed (the database went away meanwhile): the send stands, and "
        "`GET …/proposal` gives it."
    )


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


class MergeOut(BaseModel):
    """What a merged save merged: fields by name, items as ``items[<id>]``, the items' order
    as ``items order``."""

    baseVersion: int = Field(description="The version the save was made on.")
    appliedOntoVersion: int = Field(description="The version it was merged with and written over.")
    fromRequest: list[str] = Field(examples=[["notes"]])
    fromCurrent: list[str] = Field(examples=[["items[01a2493d-90b2-7df8-9a89-0bb96bdcd1e9]"]])


class RevisionEntryOut(BaseModel):
    """One committed version in a history page (its snapshot: ``…/revisions/{version}``)."""

    version: int
    operation: Literal["CREATE", "UPDATE", "DELETE", "SEND", "ACCEPT", "REJECT", "EXPIRE"]
    status: Literal["DRAFT", "SENT", "ACCEPTED", "REJECTED", "EXPIRED", "CANCELLED"]
    actorId: str = Field(description="The agent's id, or `system` for the expiry sweep.")
    correlationId: str
    createdAt: str
    changedFields: list[str] = Field(
        description="The fields a client sets, and `status`, whose values differ from the "
        "version before (sorted; the same rule as a 409's `changedFields`); [] for version 1.",
        examples=[["items", "notes"]],
    )
    merge: MergeOut | None = Field(
        description="For a version written by a merged save (`Prefer: merge`): its base "
        "version, the version it was applied onto and what came from each side; null otherwise."
    )


class RevisionsEnvelope(BaseModel):
    """A page of a quote's history, oldest first; pass ``nextCursor`` as ``cursor`` for the
    next one (null on the last page)."""

    success: Literal[True]
    quoteId: str
    revisions: list[RevisionEntryOut]
    nextCursor: str | None


class RevisionOut(BaseModel):
    """One committed version with its snapshot."""

    version: int
    operation: str
    status: str
    actorId: str
    correlationId: str
    createdAt: str
    merge: MergeOut | None
    snapshot: QuoteOut


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


def _patch_schema(schema: dict[str, Any]) -> None:
    schema.pop("required", None)  # any subset of the fields
    schema["examples"] = [{"travelers": 3}]


class QuotePatch(QuoteIn):
    """A PATCH body: any of a quote's fields; the version edited comes in If-Match.

    (The body may instead carry ``version``; both given must name the same version: a rule
    across two parts of the request that OpenAPI cannot state, so the document shows one way.)
    """

    model_config = ConfigDict(title="QuotePatch", json_schema_extra=_patch_schema)


Headers = dict[str, dict[str, Any]]

CORRELATION_ID: Headers = {
    "X-Correlation-ID": {
        "description": "The request's correlation ID: the client's, if well-formed, or REQ-...",
        "required": True,
        "schema": {"type": "string"},
    }
}
ETAG: Headers = {
    "ETag": {
        "description": 'The quote version\'s strong ETag, e.g. "5" ("5-expired" once it reads '
        "EXPIRED); send it as If-Match to edit that version, as If-None-Match to read the "
        "quote only if it changed.",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[1-9][0-9]*(-expired)?"$'},
    }
}
MERGED: Headers = {
    "Preference-Applied": {
        "description": "`merge` (RFC 7240 §3) when the PATCH, sent with `Prefer: merge` on a "
        "stale version, was merged with what was saved since (its revision's `merge` says "
        "what came from each side); absent otherwise.",
        "required": False,
        "schema": {"type": "string", "enum": ["merge"]},
    }
}
LOCATION: Headers = {
    "Location": {
        "description": "The new resource's path (RFC 9110 §10.2.2).",
        "required": True,
        "schema": {"type": "string"},
    }
}
REPLAYED: Headers = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request with the "
        "same Idempotency-Key and body.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
_RETRY_AFTER = {
    "description": "Seconds to wait before retrying (RFC 9110 §10.2.3).",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_RATE_LIMIT: Headers = {
    "RateLimit-Policy": {
        "description": "The limit and its window, e.g. `120;w=60` (IETF RateLimit headers).",
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": "e.g. `limit=120, remaining=0, reset=17`.",
        "schema": {"type": "string"},
    },
}
_ACCEPT_ENCODING: Headers = {
    "Accept-Encoding": {
        "description": "`identity` when the body came with a content coding (`Content-Encoding: "
        "gzip`): send it uncoded (RFC 9110 §12.5.3).",
        "required": False,
        "schema": {"type": "string", "enum": ["identity"]},
    }
}
_WWW_AUTHENTICATE: Headers = {
    "WWW-Authenticate": {
        "description": 'Bearer realm="tripquote" (RFC 6750 §3).',
        "required": True,
        "schema": {"type": "string"},
    }
}

DATABASE: tuple[type[TripquoteError], ...] = (
    QuotePersistenceFailed,
    DatabaseTimeout,
    DatabaseTransactionAborted,
    InternalError,
)
"""What any route that reaches the database may answer (and INTERNAL_ERROR: a bug)."""
BODY: tuple[type[TripquoteError], ...] = (
    QuoteValidationFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
)
"""What any route that reads a JSON body may answer."""

Raised = type[TripquoteError] | tuple[type[TripquoteError], int]
"""An error class, or an error class and the status it comes with here (a stale If-Match: 412)."""


def responses(
    model: type[BaseModel] | None,
    status: int = 200,
    *,
    headers: Headers | None = None,
    errors: Iterable[Raised],
    not_modified: Headers | None = None,
) -> dict[int | str, dict[str, Any]]:
    """``responses=``: the success (``model``, ``headers``), 304 Not Modified with
    ``not_modified``'s headers when given (a GET honouring If-None-Match), and each error
    status, codes named."""
    # model None: the success schema is the return annotation's. Each error status names its
    # codes and the headers they come with (Retry-After required when every code sends it).
    by_status: dict[int, list[type[TripquoteError]]] = {}
    for raised in errors:
        cls, code_status = raised if isinstance(raised, tuple) else (raised, raised.http_status)
        by_status.setdefault(code_status, []).append(cls)
    success: dict[str, Any] = {
        "description": "Success.",
        "headers": {**(headers or {}), **CORRELATION_ID},
    }
    if model is not None:
        success["model"] = model
    documented: dict[int | str, dict[str, Any]] = {status: success}
    if not_modified is not None:
        documented[304] = {
            "description": "Not Modified: If-None-Match names the current ETag (RFC 9110 "
            "§15.4.5); no content.",
            "headers": {**not_modified, **CORRELATION_ID},
        }
    for code_status, classes in sorted(by_status.items()):
        codes = ", ".join(f"`{cls.code}`" for cls in dict.fromkeys(classes))
        documented[code_status] = {
            "model": ErrorEnvelope,
            "description": f"The error envelope: {codes} (see docs/errors.md).",
            "headers": {**_error_headers(classes), **CORRELATION_ID},
        }
    return documented


def _error_headers(classes: list[type[TripquoteError]]) -> Headers:
    headers: Headers = {}
    retry_after = [
        cls.retry_after_seconds is not None or cls is RateLimitExceeded for cls in classes
    ]
    if any(retry_after):
        headers["Retry-After"] = {**_RETRY_AFTER, "required": all(retry_after)}
    if RateLimitExceeded in classes:
        headers.update(_RATE_LIMIT)
    if AuthenticationFailed in classes:
        headers.update(_WWW_AUTHENTICATE)
    if UnsupportedMediaType in classes:
        headers.update(_ACCEPT_ENCODING)
    return headers


_FRAMEWORK_422 = {"$ref": "#/components/schemas/HTTPValidationError"}

_NONE_MATCH_ON_WRITE: dict[str, Any] = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": 'Not if the quote is at these versions, e.g. "5", or `*` (RFC 9110 §13.1.2): '
    "naming the version acted on, nothing is done (412 QUOTE_CONFLICT_VERSION, "
    '`details.precondition` "If-None-Match").',
    "schema": {"type": "string", "pattern": etags.PATTERN},
}
_MATCH_ON_READ: dict[str, Any] = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'Only if the quote is still at one of these ETags, e.g. "5", or `*` (RFC '
    "9110 §13.1.1, strong comparison): else 412 QUOTE_CONFLICT_VERSION, "
    '`details.precondition` "If-Match".',
    "schema": {"type": "string", "pattern": etags.PATTERN},
}


def complete(
    document: dict[str, Any], *, routes: Iterable[object], currencies: Iterable[str]
) -> None:
    """Add the request bodies' models, the bearer scheme, the configured currencies (an enum),
    If-Match as the required way to name the version acted on, and the links from each
    response naming a quote to what can be done with it next; drop FastAPI's 422 (ours is 400);
    mark every query parameter ``allowEmptyValue``: an empty one is an absent one
    (``middleware.EmptyQueryMiddleware``)."""
    # The models come from each route's body_schemas (routing.TrackedRoute); FastAPI documents a
    # 422 for every route with parameters, but a refused parameter is our 400 envelope.
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for route in routes:
        schemas.update(getattr(route, "body_schemas", {}))
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    for model in ("QuoteIn", "QuotePatch"):
        currency = schemas.get(model, {}).get("properties", {}).get("currency")
        if currency is not None:
            currency.pop("pattern", None)
            currency["enum"] = sorted(currencies)
    for path, operations in document["paths"].items():
        for operation in operations.values():
            framework = operation["responses"].get("422", {}).get("content", {})
            if framework.get("application/json", {}).get("schema") == _FRAMEWORK_422:
                del operation["responses"]["422"]
            if path.startswith("/api/"):
                operation["security"] = [{"bearerAuth": []}]
            headers = set()
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "query":
                    parameter["allowEmptyValue"] = True
                if parameter["in"] == "header":
                    headers.add(parameter["name"])
            # The other precondition of each, read with its own (deps: QuoteCall's none_match,
            # quote_read), documented here rather than as one more parameter solved per request.
            if "If-Match" in headers and "If-None-Match" not in headers:
                operation["parameters"].append(_NONE_MATCH_ON_WRITE)
            if "If-None-Match" in headers and "If-Match" not in headers:
                operation["parameters"].append(_MATCH_ON_READ)
    _add_links(document)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)


_Q = "/api/agents/quotes"
_QUOTE = _Q + "/{quote_id}"
_ACTS_ON_VERSION = (
    ("patch", _QUOTE),
    ("delete", _QUOTE),
    ("post", _QUOTE + "/send"),
    ("post", _QUOTE + "/accept"),
    ("post", _QUOTE + "/reject"),
)
_READS = (("get", _QUOTE), ("get", _QUOTE + "/revisions"), ("get", _QUOTE + "/revisions/{version}"))
_PROPOSAL = (
    ("get", _QUOTE + "/proposal"),
    ("get", _QUOTE + "/proposal.pdf"),
    ("post", _QUOTE + "/proposal/revoke"),
)
_SENT = (
    ("post", _QUOTE + "/send", "200"),
    ("post", _QUOTE + "/accept", "200"),
    ("post", _QUOTE + "/reject", "200"),
)
"""The responses that name a quote with a proposal."""
_NAMES_A_QUOTE = (
    ("post", _Q, "201"),
    ("get", _QUOTE, "200"),
    *((method, path, "200") for method, path in _ACTS_ON_VERSION),
)
"""The responses that carry a quote (``quoteId``, ``version``, its ETag)."""


def _add_links(document: dict[str, Any]) -> None:
    """OpenAPI links (3.1 §4.8.20) from each response naming a quote to reading it, its history
    and its version, and to every edit of that version (If-Match: the response's ETag); from a
    send, accept or reject to its proposal too."""
    paths = document["paths"]
    links: dict[str, Any] = {}
    for method, path in _READS + _ACTS_ON_VERSION:
        operation = paths[path][method]
        parameters: dict[str, str] = {"quote_id": "$response.body#/quoteId"}
        if path.endswith("{version}"):
            parameters["version"] = "$response.body#/version"
        if (method, path) in _ACTS_ON_VERSION:
            parameters["If-Match"] = "$response.header.ETag"
        name = operation["operationId"].partition("_api_")[0]  # the route's name: read_quote
        links[name] = {
            "operationId": operation["operationId"],
            "parameters": parameters,
            "description": operation.get("summary", ""),
        }
    for method, path, status in _NAMES_A_QUOTE:
        paths[path][method]["responses"][status]["links"] = links
    proposal_links = {
        paths[path][method]["operationId"].partition("_api_")[0]: {
            "operationId": paths[path][method]["operationId"],
            "parameters": {"quote_id": "$response.body#/quoteId"},
            "description": paths[path][method].get("summary", ""),
        }
        for method, path in _PROPOSAL
    }
    for method, path, status in _SENT:  # a quote that was sent has a proposal
        paths[path][method]["responses"][status]["links"] = {**links, **proposal_links}


class HealthOut(BaseModel):
    """``/health/live`` and ``/health/ready`` when the answer is yes."""

    status: Literal["live", "ready"]
    database: Literal["ok"] | None = None
