"""``/api/agents/quotes`` routes: take the agent, ids, body (``deps``), call one use case,
render. Each is one tracked operation, named in its decorator (``routing.TrackedRoute``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic_core import PydanticCustomError
from starlette.requests import Request
from starlette.responses import Response

from tripquote.agents.auth import Caller
from tripquote.db.transaction import Tx
from tripquote.deps import (
    CurrentAgent,
    IfMatch,
    QuoteBody,
    QuoteId,
    QuotePatchBody,
    Quotes,
    VersionBodyDep,
    WritingAgent,
    etag,
    idempotency_key_header,
)
from tripquote.errors import (
    QUERY_INVALID,
    AgentNotFound,
    AuthenticationFailed,
    AuthorizationFailed,
    ClientNotFound,
    CurrencyInvalid,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    ItemsInconsistent,
    PricingValidationFailed,
    QuotaExceeded,
    QuoteAlreadySent,
    QuoteConflictVersion,
    QuoteNotFound,
    QuoteStateInvalid,
    QuoteValidationFailed,
    RateLimitExceeded,
    field_error,
)
from tripquote.http import json_response
from tripquote.idempotency import (
    Claim,
    IdempotencyStore,
    StoredResponse,
    complete,
    parse_key,
    request_fingerprint,
)
from tripquote.json import dumps
from tripquote.observability.context import get_correlation_id
from tripquote.observability.operations import current_operation
from tripquote.openapi import (
    BODY,
    DATABASE,
    ETAG,
    LOCATION,
    REPLAYED,
    ListEnvelope,
    Raised,
    ReadEnvelope,
    RevisionEnvelope,
    RevisionsEnvelope,
    SaveEnvelope,
    responses,
)
from tripquote.pagination import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    LIMIT_BOUNDS,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from tripquote.quotes.lifecycle import Operation, QuoteStatus
from tripquote.quotes.results import Filters
from tripquote.quotes.schemas import DATETIME_PATTERN, parse_aware_datetime
from tripquote.quotes.service import OnSaved, QuoteService
from tripquote.quotes.service import SavedQuote as Saved
from tripquote.routing import TrackedRoute, operation
from tripquote.validation import NO_NUL, query_text

router = APIRouter(prefix="/api/agents/quotes", tags=["quotes"], route_class=TrackedRoute)

# What each route really answers besides its success (docs/errors.md has every code).
_AUTH = (AuthenticationFailed, AgentNotFound)
_VISIBLE = (*_AUTH, QuoteNotFound, AuthorizationFailed)
_SAVE_CHECKS = (
    *BODY,
    CurrencyInvalid,
    PricingValidationFailed,
    ItemsInconsistent,
    QuotaExceeded,
    ClientNotFound,
    AuthorizationFailed,
    RateLimitExceeded,
)
_IDEMPOTENT = (IdempotencyKeyReused, IdempotencyKeyInUse)
_VERSIONED: tuple[Raised, ...] = (
    QuoteConflictVersion,
    (QuoteConflictVersion, 412),  # the stale version came in If-Match
    QuoteStateInvalid,
    QuoteAlreadySent,
)
CREATE_ERRORS = (*_AUTH, *_SAVE_CHECKS, *_IDEMPOTENT, *DATABASE)
LIST_ERRORS = (*_AUTH, QuoteValidationFailed, *DATABASE)
READ_ERRORS = (*_VISIBLE, *DATABASE)
UPDATE_ERRORS = (*_VISIBLE, *_SAVE_CHECKS, *_VERSIONED, *DATABASE)
TRANSITION_ERRORS = (*_VISIBLE, *BODY, RateLimitExceeded, *_VERSIONED, *_IDEMPOTENT, *DATABASE)
REVISION_ERRORS = (*_VISIBLE, QuoteValidationFailed, *DATABASE)


def saved_response(saved: Saved, *, status: int) -> StoredResponse:
    """``{success, quoteId, version, savedAt, quote}`` with its ETag (and Location on 201)."""
    quote_id = saved.quote["id"]
    headers = {"ETag": etag(saved.version)}
    if status == 201:
        headers["Location"] = f"/api/agents/quotes/{quote_id}"
    body = {
        "success": True,
        "quoteId": quote_id,
        "version": saved.version,
        "savedAt": saved.quote["lastModifiedAt"],
        "quote": saved.quote,
    }
    return StoredResponse(status=status, body=dumps(body), headers=headers)


def _to_response(stored: StoredResponse, *, replayed: bool = False) -> Response:
    headers = dict(stored.headers)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        content=stored.body,
        status_code=stored.status,
        media_type="application/json",
        headers=headers,
    )


async def _idempotent_save(
    request: Request,
    *,
    idempotency_key: str | None,
    caller: Caller,
    body: Any,
    status: int,
    save: Callable[[OnSaved | None], Awaitable[Saved]],
) -> Response:
    """Run ``save`` under the request's Idempotency-Key, if it has one (QUOTE_VALIDATION_FAILED
    if it is not 1-255 visible ASCII characters)."""
    key = parse_key(idempotency_key)
    if key is None:
        return _to_response(saved_response(await save(None), status=status))
    fingerprint = request_fingerprint(
        request.method, request.url.path, body, if_match=request.headers.get("if-match")
    )
    keys: IdempotencyStore = request.app.state.idempotency
    claimed = await keys.claim(caller=caller, key=key, fingerprint=fingerprint)
    if isinstance(claimed, StoredResponse):
        return _to_response(claimed, replayed=True)
    claim: Claim = claimed

    async def store(tx: Tx, saved: Saved) -> None:
        await complete(tx, claim, saved_response(saved, status=status))

    try:
        saved = await save(store)
    except BaseException:
        await keys.release(claim)
        raise
    return _to_response(saved_response(saved, status=status))


_SAVED = {**ETAG, **REPLAYED}


@router.post(
    "",
    status_code=201,
    openapi_extra=operation("quote.create"),
    responses=responses(SaveEnvelope, 201, headers={**_SAVED, **LOCATION}, errors=CREATE_ERRORS),
)
async def create_quote(
    request: Request,
    caller: WritingAgent,
    body: QuoteBody,
    quotes: Quotes,
    idempotency_key: str = idempotency_key_header(),
) -> Response:
    """Create a quote (DRAFT, version 1); 201 ``{success, quoteId, version, savedAt, quote}``.
    Honours ``Idempotency-Key``."""

    async def save(on_saved: OnSaved | None) -> Saved:
        saved = await quotes.create(
            caller=caller,
            body=body,
            correlation_id=get_correlation_id(),
            on_saved=on_saved,
        )
        tracked = current_operation()
        if tracked is not None:
            tracked.quote_id = saved.quote["id"]
        return saved

    return await _idempotent_save(
        request,
        idempotency_key=idempotency_key,
        caller=caller,
        body=body,
        status=201,
        save=save,
    )


@router.get(
    "",
    openapi_extra=operation("quote.list"),
    responses=responses(ListEnvelope, errors=LIST_ERRORS),
)
async def list_quotes(
    caller: CurrentAgent,
    quotes: Quotes,
    status: QuoteStatus | None = Query(None),
    client_id: str | None = Query(
        None, alias="clientId", max_length=64, json_schema_extra={"pattern": NO_NUL}
    ),
    updated_since: str | None = Query(
        None,
        alias="updatedSince",
        json_schema_extra={
            "anyOf": [  # empty is no filter, as absent
                {"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN},
                {"type": "string", "maxLength": 0},
            ]
        },
    ),
    limit: int = Query(DEFAULT_LIMIT, json_schema_extra=LIMIT_BOUNDS),
    cursor: str | None = Query(None, json_schema_extra={"pattern": CURSOR_PATTERN}),
) -> Response:
    """The caller's quotes (an admin: the agency's), newest first;
    ``{success, quotes, nextCursor}``."""
    check_limit(limit)
    client_id = query_text(client_id, "clientId")
    since = _instant(updated_since, "updatedSince") if updated_since else None
    page, after = await quotes.list(
        caller=caller,
        filters=Filters(
            status=status.value if status else None,
            client_id=client_id,
            updated_since=since,
        ),
        before=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    next_cursor = encode_cursor(*after) if after is not None else None
    return json_response({"success": True, "quotes": page, "nextCursor": next_cursor})


def _instant(text: str, name: str) -> datetime:
    """A query's ISO 8601 instant with its UTC offset (the body's rule, ``parse_aware_datetime``),
    in UTC; QUOTE_VALIDATION_FAILED at ``name``. An instant outside years 1-9999 once in UTC
    (``0001-01-01T00:00:00+01:00``) is the nearest one inside: every quote is later or earlier."""
    try:
        at = parse_aware_datetime(text)
    except PydanticCustomError as exc:
        raise QuoteValidationFailed(
            QUERY_INVALID, details={"errors": [field_error(name, exc.type, f"{name} {exc}.")]}
        ) from None
    try:
        return at.astimezone(UTC)
    except OverflowError:
        return (datetime.min if at.year == 1 else datetime.max).replace(tzinfo=UTC)


@router.get(
    "/{quote_id}",
    openapi_extra=operation("quote.read"),
    responses=responses(ReadEnvelope, headers=ETAG, errors=READ_ERRORS),
)
async def read_quote(quote_id: QuoteId, caller: CurrentAgent, quotes: Quotes) -> Response:
    """One quote; ``{success, quoteId, version, quote}`` with ``ETag: "<version>"``."""
    quote = await quotes.read(caller=caller, quote_id=quote_id)
    return json_response(
        {"success": True, "quoteId": quote["id"], "version": quote["version"], "quote": quote},
        headers={"ETag": etag(quote["version"])},
    )


@router.patch(
    "/{quote_id}",
    openapi_extra=operation("quote.update"),
    responses=responses(SaveEnvelope, headers=ETAG, errors=UPDATE_ERRORS),
)
async def update_quote(
    quote_id: QuoteId,
    caller: WritingAgent,
    if_match: IfMatch,
    body: QuotePatchBody,
    quotes: Quotes,
) -> Response:
    """Partial update checked against the client's version (body ``version`` or If-Match)."""
    saved = await quotes.update(
        caller=caller,
        quote_id=quote_id,
        body=body,
        if_match=if_match,
        correlation_id=get_correlation_id(),
    )
    return _to_response(saved_response(saved, status=200))


