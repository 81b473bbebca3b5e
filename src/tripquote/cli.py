"""The ``tripquote`` command: serve, migrate, manage agencies/agents/tokens, demo data."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from zoneinfo import available_timezones

import typer
from alembic.util import CommandError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import make_url, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from typer.exceptions import TyperException

from tripquote.agents import repository as agents_repo
from tripquote.agents.auth import lifetime_allowed, mint_token
from tripquote.agents.service import AgentRefused, AgentService
from tripquote.config import DEFAULT_JWT_SECRET, Settings, configuration_error
from tripquote.db import embedded, migrate
from tripquote.db.engine import PoolerMisconfigured, check_pooler, create_engine, warm_pool
from tripquote.db.tables import agents, clients
from tripquote.demo import DEMO_QUOTE, demo_curl, demo_lifecycle, send_demo_quote
from tripquote.errors import TripquoteError
from tripquote.observability.cli import ops_app
from tripquote.proposals.board import create_board
from tripquote.quotes.schemas import has_control
from tripquote.webhooks.cli import webhooks_app

T = TypeVar("T")

app = typer.Typer(
    help="tripquote: travel quotes saved exactly once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# No no_args_is_help on the groups: a group without its command is click's usage error
# ("Missing command."), one JSON line like every other (``main``), not the help box.
db_app = typer.Typer(help="Schema migrations (Alembic).")
agencies_app = typer.Typer(help="Agencies.")
agents_app = typer.Typer(help="Agents.")
app.add_typer(db_app, name="db")
app.add_typer(agencies_app, name="agencies")
app.add_typer(agents_app, name="agents")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def cli_settings() -> Settings:
    """The settings of a command, its database URL resolved (``TRIPQUOTE_DATABASE_URL``, else
    the embedded PostgreSQL, started or reused), or its one JSON error line and exit: 2 for a
    configuration error, 1 when the embedded PostgreSQL cannot start or its folder is not one."""
    try:
        settings = Settings()
    except ValueError as exc:  # ValidationError; SettingsError (a value it cannot decode)
        event = {
            "level": "error",
            "event": "configuration_error",
            "error": configuration_error(exc),
        }
        typer.echo(json.dumps(event), err=True)
        raise typer.Exit(2) from None
    try:
        return embedded.resolve(settings)
    except embedded.NotADataFolder as exc:
        _refuse("embedded_database_refused", str(exc))
    except (OSError, subprocess.SubprocessError) as exc:
        data_dir = embedded.data_folder(settings)
        _refuse(
            "embedded_database_failed",
            f"The embedded PostgreSQL in {data_dir} did not start ({type(exc).__name__}); its "
            f"log: {data_dir / 'log'}. Or set TRIPQUOTE_DATABASE_URL to a PostgreSQL server.",
        )


_NAME_MAX = 200  # agencies.name and agents.name are VARCHAR(200)
_NO_CONTROL_IN_NAME = (
    "A name must not contain control characters (bidirectional overrides included)."
)

_NOT_A_PLACE = frozenset({"localtime", "Factory"})
"""Names the time zone database holds that are no agency's zone: ``localtime`` is each host's
own (a send's expiry would depend on the host serving it), ``Factory`` a placeholder."""


def _refuse(event: str, error: str, status: int = 1) -> NoReturn:
    """One JSON error line on stderr (``event``, ``error``), then exit with ``status``."""
    typer.echo(json.dumps({"level": "error", "event": event, "error": error}), err=True)
    raise typer.Exit(status)


def _emit(payload: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(payload) if as_json else text)


def _in_transaction(settings: Settings, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    backlog: Annotated[
        int,
        typer.Option(
            min=1,
            max=65535,
            help="Connections the kernel queues until a worker accepts them (capped by "
            "net.core.somaxconn); past it, a new connection's SYN is retried 1 s later.",
        ),
    ] = 4096,
) -> None:
    """Run the HTTP API with uvicorn (JSON logs; metrics shared across workers)."""
    settings = cli_settings()
    _refuse_the_published_secret_off_loopback(settings, host)
    # The app (each worker: a process of its own) reads its settings from the environment:
    # this process resolved the database once, the embedded one included.
    os.environ["TRIPQUOTE_DATABASE_URL"] = settings.require_database_url()
    settings = _links_to(settings, host=host, port=port)
    created: list[str] = []  # the workers' metrics files and board, removed when serving ends
    if workers > 1:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            created.append(tempfile.mkdtemp(prefix="tripquote-metrics-"))
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = created[-1]
        created.append(tempfile.mkdtemp(prefix="tripquote-board-"))
        board = Path(created[-1]) / "board"
        create_board(board)
        os.environ["TRIPQUOTE_WORKER_BOARD"] = str(board)
    _refuse_a_misconfigured_pooler(settings)
    try:
        _run_uvicorn(settings, host=host, port=port, workers=workers, backlog=backlog)
    finally:
        for folder in created:
            shutil.rmtree(folder, ignore_errors=True)


def _refuse_the_published_secret_off_loopback(settings: Settings, host: str) -> None:
    """``configuration_error`` (exit status 2) for serving on an address other machines reach
    with the development secret, which the repository publishes: anyone could sign an admin's
    token with it. On loopback (``demo``, a developer's ``serve``) it is the zero-setup default."""
    if settings.jwt_secret.get_secret_value() != DEFAULT_JWT_SECRET:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: other machines may reach it
        loopback = False
    if not loopback:
        _refuse(
            "configuration_error",
            f"TRIPQUOTE_JWT_SECRET is the published development secret: anyone could sign a "
            f"token with it. Set a random one (e.g. openssl rand -hex 32) to serve on {host}, "
            "or serve on 127.0.0.1.",
            status=2,
        )


def _links_to(settings: Settings, *, host: str, port: int) -> Settings:
    """``settings`` whose client links (``TRIPQUOTE_PUBLIC_BASE_URL``) point at the server
    about to listen on ``host``:``port`` when the setting is unset (a wildcard address: at
    127.0.0.1), also for the workers, which read the environment."""
    if "public_base_url" in settings.model_fields_set:
        return settings
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    base_url = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    os.environ["TRIPQUOTE_PUBLIC_BASE_URL"] = base_url
    return settings.model_copy(update={"public_base_url": base_url})


def _refuse_a_misconfigured_pooler(settings: Settings) -> None:
    """Before any worker starts: TRIPQUOTE_DB_POOLER=none in front of a pooler that refuses its
    startup parameters (``db.engine.check_pooler``) is one ``configuration_error`` line and
    exit status 2, as every other configuration error, whatever ``--workers`` (a worker's
    failed start-up would end a multi-worker ``serve`` with status 0). A database that is down
    only delays readiness: serving goes on."""

    async def probe() -> str | None:
        engine = create_engine(settings)
        try:
            failure = await warm_pool(engine, 1)
            if failure is not None:
                await check_pooler(engine, settings, failure)
        except PoolerMisconfigured as error:
            return str(error)
        finally:
            await engine.dispose()
        return None

    problem = asyncio.run(probe())
    if problem is not None:
        _refuse("configuration_error", problem, status=2)


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(0)


def _run_uvicorn(settings: Settings, *, host: str, port: int, workers: int, backlog: int) -> None:
    """Serve until SIGTERM or SIGINT. SIGTERM ends the process as SystemExit(0): one worker is
    uvicorn's own server, which after its graceful shutdown raises the signal again with the
    handler found before it; SIGTERM's default would kill the process before its exit hooks,
    leaving the embedded PostgreSQL running (``db/embedded.py``)."""
    import signal

    import uvicorn

    from tripquote.observability.logging import uvicorn_log_config
    from tripquote.protocol import EnvelopeProtocol

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    uvicorn.run(
        "tripquote.app:create_app",
        factory=True,
        http=EnvelopeProtocol,  # an unparsable request's 400 is the envelope too
        host=host,
        port=port,
        workers=workers,
        backlog=backlog,
        log_config=uvicorn_log_config(settings),
        access_log=False,  # the app writes its own access line, with correlation ID and duration
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=15,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    settings = cli_settings()  # its own exits are not refusals (click's Exit is a RuntimeError)
    with _migration_refusals("upgrade"):
        migrate.upgrade(settings, revision)


@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target, e.g. -1 or base.")]) -> None:
    """Revert migrations down to REVISION."""
    settings = cli_settings()  # its own exits are not refusals (click's Exit is a RuntimeError)
    with _migration_refusals("downgrade"):
        migrate.downgrade(settings, revision)


@contextlib.contextmanager
def _migration_refusals(command: str) -> Iterator[None]:
    """A migration that refuses (it would lose data) or an unknown revision: one JSON error
    line and exit status 1, not a traceback. The migration ran in a transaction: nothing
    changed."""
    try:
        yield
    except (RuntimeError, CommandError) as exc:
        event = {"level": "error", "event": f"db_{command}_refused", "error": str(exc)}
        typer.echo(json.dumps(event), err=True)
        raise typer.Exit(1) from None


@db_app.command("current")
def db_current(as_json: JsonFlag = False) -> None:
    """Print the database's current revision ("not migrated" when it has none)."""
    at = migrate.current(cli_settings())
    head, _ = migrate.revisions()
    if not at:
        payload = {"revision": None, "head": False, "hint": "Run: tripquote db upgrade"}
        _emit(payload, as_json, "not migrated (run: tripquote db upgrade)")
        return
    for revision in at:
        line = f"{revision} (head)" if revision == head else revision
        _emit({"revision": revision, "head": revision == head}, as_json, line)


@agencies_app.command("create")
def agencies_create(
    name: str,
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Paris.")] = "UTC",
    as_json: JsonFlag = False,
) -> None:
    """Create an agency; prints its id."""
    name = name.strip()
    if not name or len(name) > _NAME_MAX:
        _refuse("agency_refused", f"The agency's name must be 1-{_NAME_MAX} characters.", status=2)
    if has_control(name):  # shown on the client's page, as the API's text fields
        _refuse("agency_refused", _NO_CONTROL_IN_NAME, status=2)
    if timezone not in available_timezones() or timezone in _NOT_A_PLACE:
        _refuse("agency_refused", f"unknown IANA time zone: {timezone}", status=2)

    agency_id = _agents(
        cli_settings(), lambda service: service.create_agency(name=name, timezone=timezone)
    )
    _emit({"id": agency_id, "name": name, "timezone": timezone}, as_json, agency_id)


@agents_app.command("create")
def agents_create(
    agency: Annotated[str, typer.Option(help="Agency id.")],
    email: Annotated[str, typer.Option(help="The agent's e-mail (unique).")],
    role: Annotated[str, typer.Option(help="agent or admin.")] = "agent",
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create an agent in an agency; prints its id."""
    if len(name) > _NAME_MAX:
        _refuse(
            "agent_refused", f"The agent's name must be at most {_NAME_MAX} characters.", status=2
        )
    if has_control(name):
        _refuse("agent_refused", _NO_CONTROL_IN_NAME, status=2)
    if role not in ("agent", "admin"):
        _refuse("agent_refused", "role must be agent or admin", status=2)
    try:
        email = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        _refuse("agent_refused", f"invalid e-mail: {exc}", status=2)

    agent_id = _agents(
        cli_settings(),
        lambda service: service.create_agent(agency_id=agency, email=email, name=name, role=role),
        refusal="agent_refused",
    )
    _emit({"id": agent_id, "agencyId": agency, "role": role}, as_json, agent_id)


@agents_app.command("disable")
def agents_disable(agent_id: str, as_json: JsonFlag = False) -> None:
    """Disable an agent: its tokens then get AGENT_NOT_FOUND."""

    _agents(
        cli_settings(), lambda service: service.disable(agent_id=agent_id), refusal="agent_refused"
    )
    _emit({"id": agent_id, "active": False}, as_json, agent_id)


token_app = typer.Typer(help="Bearer tokens: mint one (--agent ID) or revoke an agent's.")
app.add_typer(token_app, name="token")


@token_app.callback(invoke_without_command=True)
def token(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option(help="Agent id (required to mint).")] = None,
    ttl: Annotated[
        int, typer.Option(min=1, help="Lifetime in seconds (at most TOKEN_MAX_TTL_SECONDS).")
    ] = 3600,
    as_json: JsonFlag = False,
) -> None:
    """Mint a bearer token (HS256 JWT) for an existing, active agent."""
    if ctx.invoked_subcommand is not None:
        return
    if agent is None:
        raise typer.BadParameter("is required to mint a token", param_hint="'--agent'")
    settings = cli_settings()
    if not lifetime_allowed(settings, ttl):
        raise typer.BadParameter(
            f"at most {settings.token_max_ttl_seconds} seconds (TRIPQUOTE_TOKEN_MAX_TTL_SECONDS)",
            param_hint="'--ttl'",
        )

    minted = _agents(
        settings,
        lambda service: service.token(agent_id=agent, ttl_seconds=ttl),
        refusal="token_refused",
    )
    _emit({"token": minted, "agentId": agent, "ttlSeconds": ttl}, as_json, minted)


@token_app.command("revoke")
def token_revoke(
    agent: Annotated[str, typer.Option(help="Agent id.")], as_json: JsonFlag = False
) -> None:
    """Refuse every token of an agent minted until now (it stays active; mint it a new one)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    _agents(
        cli_settings(),
        lambda service: service.revoke_tokens(agent_id=agent, now=now),
        refusal="token_refused",
    )
    _emit({"agentId": agent, "tokensValidAfter": now.isoformat()}, as_json, now.isoformat())


DEMO_LOCK = 0x7472_6970_4445_4D4F
"""The PostgreSQL advisory lock the demo's data load holds for its transaction."""


@app.command()
def demo(
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the API afterwards.")
    ] = True,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    as_json: JsonFlag = False,
) -> None:
    """Migrate, load a demo agency/agent/client, print a token and a curl, then serve."""
    if serve_after:
        _port_free(host, port)  # before anything is written or printed for that address
    settings = cli_settings()
    if serve_after:  # refused by serve() too, but only after the demo data was written
        _refuse_the_published_secret_off_loopback(settings, host)
    migrate.upgrade(settings)
    email = "demo.agent@tripquote.example"

    async def work(conn: AsyncConnection) -> tuple[str, str, str]:
        # Two demos at once: the second waits for the first's commit, then finds its data.
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DEMO_LOCK})
        row = (
            await conn.execute(
                select(agents.c.id, agents.c.agency_id).where(agents.c.email == email)
            )
        ).first()
        if row is None:
            agency_id = await agents_repo.insert_agency(
                conn, name="Demo Travel", timezone="Europe/Paris"
            )
            agent_id = await agents_repo.insert_agent(
                conn, agency_id=agency_id, email=email, name="Demo Agent", role="agent"
            )
        else:
            agent_id, agency_id = row.id, row.agency_id
        client = (
            await conn.execute(select(clients.c.id).where(clients.c.agent_id == agent_id))
        ).first()
        if client is not None:
            return agency_id, agent_id, client.id
        from tripquote.agents.repository import load_principal
        from tripquote.clients.repository import insert_client

        principal = await load_principal(conn, agent_id)
        assert principal is not None
        from datetime import UTC, datetime

        created = await insert_client(
            conn,
            principal=principal,
            name="Aiko Tanaka",
            email=None,
            phone=None,
            now=datetime.now(UTC),
        )
        return agency_id, agent_id, str(created["id"])

    agency_id, agent_id, client_id = _in_transaction(settings, work)
    ttl = min(7 * 24 * 3600, settings.token_max_ttl_seconds)
    minted = mint_token(settings, agent_id=agent_id, ttl_seconds=ttl)
    body_path = Path("tripquote-demo-quote.json").resolve()
    body_path.write_text(json.dumps({**DEMO_QUOTE, "clientId": client_id}, indent=1))
    base_url = f"http://{host}:{port}"
    settings = _links_to(settings, host=host, port=port)
    from tripquote.observability.context import new_correlation_id

    correlation_id = new_correlation_id()
    sent = _with_runner(
        settings,
        lambda runner: send_demo_quote(
            runner, settings, agent_id=agent_id, client_id=client_id,
            correlation_id=correlation_id,
        ),
    )  # fmt: skip
    payload = {
        "agencyId": agency_id,
        "agentId": agent_id,
        "clientId": client_id,
        "token": minted,
        "baseUrl": base_url,
        "quoteBody": str(body_path),
        "curl": demo_curl(base_url, minted, body_path),
        "proposal": sent,
    }
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        typer.echo(
            f"\nDemo data ready (database: {make_url(settings.require_database_url())}).\n"
            f"  agency {agency_id}\n  agent  {agent_id}\n  client {client_id}\n\n"
            f"Bearer token (valid {ttl // 3600} h):\n  {minted}\n\n"
            f"Create the Kyoto quote (in another terminal, from this folder):\n"
            f"  {payload['curl']}\n\n"
            f"Then its life, with QUOTE=<quoteId from the answer> and TOKEN=<the token above>:\n"
            f"{demo_lifecycle(base_url)}\n"
            f"The Kyoto quote, sent to the client: open its proposal in a browser, accept it,\n"
            f"then GET /api/agents/quotes/{sent['quoteId']}/proposal shows the signer:\n"
            f"  {sent['url']}\n"
            f"  (PDF: {sent['url']}/pdf)\n\n"
            f"OpenAPI: {base_url}/docs   Health: {base_url}/health/ready\n"
        )
    if serve_after:
        serve(host=host, port=port, workers=1)


