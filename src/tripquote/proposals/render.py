"""The proposal as the client reads it: a view of the frozen proposal JSON, the HTML page
(Jinja2, autoescaped) and its PDF (WeasyPrint on Pango). Amounts with Babel from CLDR: the
currency's own digits (JPY without decimals, ISO 4217); markup folded into the line prices
(``pricing.fold_markup``); "valid until" in the agency's IANA time zone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from tripquote.json import loads
from tripquote.proposals.store import Link
from tripquote.quotes.pricing import fold_markup

LOCALE = "en_GB"
"""The locale of the page's dates and amounts (Babel, CLDR)."""

ITEM_KINDS = {
    "FLIGHT": "Flight",
    "HOTEL": "Hotel",
    "ACTIVITY": "Activity",
    "TRANSFER": "Transfer",
    "OTHER": "Other",
}


def money(amount: Decimal | str, currency: str) -> str:
    """``amount`` in ``currency`` as a client reads it (CLDR digits: ¥1,346,125; €12.50)."""
    return str(format_currency(Decimal(amount), currency, locale=LOCALE))


def long_date(day: date) -> str:
    """E.g. ``Sunday 31 October 2027``."""
    return str(format_date(day, "EEEE d MMMM y", locale=LOCALE))


def _local_time(text: str) -> str:
    """A local date-time with its offset, on its own clock: ``Sun 31 Oct, 13:25``."""
    at = datetime.fromisoformat(text)
    return f"{format_date(at.date(), 'EEE d MMM', locale=LOCALE)}, {at:%H:%M}"


def valid_until(expires_at: datetime, timezone: str) -> str:
    """The last valid day of an offer ending at ``expires_at`` (the midnight after it, in the
    agency's ``timezone``), e.g. ``Saturday 19 December 2026 (Europe/Paris)``."""
    last = (expires_at.astimezone(ZoneInfo(timezone)) - timedelta(microseconds=1)).date()
    return f"{long_date(last)} ({timezone})"


@dataclass(frozen=True, slots=True)
class Line:
    """One item as shown: what, its facts, how many, its price with the markup folded in."""

    kind: str
    description: str
    facts: list[tuple[str, str]]
    quantity: int
    price: str


@dataclass(frozen=True, slots=True)
class Day:
    """The items of one day of the trip (``day`` None: items without a date)."""

    title: str
    lines: list[Line] = field(default_factory=list)


def _day_of(item: dict[str, Any]) -> date | None:
    details = item.get("details") or {}
    if item["type"] == "FLIGHT":
        return datetime.fromisoformat(details["departAt"]).date()
    if item["type"] == "HOTEL":
        return date.fromisoformat(details["checkIn"])
    if item["type"] in ("ACTIVITY", "TRANSFER"):
        return date.fromisoformat(details["date"])
    return None


def _flight(carrier: str, number: str) -> str:
    """``JL5`` (a number with its airline prefix as given), else ``JL 5``."""
    return number if number.startswith(carrier) else f"{carrier} {number}"


def _named(label: str, name: str, item: dict[str, Any]) -> list[tuple[str, str]]:
    """The hotel's or activity's name as a fact, unless the item's description says just
    that already (the page would show it twice)."""
    return (
        [] if name.strip().casefold() == item["description"].strip().casefold() else [(label, name)]
    )


def _facts(item: dict[str, Any]) -> list[tuple[str, str]]:
    details = item.get("details") or {}
    kind = item["type"]
    if kind == "FLIGHT":
        return [
            ("Flight", _flight(details["carrier"], details["flightNumber"])),
            ("Departs", f"{details['from']} {_local_time(details['departAt'])}"),
            ("Arrives", f"{details['to']} {_local_time(details['arriveAt'])}"),
        ]
    if kind == "HOTEL":
        return [
            *_named("Hotel", details["name"], item),
            ("Check-in", long_date(date.fromisoformat(details["checkIn"]))),
            ("Check-out", long_date(date.fromisoformat(details["checkOut"]))),
            ("Rooms", str(details["rooms"])),
        ]
    if kind == "ACTIVITY":
        return _named("Activity", details["name"], item)
    if kind == "TRANSFER":
        route = " → ".join(p for p in (details.get("from"), details.get("to")) if p)
        return [("Route", route)] if route else []
    return []


@dataclass(frozen=True, slots=True)
class ProposalView:
    """Everything the page and the PDF show, formatted."""

    agency: str
    timezone: str
    trip_name: str
    destination: str
    dates: str
    travelers: int
    days: list[Day]
    subtotal: str
    discount: str | None
    total: str
    notes: str | None
    valid_until: str
    reference: str


