"""``/api/agents/quotes`` routes: parse, authenticate, call one use case, render."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from tripquote.agents.auth import authenticate
from tripquote.db.transaction import Tx
from tripquote.errors import QUERY_INVALID, QuoteNotFound, QuoteValidationFailed, field_error
from tripquote.http import Services, json_response, read_json, services
from tripquote.idempotency import (
    Claim,
    StoredResponse,
    complete,
    parse_key,
    request_fingerprint,
)
from tripquote.json import dumps
from tripquote.observability.context import get_correlation_id
from tripquote.openapi import (
    ListEnvelope,
    ReadEnvelope,
    RevisionEnvelope,
    RevisionsEnvelope,
    SaveEnvelope,
    ok,
)
from tripquote.pagination import DEFAULT_LIMIT, check_limit, decode_cursor, encode_cursor
from tripquote.quotes.lifecycle import Operation, QuoteStatus
from tripquote.quotes.results import Filters
from tripquote.quotes.schemas import QuoteIn
from tripquote.quotes.service import OnSaved, QuoteService
from tripquote.quotes.service import SavedQuote as Saved
from tripquote.validation import path_id, query_text

router = APIRouter(prefix="/api/agents/quotes", tags=["quotes"])

_CREATE_SCHEMA = QuoteIn.model_json_schema(ref_template="#/components/schemas/{model}")
REQUEST_SCHEMAS: dict[str, Any] = _CREATE_SCHEMA.pop("$defs", {})
"""The item/details/pricing models the request bodies refer to; create_app registers them
under ``components/schemas`` so every ``$ref`` of the document resolves."""
_PATCH_SCHEMA: dict[str, Any] = {
    **{k: v for k, v in _CREATE_SCHEMA.items() if k not in ("required", "title")},
    "title": "QuotePatch",
    "properties": {
        **_CREATE_SCHEMA["properties"],
        "version": {"type": "integer", "minimum": 1, "description": "The version edited."},
    },
}
_VERSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "VersionBody",
    "additionalProperties": False,
    "properties": {"version": {"type": "integer", "minimum": 1}},
}
_STRONG_ETAG = re.compile(r'^"([1-9]\d{0,8})"$')  # exactly as sent in ETag: no leading zero


_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'The strong ETag of the version edited, e.g. "5" (RFC 9110 §13.1.1); '
    "required unless the body carries `version`. Stale: 412.",
    "schema": {"type": "string", "pattern": '^"[1-9][0-9]{0,8}"$'},
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Replays the first response for the same key and body (24 h, per agent).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _body(
    schema: dict[str, Any], *, required: bool = True, headers: tuple[dict[str, Any], ...] = ()
) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    }
    if headers:
        extra["parameters"] = list(headers)
    return extra


def quotes(request: Request) -> QuoteService:
    """The app's quote use cases (built in the lifespan)."""
    service: QuoteService = request.app.state.quotes
    return service


def etag(version: int) -> str:
    """The strong ETag of a quote version (RFC 9110 §8.8.3): ``"5"``."""
    return f'"{version}"'


def parse_if_match(value: str | None) -> int | None:
    """The version named by an ``If-Match`` header (one strong ETag, RFC 9110 §13.1.1);
    None when absent; QUOTE_VALIDATION_FAILED at ``If-Match`` when it names no version."""
    if value is None:
        return None
    match = _STRONG_ETAG.match(value.strip())
    if match is None:
        raise QuoteValidationFailed(
            'If-Match must be one strong ETag as returned by GET, e.g. "5".',
            details={
                "errors": [field_error("If-Match", "invalid", 'Expected a strong ETag like "5".')]
            },
        )
    return int(match.group(1))


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
    svc: Services,
    *,
    agent_id: str,
    body: Any,
    status: int,
    save: Callable[[OnSaved | None], Awaitable[Saved]],
) -> Response:
    """Run ``save`` under the request's Idempotency-Key, if it has one."""
    key = parse_key(request.headers.get("idempotency-key"))
    if key is None:
        return _to_response(saved_response(await save(None), status=status))
    fingerprint = request_fingerprint(
        request.method, request.url.path, body, if_match=request.headers.get("if-match")
    )
    claimed = await svc.idempotency.claim(agent_id=agent_id, key=key, fingerprint=fingerprint)
    if isinstance(claimed, StoredResponse):
        return _to_response(claimed, replayed=True)
    claim: Claim = claimed

    async def store(tx: Tx, saved: Saved) -> None:
        await complete(tx, claim, saved_response(saved, status=status))

    try:
        saved = await save(store)
    except BaseException:
        await svc.idempotency.release(claim)
        raise
    return _to_response(saved_response(saved, status=status))


