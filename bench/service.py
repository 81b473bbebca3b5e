"""Driving tripquote through its contract: the ``tripquote`` command and the HTTP API.

Everything here goes through the documented surface (``tripquote db upgrade``, ``agencies
create``, ``agents create``, ``token``, ``serve``; ``POST /api/agents/clients``), never
through tripquote's Python modules, so the bench measures and checks what a user gets.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import procs
from bench.loadgen import HttpClient, http_call, run_bounded

REPO = Path(__file__).resolve().parent.parent


def executable() -> str | None:
    """The ``tripquote`` command of this interpreter's environment, or on PATH."""
    sibling = Path(sys.executable).with_name("tripquote")
    if sibling.exists():
        return str(sibling)
    return shutil.which("tripquote")


def unavailable_reason() -> str | None:
    """Why the tripquote scenarios cannot run here, or None when they can."""
    if executable() is None:
        return "the `tripquote` command is not installed in this environment"
    if not (REPO / "src" / "tripquote" / "app.py").exists():
        return "src/tripquote/app.py does not exist yet"
    return None


def service_env(database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the bench gives tripquote: the contract's four settings (+ extras)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPQUOTE_")}
    env.update(
        TRIPQUOTE_DATABASE_URL=database_url,
        TRIPQUOTE_JWT_SECRET=secrets.token_urlsafe(48),
        TRIPQUOTE_RATE_LIMIT="1000000/minute",
        TRIPQUOTE_PUBLIC_RATE_LIMIT="1000000/minute",
        TRIPQUOTE_MAX_OPEN_QUOTES_PER_AGENT="1000000",
    )
    env.update(extra or {})
    return env


async def cli(env: dict[str, str], *args: str, within: float = 120.0) -> Any:
    """Run ``tripquote ARGS`` and return its JSON output (the last JSON line printed)."""
    exe = executable()
    if exe is None:
        raise RuntimeError("tripquote is not installed")
    process = await asyncio.create_subprocess_exec(
        exe,
        *args,
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"tripquote {' '.join(args)} timed out after {within}s") from None
    if process.returncode != 0:
        raise RuntimeError(
            f"tripquote {' '.join(args)} exited {process.returncode}: "
            f"{err.decode(errors='replace')[-2000:]}"
        )
    for line in reversed(out.decode().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return orjson.loads(line)
    return None


async def upgrade(env: dict[str, str]) -> None:
    """``tripquote db upgrade`` (the schema via its migrations)."""
    await cli(env, "db", "upgrade", within=300)


def start(env: dict[str, str], *, workers: int, log_dir: Path) -> procs.Server:
    """``tripquote serve --host 127.0.0.1 --port P --workers N`` in its own process group."""
    exe = executable()
    assert exe is not None
    port = procs.free_port()
    argv = [exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    env = {"TRIPQUOTE_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", **env}  # its own links
    return procs.start(f"tripquote-w{workers}", argv, env=env, port=port, log_dir=log_dir)


@dataclass
class World:
    """Who saves what: regular agents (one client each) and admin agents for contention."""

    agency_id: str
    agent_ids: list[str]
    tokens: list[str]
    client_ids: list[str]
    admin_ids: list[str]
    admin_tokens: list[str]
    admin_client_id: str


async def make_world(
    env: dict[str, str],
    client: HttpClient,
    base_url: str,
    *,
    agents: int,
    admins: int,
    tag: str,
    parallel: int = 4,
) -> World:
    """One agency; ``agents`` agents and ``admins`` admins with tokens; one client each."""
    agency = await cli(env, "agencies", "create", f"Bench Travel {tag}", "--json")
    agency_id = str(agency["id"])
    gate = asyncio.Semaphore(parallel)

    async def agent(email: str, role: str) -> tuple[str, str]:
        async with gate:
            created = await cli(
                env,
                "agents",
                "create",
                "--agency",
                agency_id,
                "--email",
                email,
                "--role",
                role,
                "--json",
            )
            agent_id = str(created["id"])
            minted = await cli(env, "token", "--agent", agent_id, "--ttl", "7200", "--json")
            return agent_id, str(minted["token"])

    regular = await asyncio.gather(
        *(agent(f"agent{i}.{tag}@bench.example", "agent") for i in range(agents))
    )
    admin = await asyncio.gather(
        *(agent(f"admin{i}.{tag}@bench.example", "admin") for i in range(max(1, admins)))
    )
    owners = [token for _, token in regular] + [admin[0][1]]
    burst = await run_bounded(
        [
            (
                "client",
                http_call(
                    client,
                    "POST",
                    f"{base_url}/api/agents/clients",
                    json={"name": f"Client {i}", "email": f"c{i}.{tag}@bench.example"},
                    token=token,
                    keep_body=True,
                ),
            )
            for i, token in enumerate(owners)
        ],
        concurrency=8,
    )
    client_ids = []
    for result in burst.results:
        if result.status != 201:
            raise RuntimeError(f"client create failed: {result.status} {result.code}")
        client_ids.append(str(result.body["client"]["id"]))
    return World(
        agency_id=agency_id,
        agent_ids=[a for a, _ in regular],
        tokens=[t for _, t in regular],
        client_ids=client_ids[:-1],
        admin_ids=[a for a, _ in admin],
        admin_tokens=[t for _, t in admin],
        admin_client_id=client_ids[-1],
    )
