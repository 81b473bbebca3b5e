"""``/api/agents/quotes`` routes: parse, authenticate, call one use case, render."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from tripquote.agents.auth import authenticate
from tripquote.errors import QuoteValidationFailed, field_error
from tripquote.http import json_response, read_json, services
from tripquote.observability.context import get_correlation_id
from tripquote.quotes import service
from tripquote.quotes.schemas import QuoteIn

router = APIRouter(prefix="/api/agents/quotes", tags=["quotes"])

_CREATE_SCHEMA = QuoteIn.model_json_schema(ref_template="#/components/schemas/{model}")
_PATCH_SCHEMA: dict[str, Any] = {
    **{k: v for k, v in _CREATE_SCHEMA.items() if k not in ("required", "$defs", "title")},
    "title": "QuotePatch",
    "properties": {
        **_CREATE_SCHEMA["properties"],
        "version": {"type": "integer", "minimum": 1, "description": "The version edited."},
    },
}
_STRONG_ETAG = re.compile(r'^"(\d{1,9})"$')


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


def etag(version: int) -> str:
    """The strong ETag of a quote version (RFC 9110 §8.8.3): ``"5"``."""
    return f'"{version}"'


def parse_if_match(value: str | None) -> int | None:
    """The version named by an ``If-Match`` header (one strong ETag, RFC 9110 §13.1.1);
    None when absent; QUOTE_VALIDATION_FAILED at ``If-Match`` when it names no version."""
    if value is None:
        return None
    match = _STRONG_ETAG.match(value.strip())
    if match is None or int(match.group(1)) < 1:
        raise QuoteValidationFailed(
            'If-Match must be one strong ETag as returned by GET, e.g. "5".',
            details={
                "errors": [field_error("If-Match", "invalid", 'Expected a strong ETag like "5".')]
            },
        )
    return int(match.group(1))


def _saved(saved: service.Saved, *, status: int) -> Response:
    quote_id = saved.quote["id"]
    headers = {"ETag": etag(saved.version)}
    if status == 201:
        headers["Location"] = f"/api/agents/quotes/{quote_id}"
    return json_response(
        {
            "success": True,
            "quoteId": quote_id,
            "version": saved.version,
            "savedAt": saved.quote["lastModifiedAt"],
            "quote": saved.quote,
        },
        status=status,
        headers=headers,
    )


@router.post("", status_code=201, openapi_extra=_body(_CREATE_SCHEMA))
async def create_quote(request: Request) -> Response:
    """Create a quote (DRAFT, version 1); 201 ``{success, quoteId, version, savedAt, quote}``."""
    svc = services(request)
    async with svc.observer.track("quote.create") as op:
        claims = authenticate(request)
        op.agent_id = claims.agent_id
        body = await read_json(request)
        saved = await service.create_quote(
            svc, agent_id=claims.agent_id, body=body, correlation_id=get_correlation_id()
        )
        op.quote_id = saved.quote["id"]
        return _saved(saved, status=201)


@router.get("/{quote_id}")
async def read_quote(request: Request, quote_id: str) -> Response:
    """One quote; ``{success, quoteId, version, quote}`` with ``ETag: "<version>"``."""
    svc = services(request)
    async with svc.observer.track("quote.read", quote_id=quote_id) as op:
        claims = authenticate(request)
        op.agent_id = claims.agent_id
        quote = await service.read_quote(svc, agent_id=claims.agent_id, quote_id=quote_id)
        return json_response(
            {"success": True, "quoteId": quote["id"], "version": quote["version"], "quote": quote},
            headers={"ETag": etag(quote["version"])},
        )


@router.patch("/{quote_id}", openapi_extra=_body(_PATCH_SCHEMA))
async def update_quote(request: Request, quote_id: str) -> Response:
    """Partial update checked against the client's version (body ``version`` or If-Match)."""
    svc = services(request)
    async with svc.observer.track("quote.update", quote_id=quote_id) as op:
        claims = authenticate(request)
        op.agent_id = claims.agent_id
        if_match = parse_if_match(request.headers.get("if-match"))
        body = await read_json(request)
        saved = await service.update_quote(
            svc,
            agent_id=claims.agent_id,
            quote_id=quote_id,
            body=body,
            if_match=if_match,
            correlation_id=get_correlation_id(),
        )
        return _saved(saved, status=200)
