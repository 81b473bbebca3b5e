"""The client's proposal in a real browser (Chromium through Playwright) against a real
``tripquote serve``: the totals of every sendable fixture quote as the API prices them, an
acceptance by keyboard only that a reload and the agent both see, the refused links, a
double submit, and a 360 px wide screen."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import load_fixture, quote_body
from tests.servers import Database, Server, provision_actor
from tripquote.proposals.render import money

pytestmark = pytest.mark.browser

SENDABLE = [case["name"] for case in load_fixture("quotes.json") if case["request"].get("items")]


async def _sent(
    server: Server, database: Database, fixture: str = "kyoto-autumn-jpy"
) -> dict[str, Any]:
    """A new agent's fixture quote, created and sent through the server's API."""
    actor = await provision_actor(database.url)
    async with httpx.AsyncClient(base_url=server.base_url, headers=actor.headers) as api:
        created = await api.post("/api/agents/quotes", json=quote_body(fixture, actor.client_id))
        assert created.status_code == 201, created.text
        quote = created.json()["quote"]
        sent = await api.post(f"/api/agents/quotes/{quote['id']}/send", json={"version": 1})
        assert sent.status_code == 200, sent.text
    return {"actor": actor, "quote": quote, "url": sent.json()["proposal"]["url"]}


async def _agent_get(server: Server, actor: Any, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=actor.headers) as api:
        body: dict[str, Any] = (await api.get(f"/api/agents/quotes/{path}")).json()
        return body


async def _text(page: Any, field: str) -> str:
    text: str = await page.locator(f'[data-field="{field}"]').inner_text()
    return text


@pytest.mark.parametrize("fixture", SENDABLE)
async def test_the_page_shows_the_totals_the_api_priced(
    server: Server, database: Database, page: Any, fixture: str
) -> None:
    sent = await _sent(server, database, fixture)
    response = await page.goto(sent["url"])
    assert response.status == 200
    pricing, currency = sent["quote"]["pricing"], sent["quote"]["currency"]
    assert await _text(page, "total") == money(pricing["total"], currency)
    folded = Decimal(pricing["subtotal"]) + Decimal(pricing["markupAmount"])
    assert await _text(page, "subtotal") == money(folded, currency)
    # The stylesheet loaded under the page's CSP (no violation; see the fixture).
    weight = await page.locator('[data-field="total"]').evaluate(
        "e => getComputedStyle(e.closest('.total')).fontWeight"
    )
    assert weight == "700"


async def test_accept_by_keyboard_only_then_reload(
    server: Server, database: Database, page: Any
) -> None:
    sent = await _sent(server, database)
    await page.goto(sent["url"])
    for _ in range(60):  # Tab through the page to the name field, as a keyboard user does
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "signer_name":
            break
    else:
        raise AssertionError("the name field is not reachable by Tab")
    await page.keyboard.type("Grace Hopper")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "consent"
    await page.keyboard.press("Space")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "accept"
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert "Accepted by" in await page.locator("#answer").inner_text()
    await page.reload()
    assert await _text(page, "signer") == "Grace Hopper"
    assert await page.locator("form").count() == 0
    quote = await _agent_get(server, sent["actor"], sent["quote"]["id"])
    assert quote["quote"]["status"] == "ACCEPTED"
    proposal = await _agent_get(server, sent["actor"], f"{sent['quote']['id']}/proposal")
    assert proposal["proposal"]["answer"]["signerName"] == "Grace Hopper"


async def test_expired_revoked_and_stale_links_show_their_pages(
    server: Server, database: Database, page: Any
) -> None:
    expired = await _sent(server, database)
    conn = await asyncpg.connect(database.dsn)
    try:  # days pass: the offer's end is moved to the past (the sweep has not run)
        await conn.execute(
            "UPDATE quotes SET expires_at = now() - interval '1 hour' WHERE id = $1;",
            expired["quote"]["id"],
        )
        await conn.execute(
            "UPDATE proposals SET expires_at = now() - interval '1 hour' WHERE quote_id = $1",
            expired["quote"]["id"],
        )
    finally:
        await conn.close()
    response = await page.goto(expired["url"])
    assert response.status == 410
    assert "This offer has expired" in await page.locator("h1").inner_text()

    revoked = await _sent(server, database)
    async with httpx.AsyncClient(base_url=server.base_url, headers=revoked["actor"].headers) as api:
        quote_id = revoked["quote"]["id"]
        assert (await api.post(f"/api/agents/quotes/{quote_id}/proposal/revoke")).status_code == 200
    response = await page.goto(revoked["url"])
    assert response.status == 404
    assert "This link is not valid" in await page.locator("h1").inner_text()

    stale = await _sent(server, database)
    async with httpx.AsyncClient(base_url=server.base_url, headers=stale["actor"].headers) as api:
        quote_id = stale["quote"]["id"]
        assert (
            await api.post(f"/api/agents/quotes/{quote_id}/reject", json={"version": 2})
        ).status_code == 200
        edited = await api.patch(
            f"/api/agents/quotes/{quote_id}", json={"version": 3, "travelers": 3}
        )
        assert edited.status_code == 200
        resent = await api.post(f"/api/agents/quotes/{quote_id}/send", json={"version": 4})
        fresh = resent.json()["proposal"]["url"]
    response = await page.goto(stale["url"])
    assert response.status == 404
    assert "This link is not valid" in await page.locator("h1").inner_text()
    assert (await page.goto(fresh)).status == 200


async def test_a_double_submit_is_one_acceptance(
    server: Server, database: Database, browser: Any, page: Any
) -> None:
    sent = await _sent(server, database)
    second = await page.context.new_page()
    for each in (page, second):
        await each.goto(sent["url"])
        await each.fill("#signer_name", "Katherine Johnson")
        await each.check("#consent")
    await asyncio.gather(page.click("#accept"), second.click("#accept"))
    for each in (page, second):
        await each.wait_for_selector("#answer")
        assert "Accepted by" in await each.locator("#answer").inner_text()
    conn = await asyncpg.connect(database.dsn)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM quote_revisions WHERE quote_id = $1 AND operation = 'ACCEPT'",
            sent["quote"]["id"],
        )
    finally:
        await conn.close()
    assert count == 1


async def test_a_360_pixel_screen_needs_no_sideways_scroll(
    server: Server, database: Database, page: Any
) -> None:
    sent = await _sent(server, database, "serengeti-safari-usd")
    await page.set_viewport_size({"width": 360, "height": 740})
    await page.goto(sent["url"])
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360
    button = page.locator("#accept")
    box = await button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert await page.locator('label[for="signer_name"]').is_visible()
