"""One Settings object, read from ``TRIPQUOTE_``-prefixed environment variables or ``.env``."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "tripquote-development-secret-change-me"
DEFAULT_CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY")


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_RATE_LIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+unix", "redis+cluster", "redis+sentinel")
"""The ``limits`` storages the rate limiter is built for (it prefixes them with ``async+``)."""


_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750 §2.1 ``b64token``: the credential of ``Authorization: Bearer <token>``."""


_HOST = re.compile(r"[A-Za-z0-9._~-]+|[0-9A-Fa-f:.]+")
"""A host name or an IP address (an IPv6 one without its brackets, as urllib gives it)."""


def _is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host and, if any, a port of 1-65535 (urllib's reading)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError: not a number, or out of range
    except ValueError:  # also an unclosed [IPv6 address
        return False
    host = parts.hostname or ""
    return parts.scheme in ("http", "https") and bool(_HOST.fullmatch(host)) and port != 0


def _has_user(url: str) -> bool:
    """Whether an http(s) URL names a user (``user:password@host``)."""
    from urllib.parse import urlsplit

    return "@" in urlsplit(url).netloc


class Settings(BaseSettings):
    """Service configuration; built once at start-up and passed down, never read at import."""

    model_config = SettingsConfigDict(
        env_prefix="TRIPQUOTE_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # a refused URL or secret is never echoed
        allow_inf_nan=False,  # "inf" or "nan" for a number of seconds, hours…: refused
    )

    database_url: str | None = None
    """A PostgreSQL URL (``postgresql+asyncpg://user@host:5432/db``); unset, the ``tripquote``
    command runs the embedded PostgreSQL (``db/embedded.py``) with its data in
    ``embedded_data_dir``."""
    embedded_data_dir: Path = Path(".tripquote/pgdata")
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_algorithm: Literal["HS256"] = "HS256"
    jwt_leeway_seconds: int = Field(default=0, ge=0, le=300)
    """Clock skew allowed on a token's ``exp`` and ``iat`` (RFC 7519 §4.1.4): 0 refuses a token
    from the second it expires; raise it when tokens come from hosts with other clocks."""
    environment: Literal["development", "production"] = "development"
    token_max_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=1, le=366 * 24 * 3600)
    """The longest life a token may have (``exp - iat``): ``tripquote token --ttl`` refuses
    more, the API refuses a token that claims more."""

    # Transactions: seconds for the whole unit of work; attempts for retryable SQLSTATEs.
    # At least 10 ms: PostgreSQL's statement_timeout is in whole milliseconds, and 0 is none.
    tx_timeout_seconds: float = Field(default=10.0, ge=0.01, le=300)
    tx_max_attempts: int = Field(default=3, ge=1, le=10)
    # A save whose COMMIT got no answer: how long to look for its outcome (reconnecting, to a
    # new primary if there is one) before SAVE_OUTCOME_UNKNOWN.
    save_outcome_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # A fixed pool: SQLAlchemy closes an overflow connection as soon as it is returned to a
    # full pool, so under sustained load overflow means a new PostgreSQL backend per save
    # (fork + session set-up; measured as ~15 % of a core during a 5,000-save burst).
    db_pool_size: int = Field(default=15, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    # Opening a connection that fails in a way a moment may cure (refused, no primary yet during
    # a switchover, the server starting): tried again for this long before the error.
    db_connect_retry_seconds: float = Field(default=5.0, ge=0, le=60)
    # A burst queues for connections; past this wait a save gets DATABASE_TIMEOUT (retryable).
    db_pool_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    db_application_name: str = Field(default="tripquote", min_length=1, max_length=63)
    """The connections' ``application_name`` (``tripquote webhooks run`` uses
    ``tripquote-webhooks``, so the delivery workers tell their own connections apart)."""
    db_pooler: Literal["none", "transaction", "session"] = "none"
    """What stands between the service and PostgreSQL (``db/engine.py`` ``Pooling``): ``none``
    (or a pooler in session mode that passes startup parameters through), ``session``
    (PgBouncer ``pool_mode = session``: the timeouts are SET once per connection) or
    ``transaction`` (``pool_mode = transaction``: no named prepared statement, the timeouts SET
    LOCAL in every transaction, every statement inside one)."""

    currencies: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CURRENCIES

    # Protection.
    rate_limit: str = "120/minute"
    rate_limit_storage: str = "memory://"
    rate_limit_fail_open: bool = True
    public_rate_limit: str = "60/minute"
    """Requests to the client's proposal pages (``/p/…``), counted per client IP and, apart,
    per link (the same limiter and storage as the writes')."""
    public_concurrency: int = Field(default=2, ge=1, le=10_000)
    """Requests to the proposal links (``/p/…``) served at once per worker process; the
    others wait their turn (``proposals/bulkhead.py``): the agents' saves keep the rest of the
    process and its database connections."""
    public_queue: int = Field(default=5000, ge=0, le=1_000_000)
    """Proposal-link requests that may wait for a turn per worker process; one more is
    served at once (never refused). More than one burst's worth: the links' requests of a
    burst can all land on one worker (each connection goes to whichever accepts it first),
    and those served at once for a full queue run beside the saves."""
    public_defer_at: int = Field(default=15, ge=0, le=1_000_000)
    """Agent requests in flight in a worker process (default: its database pool, 15) from
    which the proposal-link requests wait until none is left (the burst over); 0: never."""
    public_burst_rate: float = Field(default=10.0, ge=0, le=10_000)
    """Proposal-link requests started per second per worker process while a burst of agent
    requests lasts (``public_defer_at``); the others wait. 0: none until the burst is over or
    ``public_defer_max_seconds``."""
    public_defer_max_seconds: float = Field(default=30.0, ge=0, le=600)
    """The longest a proposal-link request waits for the agents' requests before taking its
    turn anyway: a backstop, the pace (``public_burst_rate``) lets link requests through
    during a burst."""
    worker_board: str | None = None
    """The file the worker processes of one ``tripquote serve --workers N`` share to tell each
    other of a burst (``proposals/board.py``); set by ``serve`` for its workers, not by an
    operator. Unset: each process sees its own bursts only."""

    # The client's side (issue 16): the origin the proposal links are built on.
    public_base_url: str = "http://127.0.0.1:8000"
    """The absolute origin (and optional path prefix) the client reaches the service at; a
    link is ``<public_base_url>/p/<token>``."""
    # Compared in SQL with agents.open_quote_bound, a 32-bit integer column.
    max_open_quotes_per_agent: int = Field(default=1000, ge=1, le=2**31 - 1)
    max_items_per_quote: int = Field(default=100, ge=1, le=10_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)

    # Alerts.
    alert_webhook_url: SecretStr | None = None  # webhook URLs often carry their credential
    alert_webhook_secret: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    alert_dedup_window_seconds: float = Field(default=300.0, ge=0, le=86_400)
    alert_max_attempts: int = Field(default=5, ge=1, le=20)

    # Webhooks (webhooks/): delivery on the Standard Webhooks spec, retried with exponential
    # backoff and jitter: attempt n waits min(BASE * 4^(n-1), MAX) seconds, +-20 %; after
    # MAX_ATTEMPTS attempts the delivery is dead-lettered (replayable).
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """A delivery attempt's whole time (in production the name's resolution, then connect, send,
    answer: a timeout past it); at most half of ``tx_timeout_seconds`` is used: the attempt
    runs inside the transaction that holds it."""
    webhook_max_attempts: int = Field(default=10, ge=1, le=100)
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    webhook_retry_max_seconds: float = Field(default=36_000.0, gt=0, le=7 * 86_400)
    webhook_secret_overlap_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    """After a rotation the previous secret signs too (both signatures sent) for this long."""
    webhook_retention_days: int = Field(default=7, ge=1, le=3650)
    """Events and their deliveries are kept at least this many days, in daily partitions that
    ``tripquote maintenance`` drops whole (db/retention.py): a delivery still pending or
    dead-lettered goes with its day, so this must outlast the whole retry schedule by a day
    (``_retention_outlasts_the_retries``), and a replay reaches back this far at most."""
    webhook_retention_hours: float | None = None
    """Replaced by ``webhook_retention_days``: refused when set (never silently ignored)."""
    webhook_worker_concurrency: int = Field(default=4, ge=1, le=64)
    """Delivery tasks of one worker process (each on its own database connection)."""
    webhook_worker_yield_seconds: float = Field(default=30.0, ge=0, le=3600)
    """While the database is busy with other work (saves), a worker waits up to this long in a
    row before delivering beside it (``0``: never waits)."""
    webhook_worker_batch_size: int = Field(default=32, ge=1, le=500)
    """Deliveries one task claims in a transaction, sends at once and records in one
    statement."""
    webhook_worker_in_serve: bool = False
    """``tripquote serve`` also runs a delivery worker in each of its processes."""

    # Observability.
    log_level: str = "INFO"
    metrics_token: SecretStr | None = None
    oprecord_queue_size: int = Field(default=10_000, ge=1, le=10_000_000)
    oprecord_batch_size: int = Field(default=200, ge=1, le=100_000)
    # After a record arrives, wait this long for more before writing (one COPY, one commit
    # per batch instead of per handful of requests); 0 writes whatever is queued at once.
    oprecord_linger_seconds: float = Field(default=0.05, ge=0, le=5)

    # Idempotency keys are kept this long (hours).
    idempotency_ttl_hours: float = Field(default=24.0, ge=1, le=24 * 366)
    # Retention (``tripquote maintenance``, db/retention.py): operation records are kept this
    # many days, in daily partitions created this many days ahead and dropped whole when old.
    operation_records_retention_days: int = Field(default=30, ge=1, le=3650)
    partitions_ahead_days: int = Field(default=7, ge=1, le=365)

    # Python's cyclic garbage collector, per serving process (see runtime.tune_gc): the objects
    # alive once the app has started are frozen out of every collection, and the youngest
    # generation is collected after this many new container objects (CPython's default: 700).
    gc_freeze_at_startup: bool = True
    gc_gen0_threshold: int = Field(default=7000, ge=100, le=1_000_000)

    @field_validator("currencies", mode="before")
    @classmethod
    def _split_currencies(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().upper() for part in value.split(",") if part.strip())
        return value

    @field_validator("currencies")
    @classmethod
    def _check_currencies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for position, code in enumerate(value, start=1):
            if len(code) != 3 or not code.isalpha() or not code.isascii():
                # The position, never the value (configuration errors name no value).
                raise ValueError(
                    f"TRIPQUOTE_CURRENCIES: code {position} is not an ISO 4217 alphabetic code "
                    "(three letters, e.g. EUR)"
                )
        if not value:
            raise ValueError("at least one currency is required")
        return value

    @field_validator("embedded_data_dir", mode="before")
    @classmethod
    def _check_embedded_data_dir(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError(
                "TRIPQUOTE_EMBEDDED_DATA_DIR must name a folder (the embedded PostgreSQL's data); "
                "unset it for .tripquote/pgdata"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None:
            from tripquote.db.url import parse_database_url

            parse_database_url(value)  # ValueError naming the rule broken
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise ValueError(f"TRIPQUOTE_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}")
        return value.upper()

    @field_validator("public_base_url")
    @classmethod
    def _check_public_base_url(cls, value: str) -> str:
        if not _is_http_url(value) or "?" in value or "#" in value or _has_user(value):
            raise ValueError(
                "TRIPQUOTE_PUBLIC_BASE_URL must be an absolute http(s) URL without a user, query "
                "or fragment, e.g. https://quotes.example.com"
            )
        return value.rstrip("/")

    @field_validator("telegram_api_base")
    @classmethod
    def _check_telegram_api_base(cls, value: str) -> str:
        if not _is_http_url(value):
            raise ValueError(
                "TRIPQUOTE_TELEGRAM_API_BASE must be an absolute http(s) URL, e.g. "
                "https://api.telegram.org"
            )
        return value.rstrip("/")

    @field_validator("alert_webhook_url")
    @classmethod
    def _check_alert_webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _is_http_url(value.get_secret_value()):
            raise ValueError(
                "TRIPQUOTE_ALERT_WEBHOOK_URL must be an absolute http(s) URL (unset it for no "
                "alert webhook)"
            )
        return value

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        # RFC 6750 §2.1's b64token: what a client can send after "Bearer "; an empty token
        # would be every empty Authorization's.
        if value is not None and not _BEARER_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError(
                "TRIPQUOTE_METRICS_TOKEN must be a bearer token (letters, digits, -._~+/, then "
                "= padding), or unset"
            )
        return value

    @field_validator("rate_limit", "public_rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str, info: ValidationInfo) -> str:
        from limits import parse

        try:
            allowed = parse(value).amount
        except ValueError:  # its message quotes the value: configuration errors name none
            allowed = 0
        if allowed < 1:
            raise ValueError(
                f"TRIPQUOTE_{str(info.field_name).upper()} must be a rate such as 120/minute "
                "(N ≥ 1 per second, minute, hour or day)"
            )
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _check_rate_limit_storage(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in _RATE_LIMIT_SCHEMES:
            raise ValueError(
                "TRIPQUOTE_RATE_LIMIT_STORAGE must be memory:// or redis://host:port/db "
                "(rediss://, redis+sentinel://, redis+cluster:// too)"
            )
        return value

    @model_validator(mode="after")
    def _refuse_statement_caches_behind_a_transaction_pooler(self) -> Settings:
        if self.db_pooler == "transaction" and self.database_url is not None:
            from tripquote.db.url import parse_database_url

            arguments = parse_database_url(self.database_url).connect_args
            cached = [
                name
                for name in ("statement_cache_size", "prepared_statement_cache_size")
                if arguments.get(name)
            ]
            if cached:
                raise ValueError(
                    "TRIPQUOTE_DB_POOLER=transaction uses no prepared statement cache: drop "
                    f"{', '.join(cached)} from TRIPQUOTE_DATABASE_URL's query"
                )
        return self

    @model_validator(mode="after")
    def _retention_outlasts_the_retries(self) -> Settings:
        if self.webhook_retention_hours is not None:
            raise ValueError(
                "TRIPQUOTE_WEBHOOK_RETENTION_HOURS is replaced by TRIPQUOTE_WEBHOOK_RETENTION_DAYS"
                " (whole days: events and deliveries are kept in daily partitions)"
            )
        schedule = webhook_retry_schedule_seconds(self)
        if self.webhook_retention_days * 86_400 < schedule + 86_400:
            raise ValueError(
                "TRIPQUOTE_WEBHOOK_RETENTION_DAYS must outlast the retry schedule by a day (a "
                "delivery still pending goes with its day): at least "
                f"{math.ceil(schedule / 86_400) + 1} with these TRIPQUOTE_WEBHOOK_MAX_ATTEMPTS, "
                "RETRY_BASE_SECONDS, RETRY_MAX_SECONDS and TIMEOUT_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _refuse_a_weak_secret(self) -> Settings:
        secret = self.jwt_secret.get_secret_value()
        if not secret.strip():
            raise ValueError("TRIPQUOTE_JWT_SECRET must not be empty (unset it in development)")
        if self.environment != "development" and (
            secret == DEFAULT_JWT_SECRET or len(secret) < 32 or len(set(secret)) < 8
        ):
            raise ValueError(
                "TRIPQUOTE_JWT_SECRET must be set to a random value of 32+ characters "
                "(e.g. openssl rand -hex 32) outside development"
            )
        token = self.metrics_token
        if self.environment != "development" and token and len(token.get_secret_value()) < 16:
            raise ValueError(
                "TRIPQUOTE_METRICS_TOKEN must be 16+ characters outside development "
                "(e.g. openssl rand -hex 16)"
            )
        return self

    def require_database_url(self) -> str:
        """The database URL; ValueError when unset (``db/embedded.py`` resolves it first)."""
        if self.database_url is None:
            raise ValueError(
                "TRIPQUOTE_DATABASE_URL is unset: start the service with the tripquote command "
                "(it runs the embedded PostgreSQL) or set it"
            )
        return self.database_url


def configuration_error(exc: ValueError) -> str:
    """What is wrong with the settings, naming each variable and its rule, never a value
    (pydantic-settings' own SettingsError names the field and its source only)."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    problems = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        rule = error["msg"].removeprefix("Value error, ")
        variable = f"TRIPQUOTE_{str(error['loc'][0]).upper()}" if error["loc"] else ""
        problems.append(rule if variable in rule else f"{variable}: {rule}")
    return "; ".join(problems)


def webhook_retry_schedule_seconds(settings: Settings) -> float:
    """The longest a delivery can stay pending while it is retried, in seconds: every wait
    between its ``webhook_max_attempts`` attempts at its longest (``retry_delay`` with the
    +20 % jitter) and every attempt at ``webhook_attempt_seconds``. The defaults: 33.1 h."""
    from tripquote.webhooks.worker import retry_delay

    waits = sum(
        retry_delay(attempts, settings, jitter=1.2)
        for attempts in range(1, settings.webhook_max_attempts)
    )
    return waits + settings.webhook_max_attempts * webhook_attempt_seconds(settings)


def webhook_attempt_seconds(settings: Settings) -> float:
    """The time one webhook delivery attempt may take: ``webhook_timeout_seconds``, at most
    half the transaction budget it runs in (the claim and the record need the rest)."""
    return min(settings.webhook_timeout_seconds, settings.tx_timeout_seconds / 2)
