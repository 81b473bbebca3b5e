"""``tripquote serve --backlog``: the listen queue the kernel really gave the socket (``ss``
shows it as the listening socket's Send-Q), by default 4096 capped by net.core.somaxconn."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import Server, server_env, start_server, wait_ready

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) not installed")


def _listen_queue(server: Server) -> int:
    port = server.base_url.rsplit(":", 1)[1]
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    (line,) = out.strip().splitlines()
    return int(line.split()[2])  # State Recv-Q Send-Q ...: Send-Q is the backlog


@pytest.mark.parametrize(("args", "workers"), [((), 1), (("--backlog", "77"), 2)])
async def test_serve_listens_with_the_backlog_asked(
    db_url: str, tmp_path: Path, args: tuple[str, ...], workers: int
) -> None:
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    expected = min(int(args[1]) if args else 4096, somaxconn)
    server = start_server(server_env(db_url), log_dir=tmp_path, workers=workers, args=args)
    try:
        await wait_ready(server, workers=workers)
        assert _listen_queue(server) == expected
    finally:
        server.stop()
