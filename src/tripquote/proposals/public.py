"""The client's pages, public behind the private link: ``/p/{token}`` (the proposal, its
answer form), ``/p/{token}/pdf``, ``POST /p/{token}/accept`` · ``/decline``, and the one
stylesheet ``/assets/proposal.css``. Server-rendered HTML, no script; every response carries
the security headers; every refusal is a page with its status (never the JSON envelope):
PROPOSAL_NOT_FOUND 404 (one page for an unknown, malformed or ended token), PROPOSAL_EXPIRED
410, PROPOSAL_CLOSED / PROPOSAL_ALREADY_ANSWERED 409, PROPOSAL_FORM_INVALID 400 / 403,
RATE_LIMIT_EXCEEDED 429 with Retry-After. Each request is one tracked operation (metrics,
operation record) named in its decorator; the token is in none of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Form
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tripquote.errors import (
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProposalAlreadyAnswered,
    ProposalClosed,
    ProposalExpired,
    ProposalFormInvalid,
    ProposalNotFound,
    RateLimitExceeded,
    TripquoteError,
)
from tripquote.etags import field_value
from tripquote.middleware import HEAD_AS_GET
from tripquote.observability.context import get_correlation_id
from tripquote.observability.operations import Observer, current_operation
from tripquote.proposals.render import answered_of, link_pdf, render, rendered, stylesheet
from tripquote.proposals.service import REASON_MAX, SIGNER_MAX, AnswerForm, ProposalService
from tripquote.proposals.store import Link
from tripquote.routing import OPERATION, operation

SECURITY_HEADERS = {
    # No script at all, nothing from elsewhere, never framed, forms post only here.
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; object-src 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The URL holds the token: never sent on as a Referer, never kept by a shared cache.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_TITLES: dict[type[TripquoteError], str] = {
    ProposalNotFound: "This link is not valid",
    ProposalExpired: "This offer has expired",
    ProposalClosed: "This proposal is closed",
    ProposalAlreadyAnswered: "Already answered",
    ProposalFormInvalid: "This form is not valid",
    RateLimitExceeded: "Too many requests",
    MethodNotAllowed: "This page cannot be used this way",
    PayloadTooLarge: "This form is too large",
}


def _service(request: Request) -> ProposalService:
    service: ProposalService = request.app.state.proposals
    return service


def _base(request: Request) -> str:
    return _service(request).base_url


def error_page(request: Request, error: TripquoteError) -> Response:
    """A refusal as a page with its status and headers (Retry-After on a 429). The 404 is
    the same page for every token it refuses."""
    title = _TITLES.get(type(error), "Temporarily unavailable")
    if isinstance(error, ProposalNotFound):
        message = ProposalNotFound.default_message  # uniform: never what was wrong
    elif isinstance(error, RateLimitExceeded):
        wait = error.headers.get("Retry-After", "a few")
        message = f"Please wait {wait} second{'' if wait == '1' else 's'}, then reload the page."
    elif type(error) in _TITLES:
        message = error.message
    else:
        message = "The service could not answer just now. Please reload the page in a moment."
    html = render("message.html", assets=f"{_base(request)}/assets", title=title, message=message)
    return HTMLResponse(
        html, status_code=error.status, headers={**SECURITY_HEADERS, **error.headers}
    )


def is_link_path(path: str) -> bool:
    """Whether ``path`` is a proposal link's (``/p/…``, however many slashes lead it): its
    refusals are pages (``refusal_page``), never the API's JSON envelope."""
    rest = path.lstrip("/")
    return rest[:2].lower() == "p/" or rest.lower() == "p"


def refusal_page(request: Request, error: TripquoteError) -> Response:
    """``error_page`` for a refusal of a link path made before or around its routes (no
    such route, a method it does not take, a body too large, an unexpected error): a 404 is
    the uniform one of an unknown link."""
    return error_page(request, ProposalNotFound() if isinstance(error, NotFound) else error)


class PageRoute(APIRoute):
    """A public page route: each request one tracked operation (``openapi_extra`` names
    it), counted by the rate limits first when it is a link's (``_limit``), a refusal
    rendered by ``error_page``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler inside the tracked operation, errors as pages."""
        handler = super().get_route_handler()
        name = (self.openapi_extra or {})[OPERATION]

        async def tracked(request: Request) -> Response:
            observer: Observer = request.app.state.observer
            try:
                async with observer.track(name) as op:
                    token = request.path_params.get("token")
                    if token is not None:  # every route of a link (not the stylesheet)
                        await _limit(request, token)
                    if request.method == "POST" and not _urlencoded(request):
                        raise ProposalFormInvalid(_UNREADABLE, details={})
                    try:
                        if request.method == "POST":
                            _one_value_each(await request.form())  # read once, kept for FastAPI
                        response = await handler(request)
                    except (StarletteHTTPException, RequestValidationError) as error:
                        raise _unreadable(error) from None
                    op.http_status = response.status_code
                    return response
            except TripquoteError as error:
                return error_page(request, error)

        return tracked


router = APIRouter(route_class=PageRoute, include_in_schema=False)

_UNREADABLE = "This form could not be read. Reload the page and try again."


def _urlencoded(request: Request) -> bool:
    """Whether the request's body is the page's form as a browser sends it (the page's forms
    are ``application/x-www-form-urlencoded``, whose undecodable bytes read as U+FFFD, which
    the answer refuses; a multipart body's parts read as Latin-1 instead, text the client
    never typed)."""
    content_type = field_value(request.headers, "content-type") or ""  # every line
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/x-www-form-urlencoded"


