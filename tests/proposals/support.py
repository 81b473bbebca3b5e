"""Helpers of the proposal tests: a sent quote, its link, the page's form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.conftest import Actor, World, quote_body

URL = "/api/agents/quotes"


@dataclass
class Sent:
    """A sent quote: its id, the version sent, its link's path and the send's response."""

    quote_id: str
    version: int
    path: str
    response: dict[str, Any]

    @property
    def token(self) -> str:
        return self.path.rsplit("/", 1)[1]


async def send_quote(
    world: World, actor: Actor, fixture: str = "kyoto-autumn-jpy", **changes: Any
) -> Sent:
    """Create the fixture quote (with ``changes``) and send it."""
    body = {**quote_body(fixture, actor.client_id), **changes}
    created = await world.client.post(URL, json=body, headers=actor.headers)
    assert created.status_code == 201, created.text
    quote_id = created.json()["quoteId"]
    return await resend(world, actor, quote_id, created.json()["version"])


async def resend(world: World, actor: Actor, quote_id: str, version: int) -> Sent:
    """Send the quote at ``version``."""
    sent = await world.client.post(
        f"{URL}/{quote_id}/send", json={"version": version}, headers=actor.headers
    )
    assert sent.status_code == 200, sent.text
    body = sent.json()
    url = body["proposal"]["url"]
    return Sent(quote_id, body["version"], urlsplit(url).path, body)


def form_of(page: str) -> dict[str, str]:
    """The hidden fields of the page's answer form (csrf, proposal_hash)."""
    return dict(re.findall(r'name="(csrf|proposal_hash)" value="([^"]*)"', page)[:2])


async def accept(
    client: httpx.AsyncClient, path: str, form: dict[str, str], name: str = "Ada Lovelace"
) -> httpx.Response:
    """Post the accept form (consent ticked)."""
    return await client.post(f"{path}/accept", data={**form, "signer_name": name, "consent": "yes"})


async def decline(
    client: httpx.AsyncClient, path: str, form: dict[str, str], reason: str = ""
) -> httpx.Response:
    """Post the decline form."""
    return await client.post(f"{path}/decline", data={**form, "reason": reason})


async def stored(world: World, quote_id: str) -> dict[str, Any]:
    """The quote row, its revisions and its proposal rows (to prove nothing changed)."""
    snapshot = await world.snapshot(quote_id)
    async with world.engine.connect() as conn:
        from sqlalchemy import text

        rows = (
            await conn.execute(
                text(
                    "SELECT id, version, ended_at, ended_reason, answer, signer_name, "
                    "answered_at FROM proposals WHERE quote_id = :id ORDER BY created_at"
                ),
                {"id": quote_id},
            )
        ).mappings()
        snapshot["proposals"] = [dict(r) for r in rows]
    return snapshot