@router.post(
    "",
    status_code=201,
    openapi_extra=_body(_CREATE_SCHEMA, headers=(_IDEMPOTENCY_KEY,)),
    responses=ok(SaveEnvelope, 201),
)
async def create_quote(request: Request) -> Response:
    """Create a quote (DRAFT, version 1); 201 ``{success, quoteId, version, savedAt, quote}``.
    Honours ``Idempotency-Key``."""
    svc = services(request)
    async with svc.observer.track("quote.create") as op:
        claims = authenticate(request)
        op.agent_id = claims.agent_id
        await svc.limiter.check(claims.agent_id)
        body = await read_json(request)

        async def save(on_saved: OnSaved | None) -> Saved:
            saved = await quotes(request).create(
                agent_id=claims.agent_id,
                body=body,
                correlation_id=get_correlation_id(),
                on_saved=on_saved,
            )
            op.quote_id = saved.quote["id"]
            op.http_status = 201
            return saved

        return await _idempotent_save(
            request, svc, agent_id=claims.agent_id, body=body, status=201, save=save
        )


@router.get("", responses=ok(ListEnvelope))
async def list_quotes(
    request: Request,
    status: QuoteStatus | None = Query(None),
    client_id: str | None = Query(None, alias="clientId", max_length=64),
    updated_since: datetime | None = Query(None, alias="updatedSince"),
    limit: int = Query(DEFAULT_LIMIT),
    cursor: str | None = Query(None, max_length=512),
) -> Response:
    """The caller's quotes (an admin: the agency's), newest first;
    ``{success, quotes, nextCursor}``."""
    svc = services(request)
    async with svc.observer.track("quote.list") as op:
        claims = authenticate(request)
        op.agent_id = claims.agent_id
        check_limit(limit)
        client_id = query_text(client_id, "clientId")
        if updated_since is not None and updated_since.tzinfo is None:
            raise QuoteValidationFailed(
                QUERY_INVALID,
                details={
                    "errors": [field_error("updatedSince", "timezone", "Give an offset, e.g. Z.")]
                },
            )
        if updated_since is not None:
            try:
                updated_since = updated_since.astimezone(UTC)
            except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
                raise QuoteValidationFailed(
                    QUERY_INVALID,
                    details={
                        "errors": [
                            field_error(
                                "updatedSince",
                                "out_of_range",
                                "Give an instant in years 1-9999 UTC.",
                            )
                        ]
                    },
                ) from None
        page, after = await quotes(request).list(
            agent_id=claims.agent_id,
            filters=Filters(
                status=status.value if status else None,
                client_id=client_id,
                updated_since=updated_since,
            ),
            before=decode_cursor(cursor) if cursor else None,
            limit=limit,
        )
        next_cursor = encode_cursor(*after) if after is not None else None
        return json_response({"success": True, "quotes": page, "nextCursor": next_cursor})


@router.get("/{quote_id}", responses=ok(ReadEnvelope))
async def read_quote(request: Request, quote_id: str) -> Response:
    """One quote; ``{success, quoteId, version, quote}`` with ``ETag: "<version>"``."""
    svc = services(request)
    async with svc.observer.track("quote.read", quote_id=quote_id) as op:
        claims = authenticate(request)
        quote_id = path_id(quote_id, QuoteNotFound)
        op.agent_id = claims.agent_id
        quote = await quotes(request).read(agent_id=claims.agent_id, quote_id=quote_id)
        return json_response(
            {"success": True, "quoteId": quote["id"], "version": quote["version"], "quote": quote},
            headers={"ETag": etag(quote["version"])},
        )


@router.patch(
    "/{quote_id}",
    openapi_extra=_body(_PATCH_SCHEMA, headers=(_IF_MATCH,)),
    responses=ok(SaveEnvelope),
)
async def update_quote(request: Request, quote_id: str) -> Response:
    """Partial update checked against the client's version (body ``version`` or If-Match)."""
    svc = services(request)
    async with svc.observer.track("quote.update", quote_id=quote_id) as op:
        claims = authenticate(request)
        quote_id = path_id(quote_id, QuoteNotFound)
        op.agent_id = claims.agent_id
        await svc.limiter.check(claims.agent_id)
        if_match = parse_if_match(request.headers.get("if-match"))
        body = await read_json(request)
        saved = await quotes(request).update(
            agent_id=claims.agent_id,
            quote_id=quote_id,
            body=body,
            if_match=if_match,
            correlation_id=get_correlation_id(),
        )
        return _to_response(saved_response(saved, status=200))


