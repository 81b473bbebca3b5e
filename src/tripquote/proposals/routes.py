"""The agent's proposal routes (``/api/agents/quotes/{id}/proposal…``): the link, its view
figures and the client's answer; revoke the link; the PDF."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from tripquote import etags
from tripquote.deps import QuoteRead
from tripquote.errors import (
    AgentNotFound,
    AuthenticationFailed,
    AuthorizationFailed,
    ProposalNotFound,
    QuoteConflictVersion,
    QuoteNotFound,
    QuoteStateInvalid,
    RateLimitExceeded,
)
from tripquote.http import json_response
from tripquote.openapi import DATABASE, ProposalEnvelope, Raised, responses
from tripquote.proposals.render import link_pdf
from tripquote.proposals.service import ProposalService
from tripquote.routing import TrackedRoute, operation

router = APIRouter(prefix="/api/agents/quotes", tags=["proposals"], route_class=TrackedRoute)

_READ_ERRORS: tuple[Raised, ...] = (
    AuthenticationFailed,
    AgentNotFound,
    QuoteNotFound,
    AuthorizationFailed,
    ProposalNotFound,
    (QuoteConflictVersion, 412),  # a precondition, which a proposal cannot meet
    *DATABASE,
)


def _preconditions(
    quote_id: str, match: etags.Condition | None, none_match: etags.Condition | None = None
) -> None:
    """A proposal resource has no ETag (its views change it, the quote's version does not), so
    an If-Match naming entity tags is false (``*`` true: the proposal exists), and so is an
    If-None-Match of ``*`` on the revoke, which has a representation to act on (RFC 9110
    §13.1.1, §13.1.2): 412 QUOTE_CONFLICT_VERSION, nothing done. Evaluated once the proposal
    is found (§13.2.1: a 404 or 403 comes first)."""
    failed = "If-Match" if match not in (None, etags.ANY) else None
    if none_match == etags.ANY:
        failed = failed or "If-None-Match"
    if failed is not None:
        raise QuoteConflictVersion(
            f"{failed} is false here: a proposal has no ETag (send If-Match: * or none).",
            details={"quoteId": quote_id, "precondition": failed},
            http_status=412,
        )


def proposal_service(request: Request) -> ProposalService:
    """The proposal use cases, built once in the app's lifespan (``app.state.proposals``)."""
    service: ProposalService = request.app.state.proposals
    return service


@router.get(
    "/{quote_id}/proposal",
    openapi_extra=operation("proposal.read"),
    responses=responses(ProposalEnvelope, errors=_READ_ERRORS),
)
async def read_proposal(request: Request, call: QuoteRead) -> Response:
    """The quote's latest proposal: ``{success, quoteId, proposal: {url, version,
    proposalHash, createdAt, expiresAt, endedAt, endedReason, views, firstViewedAt,
    lastViewedAt, answer}}``; ``url`` (``TRIPQUOTE_PUBLIC_BASE_URL``/p/<token>) is null once
    the link ended. Reading it changes nothing (not the quote's version, not the views)."""
    proposal = await proposal_service(request).agent_view(
        caller=call.caller, quote_id=call.quote_id
    )
    _preconditions(call.quote_id, call.match)
    return json_response({"success": True, "quoteId": call.quote_id, "proposal": proposal})


@router.post(
    "/{quote_id}/proposal/revoke",
    openapi_extra=operation("proposal.revoke"),
    responses=responses(
        ProposalEnvelope, errors=(*_READ_ERRORS, QuoteStateInvalid, RateLimitExceeded)
    ),
)
async def revoke_proposal(request: Request, call: QuoteRead) -> Response:
    """End the quote's proposal link: its page answers the uniform 404 from now on. Revoking
    an ended link changes nothing; a link the client answered is not revoked
    (QUOTE_STATE_INVALID); a precondition is false (``_preconditions``): 412, not revoked.
    ``{success, quoteId, proposal}``."""
    await request.app.state.limiter.check(call.caller.agent_id)
    service = proposal_service(request)
    if_none_match = etags.condition(request.headers, "If-None-Match")
    if call.match is not None or if_none_match is not None:
        await service.latest_link(caller=call.caller, quote_id=call.quote_id)  # 404s first
        _preconditions(call.quote_id, call.match, if_none_match)
    proposal = await service.revoke(caller=call.caller, quote_id=call.quote_id)
    return json_response({"success": True, "quoteId": call.quote_id, "proposal": proposal})


_PDF_RESPONSES = responses(None, errors=_READ_ERRORS)
_PDF_RESPONSES[200] = {
    **_PDF_RESPONSES[200],
    "description": "The proposal as sent, an A4 PDF.",
    "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    "headers": {
        **_PDF_RESPONSES[200]["headers"],
        "Content-Disposition": {
            "description": 'inline; filename="proposal.pdf" (RFC 6266): shown, named.',
            "required": True,
            "schema": {"type": "string"},
        },
    },
}


@router.get(
    "/{quote_id}/proposal.pdf",
    openapi_extra=operation("proposal.pdf"),
    responses=_PDF_RESPONSES,
    response_class=Response,
)
async def proposal_pdf(request: Request, call: QuoteRead) -> Response:
    """The quote's latest proposal as a PDF (A4, page numbers; ended links too: it is what
    was sent)."""
    link = await proposal_service(request).latest_link(caller=call.caller, quote_id=call.quote_id)
    _preconditions(call.quote_id, call.match)
    content = await asyncio.to_thread(link_pdf, link)
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": 'inline; filename="proposal.pdf"'},
    )