def view_of(proposal_text: str, proposal_hash: str, expires_at: datetime) -> ProposalView:
    """The view of the proposal JSON ``{agency: {name, timeZone}, quote}`` as sent."""
    proposal = loads(proposal_text.encode())
    agency, quote = proposal["agency"], proposal["quote"]
    currency = quote["currency"]
    items = quote["items"]
    pricing = quote["pricing"]
    folded = fold_markup(
        tuple(Decimal(i["lineTotal"]) for i in items), Decimal(pricing["markupAmount"]), currency
    )
    start = date.fromisoformat(quote["startDate"])
    by_day: dict[date | None, list[Line]] = {}
    for item, price in zip(items, folded, strict=True):
        line = Line(
            kind=ITEM_KINDS[item["type"]],
            description=item["description"],
            facts=_facts(item),
            quantity=item["quantity"],
            price=money(price, currency),
        )
        by_day.setdefault(_day_of(item), []).append(line)
    days = [
        Day(f"Day {(day - start).days + 1} · {long_date(day)}", by_day[day])
        for day in sorted(d for d in by_day if d is not None)
    ]
    if None in by_day:
        days.append(Day("Also included", by_day[None]))
    discount = Decimal(pricing["discount"])
    return ProposalView(
        agency=agency["name"],
        timezone=agency["timeZone"],
        trip_name=quote["tripName"],
        destination=quote["destination"],
        dates=f"{long_date(start)} \u2013 {long_date(date.fromisoformat(quote['endDate']))}",
        travelers=quote["travelers"],
        days=days,
        subtotal=money(Decimal(pricing["subtotal"]) + Decimal(pricing["markupAmount"]), currency),
        discount=money(discount, currency) if discount else None,
        total=money(pricing["total"], currency),
        notes=quote.get("notes"),
        valid_until=valid_until(expires_at, agency["timeZone"]),
        reference=proposal_hash[:16],
    )


RENDERED_MAX = 512
"""Rendered proposals kept per process (least recently used first out): a few MB at most."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A proposal rendered once: its view, and its HTML (``_content.html``: everything the
    page shows of the proposal, the same for every view of it)."""

    view: ProposalView
    content: Markup


@lru_cache(maxsize=RENDERED_MAX)
def _rendered(proposal_text: str, proposal_hash: str, expires_at: datetime) -> Rendered:
    view = view_of(proposal_text, proposal_hash, expires_at)
    html = render("_content.html", p=view)  # autoescaped: every value from the proposal escaped
    return Rendered(view, Markup(html))  # noqa: S704  (the template's output, escaped above)


def rendered(link: Link) -> Rendered:
    """The view and the HTML of ``link``'s proposal, rendered on its first view and kept (it
    is frozen at send, its expiry with it: nothing of the link's state is in it, so a revoked
    or answered link is decided on each request, never by this cache). Keyed by the text
    itself, in the page's one locale (``LOCALE``)."""
    return _rendered(link.proposal, link.proposal_hash, link.expires_at)


def answered_of(link: Link, timezone: str) -> dict[str, Any] | None:
    """The client's answer as the page and the PDF show it (None: unanswered): accepted or
    not, the signer, when (agency zone) and the banner's text."""
    if link.answer is None or link.answered_at is None:
        return None
    at = format_datetime(
        link.answered_at, "d MMMM y, HH:mm", tzinfo=ZoneInfo(timezone), locale=LOCALE
    )
    at = f"{at} ({timezone})"
    accepted = link.answer == "ACCEPTED"
    text = f"Accepted by {link.signer_name} on {at}." if accepted else f"Declined on {at}."
    return {"accepted": accepted, "signer": link.signer_name, "at": at, "text": text}


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("tripquote.proposals", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # templates ship with the package: no stat of each file per page
    )


def render(template: str, **context: Any) -> str:
    """The HTML of ``template`` (``proposals/templates``) with ``context``."""
    return _environment().get_template(template).render(**context)


@cache
def stylesheet() -> bytes:
    """The page's one stylesheet (``proposals/static/proposal.css``)."""
    return resources.files("tripquote.proposals").joinpath("static/proposal.css").read_bytes()


PDF_MAX = 32
"""Rendered PDFs kept per process (least recently used first out): a few MB at most (a
100-item proposal's PDF is about 60 KB; it takes seconds to render)."""


def link_pdf(link: Link) -> bytes:
    """The PDF of ``link``'s proposal as it stands, answered or not: rendered once per process
    and state (``PDF_MAX`` kept), so a link asked for it again costs nothing; the link's state
    (revoked, expired) is decided by the caller on each request, never by this cache."""
    view = rendered(link).view
    answered = answered_of(link, view.timezone)
    answer = tuple(answered.items()) if answered is not None else None
    return _pdf(link.proposal, link.proposal_hash, link.expires_at, answer)


@lru_cache(maxsize=PDF_MAX)
def _pdf(
    proposal_text: str, proposal_hash: str, expires_at: datetime, answer: tuple[Any, ...] | None
) -> bytes:
    view = _rendered(proposal_text, proposal_hash, expires_at).view
    return pdf(view, dict(answer) if answer is not None else None)


def pdf(view: ProposalView, answered: dict[str, Any] | None) -> bytes:
    """The proposal as a PDF (WeasyPrint): A4, page numbers, no item cut across pages."""
    from weasyprint import CSS, HTML  # imported on first use: Pango loads with it

    html = render("proposal_pdf.html", p=view, answered=answered)
    document = HTML(string=html)
    return bytes(document.write_pdf(stylesheets=[CSS(string=stylesheet().decode())]))
