"""The newcomer's first command: demo data, a working token and the Kyoto quote of the fixtures."""

from __future__ import annotations

import json
import os
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
