"""The two HTTP targets behind one surface: tripquote (the contract) and the bare peer.

A target turns a plan item into a request (create or version-carrying full save), a notes
edit into a PATCH (hot quote, contention) and reads a quote's version and notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bench.limit import BareWorld, bare_request
from bench.loadgen import Call, HttpClient, Outcome, http_call
from bench.payloads import Fixture, bare_body, create_body, update_body
from bench.world import PlanItem, Quote


class Target(Protocol):
    """What the HTTP scenarios need from a service."""

    name: str
    base_url: str

    def save_call(self, client: HttpClient, item: PlanItem) -> Call: ...

    def notes_call(
        self, client: HttpClient, quote: Quote, *, version: int, notes: str, actor: int | None
    ) -> Call: ...

    def read_call(self, client: HttpClient, quote: Quote, *, actor: int | None) -> Call: ...


def correlation(item: PlanItem) -> dict[str, str]:
    """``X-Correlation-ID: bench-<kind>-<seq>``: joins a bench result to the server's logs."""
    return {"X-Correlation-ID": f"bench-{item.kind}-{item.seq}"}


def read_version_notes(outcome: Outcome) -> tuple[int, str]:
    """(version, notes) from a read response body of either target."""
    body: Any = outcome.body
    if outcome.status != 200 or not isinstance(body, dict):
        raise RuntimeError(f"read failed: {outcome.status} {outcome.code}")
    return int(body["version"]), str((body.get("quote") or {}).get("notes") or "")


@dataclass
class TripquoteTarget:
    """tripquote per the contract: bearer tokens, clients owned by their agent."""

    base_url: str
    fixtures: list[Fixture]
    tokens: list[str]  # regular agents (burst and hot owners)
    client_ids: list[str]  # one client per regular agent
    actor_tokens: list[str]  # contention agents (agency admins)
    name: str = "tripquote"

    def save_call(self, client: HttpClient, item: PlanItem) -> Call:
        """POST a create or PATCH a full-form save carrying the version in the body."""
        fixture = self.fixtures[item.fixture]
        token = self.tokens[item.owner]
        if item.kind == "update" and item.quote is not None:
            return http_call(
                client,
                "PATCH",
                f"{self.base_url}/api/agents/quotes/{item.quote.id}",
                json=update_body(fixture, version=item.version, seq=item.seq),
                token=token,
                headers=correlation(item),
                keep_body=True,
            )
        return http_call(
            client,
            "POST",
            f"{self.base_url}/api/agents/quotes",
            json=create_body(fixture, client_id=self.client_ids[item.owner], seq=item.seq),
            token=token,
            headers=correlation(item),
            keep_body=True,
        )

    def _token(self, quote: Quote, actor: int | None) -> str:
        return self.tokens[quote.owner] if actor is None else self.actor_tokens[actor]

    def notes_call(
        self, client: HttpClient, quote: Quote, *, version: int, notes: str, actor: int | None
    ) -> Call:
        """A partial PATCH: ``{"version": v, "notes": notes}``."""
        return http_call(
            client,
            "PATCH",
            f"{self.base_url}/api/agents/quotes/{quote.id}",
            json={"version": version, "notes": notes},
            token=self._token(quote, actor),
            keep_body=True,
        )

    def read_call(self, client: HttpClient, quote: Quote, *, actor: int | None) -> Call:
        """GET the quote (``{version, quote: {notes, ...}}``)."""
        return http_call(
            client,
            "GET",
            f"{self.base_url}/api/agents/quotes/{quote.id}",
            token=self._token(quote, actor),
            keep_body=True,
        )


@dataclass
class PeerTarget:
    """The bare peer: no auth; agent ids in headers; totals precomputed in the body."""

    base_url: str
    fixtures: list[Fixture]
    world: BareWorld
    name: str = "peer"

    def _headers(self, owner: int) -> dict[str, str]:
        return {
            "X-Agent-Id": self.world.agent_ids[owner % len(self.world.agent_ids)],
            "X-Agency-Id": self.world.agency_id,
        }

    def save_call(self, client: HttpClient, item: PlanItem) -> Call:
        """POST /quotes or PATCH /quotes/{id} with the full bare body."""
        body = bare_request(self.world, self.fixtures, item)
        if item.kind == "update" and item.quote is not None:
            return http_call(
                client,
                "PATCH",
                f"{self.base_url}/quotes/{item.quote.id}",
                json=body,
                headers=self._headers(item.owner),
                keep_body=True,
            )
        return http_call(
            client,
            "POST",
            f"{self.base_url}/quotes",
            json=body,
            headers=self._headers(item.owner),
            keep_body=True,
        )

    def notes_call(
        self, client: HttpClient, quote: Quote, *, version: int, notes: str, actor: int | None
    ) -> Call:
        """The peer only does full saves: the fixture body with these notes."""
        fixture = self.fixtures[quote.fixture]
        body = bare_body(fixture, update_body(fixture, version=version, seq=0))
        body["tripName"] = fixture.request["tripName"]
        body["notes"] = notes
        owner = quote.owner if actor is None else actor
        return http_call(
            client,
            "PATCH",
            f"{self.base_url}/quotes/{quote.id}",
            json=body,
            headers=self._headers(owner),
            keep_body=True,
        )

    def read_call(self, client: HttpClient, quote: Quote, *, actor: int | None) -> Call:
        """GET /quotes/{id} → {version, quote: {notes}}."""
        return http_call(client, "GET", f"{self.base_url}/quotes/{quote.id}", keep_body=True)
