"""Webhook receivers: real HTTP servers (aiohttp) on loopback that verify every request with
the PyPI ``standardwebhooks`` library, and a delivery worker on the test's app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from sqlalchemy import text
from standardwebhooks import Webhook

from tests.conftest import Actor, World
from tests.servers import free_port
from tripquote.webhooks.worker import DeliveryWorker

W = "/api/agents/webhooks"


@dataclass
class Received:
    """One request as the receiver got it, verified (``payload``) or not (``error``)."""

    headers: dict[str, str]
    body: bytes
    payload: Any


@dataclass
class Receiver:
    """An aiohttp server on 127.0.0.1 answering ``status`` (or ``answer(request)``'s status);
    each request is verified with ``standardwebhooks.Webhook(secret)`` once ``secret`` is set,
    and kept in ``received`` (a request that fails verification is answered 400)."""

    port: int = field(default_factory=free_port)
    status: int = 200
    secret: str | None = None
    answer: Callable[[web.Request], Any] | None = None
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert self.secret is not None
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except Exception as error:  # the library's WebhookVerificationError
            self.refused.append(type(error).__name__)
            return web.Response(status=400)
        self.received.append(Received(headers, body, payload))
        self.arrived.set()
        if self.answer is not None:
            status = await self.answer(request)
            return web.Response(status=status)
        return web.Response(status=self.status)

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]


@pytest_asyncio.fixture
async def receiver(world: World) -> AsyncIterator[Receiver]:
    """A started receiver; its subscriptions are deleted afterwards (so no later test's
    worker tries them)."""
    started = Receiver()
    await started.start()
    yield started
    await started.stop()
    await forget_subscriptions(world, started.url)


async def forget_subscriptions(world: World, url: str) -> None:
    """Delete the subscriptions to ``url`` and their deliveries (no cascade: migration 0012)."""
    async with world.engine.begin() as conn:
        await conn.execute(
            text(
                "DELETE FROM webhook_deliveries WHERE subscription_id IN"
                " (SELECT id FROM webhook_subscriptions WHERE url = :u)"
            ),
            {"u": url},
        )
        await conn.execute(text("DELETE FROM webhook_subscriptions WHERE url = :u"), {"u": url})


async def subscribe(world: World, admin: Actor, url: str, *types: str) -> tuple[str, str]:
    """A subscription of ``admin``'s agency to ``types`` at ``url``: (id, secret)."""
    response = await world.client.post(
        W,
        json={"url": url, "eventTypes": list(types) or ["quote.sent", "quote.accepted"]},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()["webhook"]["id"], response.json()["secret"]


async def insert_subscription(world: World, agency_id: str, url: str) -> None:
    """A subscription of ``agency_id`` to ``quote.created`` at ``url``, written straight to the
    table (as a creation check would have passed it then: ``url`` is not looked at now)."""
    async with world.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO webhook_subscriptions (id, agency_id, url, event_types, enabled,"
                " secret, created_at, updated_at) VALUES (gen_random_uuid()::text, :a, :u,"
                " ARRAY['quote.created'], true, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',"
                " now(), now())"
            ),
            {"a": agency_id, "u": url},
        )


def hang_resolver(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every host-name lookup of the running event loop waits ``seconds`` first (a DNS server
    that hangs), then resolves as before; ``monkeypatch.undo()`` ends it."""
    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo

    async def slow_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(seconds)
        return await resolve(*args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", slow_getaddrinfo)


def worker_of(world: World, client: httpx.AsyncClient, **overrides: Any) -> DeliveryWorker:
    settings = world.settings.model_copy(update=overrides) if overrides else world.settings
    return DeliveryWorker(runner=world.app.state.runner, settings=settings, client=client)


async def drain(worker: DeliveryWorker) -> int:
    """Fan the committed events out, then deliver batch after batch until nothing is due;
    how many attempts were made."""
    await worker.fan_out()
    attempts = 0
    while sent := await worker.deliver_batch():
        attempts += sent
    return attempts
