"""The embedded PostgreSQL (``db/embedded.py``): with no TRIPQUOTE_DATABASE_URL, ``tripquote
serve --workers 2`` starts one server for its workers, shares it with another command and stops
it when it exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import JWT_SECRET
from tests.servers import run_cli, start_server, wait_ready


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its parent (init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except OSError:
        return False
    return state != "Z"


async def test_serve_runs_one_embedded_server_for_its_workers_and_stops_it(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPQUOTE_")}
    env.update(TRIPQUOTE_JWT_SECRET=JWT_SECRET, PYTHONUNBUFFERED="1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    data = tmp_path / ".tripquote" / "pgdata"

    run_cli(["db", "upgrade"], env, cwd=tmp_path)  # starts it, migrates, stops it
    assert (data / "PG_VERSION").exists() and not (data / "postmaster.pid").exists()

    server = start_server(env, log_dir=tmp_path, workers=2)  # its folder is tmp_path
    try:
        await wait_ready(server, workers=2)  # both workers answer from the migrated database
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        # Another command meanwhile shares the server and leaves it running when it ends.
        assert run_cli(["db", "current"], env, cwd=tmp_path) is None
        assert int((data / "postmaster.pid").read_text().split()[0]) == postmaster
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(server.base_url + "/health/ready")).status_code == 200
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log_tail()
    assert not (data / "postmaster.pid").exists()
    assert not _running(postmaster)


def test_an_embedded_server_that_cannot_start_is_one_json_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPQUOTE_")}
    env["TRIPQUOTE_EMBEDDED_DATA_DIR"] = str(tmp_path / "a-file" / "pgdata")
    done = subprocess.run(
        [sys.executable, "-m", "tripquote.cli", "db", "current"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    event = json.loads(line)
    assert event["event"] == "embedded_database_failed"
    assert "TRIPQUOTE_DATABASE_URL" in event["error"]