def _port_free(host: str, port: int) -> None:
    """Exit (``address_in_use``, status 1) unless ``host:port`` can be bound now, as the server
    will bind it (SO_REUSEADDR, as uvicorn): a demo whose server cannot start sends no quote
    and prints no commands that would reach another server on that port."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as exc:
        _refuse(
            "address_in_use",
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}): another server may use "
            'it. Stop it, or choose another port: make demo DEMO_ARGS="--port 8100".',
        )


def _with_runner(settings: Settings, use: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``use(runner)`` with a transaction runner on a fresh engine (metrics in-process)."""
    from tripquote.db.transaction import TransactionRunner
    from tripquote.observability.operations import Observer

    async def run() -> T:
        engine = create_engine(settings)
        try:
            runner = TransactionRunner(
                engine=engine, settings=settings, observer=Observer(settings)
            )
            return await use(runner)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _agents(
    settings: Settings,
    use: Callable[[AgentService], Awaitable[T]],
    *,
    refusal: str = "agency_refused",
) -> T:
    """Run ``use`` on an ``AgentService``; its refusal is one JSON error line, exit status 1."""
    try:
        return _with_runner(
            settings, lambda runner: use(AgentService(runner=runner, settings=settings))
        )
    except AgentRefused as exc:
        _refuse(refusal, str(exc))