async def _transition(
    request: Request,
    operation_: Operation,
    *,
    quote_id: str,
    caller: Caller,
    if_match: int | None,
    body: Any,
    idempotency_key: str | None,
    quotes: QuoteService,
) -> Response:
    async def save(on_saved: OnSaved | None) -> Saved:
        return await quotes.transition(
            caller=caller,
            quote_id=quote_id,
            operation=operation_,
            body=body,
            if_match=if_match,
            correlation_id=get_correlation_id(),
            on_saved=on_saved,
        )

    return await _idempotent_save(
        request,
        idempotency_key=idempotency_key,
        caller=caller,
        body=body,
        status=200,
        save=save,
    )


_TRANSITION = responses(SaveEnvelope, headers=_SAVED, errors=TRANSITION_ERRORS)


def _add_transition(method: str, path: str, operation_: Operation, summary: str) -> None:
    """Register the route of one lifecycle transition (``quote.<operation>``); all four take
    the same inputs and differ only by the operation."""
    name = operation_.value.lower()

    async def endpoint(
        request: Request,
        quote_id: QuoteId,
        caller: WritingAgent,
        if_match: IfMatch,
        body: VersionBodyDep,
        quotes: Quotes,
        idempotency_key: str = idempotency_key_header(),
    ) -> Response:
        return await _transition(
            request,
            operation_,
            quote_id=quote_id,
            caller=caller,
            if_match=if_match,
            body=body,
            idempotency_key=idempotency_key,
            quotes=quotes,
        )

    endpoint.__name__ = endpoint.__qualname__ = f"{name}_quote"
    endpoint.__doc__ = summary
    router.add_api_route(
        path,
        endpoint,
        methods=[method],
        name=f"{name}_quote",
        openapi_extra=operation(f"quote.{name}"),
        responses=_TRANSITION,
    )


