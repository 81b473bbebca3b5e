"""Send freezes the proposal behind a private link; the page shows it; views change nothing
of the quote. Real PostgreSQL, the real app over HTTP (ASGI)."""

from __future__ import annotations

import hashlib
import json
import uuid

from sqlalchemy import text

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, quote_body
from tests.proposals.support import URL, form_of, resend, send_quote, stored
from tripquote.errors import QuotePersistenceFailed


async def test_send_stores_the_proposal_and_gives_its_link_once_hashed(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    proposal = sent.response["proposal"]
    assert proposal["url"].startswith(f"{world.settings.public_base_url}/p/")
    assert len(sent.token) == 43
    assert proposal["version"] == sent.version == 2
    async with world.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT *, proposal::text AS body FROM proposals WHERE quote_id = :id"),
                    {"id": sent.quote_id},
                )
            )
            .mappings()
            .one()
        )
        everything = json.dumps(
            [dict(r) for r in (await conn.execute(text("SELECT * FROM proposals"))).mappings()]
            + [
                dict(r)
                for r in (await conn.execute(text("SELECT * FROM idempotency_keys"))).mappings()
            ],
            default=str,
        )
    # Only the hash of the token is stored; the proposal's hash is SHA-256 of its text.
    assert row["token_hash"] == hashlib.sha256(sent.token.encode()).hexdigest()
    assert uuid.UUID(row["id"]).version == 7  # made as every id is (tripquote.ids)
    assert sent.token not in everything
    assert row["proposal_hash"] == hashlib.sha256(row["body"].encode()).hexdigest()
    assert proposal["proposalHash"] == row["proposal_hash"]
    body = json.loads(row["body"])
    assert body["agency"] == {"name": body["agency"]["name"], "timeZone": "UTC"}
    assert body["quote"]["status"] == "SENT" and body["quote"]["version"] == 2
    assert proposal["expiresAt"] == body["quote"]["expiresAt"]
    # The agent's GET gives the same link again, and changes nothing.
    again = await world.client.get(f"{URL}/{sent.quote_id}/proposal", headers=actor.headers)
    assert again.status_code == 200
    assert again.json()["proposal"]["url"] == proposal["url"]


async def test_a_send_whose_link_cannot_be_read_after_its_commit_still_answers_the_send(
    world: World,
) -> None:
    # The send commits, then a second read adds its link to the answer. A failover between the
    # two (an operator saw it: 503 "Nothing was changed" for a committed send) is stood in for
    # by that read failing as a lost connection makes it fail; nothing else is replaced.
    actor = await world.actor()
    created = await world.client.post(
        URL, json=quote_body("kyoto-autumn-jpy", actor.client_id), headers=actor.headers
    )
    quote_id = created.json()["quoteId"]
    proposals = world.app.state.proposals

    async def connection_lost(**_: object) -> None:
        raise QuotePersistenceFailed(details={"cause": "08003"})

    proposals.agent_view = connection_lost
    try:
        sent = await world.client.post(
            f"{URL}/{quote_id}/send", json={"version": 1}, headers=actor.headers
        )
    finally:
        del proposals.agent_view  # the class's method again
    assert sent.status_code == 200, sent.text
    assert sent.headers["etag"] == '"2"'
    assert sent.json()["proposal"] is None
    assert sent.json()["quote"]["status"] == "SENT"
    assert (
        await world.count("quote_revisions", "quote_id = :q AND operation = 'SEND'", q=quote_id)
        == 1
    )
    link = await world.client.get(f"{URL}/{quote_id}/proposal", headers=actor.headers)
    assert link.status_code == 200
    assert link.json()["proposal"]["version"] == 2 and link.json()["proposal"]["page"] == "OPEN"


async def test_the_page_shows_the_proposal_and_counts_views_without_a_new_version(
    world: World,
) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    before = await stored(world, sent.quote_id)
    page = await world.client.get(sent.path)
    assert page.status_code == 200
    html = page.text
    for expected in (
        "Kyoto in autumn colours",
        "¥1,346,125",  # the API's total, JPY without decimals
        "¥1,351,125",  # subtotal with the markup folded in
        ">JL5<",
        "Hotel Kanra Kyoto",
        "Tea ceremony in Uji",
        "Window seats requested",
        "Valid until",
    ):
        assert expected in html, expected
    assert actor.agent_id not in html and "@agents.example" not in html
    assert sent.quote_id not in html
    headers = page.headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "<script" not in html
    await world.client.get(sent.path)
    head = await world.client.head(sent.path)  # a link checker's HEAD: no one read it
    assert head.status_code == 200
    after = await stored(world, sent.quote_id)
    assert after["quote"] == before["quote"] and after["revisions"] == before["revisions"]
    figures = (
        await world.client.get(f"{URL}/{sent.quote_id}/proposal", headers=actor.headers)
    ).json()
    assert figures["proposal"]["views"] == 2
    assert figures["proposal"]["firstViewedAt"] <= figures["proposal"]["lastViewedAt"]