@app.command()
def expire(
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Quotes per transaction.")
    ] = 500,
    as_json: JsonFlag = False,
) -> None:
    """Write EXPIRED on every SENT quote past its expiresAt (safe to run on several hosts)."""
    from tripquote.observability.context import new_correlation_id
    from tripquote.proposals.links import LinkKeys
    from tripquote.quotes.rules import Limits
    from tripquote.quotes.service import QuoteService
    from tripquote.quotes.store import QuoteStore

    settings = cli_settings()
    correlation_id = new_correlation_id()

    async def use(runner: Any) -> int:
        quotes = QuoteService(
            store=QuoteStore(runner, open_limit=settings.max_open_quotes_per_agent),
            limits=Limits.from_settings(settings),
            links=LinkKeys(settings.jwt_secret.get_secret_value()),
        )
        return await quotes.expire_due(batch_size=batch_size, correlation_id=correlation_id)

    count = _with_runner(settings, use)
    _emit({"expired": count, "correlationId": correlation_id}, as_json, f"expired {count} quotes")


idempotency_app = typer.Typer(help="Idempotency keys.")
app.add_typer(idempotency_app, name="idempotency")


@idempotency_app.command("purge")
def idempotency_purge(as_json: JsonFlag = False) -> None:
    """Delete idempotency keys older than their 24 h retention, 1,000 per transaction."""
    from datetime import UTC, datetime

    settings = cli_settings()

    async def use(runner: Any) -> int:
        purged: int = await _idempotency_store(settings, runner).purge(now=datetime.now(UTC))
        return purged

    count = _with_runner(settings, use)
    _emit({"purged": count}, as_json, f"purged {count} idempotency keys")


