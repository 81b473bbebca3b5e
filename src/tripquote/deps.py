"""What the routes take as parameters (``Annotated`` dependencies): the authenticated agent, the
write it counts, the path's quote id, If-Match, the JSON body and the services built at
start-up; and the Idempotency-Key header, read in the route after the body.

A quote route takes ONE dependency (``QuoteRead``, ``QuoteCreate``, ``QuoteEdit``,
``QuoteTransition``) that reads all of its inputs in the order of the refusals:
authentication, then the quote id, the rate limit, If-Match, the body, then (in the route)
the Idempotency-Key. FastAPI solves each dependency of a route at every request (about 15 us
each, measured, also when cached), so one dependency of five parameters costs a fifth of five
dependencies. All are ``async``: a plain function would run on a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated, Any

from fastapi import Depends
from pydantic import BaseModel
from starlette.requests import Request

from tripquote import etags
from tripquote.agents.auth import Caller, authenticate
from tripquote.clients.schemas import ClientIn
from tripquote.db.transaction import TransactionRunner
from tripquote.errors import QuoteNotFound, UnsupportedMediaType
from tripquote.http import prefers
from tripquote.idempotency import KEY_PATTERN
from tripquote.json import loads
from tripquote.observability.operations import current_operation
from tripquote.openapi import QuotePatch
from tripquote.quotes.schemas import QuoteIn
from tripquote.quotes.service import NoneMatch, QuoteService
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


def header_parameter(
    name: str, description: str, *, required: bool = False, **schema: Any
) -> dict[str, Any]:
    """An OpenAPI header parameter a dependency reads itself and the route documents
    (``documents``, ``routing.TrackedRoute``): a parameter declared to FastAPI is solved at
    every request (about 10 us each, measured), though its value is read and refused here."""
    return {
        "name": name,
        "in": "header",
        "required": required,
        "schema": {"type": "string", "title": name, "description": description, **schema},
        "description": description,
    }


def documents(*parameters: dict[str, Any]) -> Any:
    """Class decorator: the header ``parameters`` a dependency reads, documented by each route
    taking it (``routing.TrackedRoute``)."""

    def document(cls: Any) -> Any:
        cls.documented_headers = parameters
        return cls

    return document


IF_MATCH = header_parameter(
    "If-Match",
    'The strong ETag of the version acted on, as ETag sent it, e.g. "5" (RFC 9110 §8.8.3, '
    "§13.1.1); unquoted is malformed (400). A tag that is not the current version's (stale, "
    'or naming no version like "abc"): 412. Instead of If-Match, the JSON body may carry '
    "`version`; both given must name the same version (else 400).",
    # Required in the document, the one way it names the version acted on: the body's
    # `version` is the undocumented alternative, and without either the write is refused.
    required=True,
    pattern=etags.STRONG_TAG_PATTERN,
)
"""The ``If-Match`` of a versioned write (parsed by ``etags``: its refusal is ours, in order).
The document gives one strong entity tag; the parser also takes ``*`` and lists."""


IF_NONE_MATCH = header_parameter(
    "If-None-Match",
    'ETags of the copies the client holds, e.g. "5", or `*` (RFC 9110 §13.1.2): 304 Not '
    "Modified, without content, when one is the current version's.",
    pattern=etags.PATTERN,
)


@documents(IF_NONE_MATCH)
class _IfNoneMatch:
    async def __call__(self, request: Request) -> etags.Condition | None:
        """The ``If-None-Match`` condition (every line of it), None without one;
        QUOTE_VALIDATION_FAILED when malformed."""
        return etags.condition(request.headers, "If-None-Match")


IfNoneMatch = Annotated[etags.Condition | None, Depends(_IfNoneMatch())]


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
        # Every line (two lines name two types: neither is taken)
        content_type = etags.field_value(request.headers, "content-type") or ""
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type != "application/json" and not (
            media_type.startswith("application/") and media_type.endswith("+json")
        ):
            raise UnsupportedMediaType(details={"contentType": media_type or None})
        if "content-encoding" in request.headers:
            _identity_only(etags.field_value(request.headers, "content-encoding"))
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


def _identity_only(value: str | None) -> None:
    """Refuse a body sent with a content coding (``Content-Encoding: gzip``…): 415
    UNSUPPORTED_MEDIA_TYPE with ``Accept-Encoding: identity``, none being accepted (RFC 9110
    §8.4, §15.5.16, §12.5.3). ``identity`` (or an empty field) is no coding."""
    codings = [c.strip().lower() for c in (value or "").split(",") if c.strip()]
    sent = [c for c in codings if c != "identity"]
    if sent:
        raise UnsupportedMediaType(
            "Send the body without a content coding: no Content-Encoding (or identity).",
            details={"contentEncoding": ", ".join(sent)},
            headers={"Accept-Encoding": "identity"},
        )


ClientBody = Annotated[Any, Depends(JsonBody(ClientIn))]


IDEMPOTENCY_KEY = header_parameter(
    "Idempotency-Key",
    "Replays the first response for the same key and body (24 h, per agent).",
    maxLength=255,
    pattern=KEY_PATTERN,
)
"""The ``Idempotency-Key`` of a route that honours it (``idempotency.parse_key`` reads it in
the route, after the body: the key's refusal comes after the body's)."""


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key (None without one), every line of it: two lines are one
    value of two keys (RFC 9110 §5.3), which ``idempotency.parse_key`` refuses, never a
    choice of one."""
    return etags.field_value(request.headers, "idempotency-key")


