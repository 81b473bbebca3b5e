"""The load generator: fire many operations at once behind a start barrier, record each one.

Every operation is an async callable returning an :class:`Outcome` (status, error code,
parsed body). :func:`fire` creates one task per operation, lets them all reach a barrier,
releases them at one instant ``t0`` and records for each operation its status, its error
code (``errorCode`` of the envelope, or the exception's class name with status 0), its
latency **from the release** (so client-side scheduling and connection set-up count, as they
would for a user who pressed Save at that instant) and its start lag (release until the
generator actually began sending it: the generator's own delay).

Two HTTP clients: aiohttp (default when installed) and httpx. The ceiling scenario measures
both against a trivial endpoint so the generator's own limit is reported next to the results.
A third, :class:`OneShotClient` (one connection per request, the response parsed by httptools),
sends the load a scenario adds beside a burst at a fraction of their cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urljoin, urlsplit

import orjson

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(slots=True)
class Outcome:
    """What one operation returned: HTTP-like status (0 = exception), error code, body."""

    status: int
    code: str = ""
    body: Any = None


@dataclass(slots=True)
class Result:
    """One operation as measured, in seconds: its latency (from the release; in a bounded
    run, from its send) and its start lag (from the release)."""

    op: str
    status: int
    code: str
    latency: float
    lag: float
    body: Any = None


@dataclass(slots=True)
class Burst:
    """All results of one fired batch and the wall time from release to last completion."""

    results: list[Result]
    wall: float
    cpu: dict[str, Any] | None = None


Call = Callable[[], Awaitable[Outcome]]


class Meter(Protocol):
    """Something measured over the batch (see bench/cpu.py)."""

    result: dict[str, Any] | None

    def start(self) -> None: ...

    def stop(self) -> None: ...


async def fire(
    ops: Sequence[tuple[str, Call]], *, meter: Meter | None = None, concurrency: int | None = None
) -> Burst:
    """Run every operation concurrently, all released at the same instant; with
    ``concurrency``, at most that many in flight, each one's latency timed from when it is
    sent (not from the release: its wait for a slot is the generator's queue, not the
    service's time)."""
    gate = asyncio.Event()
    slots = asyncio.Semaphore(concurrency) if concurrency is not None else None
    results: list[Result | None] = [None] * len(ops)
    t0 = 0.0

    async def one(index: int, op: str, call: Call) -> None:
        await gate.wait()
        async with slots if slots is not None else contextlib.nullcontext():
            start = time.perf_counter()
            try:
                outcome = await call()
            except Exception as exc:  # every failure is a data point, not a crash
                outcome = Outcome(0, type(exc).__name__)
            end = time.perf_counter()
        sent = start if slots is not None else t0
        results[index] = Result(
            op, outcome.status, outcome.code, end - sent, start - t0, outcome.body
        )

    with collector_paused():
        tasks = [asyncio.create_task(one(i, op, call)) for i, (op, call) in enumerate(ops)]
        await asyncio.sleep(0)  # every task runs up to the gate before the release
        if meter is not None:
            meter.start()
        t0 = time.perf_counter()
        gate.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
        if meter is not None:
            meter.stop()
    return Burst(
        [r for r in results if r is not None], wall, meter.result if meter is not None else None
    )


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one batch, the heap before it frozen.

    The generator shares the cores with the server it measures. With the collector on, each
    full collection walks every in-flight request's objects, so its cost per request grows
    with the burst: measured on a 5,000-save burst, 1.3 s of the generator's 4.9 s of CPU
    (0.30 ms a request, against 0.24 ms at 1,000). Reference counting still frees almost
    everything; the cycles left are collected once, after the batch, outside the timing.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


async def run_bounded(ops: Sequence[tuple[str, Call]], *, concurrency: int) -> Burst:
    """Run operations with at most ``concurrency`` in flight, each timed from its send."""
    return await fire(ops, concurrency=concurrency)


class HttpClient(Protocol):
    """The minimal client surface the bench needs."""

    name: str

    async def send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


KEEPALIVE_SECONDS = 4.0
"""How long an idle connection is kept for the next request: below the servers' own idle
timeout (uvicorn's ``timeout_keep_alive``, 5 s), so the generator never sends on a connection
the server is closing (a request lost to that race is a ``ServerDisconnectedError`` that says
nothing about the server under test)."""


class AiohttpClient:
    """aiohttp with an unbounded-enough connection pool (one connection per in-flight request)."""

    name = "aiohttp"

    def __init__(self, *, connections: int, timeout: float) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=connections, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS
            ),
            timeout=aiohttp.ClientTimeout(total=timeout),
            skip_auto_headers=("User-Agent",),
        )

    async def send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send one request; return status and raw body."""
        async with self._session.request(method, url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def aclose(self) -> None:
        """Close the session and its connections."""
        await self._session.close()


class HttpxClient:
    """httpx.AsyncClient sized like the aiohttp one."""

    name = "httpx"

    def __init__(self, *, connections: int, timeout: float) -> None:
        import httpx

        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=KEEPALIVE_SECONDS,
            ),
            timeout=httpx.Timeout(timeout),
        )

    async def send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send one request; return status and raw body."""
        response = await self._client.request(method, url, content=body, headers=headers)
        return response.status_code, response.content

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self._client.aclose()