def _idempotency_store(settings: Settings, runner: Any) -> Any:
    from datetime import timedelta

    from tripquote.idempotency import IdempotencyStore

    return IdempotencyStore(
        runner=runner,
        ttl=timedelta(hours=settings.idempotency_ttl_hours),
        abandon_after=timedelta(seconds=3 * settings.tx_timeout_seconds),
    )


@app.command()
def maintenance(as_json: JsonFlag = False) -> None:
    """Retention: daily partitions made ahead and those past their retention dropped
    (operation records, webhook events and deliveries), expired idempotency keys purged; one
    run at a time (safe to start on several hosts)."""
    from datetime import UTC, datetime

    from tripquote.db.retention import run_maintenance

    settings = cli_settings()
    if settings.db_pooler == "transaction":
        # Its one-run-at-a-time lock is a session advisory lock (a concurrent DETACH cannot run
        # in a transaction): behind a transaction pooler its lock and unlock land on server
        # connections it does not own, the lock stays held by a pooled connection (every later
        # run skipped) and two runs may both take it.
        _refuse(
            "configuration_error",
            "tripquote maintenance needs a session of its own: run it with "
            "TRIPQUOTE_DATABASE_URL naming PostgreSQL itself (or a session-mode pool) and "
            "TRIPQUOTE_DB_POOLER unset, not through a transaction pooler",
            status=2,
        )

    async def use(runner: Any) -> dict[str, Any]:
        store = _idempotency_store(settings, runner)
        return await run_maintenance(
            runner.engine,
            settings,
            now=datetime.now(UTC),
            purge=lambda now: store.purge(now=now),
        )

    report = _with_runner(settings, use)
    _emit(report, as_json, _maintenance_text(report))


