"""The proposal's PDF (WeasyPrint): every item, the totals and the validity date in its text
(pypdf); a 100-item quote runs over several numbered pages, no item cut across two."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from pypdf import PdfReader

from tests.conftest import World, quote_body
from tests.proposals.support import URL, accept, form_of, resend, send_quote


def _pages(content: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(content)).pages]


async def test_the_pdf_holds_every_item_the_totals_and_the_validity(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    public = await world.client.get(f"{sent.path}/pdf")
    agent = await world.client.get(f"{URL}/{sent.quote_id}/proposal.pdf", headers=actor.headers)
    for response in (public, agent):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        assert response.content.startswith(b"%PDF-")
    text = " ".join(_pages(agent.content))
    flat = re.sub(r"\s+", " ", text)
    for item in quote_body("kyoto-autumn-jpy", actor.client_id)["items"]:
        assert item["description"] in flat, item["description"]
    assert "¥1,346,125" in flat and "¥1,351,125" in flat and "¥5,000" in flat
    assert "Valid until" in flat and "(UTC)" in flat
    assert re.search(r"Page 1 of \d", flat)
    assert actor.agent_id not in flat


async def test_a_hundred_items_paginate_without_cutting_one(world: World) -> None:
    actor = await world.actor()
    body = quote_body("kyoto-autumn-jpy", actor.client_id)
    body["items"] = [
        {
            "type": "ACTIVITY",
            "description": f"Excursion number {n:03d}",
            "quantity": 1,
            "unitPrice": str(1000 + n),
            "details": {"name": f"Excursion {n:03d}", "date": f"2027-11-0{1 + n % 7}"},
        }
        for n in range(100)
    ]
    body.pop("discount")
    created = await world.client.post(URL, json=body, headers=actor.headers)
    assert created.status_code == 201, created.text
    sent = await resend(world, actor, created.json()["quoteId"], 1)
    response = await world.client.get(f"{sent.path}/pdf")
    pages = _pages(response.content)
    assert len(pages) > 2
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in page
    for n in range(100):
        holding = [i for i, page in enumerate(pages) if f"Excursion number {n:03d}" in page]
        assert len(holding) == 1, n
        # The item's own details are on the same page as its description: never cut.
        assert f"Excursion {n:03d}" in pages[holding[0]].replace(f"number {n:03d}", ""), n


async def test_the_longest_descriptions_stay_on_the_page_of_a_pdf_rendered_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100 items of 500 characters, one an unbroken word: WeasyPrint sized each with
    # overflow-wrap: anywhere at every character (70 s for this quote); break-word with
    # min-width: 0 still wraps the word inside the page (checked on the laid-out boxes).
    from weasyprint import CSS, HTML

    from tripquote.proposals import render

    actor = await world.actor()
    body = quote_body("serengeti-safari-usd", actor.client_id)
    text = ("lorem ipsum dolor sit amet " * 20)[:500]
    body["items"] = [
        {**body["items"][n % len(body["items"])], "description": text} for n in range(100)
    ]
    body["items"][0]["description"] = "x" * 500
    body.pop("pricing", None)
    for item in body["items"]:
        item.pop("lineTotal", None)
    created = await world.client.post(URL, json=body, headers=actor.headers)
    assert created.status_code == 201, created.text
    sent = await resend(world, actor, created.json()["quoteId"], 1)

    renders: list[int] = []
    real_pdf = render.pdf

    def counted(view: Any, answered: Any) -> bytes:
        renders.append(1)
        html = render.render("proposal_pdf.html", p=view, answered=answered)
        laid_out = HTML(string=html).render(stylesheets=[CSS(string=render.stylesheet().decode())])
        page = laid_out.pages[0]
        right = page.width - page._page_box.margin_right  # the content box's right edge
        assert _rightmost_text(page._page_box) <= right + 0.5
        return real_pdf(view, answered)

    monkeypatch.setattr(render, "pdf", counted)
    render._pdf.cache_clear()
    first = await world.client.get(f"{sent.path}/pdf")
    again = await world.client.get(f"{sent.path}/pdf")
    agent = await world.client.get(f"{URL}/{sent.quote_id}/proposal.pdf", headers=actor.headers)
    assert first.status_code == again.status_code == agent.status_code == 200
    assert first.content == again.content == agent.content
    assert renders == [1]  # rendered once, then kept
    flat = re.sub(r"\s+", "", " ".join(_pages(first.content)))
    assert "x" * 500 in flat  # the unbroken word whole, on its lines
    page = await world.client.get(sent.path)
    assert (await accept(world.client, sent.path, form_of(page.text))).status_code == 303
    answered = await world.client.get(f"{sent.path}/pdf")
    assert answered.status_code == 200 and renders == [1, 1]  # the answer is in the new one
    assert "Accepted by Ada Lovelace" in " ".join(_pages(answered.content))


def _rightmost_text(box: Any) -> float:
    edge = 0.0
    if getattr(box, "text", None):
        edge = box.position_x + box.width
    for child in getattr(box, "children", None) or ():
        edge = max(edge, _rightmost_text(child))
    return float(edge)
