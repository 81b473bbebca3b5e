"""A bulkhead for the client's pages, per worker process: the agents' requests take
precedence over the proposal links' (``/p/…``), which never take more than ``limit`` of the
process at once.

- **Precedence.** Once ``busy`` or more agent requests (any other path) are in flight in the
  process — a save burst: its database pool is taken — a link request whose turn comes waits
  until the burst is over: until at most ``busy // 5`` remain (a low-water mark: the burst's
  last requests, which decide when it ends, are not left to compete with the pages it held
  back; a steady load below ``busy`` never defers a page). It waits until ``max_wait``
  seconds after it arrived at most, then runs anyway (pages are delayed by a burst, never
  starved by one). Looked at when its turn comes, not only when it arrives: pages that came
  in the same instant as a burst (before its requests were counted) wait for it too.
- **Bounded concurrency.** At most ``limit`` link requests run at once; the others wait their
  turn, first come first served.
- **Bounded queue, no refusal.** At most ``queue`` link requests wait; one that finds the queue
  full is served at once, as without the bulkhead. A request is never refused for waiting.

Outermost middleware: a waiting request has cost only its HTTP parsing; its access line, its
tracked operation and its rate-limit count begin when its turn comes."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Receive, Scope, Send

PUBLIC_PREFIX = "/p/"
"""The paths behind the bulkhead: a proposal link's page, PDF and answers (not the
stylesheet, a static file)."""


class PublicBulkhead:
    """ASGI middleware: the agents' requests first, then ``limit`` link requests at once."""

    def __init__(
        self, app: ASGIApp, *, limit: int, queue: int, busy: int = 0, max_wait: float = 0.0
    ) -> None:
        self.app = app
        self.queue = queue
        self.busy = busy  # 0: no precedence
        self.quiet_at = busy // 5  # busy again from ``busy``, quiet again at this many
        self.max_wait = max_wait
        self.agents = 0  # agent requests in flight
        self.running = 0  # link requests running
        self.waiting = 0  # link requests waiting
        self._slots = asyncio.Semaphore(limit)
        self._quiet = asyncio.Event()  # set while fewer than ``busy`` agent requests run
        self._quiet.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An agent request at once (counted); a link request in its turn."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif not scope["path"].startswith(PUBLIC_PREFIX):
            await self._agent(scope, receive, send)
        elif self.waiting >= self.queue:
            await self.app(scope, receive, send)  # the queue is full: served at once
        else:
            await self._link(scope, receive, send)

    async def _agent(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.agents += 1
        if self.busy and self.agents >= self.busy:
            self._quiet.clear()
        try:
            await self.app(scope, receive, send)
        finally:
            self.agents -= 1
            if self.agents <= self.quiet_at:
                self._quiet.set()

    async def _link(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.waiting += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        try:
            await self._slots.acquire()
            try:  # its turn: the agents first, until its deadline
                remaining = deadline - loop.time()
                if not self._quiet.is_set() and remaining > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._quiet.wait(), remaining)
            except BaseException:
                self._slots.release()
                raise
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1
            self._slots.release()
