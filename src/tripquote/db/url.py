"""``TRIPQUOTE_DATABASE_URL`` parsed once, into what SQLAlchemy's asyncpg dialect and asyncpg's
``connect()`` take.

Two multi-host forms name the same thing (libpq's, PostgreSQL "Connection URIs" §34.1.1.2):
``postgresql+asyncpg://u@h1:5441,h2:5442/db`` and ``…//u@/db?host=h1:5441&host=h2:5442``.
asyncpg tries the hosts in order and keeps the first that suits ``target_session_attrs``, which
is ``read-write`` unless the URL says otherwise when several hosts are given: writes go to the
primary, never to a standby or a demoted node.

The query's other parameters are asyncpg's ``connect()`` arguments (``statement_cache_size``,
``command_timeout``, ``ssl``…) and SQLAlchemy's ``prepared_statement_cache_size``; each is
converted to its type here (a URL carries text only, and asyncpg takes ``"0"`` for a non-zero
cache size's string), and any other name is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, TypeAdapter, ValidationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DRIVER = "postgresql+asyncpg"

_Count = Annotated[int, Field(ge=0)]
_Seconds = Annotated[float, Field(gt=0)]

QUERY_PARAMETERS: dict[str, Any] = {
    # asyncpg.connect()'s arguments a URL can carry (asyncpg 0.29+ "Connection" reference)
    "ssl": Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
    "direct_tls": bool,
    "passfile": str,
    "timeout": _Seconds,
    "command_timeout": _Seconds,
    "statement_cache_size": _Count,
    "max_cached_statement_lifetime": _Count,
    "max_cacheable_statement_size": _Count,
    "target_session_attrs": Literal[
        "any", "primary", "standby", "prefer-standby", "read-write", "read-only"
    ],
    "krbsrvname": str,
    "gsslib": Literal["gssapi", "sspi"],
    # SQLAlchemy's asyncpg dialect's own statement cache
    "prepared_statement_cache_size": _Count,
}
"""Each query parameter the URL may carry and its type; ``host`` (repeated) is the dialect's."""

_ADAPTERS = {name: TypeAdapter(kind) for name, kind in QUERY_PARAMETERS.items()}

DEFAULT_TARGET_SESSION_ATTRS = "read-write"
"""With several hosts: connect to the one that accepts writes (asyncpg checks
``transaction_read_only`` and ``pg_is_in_recovery()``)."""


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A parsed ``TRIPQUOTE_DATABASE_URL``.

    ``url``: SQLAlchemy's URL, several hosts in its repeated ``host`` query parameter;
    ``connect_args``: the query's asyncpg (and dialect) arguments with their types, plus
    ``target_session_attrs`` when several hosts are given (``several_hosts``).
    """

    url: URL
    connect_args: dict[str, Any]
    several_hosts: bool


def parse_database_url(text: str) -> DatabaseUrl:
    """Parse ``text``; ValueError naming the rule broken (never echoing the URL: it may hold a
    password)."""
    from sqlalchemy.dialects.postgresql.asyncpg import dialect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    not_a_url = ValueError(
        "TRIPQUOTE_DATABASE_URL must be a PostgreSQL URL for asyncpg "
        "(postgresql+asyncpg://user@host:5432/db); unset it to run on the embedded PostgreSQL"
    )
    bad_port = ValueError("TRIPQUOTE_DATABASE_URL's port must be a number from 1 to 65535")
    try:
        url = make_url(_hosts_to_query(text))
    except (ArgumentError, ValueError) as error:  # ValueError: int() of a port, not a number
        raise (not_a_url if isinstance(error, ArgumentError) else bad_port) from None
    if url.drivername != DRIVER:
        raise not_a_url
    if url.port is not None and not 0 < url.port < 65536:
        raise bad_port

    connect_args: dict[str, Any] = {}
    unknown = []
    for name, value in url.query.items():
        if name == "host":
            continue
        adapter = _ADAPTERS.get(name)
        if adapter is None or not isinstance(value, str):  # unknown, or given twice
            unknown.append(name)
            continue
        try:
            connect_args[name] = adapter.validate_python(value)
        except ValidationError:
            unknown.append(name)
    if unknown:
        raise ValueError(
            "TRIPQUOTE_DATABASE_URL's query has parameters asyncpg does not take or cannot "
            f"read: {', '.join(sorted(unknown))} (it takes {', '.join(QUERY_PARAMETERS)}, "
            "each once, and host= once per host)"
        )
    try:
        _, arguments = dialect().create_connect_args(url)  # type: ignore[no-untyped-call]
    except (ArgumentError, ValueError):
        raise ValueError(
            "TRIPQUOTE_DATABASE_URL's hosts must each be host:port when several are given "
            "(h1:5432,h2:5432 or ?host=h1:5432&host=h2:5432)"
        ) from None
    ports = arguments.get("port")
    if isinstance(ports, list) and not all(0 < port < 65536 for port in ports):
        raise ValueError("TRIPQUOTE_DATABASE_URL's port must be a number from 1 to 65535")
    several = isinstance(arguments.get("host"), list)
    if several:
        connect_args.setdefault("target_session_attrs", DEFAULT_TARGET_SESSION_ATTRS)
    return DatabaseUrl(url=url, connect_args=connect_args, several_hosts=several)


def _hosts_to_query(text: str) -> str:
    """libpq's comma form (``//u@h1:5441,h2:5442/db``) rewritten as the repeated ``host``
    query parameter SQLAlchemy reads; any other URL unchanged."""
    parts = urlsplit(text)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    if "," not in hostlist:
        return text
    query = [("host", host) for host in hostlist.split(",")]
    query += parse_qsl(parts.query, keep_blank_values=True)
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}", query=urlencode(query, safe=":[]")))
