"""The embedded PostgreSQL (``db/embedded.py``): with no TRIPQUOTE_DATABASE_URL, ``tripquote
serve --workers 2`` starts one server for its workers, shares it with another command and stops
it when it exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import JWT_SECRET
from tests.servers import run_cli, start_server, wait_ready, wait_until


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its parent (init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except OSError:
        return False
    return state != "Z"


async def test_serve_runs_one_embedded_server_for_its_workers_and_stops_it(
    embedded_home: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPQUOTE_")}
    env.update(TRIPQUOTE_JWT_SECRET=JWT_SECRET, PYTHONUNBUFFERED="1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    data = embedded_home / ".tripquote" / "pgdata"

    run_cli(["db", "upgrade"], env, cwd=embedded_home)  # starts it, migrates, stops it
    assert (data / "PG_VERSION").exists() and not (data / "postmaster.pid").exists()

    server = start_server(env, log_dir=embedded_home, workers=2)  # its folder is embedded_home
    try:
        await wait_ready(server, workers=2)  # both workers answer from the migrated database
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        # Another command meanwhile shares the server and leaves it running when it ends.
        assert run_cli(["db", "current"], env, cwd=embedded_home) is None
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


def _embedded_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPQUOTE_")}
    env.update(TRIPQUOTE_JWT_SECRET=JWT_SECRET, PYTHONUNBUFFERED="1", **settings)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def _tripquote(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tripquote.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _state(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``folder`` (itself included): its owner, group and mode."""
    paths = [folder, *folder.rglob("*")]
    return {str(p): (p.stat().st_uid, p.stat().st_gid, p.stat().st_mode) for p in paths}


def test_an_empty_data_dir_setting_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "checkout").mkdir()
    (tmp_path / "checkout" / "README.md").write_text("mine\n")
    before = _state(tmp_path)
    done = _tripquote(
        "db",
        "current",
        env=_embedded_env(TRIPQUOTE_EMBEDDED_DATA_DIR=""),
        cwd=tmp_path / "checkout",
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()  # no initdb output, no traceback
    event = json.loads(line)
    assert event["event"] == "configuration_error"
    assert event["error"].startswith("TRIPQUOTE_EMBEDDED_DATA_DIR must name a folder")
    assert _state(tmp_path) == before  # nothing created, chowned or chmodded


def test_a_folder_holding_other_files_is_refused_untouched(tmp_path: Path) -> None:
    parent = tmp_path / "private"
    folder = parent / "mine"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not a database\n")
    folder.chmod(0o700)
    parent.chmod(0o700)
    before = _state(tmp_path)
    env = _embedded_env(TRIPQUOTE_EMBEDDED_DATA_DIR=str(folder))
    for command in (("db", "current"), ("db", "upgrade"), ("demo", "--no-serve", "--json")):
        done = _tripquote(*command, env=env, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        (line,) = done.stderr.strip().splitlines()
        event = json.loads(line)
        assert event["event"] == "embedded_database_refused"
        assert str(folder) in event["error"] and "PG_VERSION" in event["error"]
    assert _state(tmp_path) == before


async def test_the_last_live_holder_stops_the_server_when_another_was_killed(
    embedded_home: Path,
) -> None:
    env = _embedded_env()
    data = embedded_home / ".tripquote" / "pgdata"
    run_cli(["db", "upgrade"], env, cwd=embedded_home)
    killed = start_server(env, log_dir=embedded_home, name="killed")
    await wait_ready(killed)
    last = start_server(env, log_dir=embedded_home, name="last")
    try:
        await wait_ready(last)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        killed.process.kill()  # SIGKILL: no exit hook, its handle stays in .handle_pids.json
        killed.process.wait(timeout=10)
        last.process.send_signal(signal.SIGINT)
        assert last.process.wait(timeout=30) == 0, last.log_tail()
    finally:
        killed.stop()
        last.stop()

    await _stops(postmaster, data)


def test_concurrent_first_runs_on_a_new_folder_all_succeed(embedded_home: Path) -> None:
    env = _embedded_env()
    commands = [("demo", "--no-serve", "--json"), ("demo", "--no-serve", "--json")]
    commands.append(("db", "upgrade"))
    argv = [sys.executable, "-m", "tripquote.cli"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    runs = [subprocess.Popen([*argv, *c], env=env, cwd=embedded_home, **pipes) for c in commands]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
    first, second = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs[:2])
    assert (first["agentId"], first["clientId"]) == (second["agentId"], second["clientId"])
    current = _tripquote("db", "current", "--json", env=env, cwd=embedded_home)
    assert json.loads(current.stdout)["head"] is True, current.stderr
    assert not (embedded_home / ".tripquote" / "pgdata" / "postmaster.pid").exists()


async def test_serve_with_one_worker_stopped_by_sigterm_stops_the_server(
    embedded_home: Path,
) -> None:
    # One worker is uvicorn's own server, which after its graceful shutdown raised SIGTERM
    # again with its default action: the process died of it (-15) before any exit hook, and
    # the embedded PostgreSQL was left running, its holder recorded (systemd, docker stop).
    env = _embedded_env()
    data = embedded_home / ".tripquote" / "pgdata"
    run_cli(["db", "upgrade"], env, cwd=embedded_home)
    server = start_server(env, log_dir=embedded_home)
    try:
        await wait_ready(server)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0, server.log_tail()
    finally:
        server.stop()

    await _stops(postmaster, data)


async def _stops(postmaster: int, data: Path) -> None:
    """The embedded PostgreSQL of ``data`` (its postmaster's pid) stops and leaves no pid file;
    stopped here if it does not (the failure the caller is about: never left running)."""

    async def stopped() -> bool:
        return not _running(postmaster)

    try:
        await wait_until(stopped, within=30, what="the embedded PostgreSQL to stop")
    finally:
        if _running(postmaster):
            os.kill(postmaster, signal.SIGTERM)
    assert not (data / "postmaster.pid").exists()