@documents(IDEMPOTENCY_KEY)
class _IdempotencyKey:
    async def __call__(self, request: Request) -> str | None:
        """The request's Idempotency-Key (``idempotency_key``)."""
        return idempotency_key(request)


IdempotencyKey = Annotated[str | None, Depends(_IdempotencyKey())]


def quote_service(request: Request) -> QuoteService:
    """The quote use cases, built once in the app's lifespan (``app.state.quotes``)."""
    quotes: QuoteService = request.app.state.quotes
    return quotes


@dataclass(frozen=True, slots=True)
class QuoteCall:
    """What a quote route acts on: who calls, the quote (``""`` for a create), the version
    named by If-Match (None without one), the parsed body (None for none), the raw
    Idempotency-Key (None without one; parsed by the route, after the body) and the use
    cases."""

    caller: Caller
    quote_id: str
    quotes: QuoteService
    if_match: int | None = None
    body: Any = None
    idempotency_key: str | None = None
    merge: bool = False
    """The request prefers a stale save merged (``Prefer: merge``, RFC 7240)."""
    none_match: NoneMatch | None = None
    """A write's If-None-Match (None without one): whether it names a version's ETag."""
    match: etags.Condition | None = None
    """A read's If-Match (None without one)."""


async def quote_read(request: Request, quote_id: str) -> QuoteCall:
    """A read of one quote: AUTHENTICATION_FAILED, QUOTE_NOT_FOUND if no quote can have the
    id, then a malformed If-Match's QUOTE_VALIDATION_FAILED (its every line: ``match``;
    documented by ``openapi.complete``)."""
    caller = await authenticate_agent(request)
    quote_id = path_id(quote_id, QuoteNotFound)
    match = etags.condition(request.headers, "If-Match")
    return QuoteCall(caller, quote_id, quote_service(request), match=match)


QuoteRead = Annotated[QuoteCall, Depends(quote_read)]


