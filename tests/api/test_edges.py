"""Edges found by trying to break the service from outside: each is now a tested behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, make_settings, quote_body

URL = "/api/agents/quotes"


async def _quote(world: World, actor: Any) -> str:
    created = await world.client.post(
        URL, json=quote_body("edinburgh-weekend-gbp", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201
    return str(created.json()["quoteId"])


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/x-www-form-urlencoded"])
async def test_body_must_be_declared_json(world: World, content_type: str) -> None:
    actor = await world.actor()
    before = await world.table_counts()
    raw = json.dumps(quote_body("edinburgh-weekend-gbp", actor.client_id)).encode()
    headers = {**actor.headers, "Content-Type": content_type}
    response = await world.client.post(URL, content=raw, headers=headers)
    assert_envelope(response, "UNSUPPORTED_MEDIA_TYPE", 415)
    assert await world.table_counts() == before
    ok = await world.client.post(
        URL,
        content=raw,
        headers={**actor.headers, "Content-Type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 201


async def test_two_content_type_lines_are_refused_never_one_chosen(world: World) -> None:
    # Two lines name two media types (RFC 9110 §5.3, §8.3): the first was taken.
    actor = await world.actor()
    before = await world.table_counts()
    raw = json.dumps(quote_body("edinburgh-weekend-gbp", actor.client_id)).encode()
    headers = [
        *actor.headers.items(),
        ("Content-Type", "application/json"),
        ("Content-Type", "text/plain"),
    ]
    response = await world.client.post(URL, content=raw, headers=headers)
    assert_envelope(response, "UNSUPPORTED_MEDIA_TYPE", 415)
    assert await world.table_counts() == before


@pytest.mark.parametrize("coding", ["gzip", "br", "identity, gzip", "x-unknown"])
async def test_a_content_coded_body_is_refused_with_the_codings_accepted(
    world: World, coding: str
) -> None:
    """A coded body (RFC 9110 §8.4) is not read as JSON: 415 naming the coding, with
    ``Accept-Encoding: identity`` (§15.5.16, §12.5.3); nothing written. ``identity`` alone is
    no coding."""
    actor = await world.actor()
    before = await world.table_counts()
    raw = json.dumps(quote_body("edinburgh-weekend-gbp", actor.client_id)).encode()
    headers = {**actor.headers, "Content-Type": "application/json", "Content-Encoding": coding}
    response = await world.client.post(URL, content=raw, headers=headers)
    body = assert_envelope(response, "UNSUPPORTED_MEDIA_TYPE", 415)
    assert response.headers["Accept-Encoding"] == "identity"
    assert body["details"]["contentEncoding"] == coding.removeprefix("identity, ")
    assert await world.table_counts() == before
    plain = {**headers, "Content-Encoding": "identity"}
    assert (await world.client.post(URL, content=raw, headers=plain)).status_code == 201


async def test_trailing_slash_is_a_404_envelope_not_a_redirect(world: World) -> None:
    actor = await world.actor()
    response = await world.client.get(f"{URL}/", headers=actor.headers)
    assert_envelope(response, "NOT_FOUND", 404)


@pytest.mark.parametrize("if_match", ["1", "abc", '"1', "W/1", '"1" "2"', "", ","])
async def test_a_malformed_if_match_is_refused(world: World, if_match: str) -> None:
    """Not ``*`` nor a list of entity tags (RFC 9110 §8.8.3): 400 at If-Match. Well-formed
    tags that name no version are a failed precondition instead (tests/api/test_conditional.py).
    """
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    before = await world.snapshot(quote_id)
    response = await world.client.patch(
        f"{URL}/{quote_id}", json={"travelers": 2}, headers={**actor.headers, "If-Match": if_match}
    )
    body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert "If-Match" in [e["path"] for e in body["details"]["errors"]]
    assert await world.snapshot(quote_id) == before


@pytest.mark.parametrize("name", ["\u200b", "\u200b \u3000", "\ufeff"])
async def test_invisible_trip_name_is_refused(world: World, name: str) -> None:
    actor = await world.actor()
    body = {**quote_body("edinburgh-weekend-gbp", actor.client_id), "tripName": name}
    response = await world.client.post(URL, json=body, headers=actor.headers)
    result = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert "tripName" in [e["path"] for e in result["details"]["errors"]]


async def test_patch_that_changes_nothing_keeps_the_version(world: World) -> None:
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    current = (await world.client.get(f"{URL}/{quote_id}", headers=actor.headers)).json()
    before = await world.snapshot(quote_id)
    same = {"version": 1, "tripName": current["quote"]["tripName"]}
    response = await world.client.patch(f"{URL}/{quote_id}", json=same, headers=actor.headers)
    assert response.status_code == 200
    assert response.json()["version"] == 1 and response.headers["etag"] == '"1"'
    assert await world.snapshot(quote_id) == before  # no revision, no new version
    # ... so another agent editing from version 1 is not sent a conflict for it.
    real = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 1, "travelers": 2}, headers=actor.headers
    )
    assert real.json()["version"] == 2


@pytest.mark.parametrize("full_form", [False, True], ids=["items only", "full form"])
async def test_true_to_1_in_details_is_a_change_and_a_changed_field(
    world: World, full_form: bool
) -> None:
    """JSON ``true`` and ``1`` are different values (Python's ``True == 1`` must not make an
    edit a no-op), on both databases and on every PATCH path."""
    actor = await world.actor()
    body = quote_body("edinburgh-weekend-gbp", actor.client_id)
    other = {"type": "OTHER", "description": "Insurance", "quantity": 1, "unitPrice": "5.00"}
    body["items"] = [{**other, "details": {"flag": True, "list": [1, 0]}}]
    created = await world.client.post(URL, json=body, headers=actor.headers)
    assert created.status_code == 201, created.text
    quote_id = created.json()["quoteId"]
    edited = [{**other, "details": {"flag": 1, "list": [True, False]}}]
    patch = {k: v for k, v in body.items() if k != "clientId"} if full_form else {}
    response = await world.client.patch(
        f"{URL}/{quote_id}", json={**patch, "items": edited, "version": 1}, headers=actor.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2
    assert response.json()["quote"]["items"][0]["details"] == {"flag": 1, "list": [True, False]}
    assert await world.count("quote_revisions", "quote_id = :q", q=quote_id) == 2
    stale = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 1, "notes": "late"}, headers=actor.headers
    )
    assert stale.status_code == 409, stale.text
    assert stale.json()["details"]["changedFields"] == ["items"]


def test_cli_refuses_a_token_for_an_unknown_agent_and_a_bad_email(db_url: str) -> None:
    env = {"TRIPQUOTE_DATABASE_URL": db_url, "PATH": ""}
    cli = [sys.executable, "-m", "tripquote.cli"]
    unknown = subprocess.run(
        [*cli, "token", "--agent", "00000000-0000-0000-0000-000000000000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unknown.returncode == 1
    assert json.loads(unknown.stderr)["event"] == "token_refused"
    assert "no active agent" in json.loads(unknown.stderr)["error"]
    for argv, event, text in [
        (["agents", "create", "--agency", "x", "--email", "notanemail"], "agent", "invalid e-mail"),
        (["agencies", "create", "  "], "agency", "must be 1-200 characters"),
        (["agencies", "create", "x" * 201], "agency", "must be 1-200 characters"),
        (["agencies", "create", "X", "--timezone", "Mars/Olympus"], "agency", "IANA time zone"),
        # In the time zone database, but no place: each host's own zone, a placeholder.
        (["agencies", "create", "X", "--timezone", "localtime"], "agency", "IANA time zone"),
        (["agencies", "create", "X", "--timezone", "Factory"], "agency", "IANA time zone"),
        (["agencies", "create", "Evil \u202eycnegA"], "agency", "control characters"),
        (
            ["agents", "create", "--agency", "x", "--email", "a@b.example", "--name", "a\u2066b"],
            "agent",
            "control characters",
        ),
    ]:
        bad = subprocess.run(
            [*cli, *argv], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert bad.returncode == 2, bad.stderr
        line = json.loads(bad.stderr)  # one JSON line
        assert line["event"] == f"{event}_refused" and text in line["error"]
    # Usage errors too: one JSON line (not click's box), exit status 2.
    for argv, text in [
        (["ops", "summary", "--since", "999999d"], "at most 36500d"),
        (["expire", "--batch-size", "0"], "--batch-size"),
        (["token", "--ttl", "-5", "--agent", "x"], "--ttl"),
        (["nosuchcommand"], "No such command"),
    ]:
        bad = subprocess.run(
            [*cli, *argv], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert bad.returncode == 2, bad.stderr
        line = json.loads(bad.stderr)
        assert line["event"] == "usage_error" and text in line["error"], line
        assert line["usage"].startswith("Usage: ")


@pytest.mark.parametrize(
    ("currency", "price", "discount"), [("KWD", "1.234", "0.001"), ("CLF", "1.2345", "0.0001")]
)
async def test_three_and_four_decimal_currencies_are_stored_exactly(
    db_url: str, world_factory: Any, currency: str, price: str, discount: str
) -> None:
    """ISO 4217 minor units beyond 2 survive the database (PostgreSQL NUMERIC(18, 4)): what
    the save answered is what GET, the revision and a later save read (found by the breaker:
    PostgreSQL rounded to 2 places)."""
    world = await world_factory(make_settings(db_url, currencies=("EUR", currency)))
    actor = await world.actor()
    body = quote_body("edinburgh-weekend-gbp", actor.client_id)
    body.update(currency=currency, discount=discount, markupPercent="0")
    body["items"] = [
        {"type": "OTHER", "description": "Fee", "quantity": 1, "unitPrice": price, "details": {}}
    ]
    created = await world.client.post(URL, json=body, headers=actor.headers)
    assert created.status_code == 201, created.text
    saved = created.json()["quote"]
    assert saved["items"][0]["unitPrice"] == price
    assert saved["pricing"]["discount"] == discount
    read = await world.client.get(f"{URL}/{saved['id']}", headers=actor.headers)
    assert read.json()["quote"] == saved
    revision = await world.client.get(f"{URL}/{saved['id']}/revisions/1", headers=actor.headers)
    assert revision.json()["revision"]["snapshot"] == saved
    same = {k: v for k, v in body.items() if k != "clientId"}
    again = await world.client.patch(
        f"{URL}/{saved['id']}", json={**same, "version": 1}, headers=actor.headers
    )
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 1  # nothing changed: the stored amounts are the same
