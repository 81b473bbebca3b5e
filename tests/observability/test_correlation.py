"""Correlation IDs: kept when well-formed, replaced otherwise, returned and inherited."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from tripquote.errors import QuoteNotFound, TripquoteError
from tripquote.observability.context import accept_correlation_id, correlation_id_var
from tripquote.observability.correlation import CorrelationMiddleware
from tripquote.observability.operations import Observer

GENERATED = re.compile(r"REQ-[0-9A-F]{20}")


def build_app(observer: Observer, seen: dict[str, Any]) -> FastAPI:
    app = FastAPI()

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TripquoteError)
        observer.error_rendered(exc)
        body = {"success": False, "errorCode": exc.code, "correlationId": correlation_id_var.get()}
        return JSONResponse(body, exc.status)

    app.add_exception_handler(TripquoteError, on_error)

    @app.get("/echo")
    async def echo() -> dict[str, Any]:
        async with observer.track("quote.read"):
            return {"correlationId": correlation_id_var.get()}

    @app.get("/own-header")
    async def own_header() -> Response:
        return Response("x", headers={"X-Correlation-ID": "SET-BY-ROUTE"})

    @app.get("/missing")
    async def missing() -> None:
        async with observer.track("quote.read"):
            raise QuoteNotFound()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                await asyncio.sleep(0)
                yield f"{i}:{correlation_id_var.get()}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, bool]:
        def remember() -> None:
            seen["background"] = correlation_id_var.get()

        async def spawn() -> None:
            async def later() -> None:
                seen["task"] = correlation_id_var.get()

            await asyncio.create_task(later())

        tasks.add_task(remember)
        tasks.add_task(spawn)
        return {"ok": True}

    app.add_middleware(CorrelationMiddleware)
    return app


@pytest.fixture
async def client(settings_factory: Any) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    seen: dict[str, Any] = {}
    app = build_app(Observer(settings_factory()), seen)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, seen


@pytest.mark.parametrize(
    "incoming",
    ["REQ-ABC123-XYZ789", "a", "trace:1.2_3-x", "A" * 128, "0f8fad5b-d9cb-469f-a165-70867728950e"],
)
async def test_well_formed_id_is_kept(client: Any, incoming: str) -> None:
    http, _ = client
    response = await http.get("/echo", headers={"X-Correlation-ID": incoming})
    assert response.headers["x-correlation-id"] == incoming
    assert response.json() == {"correlationId": incoming}


@pytest.mark.parametrize("incoming", ["abc def", "A" * 129, "<script>", "", "id/slash", "é"])
async def test_malformed_id_is_replaced(client: Any, incoming: str) -> None:
    http, _ = client
    response = await http.get("/echo", headers={"X-Correlation-ID": incoming.encode("utf-8")})
    returned = response.headers["x-correlation-id"]
    assert GENERATED.fullmatch(returned)
    assert response.json() == {"correlationId": returned}


def test_trailing_newline_is_not_well_formed() -> None:
    assert accept_correlation_id("abc\n") is None
    assert accept_correlation_id("abc") == "abc"


async def test_x_request_id_is_accepted_and_missing_id_generated(client: Any) -> None:
    http, _ = client
    taken = await http.get("/echo", headers={"X-Request-ID": "from-request-id"})
    assert taken.headers["x-correlation-id"] == "from-request-id"
    fallback = await http.get(
        "/echo", headers={"X-Correlation-ID": "bad id", "X-Request-ID": "good-id"}
    )
    assert fallback.headers["x-correlation-id"] == "good-id"
    one, two = (await http.get("/echo")).headers, (await http.get("/echo")).headers
    assert GENERATED.fullmatch(one["x-correlation-id"])
    assert one["x-correlation-id"] != two["x-correlation-id"]


async def test_error_responses_carry_the_same_id(client: Any) -> None:
    http, _ = client
    response = await http.get("/missing", headers={"X-Correlation-ID": "REQ-ERR-1"})
    assert response.status_code == 404
    assert response.headers["x-correlation-id"] == "REQ-ERR-1"
    assert response.json()["correlationId"] == "REQ-ERR-1"
    unknown = await http.get("/no-such-route", headers={"X-Correlation-ID": "REQ-404"})
    assert unknown.headers["x-correlation-id"] == "REQ-404"


async def test_header_is_never_doubled(client: Any) -> None:
    http, _ = client
    response = await http.get("/own-header", headers={"X-Correlation-ID": "REQ-ONE"})
    assert response.headers.get_list("x-correlation-id") == ["REQ-ONE"]


async def test_streaming_and_background_tasks_keep_the_id(client: Any) -> None:
    http, seen = client
    async with http.stream("GET", "/stream", headers={"X-Correlation-ID": "REQ-STREAM"}) as r:
        assert r.headers["x-correlation-id"] == "REQ-STREAM"
        lines = [line async for line in r.aiter_lines() if line]
    assert lines == ["0:REQ-STREAM", "1:REQ-STREAM", "2:REQ-STREAM"]

    response = await http.get("/background", headers={"X-Correlation-ID": "REQ-BG"})
    assert response.status_code == 200
    assert seen == {"background": "REQ-BG", "task": "REQ-BG"}


async def test_the_id_does_not_leak_past_the_request(client: Any) -> None:
    http, _ = client
    await http.get("/echo", headers={"X-Correlation-ID": "REQ-LEAK"})
    assert correlation_id_var.get() is None
