"""The client's pages' bulkhead: at most ``limit`` proposal-link requests run at once per
process, the others wait and are then served — never refused; the agents' API never waits."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import World, make_settings
from tests.proposals.support import send_quote
from tripquote.proposals.bulkhead import PublicBulkhead


class Held:
    """An ASGI app answering 200 once ``release`` is set; counts the requests it holds."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.held = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.held += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test")


async def test_excess_requests_wait_their_turn_and_are_then_served() -> None:
    inner = Held()
    bulkhead = PublicBulkhead(inner, limit=2, queue=10)
    async with _client(bulkhead) as client:
        pages = [asyncio.create_task(client.get(f"/p/{n}")) for n in range(6)]
        await _settle()
        assert (bulkhead.running, bulkhead.waiting, inner.held) == (2, 4, 2)
        # The agents' API is not behind it: served while the pages wait.
        api = asyncio.create_task(client.get("/api/agents/quotes"))
        await _settle()
        assert inner.held == 3 and bulkhead.running == 2
        inner.release.set()
        responses = await asyncio.gather(*pages, api)
    assert [r.status_code for r in responses] == [200] * 7
    assert (bulkhead.running, bulkhead.waiting) == (0, 0)


async def test_a_request_finding_the_queue_full_is_served_at_once() -> None:
    inner = Held()
    bulkhead = PublicBulkhead(inner, limit=1, queue=1)
    async with _client(bulkhead) as client:
        pages = [asyncio.create_task(client.get("/p/x")) for _ in range(3)]
        await _settle()
        # One runs, one waits, the third found the queue full and runs beside the first.
        assert (bulkhead.running, bulkhead.waiting, inner.held) == (1, 1, 2)
        inner.release.set()
        responses = await asyncio.gather(*pages)
    assert [r.status_code for r in responses] == [200, 200, 200]


async def test_a_burst_of_views_through_one_slot_is_served_and_counted(
    db_url: str, world_factory: Any
) -> None:
    world: World = await world_factory(
        make_settings(db_url, public_rate_limit="1000/minute", public_concurrency=1)
    )
    actor = await world.actor()
    sent = await send_quote(world, actor)
    responses = await asyncio.gather(*(world.client.get(sent.path) for _ in range(30)))
    assert [r.status_code for r in responses] == [200] * 30
    proposal = (
        await world.client.get(
            f"/api/agents/quotes/{sent.quote_id}/proposal", headers=actor.headers
        )
    ).json()["proposal"]
    assert proposal["views"] == 30


class Routed:
    """Agent paths held until ``agents_done``, link paths answered at once."""

    def __init__(self) -> None:
        self.agents_done = asyncio.Event()
        self.links_served = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["path"].startswith("/p/"):
            self.links_served += 1
        else:
            await self.agents_done.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_the_agents_requests_take_precedence_over_the_pages() -> None:
    inner = Routed()
    bulkhead = PublicBulkhead(inner, limit=2, queue=10, busy=3, max_wait=60)
    async with _client(bulkhead) as client:
        agents = [asyncio.create_task(client.patch(f"/api/agents/quotes/{n}")) for n in range(3)]
        await _settle()
        assert bulkhead.agents == 3
        pages = [asyncio.create_task(client.get(f"/p/{n}")) for n in range(4)]
        await _settle()
        # Three agent requests in flight (busy): the pages wait, none is served yet.
        assert (bulkhead.waiting, inner.links_served) == (4, 0)
        inner.agents_done.set()
        responses = await asyncio.gather(*agents, *pages)
    assert [r.status_code for r in responses] == [200] * 7
    assert inner.links_served == 4 and bulkhead.waiting == 0


