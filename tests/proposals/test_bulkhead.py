"""The client's pages' bulkhead: at most ``limit`` proposal-link requests run at once per
process, the others wait and are then served — never refused; the agents' API never waits."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import StillClock, World, make_settings
from tests.proposals.support import send_quote
from tripquote.config import Settings
from tripquote.proposals.bulkhead import POLL_SECONDS, PublicBulkhead


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


async def _looked_at_again() -> None:
    """Long enough for every waiting link request to look again (the bulkhead polls)."""
    await asyncio.sleep(5 * POLL_SECONDS)


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError("never happened")


async def test_by_default_a_burst_lets_the_link_requests_beside_it_through_at_its_pace() -> None:
    # The bench's proposal scenario: 1,000 views and 200 accepts released with a save burst,
    # which can all land on one worker process. With the default queue (it was 1,000, and
    # the 200 accepts found it full, so they ran at once) they all wait; while the clock
    # stands still, the pace lets the first one start and no other.
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    inner = Gates()
    clock = StillClock()
    bulkhead = PublicBulkhead(
        inner,
        limit=defaults["public_concurrency"],
        queue=defaults["public_queue"],
        busy=defaults["public_defer_at"],
        max_wait=defaults["public_defer_max_seconds"],
        rate=defaults["public_burst_rate"],
        clock=clock,
    )
    async with _client(bulkhead) as client:
        paths = [f"/api/agents/quotes/{n}" for n in range(defaults["public_defer_at"])]
        agents = [asyncio.create_task(client.patch(path)) for path in paths]
        await _settle()
        pages = [asyncio.create_task(client.get(f"/p/{n}")) for n in range(1200)]
        await _until(lambda: inner.links_served == 1)
        await _looked_at_again()
        assert inner.links_served == 1 and bulkhead.waiting == 1199
        inner.open_agents()
        responses = await asyncio.gather(*agents, *pages)
    assert [r.status_code for r in responses] == [200] * (len(paths) + 1200)
    assert inner.links_served == 1200


async def test_during_a_burst_link_requests_start_at_the_pace_only() -> None:
    inner = Gates()
    clock = StillClock()
    bulkhead = PublicBulkhead(
        inner, limit=2, queue=10, busy=2, max_wait=60, rate=4, clock=clock
    )  # one start every 0.25 s
    async with _client(bulkhead) as client:
        agents = [asyncio.create_task(client.patch(f"/api/agents/quotes/{n}")) for n in range(2)]
        await _settle()
        pages = [asyncio.create_task(client.get(f"/p/{n}")) for n in range(3)]
        await _until(lambda: inner.links_served == 1)  # the burst's first start: at once
        await _looked_at_again()
        assert (inner.links_served, bulkhead.waiting) == (1, 2)
        clock.now += 0.2  # less than the interval: none
        await _looked_at_again()
        assert inner.links_served == 1
        clock.now += 0.05  # the interval: one more, and only one
        await _until(lambda: inner.links_served == 2)
        await _looked_at_again()
        assert (inner.links_served, bulkhead.waiting) == (2, 1)
        inner.open_agents()  # the burst is over: the last one at once
        responses = await asyncio.gather(*agents, *pages)
    assert [r.status_code for r in responses] == [200] * 5
    assert inner.links_served == 3


class Gates:
    """An ASGI app answering 200: an agent path (any but ``/p/…``) once its gate is open
    (``gate(path).set()``, or ``open_agents()`` for every one), a link path at once
    (counted in ``links_served``) unless ``hold(path)`` gave it a gate too."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.held_links: set[str] = set()
        self.agents_open = False
        self.links_served = 0

    def gate(self, path: str) -> asyncio.Event:
        return self.gates.setdefault(path, asyncio.Event())

    def hold(self, path: str) -> asyncio.Event:
        self.held_links.add(path)
        return self.gate(path)

    def open_agents(self) -> None:
        self.agents_open = True
        for path, gate in self.gates.items():
            if not path.startswith("/p/"):
                gate.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        if path.startswith("/p/") and path not in self.held_links:
            self.links_served += 1
        elif not (self.agents_open and not path.startswith("/p/")):
            await self.gate(path).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_the_agents_requests_take_precedence_over_the_pages() -> None:
    inner = Gates()
    bulkhead = PublicBulkhead(inner, limit=2, queue=10, busy=3, max_wait=60)
    async with _client(bulkhead) as client:
        agents = [asyncio.create_task(client.patch(f"/api/agents/quotes/{n}")) for n in range(3)]
        await _settle()
        assert bulkhead.agents == 3
        pages = [asyncio.create_task(client.get(f"/p/{n}")) for n in range(4)]
        await _settle()
        # Three agent requests in flight (busy): the pages wait, none is served yet.
        assert (bulkhead.waiting, inner.links_served) == (4, 0)
        inner.open_agents()
        responses = await asyncio.gather(*agents, *pages)
    assert [r.status_code for r in responses] == [200] * 7
    assert inner.links_served == 4 and bulkhead.waiting == 0