def _maintenance_text(report: dict[str, Any]) -> str:
    """One line per table of a maintenance ``report`` (``--json`` gives it whole)."""
    if "skipped" in report:
        return f"maintenance: skipped ({report['skipped']})"
    lines = []
    for table, done in report.items():
        parts = [
            f"{what} {len(names) if isinstance(names, list) else names}"
            + (f" ({', '.join(names)})" if isinstance(names, list) and names else "")
            for what, names in done.items()
        ]
        lines.append(f"maintenance: {table}: {'; '.join(parts)}")
    return "\n".join(lines)


app.add_typer(ops_app, name="ops")
app.add_typer(webhooks_app, name="webhooks")


def main() -> None:
    """The ``tripquote`` command: ``app``, with a database it cannot reach told in one JSON line
    on stderr (exit status 1), not a traceback (a URL it cannot use is a configuration error:
    ``cli_settings``)."""
    from sqlalchemy.exc import DBAPIError

    from tripquote.db.errors import DRIVER_ERRORS
    from tripquote.observability.logging import configure_cli_logging

    configure_cli_logging()
    try:
        status = app(standalone_mode=False)  # usage errors come here, not as click's box
    except TyperException as exc:  # click's usage errors (typer vendors click)
        message = exc.format_message()
        if not message:  # a group called without its command: its help is already shown
            raise SystemExit(exc.exit_code) from None
        event = {"level": "error", "event": "usage_error", "error": message}
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            event["usage"] = ctx.get_usage()
        typer.echo(json.dumps(event), err=True)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise SystemExit(1) from None
    except TripquoteError as exc:  # a command run through the transaction runner
        cause = exc.__cause__
        if cause is not None and isinstance(cause, (*DRIVER_ERRORS, OSError)):
            _fail_on_database("database_unavailable", cause)  # OSError: TimeoutError too
        typer.echo(
            json.dumps(
                {"level": "error", "event": "command_failed", "error_code": exc.code}
                | {"message": exc.message, "retryable": exc.retryable}
            ),
            err=True,
        )
        raise SystemExit(1) from None
    except (DBAPIError, OSError) as exc:  # no answer: refused, unknown host, timeout, no socket
        _fail_on_database("database_unavailable", exc)
    if isinstance(status, int) and status:
        raise SystemExit(status)  # a command's typer.Exit(code), returned outside standalone mode