async def test_unknown_malformed_revoked_and_superseded_links_get_one_uniform_404(
    world: World,
) -> None:
    actor = await world.actor()
    revoked = await send_quote(world, actor)
    revoke = await world.client.post(
        f"{URL}/{revoked.quote_id}/proposal/revoke", headers=actor.headers
    )
    assert revoke.status_code == 200
    assert revoke.json()["proposal"]["endedReason"] == "REVOKED"
    assert revoke.json()["proposal"]["url"] is None
    assert revoke.json()["proposal"]["page"] == "PROPOSAL_NOT_FOUND"
    # The answer is the link as the revoke left it (built from its statement, no read after
    # its commit): what the agent reads next, and a second revoke answers the same.
    read = await world.client.get(f"{URL}/{revoked.quote_id}/proposal", headers=actor.headers)
    again = await world.client.post(
        f"{URL}/{revoked.quote_id}/proposal/revoke", headers=actor.headers
    )
    assert revoke.json()["proposal"] == read.json()["proposal"] == again.json()["proposal"]
    # A re-send after REJECTED -> DRAFT ends the old link.
    old = await send_quote(world, actor)
    rejected = await world.client.post(
        f"{URL}/{old.quote_id}/reject", json={"version": old.version}, headers=actor.headers
    )
    assert rejected.status_code == 200
    edited = await world.client.patch(
        f"{URL}/{old.quote_id}",
        json={"version": old.version + 1, "travelers": 3},
        headers=actor.headers,
    )
    assert edited.status_code == 200, edited.text
    new = await resend(world, actor, old.quote_id, old.version + 2)
    assert new.token != old.token
    assert (await world.client.get(new.path)).status_code == 200
    bodies = set()
    for path in (revoked.path, old.path, "/p/" + "A" * 43, "/p/short", "/p/%00%27"):
        response = await world.client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["referrer-policy"] == "no-referrer"
        bodies.add(response.text)
    assert len(bodies) == 1
    # The forms of an ended link are refused the same way, and write nothing.
    before = await stored(world, old.quote_id)
    refused = await world.client.post(f"{old.path}/accept", data={"signer_name": "X"})
    assert refused.status_code == 404 and refused.text in bodies
    assert await stored(world, old.quote_id) == before


async def test_the_agent_pdf_and_proposal_of_a_quote_never_sent_are_refused(world: World) -> None:
    actor = await world.actor()
    created = await world.client.post(
        URL,
        json=__import__("tests.conftest").conftest.quote_body("kyoto-autumn-jpy", actor.client_id),
        headers=actor.headers,
    )
    quote_id = created.json()["quoteId"]
    for path in ("proposal", "proposal.pdf"):
        response = await world.client.get(f"{URL}/{quote_id}/{path}", headers=actor.headers)
        assert response.status_code == 404
        assert response.json()["errorCode"] == "PROPOSAL_NOT_FOUND"
    other = await world.actor()
    sent = await send_quote(world, actor)
    response = await world.client.get(f"{URL}/{sent.quote_id}/proposal", headers=other.headers)
    assert response.json()["errorCode"] == "QUOTE_NOT_FOUND"
    assert form_of((await world.client.get(sent.path)).text)["proposal_hash"]


async def test_a_precondition_a_proposal_cannot_meet_is_412_and_nothing_is_done(
    world: World,
) -> None:
    # A proposal has no ETag: an If-Match naming tags (stale or not) is false, If-Match: *
    # true; on the revoke, If-None-Match: * is false (RFC 9110 §13.1.1, §13.1.2). The revoke
    # with a stale If-Match ended the link all the same.
    actor = await world.actor()
    sent = await send_quote(world, actor)
    base = f"{URL}/{sent.quote_id}"
    for method, path in (("GET", "/proposal"), ("GET", "/proposal.pdf")):
        refused = await world.client.request(
            method, base + path, headers={**actor.headers, "If-Match": '"1"'}
        )
        body = assert_envelope(refused, "QUOTE_CONFLICT_VERSION", 412)
        assert body["details"]["precondition"] == "If-Match"
        any_tag = await world.client.request(
            method, base + path, headers={**actor.headers, "If-Match": "*"}
        )
        assert any_tag.status_code == 200
    for headers in ({"If-Match": '"1"'}, {"If-Match": '"2"'}, {"If-None-Match": "*"}):
        refused = await world.client.post(
            f"{base}/proposal/revoke", headers={**actor.headers, **headers}
        )
        assert_envelope(refused, "QUOTE_CONFLICT_VERSION", 412)
        assert (await world.client.get(sent.path)).status_code == 200  # the link still open
    revoked = await world.client.post(
        f"{base}/proposal/revoke", headers={**actor.headers, "If-Match": "*"}
    )
    assert revoked.status_code == 200
    assert (await world.client.get(sent.path)).status_code == 404
    unknown = await world.client.post(
        f"{URL}/{uuid.uuid4()}/proposal/revoke", headers={**actor.headers, "If-Match": '"1"'}
    )
    assert_envelope(unknown, "QUOTE_NOT_FOUND", 404)  # the 404 before the precondition
