"""A bulkhead for the client's pages, per worker process: the agents' requests take
precedence over the proposal links' (``/p/…``), which never take more than ``limit`` of the
process at once, and only a paced share of it during a burst of agent requests.

- **Precedence.** A process is in a burst from when ``busy`` or more agent requests (any
  other path) are in flight in it — its database pool is taken — until none remains (the
  burst's last requests, which decide when it ends, are not left to compete with the pages
  it held back: measured, pages let in at a fifth of ``busy`` left slowed a 1,000-save
  burst by 3 to 5 % more; a steady load below ``busy`` never makes one).
  While this process, or another worker of the same ``serve`` (``board``: the shared
  ``proposals/board.py``; the cores are shared too), is in a burst, link requests whose turn
  came start at ``rate`` per second (paced: one every ``1 / rate`` seconds, looked at every
  ``POLL_SECONDS`` at most), so their share of the process stays bounded however long the
  burst lasts and however many pages came with it (measured, a view costs the server about
  what a save does: a thousand of them let in at once slowed a 5,000-save burst by 15 to
  20 %); the others wait, at most ``max_wait`` seconds after they arrived, then run anyway
  (pages are delayed by a burst, never starved by one). Looked at when a request's turn
  comes, not only when it arrives: pages that came in the same instant as a burst (before
  its requests were counted) wait for it too.
- **Bounded concurrency.** At most ``limit`` link requests run at once; the others wait their
  turn, first come first served.
- **Bounded queue, no refusal.** At most ``queue`` link requests wait; one that finds the queue
  full is served at once, as without the bulkhead. A request is never refused for waiting.

Outermost middleware: a waiting request has cost only its HTTP parsing; its access line, its
tracked operation and its rate-limit count begin when its turn comes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from tripquote.proposals.board import Board

PUBLIC_PREFIX = "/p/"
"""The paths behind the bulkhead: a proposal link's page, PDF and answers (not the
stylesheet, a static file)."""


POLL_SECONDS = 0.01
"""How often a link request whose turn came looks again whether a burst is over or the pace
lets it start."""


class PublicBulkhead:
    """ASGI middleware: the agents' requests first, then ``limit`` link requests at once
    (``rate`` per second of them during a burst; 0: none until it is over or ``max_wait``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        queue: int,
        busy: int = 0,
        max_wait: float = 0.0,
        rate: float = 0.0,
        board: Board | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.clock = clock  # seconds: the waits' deadlines and the pace
        self.queue = queue
        self.busy = busy  # 0: no precedence
        self.max_wait = max_wait
        self.interval = 1 / rate if rate > 0 else None  # None: none starts during a burst
        self.next_start = 0.0  # loop time from which the pace lets the next one start
        self.board = board
        self.agents = 0  # agent requests in flight
        self.running = 0  # link requests running
        self.waiting = 0  # link requests waiting
        self.in_burst = False  # this process
        self._slots = asyncio.Semaphore(limit)

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

    def deferring(self) -> bool:
        """Whether a link request whose turn came waits now: this process or another of the
        board is in a burst."""
        return self.in_burst or (self.board is not None and self.board.any_busy())

    def _paced(self, now: float) -> bool:
        """Whether the pace lets one link request start at ``now`` during a burst (taken)."""
        if self.interval is None or now < self.next_start:
            return False
        self.next_start = now + self.interval
        return True

    def _count(self, delta: int) -> None:
        self.agents += delta
        if not self.busy:
            return
        if self.agents >= self.busy:
            in_burst = True
        elif self.agents == 0:
            in_burst = False
        else:
            return
        if in_burst != self.in_burst:
            self.in_burst = in_burst
            if self.board is not None:
                self.board.set(in_burst)

    async def _agent(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._count(1)
        try:
            await self.app(scope, receive, send)
        finally:
            self._count(-1)

    async def _link(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.waiting += 1
        deadline = self.clock() + self.max_wait
        try:
            await self._slots.acquire()
            try:  # its turn: the agents first, the pace's starts aside, until its deadline
                # Polled: another process's burst sets no event here.
                while self.deferring() and (remaining := deadline - self.clock()) > 0:
                    if self._paced(self.clock()):
                        break
                    await asyncio.sleep(min(POLL_SECONDS, remaining))
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