async def test_a_page_waits_for_the_agents_at_most_max_wait() -> None:
    inner = Gates()
    bulkhead = PublicBulkhead(inner, limit=2, queue=10, busy=1, max_wait=0.05)
    async with _client(bulkhead) as client:
        agent = asyncio.create_task(client.get("/api/agents/quotes"))
        await _settle()
        page = await client.get("/p/x")  # served although the agent's request still runs
        assert page.status_code == 200 and not agent.done()
        inner.open_agents()
        assert (await agent).status_code == 200


async def test_pages_queued_before_a_burst_wait_for_it_when_their_turn_comes() -> None:
    inner = Gates()
    bulkhead = PublicBulkhead(inner, limit=1, queue=10, busy=2, max_wait=60)
    async with _client(bulkhead) as client:
        first_gate = inner.hold("/p/first")
        first = asyncio.create_task(client.get("/p/first"))
        await _settle()
        # Pages that came while all was quiet, waiting for the one slot...
        pages = [asyncio.create_task(client.get(f"/p/{n}")) for n in range(3)]
        await _settle()
        assert (bulkhead.running, bulkhead.waiting) == (1, 3)
        # ...then a burst of agent requests; the slot frees while it runs.
        agents = [asyncio.create_task(client.patch(f"/api/agents/quotes/{n}")) for n in range(2)]
        await _settle()
        first_gate.set()
        await _settle()
        assert inner.links_served == 0 and bulkhead.agents == 2  # the agents first
        inner.open_agents()
        responses = await asyncio.gather(first, *pages, *agents)
    assert [r.status_code for r in responses] == [200] * 6
    assert inner.links_served == 3 and (bulkhead.running, bulkhead.waiting) == (0, 0)


async def test_once_busy_pages_wait_until_the_burst_is_over() -> None:
    inner = Gates()
    bulkhead = PublicBulkhead(inner, limit=2, queue=10, busy=10, max_wait=60)
    async with _client(bulkhead) as client:
        paths = [f"/api/agents/quotes/{n}" for n in range(10)]
        agents = [asyncio.create_task(client.patch(path)) for path in paths]
        await _settle()
        page = asyncio.create_task(client.get("/p/x"))
        await _settle()
        assert bulkhead.agents == 10 and inner.links_served == 0
        for path in paths[:9]:  # below busy (10), one left: still the burst's
            inner.gate(path).set()
        await _settle()
        assert bulkhead.agents == 1 and inner.links_served == 0 and not page.done()
        inner.gate(paths[9]).set()  # none left: the burst is over
        assert (await page).status_code == 200 and bulkhead.agents == 0
        responses = await asyncio.gather(*agents)
    assert [r.status_code for r in responses] == [200] * 10


async def test_a_steady_load_below_busy_never_defers_a_page() -> None:
    inner = Gates()
    bulkhead = PublicBulkhead(inner, limit=2, queue=10, busy=10, max_wait=60)
    async with _client(bulkhead) as client:
        agents = [asyncio.create_task(client.patch(f"/api/agents/quotes/{n}")) for n in range(9)]
        await _settle()
        assert (await client.get("/p/x")).status_code == 200  # nine in flight: not a burst
        inner.open_agents()
        await asyncio.gather(*agents)