async def test_a_page_waits_for_the_agents_at_most_max_wait() -> None:
    inner = Routed()
    bulkhead = PublicBulkhead(inner, limit=2, queue=10, busy=1, max_wait=0.05)
    async with _client(bulkhead) as client:
        agent = asyncio.create_task(client.get("/api/agents/quotes"))
        await _settle()
        page = await client.get("/p/x")  # served although the agent's request still runs
        assert page.status_code == 200 and not agent.done()
        inner.agents_done.set()
        assert (await agent).status_code == 200


class Gated:
    """``/p/first`` held until ``first_done``, agent paths until ``agents_done``, other link
    paths answered at once (counted)."""

    def __init__(self) -> None:
        self.first_done = asyncio.Event()
        self.agents_done = asyncio.Event()
        self.links_served = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/p/first":
            await self.first_done.wait()
        elif scope["path"].startswith("/p/"):
            self.links_served += 1
        else:
            await self.agents_done.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_pages_queued_before_a_burst_wait_for_it_when_their_turn_comes() -> None:
    inner = Gated()
    bulkhead = PublicBulkhead(inner, limit=1, queue=10, busy=2, max_wait=60)
    async with _client(bulkhead) as client:
        first = asyncio.create_task(client.get("/p/first"))
        await _settle()
        # Pages that came while all was quiet, waiting for the one slot...
        pages = [asyncio.create_task(client.get(f"/p/{n}")) for n in range(3)]
        await _settle()
        assert (bulkhead.running, bulkhead.waiting) == (1, 3)
        # ...then a burst of agent requests; the slot frees while it runs.
        agents = [asyncio.create_task(client.patch(f"/api/agents/quotes/{n}")) for n in range(2)]
        await _settle()
        inner.first_done.set()
        await _settle()
        assert inner.links_served == 0 and bulkhead.agents == 2  # the agents first
        inner.agents_done.set()
        responses = await asyncio.gather(first, *pages, *agents)
    assert [r.status_code for r in responses] == [200] * 6
    assert inner.links_served == 3 and (bulkhead.running, bulkhead.waiting) == (0, 0)


class Releasable:
    """Each agent path held until its own event is set; link paths answered at once."""

    def __init__(self) -> None:
        self.done: dict[str, asyncio.Event] = {}
        self.links_served = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["path"].startswith("/p/"):
            self.links_served += 1
        else:
            await self.done.setdefault(scope["path"], asyncio.Event()).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_once_busy_pages_wait_until_the_burst_is_nearly_over() -> None:
    inner = Releasable()
    bulkhead = PublicBulkhead(inner, limit=2, queue=10, busy=10, max_wait=60)
    async with _client(bulkhead) as client:
        paths = [f"/api/agents/quotes/{n}" for n in range(10)]
        agents = [asyncio.create_task(client.patch(path)) for path in paths]
        await _settle()
        page = asyncio.create_task(client.get("/p/x"))
        await _settle()
        assert bulkhead.agents == 10 and inner.links_served == 0
        for path in paths[:7]:  # below busy (10) but above its fifth (2): still the burst's
            inner.done.setdefault(path, asyncio.Event()).set()
        await _settle()
        assert bulkhead.agents == 3 and inner.links_served == 0
        inner.done.setdefault(paths[7], asyncio.Event()).set()  # 2 left: the burst is over
        assert (await page).status_code == 200 and bulkhead.agents == 2
        for path in paths[8:]:
            inner.done.setdefault(path, asyncio.Event()).set()
        responses = await asyncio.gather(*agents)
    assert [r.status_code for r in responses] == [200] * 10


async def test_a_steady_load_below_busy_never_defers_a_page() -> None:
    inner = Releasable()
    bulkhead = PublicBulkhead(inner, limit=2, queue=10, busy=10, max_wait=60)
    async with _client(bulkhead) as client:
        agents = [asyncio.create_task(client.patch(f"/api/agents/quotes/{n}")) for n in range(9)]
        await _settle()
        assert (await client.get("/p/x")).status_code == 200  # nine in flight: not a burst
        for event in inner.done.values():
            event.set()
        await asyncio.gather(*agents)
