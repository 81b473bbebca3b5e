"""Proposal use cases: the client's page (a view counted, its state), the client's answer
(the quotes' versioned write, by the actor ``client``), and the agent's view and revoke of
the link. Nothing here knows HTTP; nothing here commits."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tripquote.agents.auth import Caller
from tripquote.config import Settings
from tripquote.errors import (
    ProposalAlreadyAnswered,
    ProposalClosed,
    ProposalExpired,
    ProposalFormInvalid,
    ProposalNotFound,
    QuoteStateInvalid,
    TripquoteError,
)
from tripquote.proposals.links import TOKEN, LinkKeys, token_hash
from tripquote.proposals.render import rendered, valid_until
from tripquote.proposals.store import Answer, Link, ProposalStore
from tripquote.quotes.lifecycle import Operation, QuoteStatus, target_of
from tripquote.quotes.refusals import access_error
from tripquote.quotes.schemas import has_control, shows_nothing
from tripquote.quotes.serialize import fmt_instant

SIGNER_MAX = 200
REASON_MAX = 2000
USER_AGENT_MAX = 512
_ATTEMPTS = 3
"""Answers written again when the link and quote as read explain no refusal (the statement
waited for a commit its snapshot predates; run again, it sees it)."""


class PageState(StrEnum):
    """What the client's page shows."""

    OPEN = "OPEN"  # the form
    ANSWERED = "ANSWERED"  # the confirmation


def _utc_now() -> datetime:
    return datetime.now(UTC)


def page_at(link: Link, now: datetime) -> PageState | type[TripquoteError]:
    """What a link shows at ``now``: its page, or the class of the error that refuses it, in
    this order: ended (revoked, superseded, cancelled: the uniform PROPOSAL_NOT_FOUND),
    answered, expired (agency zone, even before the sweep), the quote moved on from the
    version sent (PROPOSAL_CLOSED)."""
    if link.ended_at is not None:
        return ProposalNotFound
    if link.answer is not None:
        return PageState.ANSWERED
    if now >= link.expires_at or link.quote_status is QuoteStatus.EXPIRED:
        return ProposalExpired
    if link.quote_version != link.version or link.quote_status is not QuoteStatus.SENT:
        return ProposalClosed
    return PageState.OPEN


_CLOSED_BY_AGENT = {
    QuoteStatus.ACCEPTED: "This proposal has been accepted: your travel agent recorded it.",
    QuoteStatus.REJECTED: "This proposal has been declined: your travel agent recorded it. "
    "Ask them for a new one.",
}
"""A closed page's message when the agent recorded the client's answer (the quote's status)."""


def state_of(link: Link, now: datetime) -> PageState:
    """The page a link shows at ``now`` (``page_at``), or its refusal raised:
    PROPOSAL_NOT_FOUND, PROPOSAL_EXPIRED, PROPOSAL_CLOSED (``details.quoteStatus``)."""
    page = page_at(link, now)
    if page is ProposalNotFound:
        raise ProposalNotFound()
    if page is ProposalExpired:
        raise ProposalExpired(
            f"This offer was valid until {valid_until(link.expires_at, _zone(link))}. "
            "Ask your travel agent for a new one.",
            details={"expiresAt": fmt_instant(link.expires_at)},
        )
    if page is ProposalClosed:
        status = link.quote_status
        raise ProposalClosed(
            _CLOSED_BY_AGENT.get(status) if status is not None else None,
            details={"quoteStatus": None if status is None else status.value},
        )
    assert isinstance(page, PageState)
    return page


def _zone(link: Link) -> str:
    """The agency's time zone, as sent with the proposal."""
    return rendered(link).view.timezone


@dataclass(frozen=True, slots=True)
class AnswerForm:
    """The answer form as posted (raw text; checked by ``ProposalService.answer``)."""

    accept: bool
    csrf: str
    proposal_hash: str
    signer_name: str = ""
    consent: bool = False
    reason: str = ""


