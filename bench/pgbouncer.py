"""A PgBouncer of the bench's own (``--through-pgbouncer``): ``pool_mode = transaction`` in
front of the bench's PostgreSQL, on a free port, its configuration in a temporary folder,
stopped with the bench's other servers (by its process group)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg

from bench import procs


def program() -> str | None:
    """The ``pgbouncer`` program (Debian: /usr/sbin/pgbouncer), or None."""
    return shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")


def configure(pg_dsn: str, *, pool_size: int) -> tuple[Path, list[str], int]:
    """Its folder (ini + userlist), its command line and its port."""
    exe = program()
    if exe is None:
        raise RuntimeError("--through-pgbouncer: pgbouncer is not installed (apt-get install)")
    server_part = pg_dsn.split("://", 1)[1].split("@")[-1].rstrip("/")
    host, _, port = server_part.partition(":")
    folder = Path(tempfile.mkdtemp(prefix="bench-pgbouncer-"))
    folder.chmod(0o755)
    listen = procs.free_port()
    (folder / "userlist.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\n"
        "max_client_conn = 2000\nlogfile =\n"
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    argv = [exe, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        user = "postgres"
        pwd.getpwnam(user)  # KeyError: no postgres user to run it as
        argv[1:1] = ["-u", user]
    return folder, argv, listen


async def start(pg_dsn: str, *, pool_size: int, log_dir: Path) -> tuple[procs.Server, int, Path]:
    """PgBouncer in transaction mode forwarding every database to the server of ``pg_dsn``
    (``postgresql://user@host:port``), ``pool_size`` server connections per database; ready
    (it accepted a connection). Returns the server, its port and its folder (delete it once
    the server is stopped)."""
    folder, argv, listen = configure(pg_dsn, pool_size=pool_size)
    server = procs.start("pgbouncer", argv, env=dict(os.environ), port=listen, log_dir=log_dir)
    started = time.monotonic()
    while True:
        if not server.alive():
            raise RuntimeError(f"pgbouncer exited:\n{server.log_tail()}")
        try:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=listen, user="postgres", database="postgres",
                statement_cache_size=0, timeout=2,
            )  # fmt: skip
            await conn.close()
            return server, listen, folder
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() - started > 20:
                raise RuntimeError(f"pgbouncer not accepting:\n{server.log_tail()}") from None
            await asyncio.sleep(0.1)