class _Exchange(asyncio.Protocol):
    """One request on its own connection; ``done`` gets (status, Location, body)."""

    def __init__(self, request: bytes, done: asyncio.Future[tuple[int, str, bytes]]) -> None:
        import httptools

        self.request = request
        self.done = done
        self.parser = httptools.HttpResponseParser(self)
        self.location = ""
        self.body: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport is no subclass of asyncio.Transport, but has its methods
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception as error:  # a malformed answer is a data point (status 0)
            self._finish(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc or ConnectionResetError("closed before the whole answer"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"location":
            self.location = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.done.done():
            self.done.set_result(
                (self.parser.get_status_code(), self.location, b"".join(self.body))
            )
        if self.transport is not None:
            self.transport.close()

    def _finish(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)
        if self.transport is not None:
            self.transport.close()


async def _exchange(
    method: str, url: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    """One request on a connection of its own: (status, Location, body)."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, str, bytes]] = loop.create_future()
    exchange = _Exchange(request, done)
    if parts.hostname is None:
        raise ValueError(f"no host in {url!r}")
    await loop.create_connection(lambda: exchange, parts.hostname, parts.port or 80)
    return await done


class OneShotClient:
    """HTTP/1.1, one connection per request (``Connection: close``), as a browser arriving
    opens one; a 303 is followed with a GET, as a browser does. No pool, no cookie jar, no
    header object: a few asyncio callbacks and httptools' parser per request, so the load it
    sends costs the cores it shares with the service a fraction of aiohttp's."""

    name = "one-shot"

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout

    async def send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send one request; return status and raw body (of the 303's target if followed)."""
        async with asyncio.timeout(self.timeout):
            for _ in range(5):  # redirects followed
                status, location, raw = await _exchange(method, url, body, headers)
                if status != 303 or not location:
                    break
                url, method, body, headers = urljoin(url, location), "GET", None, {}
        return status, raw

    async def aclose(self) -> None:
        """Nothing to close: every connection closed with its answer."""


def available_clients() -> list[str]:
    """Names of the HTTP clients importable here, preferred first."""
    names = []
    try:
        import aiohttp  # noqa: F401

        names.append("aiohttp")
    except ImportError:
        pass
    names.append("httpx")
    return names


def make_client(name: str, *, connections: int, timeout: float) -> HttpClient:
    """Build the named client (``aiohttp`` or ``httpx``)."""
    if name == "aiohttp":
        return AiohttpClient(connections=connections, timeout=timeout)
    if name == "httpx":
        return HttpxClient(connections=connections, timeout=timeout)
    raise ValueError(f"unknown HTTP client {name!r}")


def http_call(
    client: HttpClient,
    method: str,
    url: str,
    *,
    json: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    keep_body: bool = False,
) -> Call:
    """An operation sending one HTTP request; the body is encoded now, outside the timing."""
    body = orjson.dumps(json) if json is not None else None
    headers = {**JSON_HEADERS, **(headers or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"

    async def call() -> Outcome:
        status, raw = await client.send(method, url, body, headers)
        return parse_outcome(status, raw, keep_body=keep_body)

    return call


def parse_outcome(status: int, raw: bytes, *, keep_body: bool) -> Outcome:
    """Status plus the envelope's errorCode (non-2xx) and, when asked, the parsed body."""
    if status < 400 and not keep_body:
        return Outcome(status)
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return Outcome(status, "NON_JSON_BODY" if status >= 400 else "")
    code = ""
    if status >= 400:
        code = (
            str(parsed.get("errorCode", "NO_ERROR_CODE"))
            if isinstance(parsed, dict)
            else ("NO_ERROR_CODE")
        )
    return Outcome(status, code, parsed if keep_body else None)
