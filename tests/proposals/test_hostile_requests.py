"""What a hostile client sends to the proposal pages gets a page with its status and the
security headers — never a 500, never the API's JSON — writes nothing, and leaves no token in
the logs: tokens that are not ASCII, form bodies the framework cannot read, names that show
nothing or another name, mangled link paths, oversized echoes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import World, make_settings
from tests.proposals.support import URL, accept, form_of, send_quote, stored
from tripquote.observability.logging import flush_logs

FORM = {"content-type": "application/x-www-form-urlencoded"}


def _is_page(response: Any, status: int) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("text/html"), (
        response.request.method,
        response.request.url,
        response.text[:300],
    )
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "Traceback" not in response.text


async def _uniform_404(world: World) -> str:
    response = await world.client.get("/p/" + "A" * 43)
    _is_page(response, 404)
    return str(response.text)


async def test_a_token_that_is_not_ascii_is_the_uniform_404(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    uniform = await _uniform_404(world)
    before = await stored(world, sent.quote_id)
    for path in ("/p/%C3%A9%C3%A9" + "A" * 41, "/p/%ff%fe%fd" + "A" * 40, "/p/" + "é" * 43):
        for response in (
            await world.client.get(path),
            await world.client.get(path + "/pdf"),
            await world.client.post(path + "/accept", content=b"signer_name=x", headers=FORM),
        ):
            _is_page(response, 404)
            assert response.text == uniform
    assert await stored(world, sent.quote_id) == before


async def test_a_form_body_the_framework_cannot_read_is_a_400_page(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    before = await stored(world, sent.quote_id)
    fields = "&".join(f"f{n}=x" for n in range(1001)).encode()
    file_part = (
        b'--b\r\nContent-Disposition: form-data; name="signer_name"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nAda\r\n--b--\r\n"
    )
    bodies = [
        (fields, FORM),  # more fields than the parser takes
        (b"xx", {"content-type": "multipart/form-data"}),  # no boundary
        (
            b"--b\r\nno header\r\n\r\nx\r\n--b--\r\n",
            {"content-type": "multipart/form-data; boundary=b"},
        ),
        (file_part, {"content-type": "multipart/form-data; boundary=b"}),  # a file for text
    ]
    for path in (sent.path, "/p/" + "B" * 43):  # the link's, and an unknown one's
        for content, headers in bodies:
            response = await world.client.post(f"{path}/accept", content=content, headers=headers)
            _is_page(response, 400)
            assert "could not be read" in response.text
    assert await stored(world, sent.quote_id) == before
    assert (await accept(world.client, sent.path, form)).status_code == 303  # still answerable


@pytest.mark.parametrize(
    ("action", "twice"),
    [
        ("accept", "signer_name=Ann+Lee&consent=yes&signer_name=Bob"),
        ("accept", "signer_name=Ann+Lee&consent=yes&consent=yes"),
        ("decline", "reason=Too+dear&reason=Dates"),
    ],
)
async def test_a_form_field_sent_twice_is_a_400_page(world: World, action: str, twice: str) -> None:
    """Which of two values the client meant only the client knows: nothing is recorded (a
    tester's accept with two signer names recorded the second)."""
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    before = await stored(world, sent.quote_id)
    hidden = "&".join(f"{key}={value}" for key, value in form.items())
    response = await world.client.post(
        f"{sent.path}/{action}", content=f"{hidden}&{twice}".encode(), headers=FORM
    )
    _is_page(response, 400)
    assert "could not be read" in response.text
    assert await stored(world, sent.quote_id) == before
    assert (await accept(world.client, sent.path, form)).status_code == 303  # still answerable


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("\u200b\u200b\u00a0", "Enter your full name"),  # zero-width and no-break spaces only
        ("\u202eAiko Tanaka", "letters and punctuation only"),  # read right to left
        ("Ada \u2066Lovelace\u2069", "letters and punctuation only"),
        ("\u3164", "Enter your full name"),  # a Hangul filler: a letter that shows nothing
        ("\u2800\ufffc", "Enter your full name"),  # blank Braille, object replacement
        ("\u0301\u0301", "Enter your full name"),  # marks without a letter
        ("\ue000", "letters and punctuation only"),  # private use
        ("Ada\u2028Lovelace", "letters and punctuation only"),  # a line separator
        # Format characters that only hide text: the same-looking name stored another way.
        ("Ann\U000e0041\U000e0042", "letters and punctuation only"),  # tag characters
        ("\ufeffAnn", "letters and punctuation only"),  # a byte order mark
        ("Ann\u2060\u2061", "letters and punctuation only"),  # word joiner, invisible operator
        ("Ann\u00ad", "letters and punctuation only"),  # a soft hyphen
    ],
)
async def test_a_name_that_shows_nothing_or_another_name_is_refused(
    world: World, name: str, words: str
) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    before = await stored(world, sent.quote_id)
    _is_page(await accept(world.client, sent.path, form, name=name), 400)
    assert words in (await accept(world.client, sent.path, form, name=name)).text
    assert await stored(world, sent.quote_id) == before


