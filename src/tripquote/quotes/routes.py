"""``/api/agents/quotes`` routes: take the agent, ids, body (``deps``), call one use case,
render. Each is one tracked operation, named in its decorator (``routing.TrackedRoute``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query
from pydantic_core import PydanticCustomError
from starlette.requests import Request
from starlette.responses import Response

from tripquote.agents.auth import Caller
from tripquote.db.transaction import Tx
from tripquote.db.types import in_utc
from tripquote.deps import (
    CurrentAgent,
    IfNoneMatch,
    QuoteCall,
    QuoteCreate,
    QuoteEdit,
    QuoteRead,
    QuoteTransition,
    quote_service,
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
    SaveOutcomeUnknown,
    TripAlreadyStarted,
    TripquoteError,
    field_error,
)
from tripquote.etags import etag, match_fails
from tripquote.http import json_response, tagged_response
from tripquote.idempotency import Record, StoredResponse, idempotent
from tripquote.json import dumps, loads
from tripquote.observability.context import get_correlation_id
from tripquote.observability.operations import current_operation
from tripquote.openapi import (
    BODY,
    DATABASE,
    ETAG,
    LOCATION,
    MERGED,
    REPLAYED,
    ListEnvelope,
    Raised,
    ReadEnvelope,
    RevisionEnvelope,
    RevisionsEnvelope,
    SaveEnvelope,
    SendEnvelope,
    responses,
)
from tripquote.pagination import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    LIMIT_BOUNDS,
    MAX_LIMIT,
    VERSION_CURSOR_PATTERN,
    check_limit,
    decode_cursor,
    decode_version_cursor,
    encode_cursor,
    encode_version_cursor,
)
from tripquote.quotes.lifecycle import Operation, QuoteStatus
from tripquote.quotes.results import Filters
from tripquote.quotes.schemas import DATETIME_PATTERN, parse_aware_datetime
from tripquote.quotes.service import OnSaved
from tripquote.quotes.service import SavedQuote as Saved
from tripquote.routing import TrackedRoute, operation
from tripquote.validation import NO_NUL, canonical_id, query_text

_logger = structlog.get_logger("tripquote.quotes")

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
_SAVES = (*DATABASE, SaveOutcomeUnknown)  # a save's COMMIT may go unanswered
_VERSIONED: tuple[Raised, ...] = (
    QuoteConflictVersion,
    (QuoteConflictVersion, 412),  # the stale version came in If-Match
    QuoteStateInvalid,
    QuoteAlreadySent,
)
CREATE_ERRORS = (*_AUTH, *_SAVE_CHECKS, *_IDEMPOTENT, *_SAVES)
LIST_ERRORS = (*_AUTH, QuoteValidationFailed, *DATABASE)
READ_ERRORS = (*_VISIBLE, *DATABASE)
UPDATE_ERRORS = (*_VISIBLE, *_SAVE_CHECKS, *_VERSIONED, *_IDEMPOTENT, *_SAVES)
TRANSITION_ERRORS = (*_VISIBLE, *BODY, RateLimitExceeded, *_VERSIONED, *_IDEMPOTENT, *_SAVES)
SEND_ERRORS = (*TRANSITION_ERRORS, TripAlreadyStarted)
REVISION_ERRORS = (*_VISIBLE, QuoteValidationFailed, *DATABASE)


def saved_response(saved: Saved, *, status: int) -> StoredResponse:
    """``{success, quoteId, version, savedAt, quote}`` with its ETag (and Location on 201,
    ``Preference-Applied: merge`` on a merged save)."""
    quote_id = saved.quote["id"]
    headers = {"ETag": etag(saved.version, saved.quote["status"])}
    if status == 201:
        headers["Location"] = f"/api/agents/quotes/{quote_id}"
    if saved.merge is not None:
        headers["Preference-Applied"] = "merge"
    body = {
        "success": True,
        "quoteId": quote_id,
        "version": saved.version,
        "savedAt": saved.quote["lastModifiedAt"],
        "quote": saved.quote,
    }
    return StoredResponse(status=status, body=dumps(body), headers=headers)


async def _idempotent_save(
    request: Request,
    *,
    idempotency_key: str | None,
    caller: Caller,
    body: Any,
    status: int,
    save: Callable[[OnSaved | None], Awaitable[Saved]],
) -> Response:
    """Run ``save`` under the request's Idempotency-Key, if it has one (``idempotent``)."""

    async def run(record: Record | None) -> StoredResponse:
        async def on_saved(tx: Tx, saved: Saved) -> None:
            assert record is not None
            await record(tx, saved_response(saved, status=status))

        saved = await save(on_saved if record is not None else None)
        return saved_response(saved, status=status)

    return await idempotent(request, key=idempotency_key, caller=caller, body=body, run=run)


