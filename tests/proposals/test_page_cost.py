"""What a page view and an answer cost, and that the rendered-proposal cache never decides
what a link shows: its state is read on every request. Real PostgreSQL, the real app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import World
from tests.proposals.support import URL, accept, form_of, send_quote
from tripquote.db.transaction import Tx
from tripquote.proposals import render


@contextmanager
def statements(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement the app sends while the block runs: on the driver (``Tx``) and
    through SQLAlchemy."""
    sent: list[str] = []
    for name in ("fetch", "fetchrow", "write"):
        original = getattr(Tx, name)

        async def counted(self: Tx, statement: Any, values: Any, _original: Any = original) -> Any:
            sent.append(statement.text)
            return await _original(self, statement, values)

        monkeypatch.setattr(Tx, name, counted)

    def hook(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    with world.after_each_statement(hook):
        yield sent
    monkeypatch.undo()


async def test_a_view_and_an_accept_are_one_statement_each(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    with statements(world, monkeypatch) as first_view:
        page = await world.client.get(sent.path)
    assert page.status_code == 200
    assert len(first_view) == 1  # the view counted and the link read: one statement
    with statements(world, monkeypatch) as answer:
        response = await accept(world.client, sent.path, form_of(page.text))
    assert response.status_code == 303
    assert len(answer) == 1  # the answer that stands: the guarded write alone
    quote = (await world.client.get(f"{URL}/{sent.quote_id}", headers=actor.headers)).json()
    assert quote["quote"]["status"] == "ACCEPTED"


async def test_the_proposal_is_rendered_once_and_the_page_still_shows_the_answer(
    world: World,
) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    first = await world.client.get(sent.path)
    assert first.status_code == 200 and 'action="' in first.text
    rendered = render._rendered.cache_info().misses
    again = await world.client.get(sent.path)
    assert render._rendered.cache_info().misses == rendered  # rendered once, kept
    assert again.text == first.text
    assert (await accept(world.client, sent.path, form_of(first.text))).status_code == 303
    # The same rendered proposal, now with the acceptance and without the form.
    answered = await world.client.get(sent.path)
    assert answered.status_code == 200
    assert "Accepted by" in answered.text and "Ada Lovelace" in answered.text
    assert 'action="' not in answered.text
    total = first.text.split('data-field="total">')[1].split("<")[0]
    assert f'data-field="total">{total}<' in answered.text


async def test_a_revoked_link_is_the_404_page_even_when_its_proposal_was_rendered(
    world: World,
) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    assert (await world.client.get(sent.path)).status_code == 200  # rendered and kept
    revoke = await world.client.post(
        f"{URL}/{sent.quote_id}/proposal/revoke", headers=actor.headers
    )
    assert revoke.status_code == 200
    page = await world.client.get(sent.path)
    assert page.status_code == 404
    unknown = await world.client.get("/p/" + "C" * 43)
    assert page.text == unknown.text  # the uniform page: nothing of the proposal
    assert (await world.client.get(f"{sent.path}/pdf")).status_code == 404