def _fail_on_database(event: str, exc: BaseException) -> NoReturn:
    from sqlalchemy.exc import DBAPIError

    from tripquote.db.errors import sqlstate_of, statement_refused
    from tripquote.observability.logging import scrub

    driver = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(driver).strip()
    first_line = text.splitlines()[0] if text else ""
    if isinstance(driver, TimeoutError) and not first_line:
        first_line = "the database did not answer in time"
    state = sqlstate_of(exc)
    refused: dict[str, str] = {}
    if state == "42P01":  # undefined_table
        event, hint = "database_not_migrated", "Run: tripquote db upgrade"
    elif state is not None and statement_refused(exc):
        # It answered, and refused the statement: not an outage to look for.
        event = "database_error"
        hint = "The database refused a statement: see sqlstate and detail."
        refused["sqlstate"] = state
        detail = getattr(getattr(driver, "__cause__", None), "detail", None) or getattr(
            driver, "detail", None
        )
        if detail:
            refused["detail"] = scrub(str(detail))
    else:
        hint = _unavailable_hint(state)
    line = {
        "level": "error",
        "event": event,
        "error": scrub(f"{type(driver).__name__}: {first_line}"),
        **refused,
        "hint": hint,
    }
    typer.echo(json.dumps(line), err=True)
    raise SystemExit(1)


def _unavailable_hint(state: str | None = None) -> str:
    """What to check when the database could not be used: ``TRIPQUOTE_DB_POOLER`` when a
    pooler refused the session parameters (SQLSTATE ``state`` 08P01, PgBouncer's "unsupported
    startup parameter"), else the URL, or the embedded server's folder and log when the URL
    is unset."""
    from tripquote.db.engine import POOLER_HINT

    try:
        settings: Settings | None = Settings()
    except ValueError:  # the command's own settings were readable; a .env edited since is not
        settings = None
    if state == "08P01" and settings is not None and settings.db_pooler == "none":
        return f"The database refused the session parameters sent at connect: {POOLER_HINT}"
    if settings is None or settings.database_url is not None:
        return "Check TRIPQUOTE_DATABASE_URL and that its database server is running."
    data_dir = embedded.data_folder(settings)
    return (
        f"TRIPQUOTE_DATABASE_URL is unset: check the embedded PostgreSQL in {data_dir} "
        f"(its log: {data_dir / 'log'}), or set TRIPQUOTE_DATABASE_URL."
    )


if __name__ == "__main__":  # python -m tripquote.cli
    main()
