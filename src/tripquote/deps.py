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

from typing import Annotated, Any

from fastapi import Depends, Header
from pydantic import BaseModel
from starlette.requests import Request

from tripquote import etags
from tripquote.agents.auth import Caller, authenticate
from tripquote.clients.schemas import ClientIn
from tripquote.db.transaction import TransactionRunner
from tripquote.errors import QuoteNotFound, UnsupportedMediaType
from tripquote.json import loads
from tripquote.observability.operations import current_operation
from tripquote.openapi import QuotePatch, VersionBody
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


async def if_match_version(
    if_match: str = Header(  # parsed below, not by FastAPI: its refusal is ours, in order
        None,
        alias="If-Match",
        description='The strong ETag of the version edited, e.g. "5" (RFC 9110 §13.1.1); '
        "required unless the body carries `version`. A tag that is not the current version's "
        '(stale, weak, or naming no version like "abc"): 412. `*` names no version.',
        json_schema_extra={"pattern": etags.PATTERN},
    ),
) -> int | None:
    """The version an ``If-Match`` header names (``etags.if_match_version``), None without
    one; QUOTE_VALIDATION_FAILED when malformed or naming several versions."""
    return etags.if_match_version(etags.parse(if_match, "If-Match"))


IfMatch = Annotated[int | None, Depends(if_match_version)]


async def if_none_match(
    value: str = Header(  # parsed below, not by FastAPI: its refusal is ours, in order
        None,
        alias="If-None-Match",
        description='ETags of the copies the client holds, e.g. "5", or `*` (RFC 9110 '
        "§13.1.2): 304 Not Modified, without content, when one is the current version's.",
        json_schema_extra={"pattern": etags.PATTERN},
    ),
) -> etags.Condition | None:
    """The ``If-None-Match`` condition, None without one; QUOTE_VALIDATION_FAILED when
    malformed."""
    return etags.parse(value, "If-None-Match")


IfNoneMatch = Annotated[etags.Condition | None, Depends(if_none_match)]


class JsonBody:
    """Dependency: the request body parsed with every fraction or exponent as a Decimal
    (``tripquote/json.py``: money is never a float), documented in OpenAPI as ``model``
    (``routing.TrackedRoute``) but validated by the use case, which reports every failing field
    at once. UNSUPPORTED_MEDIA_TYPE unless declared JSON (``application/json`` or a ``+json``
    type, RFC 6839); QUOTE_VALIDATION_FAILED when malformed. An optional body may be empty
    (None)."""

    def __init__(self, model: type[BaseModel], *, required: bool = True) -> None:
        self.model = model
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

    def openapi(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The OpenAPI ``requestBody`` and the component schemas it refers to."""
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
VersionBodyDep = Annotated[Any, Depends(JsonBody(VersionBody, required=False))]
ClientBody = Annotated[Any, Depends(JsonBody(ClientIn))]


def idempotency_key_header() -> Any:
    """The ``Idempotency-Key`` header parameter of a route that honours it (None when absent)."""
    # Read by parse_key in the route, after the body (the key's refusal comes after the body's);
    # declared `str` so the document says string, not string-or-null.
    return Header(
        None,
        alias="Idempotency-Key",
        description="Replays the first response for the same key and body (24 h, per agent).",
        json_schema_extra={"minLength": 1, "maxLength": 255},
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
