"""The newcomer's first command: demo data, a working token and the Kyoto quote of the fixtures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import load_fixture
from tripquote.demo import DEMO_QUOTE


def test_demo_quote_is_the_kyoto_fixture() -> None:
    kyoto = next(c for c in load_fixture("quotes.json") if c["name"] == "kyoto-autumn-jpy")
    assert kyoto["request"] == DEMO_QUOTE


def test_demo_command_loads_data_once_and_writes_the_body(embedded_home: Path) -> None:
    # No TRIPQUOTE_DATABASE_URL: the embedded PostgreSQL, its data in ./.tripquote/pgdata.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPQUOTE_")}

    def run() -> dict[str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "tripquote.cli", "demo", "--no-serve", "--json"],
            env=env, cwd=embedded_home, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    first, second = run(), run()  # the second one starts the server again, on the same data
    data = embedded_home / ".tripquote" / "pgdata"
    assert (data / "PG_VERSION").exists()
    assert not (data / "postmaster.pid").exists()  # each run stopped the server it started
    assert (first["agencyId"], first["agentId"], first["clientId"]) == (
        second["agencyId"],
        second["agentId"],
        second["clientId"],
    )  # the agency named: the README's webhook steps create its admin
    body = json.loads(Path(first["quoteBody"]).read_text())
    assert body == {**DEMO_QUOTE, "clientId": first["clientId"]}
    assert first["token"] in first["curl"] and first["quoteBody"] in first["curl"]
    # Each run sends a Kyoto quote: its client's link, on the address the demo serves.
    for run_ in (first, second):
        proposal: dict[str, str] = run_["proposal"]  # type: ignore[assignment]
        assert proposal["url"].startswith("http://127.0.0.1:8000/p/")
        assert proposal["expiresAt"] and proposal["proposalHash"]


def test_a_demo_whose_port_is_taken_writes_and_prints_nothing(db_url: str, tmp_path: Path) -> None:
    """Before anything is written or printed: its server could not start, and the commands
    it prints would reach the server already on that port (a tester's run sent a quote and
    printed its curl, then failed to bind)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPQUOTE_")}
    env["TRIPQUOTE_DATABASE_URL"] = db_url
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tripquote.cli", "demo", "--port", str(port)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    error = json.loads(done.stderr.strip().splitlines()[-1])
    assert error["event"] == "address_in_use" and f"127.0.0.1:{port}" in error["error"]
    assert not (tmp_path / "tripquote-demo-quote.json").exists()
