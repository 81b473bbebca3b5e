"""A bounded burst of quote creates and patches against a served process, every answer checked
as it arrives: 201/200, a version conflict, or a retryable 503 envelope, and nothing else."""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, quote_body
from tests.faults.integrity import Ack
from tests.servers import wait_until

RETRYABLE_503 = frozenset(
    {
        "QUOTE_PERSISTENCE_FAILED",
        "DATABASE_TIMEOUT",
        "DATABASE_TRANSACTION_ABORTED",
        # A save whose COMMIT the stop cut off, its outcome looked for in vain while the
        # server stays down: not acknowledged, and never "nothing was written".
        "SAVE_OUTCOME_UNKNOWN",
    }
)
FIXTURE = "iceland-ring-road-eur"


def check_retryable_503(response: httpx.Response) -> str:
    """Assert ``response`` is a retryable 503 envelope with Retry-After; its error code."""
    code = response.json().get("errorCode") if response.status_code == 503 else None
    assert code in RETRYABLE_503, f"{response.status_code} {response.text}"
    body = assert_envelope(response, str(code), 503)
    assert body["retryable"] is True, body
    assert int(response.headers["retry-after"]) >= 1, response.headers
    return str(code)


@dataclass(frozen=True)
class Outcome:
    """One answered request of the burst."""

    kind: str  # "create" or "patch"
    status: int
    code: str | None
    seconds: float


class Burst:
    """Workers fire creates and patches until ``finish()`` or ``max_requests``; ``pause()`` and
    ``resume()`` hold new requests back (requests in flight go on)."""

    def __init__(self, client: httpx.AsyncClient, actors: list[Actor], *, seed: int = 7) -> None:
        self.client = client
        self.actors = actors
        self.random = random.Random(seed)
        self.versions: dict[str, tuple[Actor, int]] = {}  # quote id -> (owner, last seen)
        self.outcomes: list[Outcome] = []
        self.acks: list[Ack] = []
        self.problems: list[str] = []
        self.issued = 0
        self._open = asyncio.Event()
        self._open.set()
        self._done = False

    # --- progress -------------------------------------------------------------------------

    @property
    def completed(self) -> int:
        return len(self.outcomes)

    @property
    def successes(self) -> int:
        return sum(1 for o in self.outcomes if o.status in (200, 201))

    @property
    def failures(self) -> int:
        return sum(1 for o in self.outcomes if o.status == 503)

    def codes(self) -> Counter[str]:
        """How many answers of each kind: ``201``, ``409 QUOTE_CONFLICT_VERSION``, …"""
        return Counter(f"{o.kind} {o.status} {o.code or ''}".strip() for o in self.outcomes)

    async def wait_for(self, condition: Callable[[], bool], *, within: float, what: str) -> None:
        """Bounded wait until ``condition()`` holds (polled), failing on a worker problem."""

        async def probe() -> bool:
            assert not self.problems, self.problems[:5]
            return condition()

        await wait_until(probe, within=within, what=what, every=0.02)

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def finish(self) -> None:
        self._done = True
        self._open.set()

    # --- requests -------------------------------------------------------------------------

    async def seed_quotes(self, count: int) -> None:
        """Create ``count`` quotes (round-robin over the actors) before any fault."""
        for n in range(count):
            response = await self._create(self.actors[n % len(self.actors)], f"seed {n}")
            assert response.status_code == 201, response.text

    async def run(self, *, concurrency: int, max_requests: int) -> None:
        """Fire requests from ``concurrency`` workers; returns when finished or at the cap."""

        async def worker() -> None:
            while True:
                await self._open.wait()
                if self._done or self.issued >= max_requests:
                    return
                self.issued += 1
                await self._one(self.issued)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def _one(self, n: int) -> None:
        started = time.monotonic()
        patch = self.versions and self.random.random() < 0.6
        try:
            if patch:
                quote_id = self.random.choice(sorted(self.versions))
                response, trip_name = await self._patch(quote_id, n)
            else:
                actor = self.actors[n % len(self.actors)]
                trip_name = f"burst create {n}"
                response = await self._create(actor, trip_name)
        except httpx.HTTPError as exc:
            self.problems.append(f"request {n}: transport error {exc!r}")
            return
        kind = "patch" if patch else "create"
        code = None
        try:
            code = self._check(kind, response, trip_name)
        except AssertionError as exc:
            self.problems.append(f"{kind} {n}: {exc}")
        self.outcomes.append(Outcome(kind, response.status_code, code, time.monotonic() - started))

    async def _create(self, actor: Actor, trip_name: str) -> httpx.Response:
        body = {**quote_body(FIXTURE, actor.client_id), "tripName": trip_name}
        response = await self.client.post("/api/agents/quotes", json=body, headers=actor.headers)
        if response.status_code == 201:
            self.versions[response.json()["quoteId"]] = (actor, 1)
        return response

    async def _patch(self, quote_id: str, n: int) -> tuple[httpx.Response, str]:
        actor, version = self.versions[quote_id]
        trip_name = f"burst patch {n}"
        body: dict[str, Any] = {"version": version, "tripName": trip_name}
        if n % 2:  # replace the items too: a partial write would show in the sums
            items = copy.deepcopy(quote_body(FIXTURE, actor.client_id)["items"])
            keep = items[: 1 + n % len(items)]
            for item in keep:
                item["quantity"] = 1 + (n + item["quantity"]) % 5
            body["items"] = keep
        response = await self.client.patch(
            f"/api/agents/quotes/{quote_id}", json=body, headers=actor.headers
        )
        return response, trip_name

    def _check(self, kind: str, response: httpx.Response, trip_name: str) -> str | None:
        """Assert the answer is allowed; remember acknowledged saves and newer versions."""
        status = response.status_code
        if status in (200, 201) and (kind, status) in (("create", 201), ("patch", 200)):
            body = response.json()
            assert body["success"] is True and body["quote"]["tripName"] == trip_name, body
            quote_id, version = body["quoteId"], int(body["version"])
            self.acks.append(Ack(quote_id, version, trip_name))
            self._saw_version(quote_id, version)
            return None
        if status == 409 and kind == "patch":
            body = assert_envelope(response, "QUOTE_CONFLICT_VERSION", 409)
            self._saw_version(body["details"]["quoteId"], int(body["details"]["actualVersion"]))
            return "QUOTE_CONFLICT_VERSION"
        return check_retryable_503(response)

    def _saw_version(self, quote_id: str, version: int) -> None:
        actor, known = self.versions[quote_id]
        self.versions[quote_id] = (actor, max(known, version))
