"""The agent's proposal routes (``/api/agents/quotes/{id}/proposal…``): the link, its view
figures and the client's answer; revoke the link; the PDF."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from tripquote.deps import QuoteRead
from tripquote.errors import (
    AgentNotFound,
    AuthenticationFailed,
    AuthorizationFailed,
    ProposalNotFound,
    QuoteNotFound,
    QuoteStateInvalid,
    RateLimitExceeded,
)
from tripquote.http import json_response
from tripquote.openapi import DATABASE, ProposalEnvelope, responses
from tripquote.proposals.render import link_pdf
from tripquote.proposals.service import ProposalService
from tripquote.routing import TrackedRoute, operation

router = APIRouter(prefix="/api/agents/quotes", tags=["proposals"], route_class=TrackedRoute)

_READ_ERRORS = (
    AuthenticationFailed,
    AgentNotFound,
    QuoteNotFound,
    AuthorizationFailed,
    ProposalNotFound,
    *DATABASE,
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
    (QUOTE_STATE_INVALID). ``{success, quoteId, proposal}``."""
    await request.app.state.limiter.check(call.caller.agent_id)
    proposal = await proposal_service(request).revoke(caller=call.caller, quote_id=call.quote_id)
    return json_response({"success": True, "quoteId": call.quote_id, "proposal": proposal})


_PDF_RESPONSES = responses(None, errors=_READ_ERRORS)
_PDF_RESPONSES[200] = {
    **_PDF_RESPONSES[200],
    "description": "The proposal as sent, an A4 PDF.",
    "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
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
    content = await asyncio.to_thread(link_pdf, link)
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": 'inline; filename="proposal.pdf"'},
    )