@pytest.mark.parametrize(
    "name",
    [
        "\u0645\u0647\u200c\u0646\u0627\u0632 \u0631\u0636\u0627\u06cc\u06cc",  # Persian: ZWNJ
        "\u0915\u094d\u200d\u0937 Sharma",  # Devanagari with a zero width joiner
        "Ada Lovelace\u200f",  # a right-to-left mark
    ],
)
async def test_a_name_written_with_joiners_or_marks_is_taken(world: World, name: str) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    assert (await accept(world.client, sent.path, form, name=name)).status_code == 303
    proposal = await world.client.get(f"{URL}/{sent.quote_id}/proposal", headers=actor.headers)
    assert proposal.json()["proposal"]["answer"]["signerName"] == name


async def test_form_bytes_that_are_not_utf8_are_refused(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    before = await stored(world, sent.quote_id)
    hidden = "&".join(f"{key}={value}" for key, value in form.items())
    for action, field in (("accept", "signer_name=%ff%fe&consent=yes"), ("decline", "reason=%ff")):
        response = await world.client.post(
            f"{sent.path}/{action}", content=f"{hidden}&{field}".encode(), headers=FORM
        )
        _is_page(response, 400)
    assert await stored(world, sent.quote_id) == before


async def test_a_refused_form_shows_at_most_what_its_fields_take(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    response = await accept(world.client, sent.path, form, name="A" * 500_000)
    _is_page(response, 400)
    assert "A" * 201 not in response.text and "A" * 200 in response.text
    assert len(response.content) < 20_000


async def test_link_paths_no_route_takes_are_pages_not_json(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    uniform = await _uniform_404(world)
    before = await stored(world, sent.quote_id)
    for path in (
        "/p/",
        "/p",
        f"{sent.path}/",
        f"{sent.path}/x/y",
        f"http://tripquote.test/{sent.path}",  # //p/<token>
        "/p/a%2Fb",
    ):
        response = await world.client.get(path)
        _is_page(response, 404)
        assert response.text == uniform, path
    for method, path in (
        ("PUT", sent.path),
        ("DELETE", sent.path),
        ("OPTIONS", sent.path),
        ("GET", f"{sent.path}/accept"),
        ("GET", f"{sent.path}/decline"),
    ):
        response = await world.client.request(method, path)
        _is_page(response, 405)
        assert response.headers["allow"]
    too_large = await world.client.post(
        f"{sent.path}/accept", content=b"signer_name=" + b"A" * 2_000_000, headers=FORM
    )
    _is_page(too_large, 413)
    assert await stored(world, sent.quote_id) == before
    # The agents' API keeps its JSON refusals.
    api = await world.client.get("/api/agents/nothing-here")
    assert api.status_code == 404 and api.json()["errorCode"] == "NOT_FOUND"


async def test_a_mangled_link_path_leaves_no_token_in_the_logs(
    pg_url: str, world_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    world: World = await world_factory(make_settings(pg_url, log_level="DEBUG"))
    actor = await world.actor()
    sent = await send_quote(world, actor)
    capsys.readouterr()
    token = sent.token
    for path in (
        f"http://tripquote.test//p/{token}",  # a base URL's slash doubled
        f"/{token}",  # the /p left out
        f"/p/{token[:20]}%2F{token[20:]}",
        f"/p/{token}/",
        f"/P/{token}",
        f"/p/{token}/accept/x",
        f"/{token}.html",  # anywhere in a path
        f"/?t={token}",  # in a query
        f"/p?{token}",
        f"/api/agents/quotes?cursor={token}",
    ):
        await world.client.get(path)
    # Where a quote id goes: logged as the path's id only when it can be one (a UUID).
    await world.client.get(f"/api/agents/quotes/{token}", headers=actor.headers)
    flush_logs()
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines() if line.strip()]
    logged = [line.get("path") for line in lines if line.get("path")]
    assert len([path for path in logged if "[link]" in path]) >= 10, logged
    for part in (token, token[:20], token[20:]):
        assert part not in out.out and part not in out.err


async def test_only_the_pages_own_form_encoding_is_read(world: World) -> None:
    # A multipart body's parts that are not UTF-8 read as Latin-1 ("\xff\xfeAiko" became
    # "ÿþAiko" and was accepted): the page's forms are urlencoded, and only that is read.
    actor = await world.actor()
    sent = await send_quote(world, actor)
    form = form_of((await world.client.get(sent.path)).text)
    before = await stored(world, sent.quote_id)
    fields = {**form, "consent": "yes"}
    parts = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (k.encode(), v.encode())
        for k, v in fields.items()
    )
    body = parts + b'--b\r\nContent-Disposition: form-data; name="signer_name"\r\n\r\n'
    body += b"\xff\xfeAiko\r\n--b--\r\n"
    response = await world.client.post(
        f"{sent.path}/accept",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    _is_page(response, 400)
    for content_type in ("application/json", "text/plain", ""):
        response = await world.client.post(
            f"{sent.path}/accept", content=b"{}", headers={"content-type": content_type}
        )
        _is_page(response, 400)
    assert await stored(world, sent.quote_id) == before


async def test_a_chunked_form_over_the_body_limit_is_the_413_page(world: World) -> None:
    actor = await world.actor()
    sent = await send_quote(world, actor)
    before = await stored(world, sent.quote_id)

    async def chunks() -> Any:
        yield b"signer_name="
        for _ in range(40):
            yield b"A" * 65_536  # 2.5 MiB in all, no Content-Length

    response = await world.client.post(f"{sent.path}/accept", content=chunks(), headers=FORM)
    _is_page(response, 413)
    assert await stored(world, sent.quote_id) == before
