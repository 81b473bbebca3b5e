"""The client's answer on the page: the quotes' versioned write by the actor ``client``, and
every refusal as a page with its status and nothing written. Real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.conftest import Actor, World
from tests.proposals.support import URL, accept, decline, form_of, send_quote, stored
from tests.servers import metric_value


async def test_accept_moves_the_quote_to_accepted_as_the_client(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    response = await world.client.post(
        f"{sent.path}/accept",
        data={**form, "signer_name": "  Ada Lovelace ", "consent": "yes"},
        headers={"User-Agent": "pytest-browser/1", "X-Correlation-ID": "client-accept-1"},
    )
    assert response.status_code == 303
    assert response.headers["location"].endswith(f"{sent.path}#answer")
    quote = (await world.client.get(f"{URL}/{sent.quote_id}", headers=actor.headers)).json()
    assert quote["quote"]["status"] == "ACCEPTED"
    assert quote["version"] == sent.version + 1
    assert quote["quote"]["lastModifiedBy"] == "client"
    revisions = (
        await world.client.get(f"{URL}/{sent.quote_id}/revisions", headers=actor.headers)
    ).json()["revisions"]
    last = revisions[-1]
    assert (last["operation"], last["actorId"], last["correlationId"]) == (
        "ACCEPT",
        "client",
        "client-accept-1",
    )
    proposal = (
        await world.client.get(f"{URL}/{sent.quote_id}/proposal", headers=actor.headers)
    ).json()["proposal"]
    assert proposal["answer"]["status"] == "ACCEPTED"
    assert proposal["answer"]["signerName"] == "Ada Lovelace"
    assert proposal["answer"]["proposalHash"] == proposal["proposalHash"] == form["proposal_hash"]
    assert proposal["page"] == "ANSWERED"
    async with world.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT answer_ip, answer_user_agent FROM proposals WHERE quote_id = :id"),
                {"id": sent.quote_id},
            )
        ).one()
    assert row == ("127.0.0.1", "pytest-browser/1")
    # The page now shows the acceptance, without a form; a second accept the same.
    page = await world.client.get(sent.path)
    assert page.status_code == 200 and "Accepted by" in page.text and "Ada Lovelace" in page.text
    assert 'action="' not in page.text
    before = await stored(world, sent.quote_id)
    again = await accept(world.client, sent.path, form, name="Someone Else")
    assert again.status_code == 303
    # A decline after the accept does not change it.
    declined = await decline(world.client, sent.path, form, reason="changed my mind")
    assert declined.status_code == 409 and "accepted" in declined.text
    assert await stored(world, sent.quote_id) == before


async def test_decline_with_a_reason_rejects_the_quote(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    response = await decline(world.client, sent.path, form, reason="Too expensive")
    assert response.status_code == 303
    quote = (await world.client.get(f"{URL}/{sent.quote_id}", headers=actor.headers)).json()
    assert quote["quote"]["status"] == "REJECTED"
    proposal = (
        await world.client.get(f"{URL}/{sent.quote_id}/proposal", headers=actor.headers)
    ).json()["proposal"]
    assert proposal["answer"]["declineReason"] == "Too expensive"
    assert "Declined" in (await world.client.get(sent.path)).text


async def test_a_reason_the_textarea_allows_is_taken_its_line_breaks_as_lf(world: World) -> None:
    # 2,000 characters as the textarea's maxlength counts them, each line break one; the
    # browser sends them as CRLF (2,020 characters), which were refused as too long.
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    typed = ("a" * 99 + "\n") * 20
    response = await decline(world.client, sent.path, form, reason=typed.replace("\n", "\r\n"))
    assert response.status_code == 303, response.text
    proposal = (
        await world.client.get(f"{URL}/{sent.quote_id}/proposal", headers=actor.headers)
    ).json()["proposal"]
    assert proposal["answer"]["declineReason"] == typed.strip()


async def test_refused_forms_write_nothing(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    before = await stored(world, sent.quote_id)
    cases = [
        ({**form, "signer_name": "", "consent": "yes"}, "accept", 400, "Enter your full name"),
        ({**form, "signer_name": "Ada"}, "accept", 400, "Tick the box"),
        ({**form, "signer_name": "A" * 201, "consent": "yes"}, "accept", 400, "at most 200"),
        ({**form, "reason": "x" * 2001}, "decline", 400, "at most 2000"),
        ({**form, "signer_name": "Bob\x07\x1b[31m", "consent": "yes"}, "accept", 400,
         "letters and punctuation only"),
        ({**form, "signer_name": "Ada\nLovelace", "consent": "yes"}, "accept", 400,
         "letters and punctuation only"),
        ({**form, "reason": "too\x00dear"}, "decline", 400, "text and line breaks only"),
        ({**form, "csrf": "forged", "signer_name": "Ada", "consent": "yes"}, "accept", 403, ""),
        ({"proposal_hash": form["proposal_hash"], "signer_name": "A", "consent": "yes"}, "accept",
         403, ""),
        ({**form, "proposal_hash": "0" * 64, "signer_name": "Ada", "consent": "yes"}, "accept",
         409, "not the one on record"),
        # A form without the proposal it answers is malformed (400), not a conflict.
        ({**form, "proposal_hash": "", "signer_name": "Ada", "consent": "yes"}, "accept", 400,
         "does not say which proposal"),
        ({"csrf": form["csrf"], "signer_name": "Ada", "consent": "yes"}, "accept", 400,
         "does not say which proposal"),
        ({"csrf": form["csrf"]}, "decline", 400, "does not say which proposal"),
    ]  # fmt: skip
    for data, action, status, words in cases:
        response = await world.client.post(f"{sent.path}/{action}", data=data)
        assert response.status_code == status, (data, response.text[:300])
        assert response.headers["content-type"].startswith("text/html")
        assert words in response.text
        assert "Traceback" not in response.text
    # A form token is bound to its link: another link's is refused.
    other = await send_quote(world, actor)
    response = await accept(world.client, other.path, form)
    assert response.status_code == 403
    assert await stored(world, sent.quote_id) == before


async def test_an_expired_offer_is_refused_even_before_the_sweep(world: World) -> None:
    actor = await world.actor(agency_id=await world.agency("Asia/Tokyo"))
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    world.clock.advance(timedelta(days=15))
    before = await stored(world, sent.quote_id)
    page = await world.client.get(sent.path)
    assert page.status_code == 410
    assert "(Asia/Tokyo)" in page.text and "valid until" in page.text
    assert await _page(world, actor, sent.quote_id) == "PROPOSAL_EXPIRED"
    response = await accept(world.client, sent.path, form)
    assert response.status_code == 410
    after = await stored(world, sent.quote_id)
    assert after["quote"] == before["quote"] and after["revisions"] == before["revisions"]


async def _page(world: World, actor: Actor, quote_id: str) -> str:
    """What the agent's view says the client's link shows now."""
    response = await world.client.get(f"{URL}/{quote_id}/proposal", headers=actor.headers)
    assert response.status_code == 200, response.text
    page: str = response.json()["proposal"]["page"]
    return page


@pytest.mark.parametrize(
    ("operation", "says"),
    [("accept", "has been accepted"), ("reject", "has been declined")],
)
async def test_an_answer_the_agent_recorded_closes_the_link_and_says_so(
    world: World, operation: str, says: str
) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    assert await _page(world, actor, sent.quote_id) == "OPEN"
    recorded = await world.client.post(
        f"{URL}/{sent.quote_id}/{operation}", json={"version": sent.version}, headers=actor.headers
    )
    assert recorded.status_code == 200
    assert await _page(world, actor, sent.quote_id) == "PROPOSAL_CLOSED"
    before = await stored(world, sent.quote_id)
    page = await world.client.get(sent.path)
    assert page.status_code == 409 and says in page.text
    assert "changed since it was sent" not in page.text
    response = await accept(world.client, sent.path, form)
    assert response.status_code == 409 and says in response.text
    assert await stored(world, sent.quote_id) == before


async def test_a_quote_that_moved_on_is_closed_to_the_link(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    rejected = await world.client.post(
        f"{URL}/{sent.quote_id}/reject", json={"version": sent.version}, headers=actor.headers
    )
    assert rejected.status_code == 200
    reopened = await world.client.patch(
        f"{URL}/{sent.quote_id}",
        json={"version": sent.version + 1, "travelers": 3},
        headers=actor.headers,
    )
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["quote"]["status"] == "DRAFT"
    before = await stored(world, sent.quote_id)
    assert (await world.client.get(sent.path)).status_code == 409
    response = await accept(world.client, sent.path, form)
    assert response.status_code == 409 and "changed since it was sent" in response.text
    assert await stored(world, sent.quote_id) == before
    assert await _page(world, actor, sent.quote_id) == "PROPOSAL_CLOSED"


async def test_a_cancel_ends_the_link(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    await world.client.post(
        f"{URL}/{sent.quote_id}/reject", json={"version": sent.version}, headers=actor.headers
    )
    deleted = await world.client.request(
        "DELETE", f"{URL}/{sent.quote_id}", json={"version": sent.version + 1},
        headers=actor.headers,
    )  # fmt: skip
    assert deleted.status_code == 200, deleted.text
    assert (await world.client.get(sent.path)).status_code == 404
    proposal = (
        await world.client.get(f"{URL}/{sent.quote_id}/proposal", headers=actor.headers)
    ).json()["proposal"]
    assert proposal["endedReason"] == "CANCELLED" and proposal["url"] is None
    assert proposal["page"] == "PROPOSAL_NOT_FOUND"


async def test_revoking_an_answered_link_is_refused(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    assert (await accept(world.client, sent.path, form)).status_code == 303
    before = await stored(world, sent.quote_id)
    response = await world.client.post(
        f"{URL}/{sent.quote_id}/proposal/revoke", headers=actor.headers
    )
    assert response.status_code == 409
    assert response.json()["errorCode"] == "QUOTE_STATE_INVALID"
    assert response.json()["details"]["answer"] == "ACCEPTED"
    assert await stored(world, sent.quote_id) == before


async def test_the_public_pages_are_rate_limited_per_ip(db_url: str, world_factory: object) -> None:
    from tests.conftest import make_settings

    world: World = await world_factory(make_settings(db_url, public_rate_limit="3/minute"))  # type: ignore[operator]
    statuses = [(await world.client.get("/p/" + "B" * 43)).status_code for _ in range(4)]
    assert statuses == [404, 404, 404, 429]
    limited = await world.client.get("/p/" + "B" * 43)
    wait = int(limited.headers["retry-after"])
    assert wait >= 1
    assert "Too many requests" in limited.text
    unit = "second" if wait == 1 else "seconds"
    assert f"Please wait {wait} {unit}, then reload the page." in limited.text


async def test_the_public_pages_are_rate_limited_per_link(
    db_url: str, world_factory: object
) -> None:
    import httpx

    from tests.conftest import make_settings

    world: World = await world_factory(make_settings(db_url, public_rate_limit="3/minute"))  # type: ignore[operator]
    actor = await world.actor()
    sent = await send_quote(world, actor)
    statuses = []
    for n in range(4):  # four client addresses, one link: the link's own limit
        transport = httpx.ASGITransport(app=world.app, client=(f"192.0.2.{n + 1}", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as client:
            statuses.append((await client.get(sent.path)).status_code)
    assert statuses == [200, 200, 200, 429]


async def test_a_refused_answer_counts_as_a_refused_save(world: World) -> None:
    # Before: the form shown again with its errors (400) was recorded as a success, so a
    # refused client answer counted as a successful save in every save rate.
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    labels = {"operation": "proposal.decline", "outcome": "error"}
    labels["error_code"] = "PROPOSAL_FORM_INVALID"

    async def refused_declines() -> float:
        metrics = (await world.client.get("/metrics")).text
        return metric_value(metrics, "tripquote_operations_total", labels)

    before = await refused_declines()
    refused = await decline(world.client, sent.path, form, reason="too \u202eexpensive")
    assert refused.status_code == 400, refused.text
    assert await refused_declines() == before + 1