_add_transition(
    "DELETE",
    "/{quote_id}",
    Operation.DELETE,
    "Soft delete: DRAFT or REJECTED → CANCELLED (version in body or If-Match).",
)
_add_transition(
    "POST",
    "/{quote_id}/send",
    Operation.SEND,
    "DRAFT → SENT; sets ``sentAt`` and ``expiresAt`` (end of the last valid day, agency zone).",
)
_add_transition(
    "POST",
    "/{quote_id}/accept",
    Operation.ACCEPT,
    "Record the client's acceptance: SENT → ACCEPTED (an expired quote cannot be accepted).",
)
_add_transition(
    "POST",
    "/{quote_id}/reject",
    Operation.REJECT,
    "Record the client's rejection: SENT → REJECTED (it may then be revised as a DRAFT).",
)


@router.get(
    "/{quote_id}/revisions",
    openapi_extra=operation("quote.revisions"),
    responses=responses(RevisionsEnvelope, errors=READ_ERRORS),
)
async def list_revisions(quote_id: QuoteId, caller: CurrentAgent, quotes: Quotes) -> Response:
    """The quote's history, one entry per committed version; ``{success, revisions}``."""
    revisions = await quotes.revisions(caller=caller, quote_id=quote_id)
    return json_response({"success": True, "quoteId": quote_id, "revisions": revisions})


@router.get(
    "/{quote_id}/revisions/{version}",
    openapi_extra=operation("quote.revisions"),
    responses=responses(RevisionEnvelope, errors=REVISION_ERRORS),
)
async def get_revision(
    quote_id: QuoteId,
    caller: CurrentAgent,
    quotes: Quotes,
    version: Annotated[int, Path(ge=1, le=2_147_483_647)],
) -> Response:
    """One committed version with its full snapshot; ``{success, revision}``."""
    (revision,) = await quotes.revisions(caller=caller, quote_id=quote_id, version=version)
    return json_response({"success": True, "quoteId": quote_id, "revision": revision})