async def _transition(request: Request, quote_id: str, operation: Operation) -> Response:
    svc = services(request)
    async with svc.observer.track(f"quote.{operation.value.lower()}", quote_id=quote_id) as op:
        claims = authenticate(request)
        quote_id = path_id(quote_id, QuoteNotFound)
        op.agent_id = claims.agent_id
        await svc.limiter.check(claims.agent_id)
        if_match = parse_if_match(request.headers.get("if-match"))
        raw = await request.body()
        body = await read_json(request) if raw.strip() else None

        async def save(on_saved: OnSaved | None) -> Saved:
            return await quotes(request).transition(
                agent_id=claims.agent_id,
                quote_id=quote_id,
                operation=operation,
                body=body,
                if_match=if_match,
                correlation_id=get_correlation_id(),
                on_saved=on_saved,
            )

        return await _idempotent_save(
            request, svc, agent_id=claims.agent_id, body=body, status=200, save=save
        )


_TRANSITION_BODY = _body(_VERSION_SCHEMA, required=False, headers=(_IF_MATCH, _IDEMPOTENCY_KEY))


@router.delete("/{quote_id}", openapi_extra=_TRANSITION_BODY, responses=ok(SaveEnvelope))
async def delete_quote(request: Request, quote_id: str) -> Response:
    """Soft delete: DRAFT or REJECTED → CANCELLED (version in body or If-Match)."""
    return await _transition(request, quote_id, Operation.DELETE)


@router.post("/{quote_id}/send", openapi_extra=_TRANSITION_BODY, responses=ok(SaveEnvelope))
async def send_quote(request: Request, quote_id: str) -> Response:
    """DRAFT → SENT; sets ``sentAt`` and ``expiresAt`` (end of the last valid day, agency zone)."""
    return await _transition(request, quote_id, Operation.SEND)


@router.post("/{quote_id}/accept", openapi_extra=_TRANSITION_BODY, responses=ok(SaveEnvelope))
async def accept_quote(request: Request, quote_id: str) -> Response:
    """Record the client's acceptance: SENT → ACCEPTED (an expired quote cannot be accepted)."""
    return await _transition(request, quote_id, Operation.ACCEPT)


@router.post("/{quote_id}/reject", openapi_extra=_TRANSITION_BODY, responses=ok(SaveEnvelope))
async def reject_quote(request: Request, quote_id: str) -> Response:
    """Record the client's rejection: SENT → REJECTED (it may then be revised as a DRAFT)."""
    return await _transition(request, quote_id, Operation.REJECT)


@router.get("/{quote_id}/revisions", responses=ok(RevisionsEnvelope))
async def list_revisions(request: Request, quote_id: str) -> Response:
    """The quote's history, one entry per committed version; ``{success, revisions}``."""
    svc = services(request)
    async with svc.observer.track("quote.revisions", quote_id=quote_id) as op:
        claims = authenticate(request)
        quote_id = path_id(quote_id, QuoteNotFound)
        op.agent_id = claims.agent_id
        revisions = await quotes(request).revisions(agent_id=claims.agent_id, quote_id=quote_id)
        return json_response({"success": True, "quoteId": quote_id, "revisions": revisions})


@router.get("/{quote_id}/revisions/{version}", responses=ok(RevisionEnvelope))
async def get_revision(
    request: Request, quote_id: str, version: int = Path(ge=1, le=2_147_483_647)
) -> Response:
    """One committed version with its full snapshot; ``{success, revision}``."""
    svc = services(request)
    async with svc.observer.track("quote.revisions", quote_id=quote_id) as op:
        claims = authenticate(request)
        quote_id = path_id(quote_id, QuoteNotFound)
        op.agent_id = claims.agent_id
        (revision,) = await quotes(request).revisions(
            agent_id=claims.agent_id, quote_id=quote_id, version=version
        )
        return json_response({"success": True, "quoteId": quote_id, "revision": revision})
