"""``/docs`` works on a host without Internet access: the page names no other host, and every
file it loads (Swagger UI's script and style sheet, the icon) is served by the app itself, from
the installed fastapi-offline package, with its content type. There is no ReDoc page."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from tests.conftest import World
from tripquote.app import DOCS_URL


class _Links(HTMLParser):
    """Every ``src`` and ``href`` attribute of a page, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [(tag, value) for name, value in attrs if name in ("src", "href") and value]


EXPECTED_TYPES = {
    "script": "text/javascript",
    "link": ("text/css", "image/png"),  # the style sheet; the icon
}


async def test_docs_page_loads_every_asset_from_the_service(world: World) -> None:
    page = await world.client.get(DOCS_URL)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")

    urls = _parse(page.text)
    tags = [tag for tag, _ in urls]
    assert sorted(tags) == ["link", "link", "script"], urls  # style sheet, icon; Swagger UI
    for tag, url in urls:
        parts = urlsplit(url)
        # A path on this service: no scheme, no host, not protocol-relative (//cdn…).
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await world.client.get(url)
        assert asset.status_code == 200, url
        content_type = asset.headers["content-type"].partition(";")[0]
        expected = EXPECTED_TYPES[tag]
        assert content_type in ((expected,) if isinstance(expected, str) else expected), url
        assert len(asset.content) > 1000, url  # the file itself, not an error page
    # Nor does the page's own script reach out: no URL with a host anywhere in it (Swagger UI's
    # online validator badge, an image from validator.swagger.io, is turned off).
    assert not re.search(r"(?:https?:)?//[\w.-]+\.\w", page.text), page.text
    assert '"validatorUrl": null' in page.text
    # The document the page renders is the service's own, by path.
    assert "url: '/openapi.json'" in page.text


async def test_swagger_ui_can_render_openapi_3_1(world: World) -> None:
    # FastAPI writes OpenAPI 3.1; Swagger UI renders 3.1 from its 5.x releases on.
    document = (await world.client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    page = await world.client.get(DOCS_URL)
    script = next(url for tag, url in _parse(page.text) if tag == "script")
    bundle = (await world.client.get(script)).text
    versions = set(re.findall(r'"(5\.\d+\.\d+)"', bundle))
    assert versions, "no Swagger UI 5.x version string in the served bundle"


@pytest.mark.parametrize("path", ["/redoc", "/static-offline-docs/no-such-file.js"])
async def test_no_redoc_page_and_unknown_assets_are_the_404_envelope(
    world: World, path: str
) -> None:
    response = await world.client.get(path)
    assert response.status_code == 404
    assert response.json()["errorCode"] == "NOT_FOUND"


def _parse(text: str) -> list[tuple[str, str]]:
    links = _Links()
    links.feed(text)
    return links.urls