_SAVED = {**ETAG, **REPLAYED}


@router.post(
    "",
    status_code=201,
    openapi_extra=operation("quote.create"),
    responses=responses(SaveEnvelope, 201, headers={**_SAVED, **LOCATION}, errors=CREATE_ERRORS),
)
async def create_quote(request: Request, call: QuoteCreate) -> Response:
    """Create a quote (DRAFT, version 1); 201 ``{success, quoteId, version, savedAt, quote}``.
    Honours ``Idempotency-Key``."""

    async def save(on_saved: OnSaved | None) -> Saved:
        saved = await call.quotes.create(
            caller=call.caller,
            body=call.body,
            correlation_id=get_correlation_id(),
            on_saved=on_saved,
        )
        tracked = current_operation()
        if tracked is not None:
            tracked.quote_id = saved.quote["id"]
        return saved

    return await _idempotent_save(
        request,
        idempotency_key=call.idempotency_key,
        caller=call.caller,
        body=call.body,
        status=201,
        save=save,
    )


@router.get(
    "",
    openapi_extra=operation("quote.list"),
    responses=responses(ListEnvelope, errors=LIST_ERRORS),
)
async def list_quotes(
    request: Request,
    caller: CurrentAgent,
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
    client_id = canonical_id(client_id) if client_id else client_id
    since = _instant(updated_since, "updatedSince") if updated_since else None
    page, after = await quote_service(request).list(
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
    in UTC (``db.types.in_utc``: one outside years 1-9999 is the nearest inside);
    QUOTE_VALIDATION_FAILED at ``name``."""
    try:
        at = parse_aware_datetime(text)
    except PydanticCustomError as exc:
        # In a query string "+" is a space (WHATWG URL): the offset's sign must come as %2B.
        hint = f"{name} {exc}; in a URL, send + as %2B, or give the instant in UTC with Z."
        raise QuoteValidationFailed(
            QUERY_INVALID, details={"errors": [field_error(name, exc.type, hint)]}
        ) from None
    return in_utc(at)


@router.get(
    "/{quote_id}",
    openapi_extra=operation("quote.read"),
    responses=responses(
        ReadEnvelope,
        headers=ETAG,
        # a malformed If-Match or If-None-Match; an If-Match naming another version
        errors=(*READ_ERRORS, QuoteValidationFailed, (QuoteConflictVersion, 412)),
        not_modified=ETAG,
    ),
)
async def read_quote(call: QuoteRead, if_none_match: IfNoneMatch) -> Response:
    """One quote; ``{success, quoteId, version, quote}`` with ``ETag: "<version>"``, or 304
    without content when ``If-None-Match`` names that ETag (or is ``*``); 412
    QUOTE_CONFLICT_VERSION when an ``If-Match`` names it not (RFC 9110 §13.1.1, §13.2.2:
    If-Match is evaluated first)."""
    quote = await call.quotes.read(caller=call.caller, quote_id=call.quote_id)
    tag = etag(quote["version"], quote["status"])
    if match_fails(call.match, tag):
        raise QuoteConflictVersion(
            f"If-Match names none of the quote's current ETag {tag}: read it without If-Match.",
            details={
                "quoteId": quote["id"],
                "actualVersion": quote["version"],
                "lastModifiedBy": quote["lastModifiedBy"],
                "lastModifiedAt": quote["lastModifiedAt"],
                "precondition": "If-Match",
            },
            http_status=412,
        )
    return tagged_response(
        {"success": True, "quoteId": quote["id"], "version": quote["version"], "quote": quote},
        etag=tag,
        if_none_match=if_none_match,
    )


@router.patch(
    "/{quote_id}",
    openapi_extra=operation("quote.update"),
    responses=responses(SaveEnvelope, headers={**_SAVED, **MERGED}, errors=UPDATE_ERRORS),
)
async def update_quote(request: Request, call: QuoteEdit) -> Response:
    """Partial update checked against the client's version (body ``version`` or If-Match);
    with ``Prefer: merge`` a stale version is merged with what was saved since. Honours
    ``Idempotency-Key``."""

    async def save(on_saved: OnSaved | None) -> Saved:
        return await call.quotes.update(
            caller=call.caller,
            quote_id=call.quote_id,
            body=call.body,
            if_match=call.if_match,
            correlation_id=get_correlation_id(),
            on_saved=on_saved,
            merge=call.merge,
            none_match=call.none_match,
        )

    return await _idempotent_save(
        request,
        idempotency_key=call.idempotency_key,
        caller=call.caller,
        body=call.body,
        status=200,
        save=save,
    )


async def _transition(request: Request, operation_: Operation, call: QuoteCall) -> Response:
    async def save(on_saved: OnSaved | None) -> Saved:
        return await call.quotes.transition(
            caller=call.caller,
            quote_id=call.quote_id,
            operation=operation_,
            body=call.body,
            if_match=call.if_match,
            correlation_id=get_correlation_id(),
            on_saved=on_saved,
            none_match=call.none_match,
        )

    response = await _idempotent_save(
        request,
        idempotency_key=call.idempotency_key,
        caller=call.caller,
        body=call.body,
        status=200,
        save=save,
    )
    if operation_ is Operation.SEND and response.status_code == 200:
        return await _with_proposal(request, call, response)
    return response


async def _with_proposal(request: Request, call: QuoteCall, response: Response) -> Response:
    """A send's response with ``proposal`` (its link: ``proposals.service.proposal_json``),
    added here, never stored with an idempotent response (the token is kept nowhere). The
    send committed before this read: when the read fails (the database went away meanwhile),
    the send's answer stands, with ``proposal`` null (``GET …/proposal`` gives it), never the
    read's error, which would say that nothing was written."""
    try:
        proposal = await request.app.state.proposals.agent_view(
            caller=call.caller, quote_id=call.quote_id
        )
    except TripquoteError as error:
        _logger.warning(
            "send_proposal_unread", quote_id=call.quote_id, error_code=error.code,
            details=error.details,
        )  # fmt: skip
        proposal = None
    body = loads(bytes(response.body))
    body["proposal"] = proposal
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return json_response(body, status=response.status_code, headers=headers)


def _add_transition(
    method: str,
    path: str,
    operation_: Operation,
    summary: str,
    errors: tuple[Raised, ...] = TRANSITION_ERRORS,
    model: type[SaveEnvelope] = SaveEnvelope,
) -> None:
    """Register the route of one lifecycle transition (``quote.<operation>``); all four take
    the same inputs and differ only by the operation (and a send's own refusal, ``errors``)."""
    name = operation_.value.lower()

    async def endpoint(request: Request, call: QuoteTransition) -> Response:
        return await _transition(request, operation_, call)

    endpoint.__name__ = endpoint.__qualname__ = f"{name}_quote"
    endpoint.__doc__ = summary
    router.add_api_route(
        path,
        endpoint,
        methods=[method],
        name=f"{name}_quote",
        openapi_extra=operation(f"quote.{name}"),
        responses=responses(model, headers=_SAVED, errors=errors),
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
    "DRAFT → SENT, only before the trip's start date (agency zone; else "
    "TRIP_ALREADY_STARTED); sets ``sentAt`` and ``expiresAt``: the end of the last valid "
    "day (agency zone), and never after the trip starts.",
    SEND_ERRORS,
    SendEnvelope,
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
    responses=responses(RevisionsEnvelope, errors=REVISION_ERRORS),
)
async def list_revisions(
    call: QuoteRead,
    limit: int = Query(
        DEFAULT_LIMIT,
        description=f"Entries per page, 1 to {MAX_LIMIT}.",
        json_schema_extra=LIMIT_BOUNDS,
    ),
    cursor: str | None = Query(
        None,
        description="The previous page's nextCursor, as returned.",
        json_schema_extra={"pattern": VERSION_CURSOR_PATTERN},
    ),
) -> Response:
    """The quote's history, oldest first, one entry per committed version, in pages:
    ``{success, quoteId, revisions, nextCursor}``; an entry has no snapshot (read it at
    ``…/revisions/{version}``) and names its ``changedFields`` since the version before."""
    check_limit(limit)
    after = decode_version_cursor(cursor) if cursor else 0
    page, last = await call.quotes.revisions(
        caller=call.caller, quote_id=call.quote_id, after=after, limit=limit
    )
    next_cursor = encode_version_cursor(last) if last is not None else None
    return json_response(
        {"success": True, "quoteId": call.quote_id, "revisions": page, "nextCursor": next_cursor}
    )


@router.get(
    "/{quote_id}/revisions/{version}",
    openapi_extra=operation("quote.revisions"),
    responses=responses(RevisionEnvelope, errors=REVISION_ERRORS),
)
async def get_revision(
    call: QuoteRead, version: Annotated[int, Path(ge=1, le=2_147_483_647)]
) -> Response:
    """One committed version with its full snapshot; ``{success, quoteId, revision}``."""
    revision = await call.quotes.revision(
        caller=call.caller, quote_id=call.quote_id, version=version
    )
    return json_response({"success": True, "quoteId": call.quote_id, "revision": revision})