class _QuoteWrite:
    """Base of the write dependencies: ``body`` is the route's ``JsonBody`` (documented as its
    request body by ``routing.TrackedRoute``)."""

    def __init__(self, body: JsonBody) -> None:
        self.body = body

    async def edit(self, request: Request, quote_id: str) -> QuoteCall:
        """AUTHENTICATION_FAILED, QUOTE_NOT_FOUND (id), RATE_LIMIT_EXCEEDED, If-Match's
        QUOTE_VALIDATION_FAILED, then the body's refusals, in this order."""
        caller = await authenticate_agent(request)
        quote_id = path_id(quote_id, QuoteNotFound)
        await request.app.state.limiter.check(caller.agent_id)
        # Every line of If-Match: two lines are a list, as one line of two tags is.
        version = etags.if_match_version(etags.condition(request.headers, "If-Match"))
        none_match = None
        if "if-none-match" in request.headers:
            excluded = etags.condition(request.headers, "If-None-Match")
            none_match = partial(_names, excluded)
        body = await self.body(request)
        return QuoteCall(
            caller, quote_id, quote_service(request), version, body, none_match=none_match
        )


def _names(condition: etags.Condition | None, version: int) -> bool:
    """Whether If-None-Match ``condition`` names ``version``'s ETag (weak comparison, or
    ``*``: RFC 9110 §13.1.2)."""
    return etags.none_match_fails(condition, etags.etag(version))


@documents(IDEMPOTENCY_KEY)
class _Create(_QuoteWrite):
    async def __call__(self, request: Request) -> QuoteCall:
        """AUTHENTICATION_FAILED, RATE_LIMIT_EXCEEDED, then the body's refusals."""
        caller = await count_write(request)
        body = await self.body(request)
        key = idempotency_key(request)
        return QuoteCall(caller, "", quote_service(request), None, body, key)


PREFER = header_parameter(
    "Prefer",
    "`merge` (RFC 7240 preference): a PATCH made on a version others have saved over since "
    "is merged with what they saved, field by field and item by item (by id), when nothing it "
    "changes was changed since; the response then carries `Preference-Applied: merge`. A "
    "collision is a 409 QUOTE_CONFLICT_VERSION whose `details.conflicts` gives each "
    "colliding field's or item's `base`, `current` and `requested` value. Without it a stale "
    "version is refused (409/412) as always.",
    examples=["merge"],
)
"""The ``Prefer`` header of a PATCH (RFC 7240): ``merge`` asks for a stale save to be merged
with what was saved since (``quotes/merge_save.py``)."""


@documents(IF_MATCH, PREFER, IDEMPOTENCY_KEY)
class _Edit(_QuoteWrite):
    async def __call__(self, request: Request, quote_id: str) -> QuoteCall:
        """See ``edit``; ``Prefer: merge`` sets ``merge``, on whichever line of the field it
        comes: RFC 7240 §2 lets a client send its preferences on several lines."""
        call = await self.edit(request, quote_id)
        merge = prefers(etags.field_value(request.headers, "prefer"), "merge")
        return replace(call, merge=merge, idempotency_key=idempotency_key(request))


@documents(IF_MATCH, IDEMPOTENCY_KEY)
class _Transition(_QuoteWrite):
    async def __call__(self, request: Request, quote_id: str) -> QuoteCall:
        """See ``edit``; the body is optional (``{"version": n}`` or none)."""
        call = await self.edit(request, quote_id)
        return replace(call, idempotency_key=idempotency_key(request))


QuoteCreate = Annotated[QuoteCall, Depends(_Create(JsonBody(QuoteIn)))]
QuoteEdit = Annotated[QuoteCall, Depends(_Edit(JsonBody(QuotePatch)))]
# A transition's optional ``{"version": n}``, checked by the use case, is not documented: the
# document's one way to name the version is If-Match.
QuoteTransition = Annotated[QuoteCall, Depends(_Transition(JsonBody(None, required=False)))]


async def transaction_runner(request: Request) -> TransactionRunner:
    """The transaction runner (built once, at start-up)."""
    runner: TransactionRunner = request.app.state.runner
    return runner


Runner = Annotated[TransactionRunner, Depends(transaction_runner)]