class ProposalService:
    """The proposal use cases over a ``ProposalStore``; keyword-only methods."""

    def __init__(
        self, *, store: ProposalStore, links: LinkKeys, settings: Settings,
        clock: Callable[[], datetime] | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.links = links
        self.base_url = settings.public_base_url
        self.clock = clock or _utc_now

    def url(self, link: Link) -> str:
        """The link's absolute URL: ``<TRIPQUOTE_PUBLIC_BASE_URL>/p/<token>``."""
        return f"{self.base_url}/p/{self.links.token(link.nonce)}"

    @staticmethod
    def link_hash(token: str) -> str | None:
        """The stored hash of a well-formed ``token``; None for a malformed one."""
        return token_hash(token) if TOKEN.fullmatch(token) else None

    async def open(
        self, *, token: str, count_view: bool, correlation_id: str
    ) -> tuple[Link, PageState]:
        """The link of ``token`` (its view counted when ``count_view``: the first one is a
        ``quote.viewed`` event with ``correlation_id``) and its page; raises
        PROPOSAL_NOT_FOUND (unknown, malformed, ended), PROPOSAL_EXPIRED, PROPOSAL_CLOSED."""
        link_hash = self.link_hash(token)
        link = None
        if link_hash is not None:
            link = await self._by_token(link_hash, count_view, correlation_id)
        if link is None:
            raise ProposalNotFound()
        return link, state_of(link, self.clock())

    async def _by_token(self, link_hash: str, count_view: bool, correlation_id: str) -> Link | None:
        return await self.store.by_token(
            link_hash=link_hash, now=self.clock(), count_view=count_view,
            correlation_id=correlation_id,
        )  # fmt: skip

    def csrf(self, token: str) -> str:
        """The form token bound to the link of ``token``."""
        return self.links.csrf(token_hash(token))

    async def answer(
        self, *, token: str, form: AnswerForm, ip: str | None, user_agent: str | None,
        correlation_id: str,
    ) -> str:  # fmt: skip
        """Record the client's answer on the link of ``token``: the quote moves SENT →
        ACCEPTED (``form.accept``) or REJECTED in the quotes' versioned write, by ``client``;
        returns the quote's id. The same answer again is no change. Raises PROPOSAL_NOT_FOUND,
        PROPOSAL_FORM_INVALID (403: a form token not this link's), PROPOSAL_ALREADY_ANSWERED
        (the other answer), PROPOSAL_EXPIRED, PROPOSAL_CLOSED (the quote moved on, or the
        form shows another proposal), PROPOSAL_FORM_INVALID (400: the proposal answered not
        named, name, consent, reason), in that order.

        A form that is right in itself (its token this link's, the fields valid) is written
        at once: the statement checks everything else (the link open and unanswered, the
        proposal shown the one sent, the quote SENT at the version sent and not expired), so
        an answer that stands is one statement. When it writes nothing, the link is read to
        tell why, in the order above."""
        link_hash = self.link_hash(token)
        if link_hash is None:
            raise ProposalNotFound()
        operation = Operation.ACCEPT if form.accept else Operation.REJECT
        answer = Answer(
            operation=operation,
            shown_hash=form.proposal_hash,
            signer_name=form.signer_name.strip() or None,
            decline_reason=form.reason.strip() or None,
            ip=ip,
            user_agent=(user_agent or "")[:USER_AGENT_MAX] or None,
        )
        if self.links.csrf_ok(link_hash, form.csrf) and not _form_errors(form):
            written = await self._write(link_hash, answer, correlation_id)
            if written is not None:
                return written
        for _ in range(_ATTEMPTS):
            link = await self._by_token(link_hash, False, correlation_id)
            if link is None or link.ended_at is not None:
                raise ProposalNotFound()  # uniform: before anything else is looked at
            if not self.links.csrf_ok(link_hash, form.csrf):
                raise ProposalFormInvalid(
                    "This form is not valid for this proposal. Reload the page and try again.",
                    http_status=403,
                )
            if self._answered(link, operation):
                return link.quote_id
            state_of(link, self.clock())
            if form.proposal_hash and form.proposal_hash != link.proposal_hash:
                raise ProposalClosed(
                    "The proposal you answered is not the one on record. Reload the page.",
                    details={"shownHash": form.proposal_hash},
                )
            errors = _form_errors(form)
            if errors:
                raise ProposalFormInvalid(details={"errors": errors})
            written = await self._write(link_hash, answer, correlation_id)
            if written is not None:
                return written
        raise RuntimeError("an answer was refused without a reason on every attempt")

    async def _write(self, link_hash: str, answer: Answer, correlation_id: str) -> str | None:
        return await self.store.answer(
            link_hash=link_hash, answer=answer, now=self.clock(), correlation_id=correlation_id
        )

    @staticmethod
    def _answered(link: Link, operation: Operation) -> bool:
        """Whether the link holds ``operation``'s answer already (True); the other answer
        raises PROPOSAL_ALREADY_ANSWERED; unanswered: False."""
        if link.answer is None:
            return False
        if link.answer == target_of(operation).value:
            return True
        raise ProposalAlreadyAnswered(
            f"This proposal was already {link.answer.lower()}; that answer stands.",
            details={"answer": link.answer},
        )

    async def agent_view(self, *, caller: Caller, quote_id: str) -> dict[str, Any]:
        """The quote's latest proposal for its agent (``proposal_json``); raises
        AUTHENTICATION_FAILED, AGENT_NOT_FOUND, QUOTE_NOT_FOUND, AUTHORIZATION_FAILED,
        PROPOSAL_NOT_FOUND (never sent)."""
        facts, link = await self.store.latest(caller=caller, quote_id=quote_id, now=self.clock())
        error = access_error(facts, quote_id)
        if error is not None:
            raise error
        if link is None:
            raise _never_sent(quote_id)
        return self.proposal_json(link)

    async def latest_link(self, *, caller: Caller, quote_id: str) -> Link:
        """The quote's latest link, for its agent; the errors of ``agent_view``."""
        facts, link = await self.store.latest(caller=caller, quote_id=quote_id, now=self.clock())
        error = access_error(facts, quote_id)
        if error is not None:
            raise error
        if link is None:
            raise _never_sent(quote_id)
        return link

    async def revoke(self, *, caller: Caller, quote_id: str) -> dict[str, Any]:
        """End the quote's latest link (an ended one stays as it is); raises the errors of
        ``agent_view`` and QUOTE_STATE_INVALID when the client already answered on it."""
        written, facts, link = await self.store.revoke(
            caller=caller, quote_id=quote_id, now=self.clock()
        )
        error = access_error(facts, quote_id)
        if error is not None:
            raise error
        if link is None:
            raise _never_sent(quote_id)
        if written:  # as the statement left it: no read after the commit that could fail
            return self.proposal_json(link)
        latest = await self.latest_link(caller=caller, quote_id=quote_id)
        if link.ended_at is None and latest.answer is not None:
            # Answered before, or by an answer that held the link's lock first.
            raise QuoteStateInvalid(
                f"The client already answered this proposal ({latest.answer}): its link "
                "cannot be revoked.",
                details={"quoteId": quote_id, "answer": latest.answer},
            )
        return self.proposal_json(latest)

    def proposal_json(self, link: Link) -> dict[str, Any]:
        """The agent's view of a link: its URL (while open), expiry, hash, what the client's
        page shows now (``page``: OPEN, ANSWERED or its refusal's code), view figures, how it
        ended and the client's answer; instants ISO 8601 UTC."""
        ended = link.ended_at is not None
        page = page_at(link, self.clock())
        return {
            "url": None if ended else self.url(link),
            "version": link.version,
            "proposalHash": link.proposal_hash,
            "createdAt": fmt_instant(link.created_at),
            "expiresAt": fmt_instant(link.expires_at),
            "endedAt": fmt_instant(link.ended_at) if ended else None,
            "endedReason": link.ended_reason,
            "page": page.value if isinstance(page, PageState) else page.code,
            "views": link.views,
            "firstViewedAt": _instant(link.first_viewed_at),
            "lastViewedAt": _instant(link.last_viewed_at),
            "answer": None
            if link.answer is None
            else {
                "status": link.answer,
                "signerName": link.signer_name,
                "answeredAt": _instant(link.answered_at),
                "declineReason": link.decline_reason,
                "proposalHash": link.answered_hash,
            },
        }


def _instant(at: datetime | None) -> str | None:
    return fmt_instant(at) if at is not None else None


def _never_sent(quote_id: str) -> ProposalNotFound:
    return ProposalNotFound(
        "The quote has no proposal: it was never sent.", details={"quoteId": quote_id}
    )


def _form_errors(form: AnswerForm) -> dict[str, str]:
    """What is wrong with the form's fields, by field (PROPOSAL_FORM_INVALID's
    ``details.errors``); empty when nothing is."""
    errors = {}
    if not form.proposal_hash:  # the page's hidden field: a form not made by the page
        errors["proposal_hash"] = (
            "This form does not say which proposal it answers. Reload the page and try again."
        )
    if form.accept:
        name = form.signer_name.strip()
        if len(name) > SIGNER_MAX:
            errors["signer_name"] = f"Your name can be at most {SIGNER_MAX} characters."
        elif has_control(name) or REPLACEMENT in name or any(map(_not_in_a_name, name)):
            errors["signer_name"] = "Your name can hold letters and punctuation only."
        elif not any(map(_a_letter, name)):  # nothing to read: zero-width spaces, marks…
            errors["signer_name"] = "Enter your full name to sign."
        if not form.consent:
            errors["consent"] = "Tick the box to confirm that you accept the proposal."
    elif len(form.reason.strip()) > REASON_MAX:
        errors["reason"] = f"The reason can be at most {REASON_MAX} characters."
    elif has_control(form.reason, line_breaks=True) or REPLACEMENT in form.reason:
        errors["reason"] = "The reason can hold text and line breaks only."
    return errors


def _a_letter(char: str) -> bool:
    """A letter one sees (Unicode L*, but the Hangul fillers)."""
    return unicodedata.category(char)[0] == "L" and not shows_nothing(char)


def _not_in_a_name(char: str) -> bool:
    """Line and paragraph separators, private use, unassigned and surrogate code points, and
    the format characters (Cf) that only hide text: a byte order mark, word joiners, invisible
    operators, tag characters (the same name could be stored twice, looking one); the joiners
    some scripts write words with (ZWNJ, ZWJ) and the direction marks (LRM, RLM, ALM) stay."""
    category = unicodedata.category(char)
    return category in ("Zl", "Zp", "Co", "Cn", "Cs") or (
        category == "Cf" and char not in _WRITTEN_FORMAT
    )


_WRITTEN_FORMAT = frozenset("\u200b\u200c\u200d\u200e\u200f\u061c")
"""Format characters a name is written with: ZERO WIDTH SPACE (word breaks in Thai, Khmer),
NON-JOINER and JOINER (Persian, Indic scripts), the LEFT-TO-RIGHT, RIGHT-TO-LEFT and ARABIC
LETTER marks. (A name of nothing else shows no letter: refused as such.)"""


REPLACEMENT = "\ufffd"
"""What a form's bytes that were not UTF-8 were read as (U+FFFD): text the client never
typed, refused."""
