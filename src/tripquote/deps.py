"""What the routes take as parameters (``Annotated`` dependencies): the authenticated agent, the
write it counts, the path's quote id, If-Match, the JSON body and the services built at
start-up; and the Idempotency-Key header, read in the route after the body.

FastAPI solves a route's dependencies in the order of its parameters, so the order of the
parameters is the order of the refusals: authentication, then the quote id, the rate limit,
If-Match, the body, then (in the route) the Idempotency-Key. All are ``async``: a plain
function would run on a worker thread. Each dependency costs a solve per request (a few
microseconds, also when cached): routes take few.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Header
from pydantic import BaseModel
from starlette.requests import Request

from tripquote.agents.auth import Caller, authenticate
from tripquote.clients.schemas import ClientIn
from tripquote.db.transaction import TransactionRunner
from tripquote.errors import QuoteNotFound, QuoteValidationFailed, UnsupportedMediaType, field_error
from tripquote.idempotency import KEY_PATTERN
from tripquote.json import loads
from tripquote.observability.operations import current_operation
from tripquote.openapi import QuotePatch
from tripquote.quotes.rules import MAX_VERSION
from tripquote.quotes.schemas import QuoteIn
from tripquote.quotes.service import QuoteService
from tripquote.validation import path_id


async def authenticate_agent(request: Request) -> Caller:
    """The bearer token's caller, its agent noted on the operation; AUTHENTICATION_FAILED."""
    # No database access: the agent (active) and the token (not revoked) are checked by the
    # use case's own statement.
    caller = authenticate(request)
    tracked = current_operation()
    if tracked is not None:
        tracked.agent_id = caller.agent_id
    return caller


CurrentAgent = Annotated[Caller, Depends(authenticate_agent)]


async def count_write(request: Request) -> Caller:
    """The authenticated caller, this write counted; AUTHENTICATION_FAILED, RATE_LIMIT_EXCEEDED."""
    # Authenticates itself rather than through CurrentAgent: a sub-dependency costs a solve per
    # request even when cached, while a verified token is cached.
    caller = await authenticate_agent(request)
    await request.app.state.limiter.check(caller.agent_id)
    return caller


WritingAgent = Annotated[Caller, Depends(count_write)]


async def quote_in_path(request: Request, quote_id: str) -> str:
    """The path's quote id; AUTHENTICATION_FAILED, then QUOTE_NOT_FOUND if none can have it."""
    # An anonymous caller learns nothing about ids. Authenticates itself, like count_write.
    await authenticate_agent(request)
    return path_id(quote_id, QuoteNotFound)


QuoteId = Annotated[str, Depends(quote_in_path)]

# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text.
_STRONG_ETAG = re.compile(r'"[\x21\x23-\x7e\x80-\xff]*"')
_VERSION_ETAG = re.compile(r'"([1-9][0-9]{0,9})"')  # as ETag sends it: no sign, no leading zero
ETAG_PATTERN = '^"[\\x21\\x23-\\x7e\\x80-\\xff]*"$'
"""One strong entity tag (RFC 9110 §8.8.3) as a JSON Schema ``pattern``: If-Match's value."""
NO_VERSION = 0
"""The version a well-formed tag names when it is no version's ETag (``"abc"``, ``"0"``): no
quote has it, so the precondition fails (412)."""


def etag(version: int) -> str:
    """The strong ETag of a quote version (RFC 9110 §8.8.3): ``"5"``."""
    return f'"{version}"'


def parse_if_match(value: str | None) -> int | None:
    """The version one strong entity tag names (RFC 9110 §13.1.1): None if absent,
    ``NO_VERSION`` for a tag no version's ETag equals; 400 at If-Match if not a strong entity
    tag (e.g. unquoted ``5``, weak ``W/"5"``)."""
    if value is None:
        return None
    tag = value.strip(" \t")
    if _STRONG_ETAG.fullmatch(tag) is None:
        raise QuoteValidationFailed(
            'If-Match must be one strong ETag as returned by GET, e.g. "5".',
            details={
                "errors": [field_error("If-Match", "invalid", 'Expected a strong ETag like "5".')]
            },
        )
    match = _VERSION_ETAG.fullmatch(tag)
    if match is None or int(match.group(1)) > MAX_VERSION:
        return NO_VERSION
    return int(match.group(1))