def _one_value_each(form: FormData) -> None:
    """PROPOSAL_FORM_INVALID when a field comes twice (``signer_name=Ann&signer_name=Bob``):
    which one the client meant, only the client knows (the last one was recorded)."""
    if len(form) != len(form.multi_items()):
        raise ProposalFormInvalid(_UNREADABLE, details={})


def _unreadable(error: Exception) -> Exception:
    """What a form the framework could not read is refused with: the body's own refusal when
    it caused it (PAYLOAD_TOO_LARGE, a chunked body over the limit), else
    PROPOSAL_FORM_INVALID (too many fields, a file for a text field)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, TripquoteError):
            return cause
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, StarletteHTTPException) and error.status_code >= 500:
        return error
    return ProposalFormInvalid(_UNREADABLE, details={})


async def _limit(request: Request, token: str) -> None:
    """Count the request per client IP, then per link (its hash: a token is never a storage
    key); RATE_LIMIT_EXCEEDED, and PROPOSAL_NOT_FOUND for a malformed token (counted per IP
    only: it is no link)."""
    limiter = request.app.state.public_limiter
    await limiter.check(f"ip:{request.client.host if request.client else '-'}")
    link_hash = ProposalService.link_hash(token)
    if link_hash is None:
        raise ProposalNotFound()
    await limiter.check(f"link:{link_hash[:32]}")


def _note_quote(quote_id: str) -> None:
    tracked = current_operation()
    if tracked is not None:
        tracked.quote_id = quote_id


def _page(
    request: Request, link: Link, token: str, *, status: int = 200,
    errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    service = _service(request)
    proposal = rendered(link)  # rendered once per proposal; the link's state is this request's
    html = render(
        "proposal.html",
        p=proposal.view,
        content=proposal.content,
        answered=answered_of(link, proposal.view.timezone),
        link=f"{service.base_url}/p/{token}",
        assets=f"{service.base_url}/assets",
        csrf=service.csrf(token),
        proposal_hash=link.proposal_hash,
        errors=errors or {},
        form=form or {},
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


@router.get("/p/{token}", openapi_extra=operation("proposal.view"))
async def proposal_page(request: Request, token: str) -> Response:
    """The proposal as sent, with its answer form (or the answer given); a view counted, but
    for a HEAD (a link checker or a preview asks, no one reads)."""
    link, _ = await _service(request).open(
        token=token,
        count_view=not request.scope.get(HEAD_AS_GET),
        correlation_id=get_correlation_id(),
    )
    _note_quote(link.quote_id)
    return _page(request, link, token)


@router.get("/p/{token}/pdf", openapi_extra=operation("proposal.view_pdf"))
async def proposal_pdf(request: Request, token: str) -> Response:
    """The proposal as a PDF (the refusals of the page)."""
    link, _ = await _service(request).open(
        token=token, count_view=False, correlation_id=get_correlation_id()
    )
    _note_quote(link.quote_id)
    content = await asyncio.to_thread(link_pdf, link)
    return Response(
        content,
        media_type="application/pdf",
        headers={**SECURITY_HEADERS, "Content-Disposition": 'inline; filename="proposal.pdf"'},
    )


async def _answer(request: Request, token: str, form: AnswerForm) -> Response:
    service = _service(request)
    try:
        quote_id = await service.answer(
            token=token,
            form=form,
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
            correlation_id=get_correlation_id(),
        )
    except ProposalFormInvalid as error:
        if error.status != 400:
            raise
        link, _ = await service.open(
            token=token, count_view=False, correlation_id=get_correlation_id()
        )
        _note_quote(link.quote_id)
        tracked = current_operation()
        if tracked is not None:  # a refused answer, though the page shows the form again
            tracked.answered = error
        # Shown again in the form, at most what its fields take (maxlength).
        values = {"signer_name": form.signer_name[:SIGNER_MAX], "reason": form.reason[:REASON_MAX]}
        return _page(request, link, token, status=400, errors=error.details["errors"], form=values)
    _note_quote(quote_id)
    # POST-redirect-GET: a reload shows the answer, never posts again.
    return RedirectResponse(
        f"{service.base_url}/p/{token}#answer", status_code=303, headers=SECURITY_HEADERS
    )


@router.post("/p/{token}/accept", openapi_extra=operation("proposal.accept"))
async def accept(
    request: Request,
    token: str,
    csrf: str = Form(""),
    proposal_hash: str = Form(""),
    signer_name: str = Form(""),
    consent: str = Form(""),
) -> Response:
    """Accept: the signer's full name and the consent box; 303 to the page."""
    form = AnswerForm(
        accept=True, csrf=csrf, proposal_hash=proposal_hash, signer_name=signer_name,
        consent=consent == "yes",
    )  # fmt: skip
    return await _answer(request, token, form)


@router.post("/p/{token}/decline", openapi_extra=operation("proposal.decline"))
async def decline(
    request: Request,
    token: str,
    csrf: str = Form(""),
    proposal_hash: str = Form(""),
    reason: str = Form(""),
) -> Response:
    """Decline, with an optional reason; 303 to the page. A browser sends each line break of
    the textarea as CRLF (HTML: form submission); its ``maxlength`` counts one character for
    it, and so does the reason's limit: line breaks are taken as LF."""
    reason = reason.replace("\r\n", "\n").replace("\r", "\n")
    form = AnswerForm(accept=False, csrf=csrf, proposal_hash=proposal_hash, reason=reason)
    return await _answer(request, token, form)


@router.get("/assets/proposal.css", openapi_extra=operation("proposal.asset"))
async def proposal_css() -> Response:
    """The pages' stylesheet."""
    return Response(
        stylesheet(),
        media_type="text/css",
        headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"},
    )
