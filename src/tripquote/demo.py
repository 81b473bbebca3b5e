"""The demo quote (the Kyoto trip of the shared fixtures) and the curl that creates it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

DEMO_QUOTE: dict[str, Any] = {
    "clientId": "$CLIENT_ID",
    "tripName": "Kyoto in autumn colours",
    "destination": "Kyoto, Japan",
    "startDate": "2027-10-31",
    "endDate": "2027-11-08",
    "travelers": 2,
    "currency": "JPY",
    "markupPercent": "12.5",
    "discount": "5000",
    "expiresInDays": 14,
    "notes": "Window seats requested; one vegetarian traveller.",
    "items": [
        {
            "type": "FLIGHT",
            "description": "JL 5 JFK-HND",
            "quantity": 2,
            "unitPrice": "184300",
            "details": {
                "carrier": "JL",
                "flightNumber": "JL5",
                "from": "JFK",
                "to": "HND",
                "departAt": "2027-10-31T13:25:00-04:00",
                "arriveAt": "2027-11-01T16:55:00+09:00",
            },
        },
        {
            "type": "TRANSFER",
            "description": "Haneda to Kyoto, Shinkansen Green Car",
            "quantity": 2,
            "unitPrice": "24350",
            "details": {"date": "2027-11-01", "from": "HND", "to": "Kyoto Station"},
        },
        {
            "type": "HOTEL",
            "description": "Hotel Kanra Kyoto",
            "quantity": 7,
            "unitPrice": "58900",
            "details": {
                "name": "Hotel Kanra Kyoto",
                "checkIn": "2027-11-01",
                "checkOut": "2027-11-08",
                "rooms": 1,
            },
        },
        {
            "type": "ACTIVITY",
            "description": "Tea ceremony in Uji",
            "quantity": 2,
            "unitPrice": "8800",
            "details": {"name": "Tea ceremony in Uji", "date": "2027-11-04"},
        },
        {
            "type": "FLIGHT",
            "description": "JL 6 HND-JFK",
            "quantity": 2,
            "unitPrice": "176900",
            "details": {
                "carrier": "JL",
                "flightNumber": "JL6",
                "from": "HND",
                "to": "JFK",
                "departAt": "2027-11-08T11:05:00+09:00",
                "arriveAt": "2027-11-08T10:30:00-05:00",
            },
        },
    ],
}


def demo_curl(base_url: str, token: str, body_path: Path) -> str:
    """A ready-to-paste curl that creates the demo quote."""
    return (
        f"curl -sS -X POST {base_url}/api/agents/quotes "
        f"-H {shlex.quote('Authorization: Bearer ' + token)} "
        f"-H 'Content-Type: application/json' --data @{shlex.quote(str(body_path))}"
    )


def demo_lifecycle(base_url: str) -> str:
    """The curls that walk the demo quote through its life: edit, a stale edit, send, accept,
    and the history (``$QUOTE`` and ``$TOKEN`` set by the reader)."""
    quote = f"{base_url}/api/agents/quotes/$QUOTE"
    auth = '-H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json"'
    patch = f"curl -sS -X PATCH {quote} {auth} -d"
    post = f"curl -sS -X POST {quote}"
    steps = [
        ("edit it (version 1 -> 2)", f'{patch} \'{{"version": 1, "travelers": 3}}\''),
        (
            "an edit from stale version 1: 409 QUOTE_CONFLICT_VERSION",
            f'{patch} \'{{"version": 1, "travelers": 4}}\'',
        ),
        ("send it to the client", f"{post}/send {auth} -d '{{\"version\": 2}}'"),
        ("record the client's acceptance", f"{post}/accept {auth} -d '{{\"version\": 3}}'"),
        ("the history, one entry per version", f"curl -sS {quote}/revisions {auth}"),
    ]
    return "".join(f"  # {title}\n  {command}\n" for title, command in steps)


async def send_demo_quote(
    runner: Any, settings: Any, *, agent_id: str, client_id: str, correlation_id: str
) -> dict[str, Any]:
    """Create the Kyoto quote for the demo agent and send it, through the use cases (the
    same writes as the API); its proposal for the agent (``url``: the client's link)."""
    from datetime import UTC, datetime

    from tripquote.agents.auth import Caller
    from tripquote.proposals.links import LinkKeys
    from tripquote.proposals.service import ProposalService
    from tripquote.proposals.store import ProposalStore
    from tripquote.quotes.lifecycle import Operation
    from tripquote.quotes.rules import Limits
    from tripquote.quotes.service import QuoteService
    from tripquote.quotes.store import QuoteStore

    links = LinkKeys(settings.jwt_secret.get_secret_value())
    quotes = QuoteService(
        store=QuoteStore(runner, open_limit=settings.max_open_quotes_per_agent),
        limits=Limits.from_settings(settings),
        links=links,
    )
    caller = Caller(agent_id=agent_id, issued_at=datetime.now(UTC))
    created = await quotes.create(
        caller=caller, body={**DEMO_QUOTE, "clientId": client_id}, correlation_id=correlation_id
    )
    quote_id = created.quote["id"]
    await quotes.transition(
        caller=caller, quote_id=quote_id, operation=Operation.SEND,
        body={"version": created.version}, if_match=None, correlation_id=correlation_id,
    )  # fmt: skip
    proposals = ProposalService(store=ProposalStore(runner), links=links, settings=settings)
    return {"quoteId": quote_id, **await proposals.agent_view(caller=caller, quote_id=quote_id)}