async def if_match_version(
    if_match: str = Header(  # parsed below, not by FastAPI: its refusal is ours, in order
        None,
        alias="If-Match",
        description='The strong ETag of the version acted on, as ETag sent it, e.g. "5" '
        "(RFC 9110 §8.8.3, §13.1.1): a quoted tag; unquoted or weak is malformed (400). A tag "
        "that is not the current version's: 412 QUOTE_CONFLICT_VERSION. Instead of If-Match, "
        "the JSON body may carry `version`; both given must name the same version (400).",
        json_schema_extra={"pattern": ETAG_PATTERN},
    ),
) -> int | None:
    """The version an ``If-Match`` header names, None without one; QUOTE_VALIDATION_FAILED."""
    return parse_if_match(if_match)


IfMatch = Annotated[int | None, Depends(if_match_version)]


class JsonBody:
    """Dependency: the request body parsed with every fraction or exponent as a Decimal
    (``tripquote/json.py``: money is never a float), documented in OpenAPI as ``model``
    (``routing.TrackedRoute``) but validated by the use case, which reports every failing field
    at once. UNSUPPORTED_MEDIA_TYPE unless declared JSON (``application/json`` or a ``+json``
    type, RFC 6839); QUOTE_VALIDATION_FAILED when malformed. An optional body may be empty
    (None)."""

    def __init__(self, model: type[BaseModel] | None, *, required: bool = True) -> None:
        self.model = model  # None: not in the OpenAPI document
        self.required = required

    async def __call__(self, request: Request) -> Any:
        """The parsed body (None for an empty optional one)."""
        raw = await request.body()
        if not self.required and not raw.strip():
            return None
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json" and not (
            media_type.startswith("application/") and media_type.endswith("+json")
        ):
            raise UnsupportedMediaType(details={"contentType": media_type or None})
        return loads(raw)

    def openapi(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The OpenAPI ``requestBody`` and the component schemas it refers to (None when the
        body is not documented)."""
        if self.model is None:
            return None
        schema = self.model.model_json_schema(ref_template="#/components/schemas/{model}")
        components = {**schema.pop("$defs", {}), self.model.__name__: schema}
        reference = {"$ref": f"#/components/schemas/{self.model.__name__}"}
        request_body = {
            "required": self.required,
            "content": {"application/json": {"schema": reference}},
        }
        return request_body, components


QuoteBody = Annotated[Any, Depends(JsonBody(QuoteIn))]
QuotePatchBody = Annotated[Any, Depends(JsonBody(QuotePatch))]
# A transition's optional ``{"version": n}``, checked by the use case: not documented, as the
# document's one way to name the version is If-Match (both given must agree: a rule across two
# parts of the request that OpenAPI cannot state).
VersionBodyDep = Annotated[Any, Depends(JsonBody(None, required=False))]
ClientBody = Annotated[Any, Depends(JsonBody(ClientIn))]


def idempotency_key_header() -> Any:
    """The ``Idempotency-Key`` header parameter of a route that honours it (None when absent)."""
    # Read by parse_key in the route, after the body (the key's refusal comes after the body's);
    # declared `str` so the document says string, not string-or-null.
    return Header(
        None,
        alias="Idempotency-Key",
        description="Replays the first response for the same key and body (24 h, per agent).",
        json_schema_extra={"maxLength": 255, "pattern": KEY_PATTERN},
    )


async def quote_service(request: Request) -> QuoteService:
    """The quote use cases, built once in the app's lifespan (``app.state.quotes``)."""
    quotes: QuoteService = request.app.state.quotes
    return quotes


Quotes = Annotated[QuoteService, Depends(quote_service)]


async def transaction_runner(request: Request) -> TransactionRunner:
    """The transaction runner (built once, at start-up)."""
    runner: TransactionRunner = request.app.state.runner
    return runner


Runner = Annotated[TransactionRunner, Depends(transaction_runner)]
