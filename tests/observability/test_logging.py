"""JSON logs, captured from real processes: one object per line, redacted, correlated."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tripquote.observability.logging import REDACTED, scrub

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZ2VudC0xIn0."
    "c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)
EMAIL = "jane.traveller@example.com"


def run_script(python: str, env: dict[str, str], script: str) -> tuple[list[dict[str, Any]], str]:
    """Run ``script``; every line of stdout and stderr parsed as one JSON object."""
    done = subprocess.run(
        [python, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=60
    )
    raw = done.stdout + done.stderr
    return [json.loads(line) for line in raw.splitlines() if line.strip()], raw


LOGGING_SCRIPT = f"""
    import logging, warnings
    import structlog
    from tripquote.config import Settings
    from tripquote.observability.context import correlation_id_var
    from tripquote.observability.logging import configure_logging

    configure_logging(Settings(_env_file=None, log_level="DEBUG"))
    log = structlog.get_logger("tripquote.test")
    log.info("before_request")
    correlation_id_var.set("REQ-LOG-1")
    log.info(
        "login",
        authorization="Bearer {JWT}",
        headers={{"Authorization": "Bearer {JWT}", "accept": "json"}},
        client={{"email": "{EMAIL}", "phone": "+33 6 12 34 56 78", "name_length": 4}},
        password="hunter2",
        note="token {JWT} sent to {EMAIL}",
    )
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("sqlalchemy.engine").warning("pool at %s", "postgresql://app:s3cretpw@db/x")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/x?email={EMAIL}&token=abc", "1.1", 200
    )
    warnings.warn("a python warning")
    try:
        raise ValueError("boom with {EMAIL}")
    except ValueError:
        log.exception("structlog_failure")
        logging.getLogger("tripquote.std").exception("stdlib_failure")
    raise RuntimeError("uncaught at start-up")
"""


def test_every_line_is_json_and_redacted(python: str, subprocess_env: dict[str, str]) -> None:
    lines, raw = run_script(python, subprocess_env, LOGGING_SCRIPT)
    assert JWT not in raw
    assert JWT.split(".")[0] not in raw
    assert EMAIL not in raw
    assert "hunter2" not in raw
    assert "s3cretpw" not in raw
    assert "12 34 56 78" not in raw
    events = {line["event"]: line for line in lines}
    for line in lines:
        assert {"timestamp", "level", "event", "logger"} <= set(line)
        assert line["timestamp"].endswith("Z")

    assert "correlation_id" not in events["before_request"]
    login = events["login"]
    assert login["correlation_id"] == "REQ-LOG-1"
    assert login["authorization"] == REDACTED
    assert login["headers"] == {"Authorization": REDACTED, "accept": "json"}
    assert login["client"] == {"email": REDACTED, "phone": REDACTED, "name_length": 4}
    assert login["password"] == REDACTED
    assert login["note"] == f"token {REDACTED} sent to {REDACTED}"

    started = events["Started server process [42]"]
    assert (started["logger"], started["level"]) == ("uvicorn.error", "info")
    access = events["http_request"]
    assert (access["method"], access["status"], access["logger"]) == ("GET", 200, "uvicorn.access")
    assert access["path"] == f"/x?email={REDACTED}&token={REDACTED}"
    assert any("a python warning" in line["event"] for line in lines)
    for name in ("structlog_failure", "stdlib_failure"):
        assert "Traceback" in events[name]["exception"]
        assert "ValueError: boom with" in events[name]["exception"]
    uncaught = events["uncaught_exception"]
    assert uncaught["level"] == "critical"
    assert "RuntimeError: uncaught at start-up" in uncaught["exception"]


REQUEST_SCRIPT = """
    import asyncio, logging
    import httpx, structlog
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from tripquote.config import Settings
    from tripquote.errors import TripquoteError
    from tripquote.observability.correlation import CorrelationMiddleware
    from tripquote.observability.logging import configure_logging
    from tripquote.observability.operations import Observer

    settings = Settings(_env_file=None, log_level="INFO")
    configure_logging(settings)
    observer = Observer(settings)
    app = FastAPI()

    @app.exception_handler(TripquoteError)
    async def on_error(request: Request, exc: TripquoteError) -> JSONResponse:
        observer.error_rendered(exc)
        return JSONResponse({"errorCode": exc.code}, exc.status)

    @app.post("/quotes")
    async def create(request: Request) -> dict:
        async with observer.track("quote.create", agent_id="agent-7") as scope:
            body = await request.body()
            structlog.get_logger("tripquote.quotes").info("saving", body_bytes=len(body))
            logging.getLogger("tripquote.std").warning("stdlib line in the request")
            scope.quote_id = "quote-7"
            if request.headers.get("x-fail"):
                raise KeyError("internal detail")
            return {"ok": True}

    app.add_middleware(CorrelationMiddleware)
    log = structlog.get_logger("tripquote.test")

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for cid, fail in (("REQ-CORR-OK", ""), ("REQ-CORR-FAIL", "1")):
                log.info("marker_start")
                await client.post(
                    "/quotes",
                    json={"email": "jane@example.com"},
                    headers={"X-Correlation-ID": cid, "X-Fail": fail,
                             "Authorization": "Bearer abc.def.ghi"},
                )
                log.info("marker_end")

    asyncio.run(main())
"""


def test_every_line_of_a_request_carries_its_id(
    python: str, subprocess_env: dict[str, str]
) -> None:
    lines, raw = run_script(python, subprocess_env, REQUEST_SCRIPT)
    assert "jane@example.com" not in raw
    assert "abc.def.ghi" not in raw
    requests: list[list[dict[str, Any]]] = []
    for line in lines:
        if line["event"] == "marker_start":
            requests.append([])
        elif line["event"] != "marker_end":
            requests[-1].append(line)
    ok, failed = requests
    assert {line["correlation_id"] for line in ok} == {"REQ-CORR-OK"}
    assert {line["correlation_id"] for line in failed} == {"REQ-CORR-FAIL"}
    assert [line["event"] for line in ok] == [
        "saving",
        "stdlib line in the request",
        "operation",  # one line per request: the operation, with the access fields
    ]
    operation = ok[-1]
    assert operation | {"duration_ms": 0, "request_ms": 0, "timestamp": "", "pid": 0} == {
        "event": "operation",
        "level": "info",
        "logger": "tripquote.operations",
        "timestamp": "",
        "pid": 0,
        "correlation_id": "REQ-CORR-OK",
        "operation": "quote.create",
        "agent_id": "agent-7",
        "quote_id": "quote-7",
        "outcome": "success",
        "error_code": None,
        "duration_ms": 0,
        "http_status": 200,
        "severity": None,
        "client_addr": operation["client_addr"],
        "method": "POST",
        "path": operation["path"],
        "http_version": "1.1",
        "status": 200,
        "request_ms": 0,
    }
    assert isinstance(operation["duration_ms"], float)
    assert operation["request_ms"] >= operation["duration_ms"]
    unhandled = next(line for line in failed if line["event"] == "unhandled_exception")
    assert "KeyError: 'internal detail'" in unhandled["exception"]
    failure = next(line for line in failed if line["event"] == "operation")
    assert (failure["event"], failure["error_code"], failure["outcome"]) == (
        "operation",
        "INTERNAL_ERROR",
        "error",
    )
    assert (failure["severity"], failure["http_status"], failure["level"]) == (
        "CRITICAL",
        500,
        "error",
    )


def test_scrub_hides_phone_numbers_wherever_they_appear() -> None:
    # A phone number in a URL (a mistyped id) or in free text, not only under a "phone" key.
    assert scrub("/api/agents/quotes/+33612345678") == f"/api/agents/quotes/{REDACTED}"
    assert scrub({"quote_id": "+1 (415) 555-0100"}) == {"quote_id": REDACTED}
    kept = "2026-11-29T10:00:00+00:00 took +12 ms"  # offsets and short signed numbers stay
    assert scrub(kept) == kept


def test_scrub_leaves_ordinary_values_alone() -> None:
    value = {"operation": "update", "quote_id": "q-1", "count": 3, "items": [1, "two"]}
    assert scrub(value) == value
    assert scrub("tripquote_operations_total") == "tripquote_operations_total"


SERVER_APP = """
    import logging
    import os
    import structlog
    from fastapi import FastAPI
    from tripquote.config import Settings
    from tripquote.observability.correlation import CorrelationMiddleware
    from tripquote.observability.logging import configure_logging

    def create_app() -> FastAPI:
        configure_logging(Settings(_env_file=None))
        app = FastAPI()

        @app.get("/hello")
        async def hello() -> dict:
            structlog.get_logger("tripquote.test").info("hello_called")
            return {"hello": "world", "pid": os.getpid()}

        app.add_middleware(CorrelationMiddleware)
        return app
"""

SERVER_MAIN = """
    import sys
    import uvicorn
    from tripquote.config import Settings
    from tripquote.observability.logging import configure_logging, uvicorn_log_config

    settings = Settings(_env_file=None)
    configure_logging(settings)
    uvicorn.run(
        "server_app:create_app", factory=True, host="127.0.0.1", port=int(sys.argv[1]),
        workers=2, log_config=uvicorn_log_config(settings),
    )
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_uvicorn_with_two_workers_writes_only_json(
    tmp_path: Path, python: str, subprocess_env: dict[str, str]
) -> None:
    """Start-up, access, worker and shutdown lines of a real 2-worker uvicorn are all JSON."""
    from .conftest import free_port

    (tmp_path / "server_app.py").write_text(textwrap.dedent(SERVER_APP))
    port = free_port()
    env = subprocess_env | {"PYTHONPATH": f"{tmp_path}:{subprocess_env['PYTHONPATH']}"}
    server = subprocess.Popen(
        [python, "-c", textwrap.dedent(SERVER_MAIN), str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        answered: set[int] = set()  # until both workers have started and answered
        while len(answered) < 2:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/hello?email={EMAIL}",
                    headers={"X-Correlation-ID": "REQ-UVICORN-1", "Authorization": f"Bearer {JWT}"},
                )
                assert response.json()["hello"] == "world"
                assert response.headers["x-correlation-id"] == "REQ-UVICORN-1"
                answered.add(response.json()["pid"])
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
            assert time.monotonic() < deadline, f"only {answered} answered"
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    raw = out + err
    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert EMAIL not in raw
    assert JWT not in raw
    events = [line["event"] for line in lines]
    assert any(e.startswith("Started parent process") for e in events)
    assert sum(e.startswith("Started server process") for e in events) == 2
    # The workers' last lines too: a spawned worker ends with os._exit, so no atexit flush.
    assert sum(e.startswith("Finished server process") for e in events) == 2, events
    assert len({line["pid"] for line in lines}) == 3  # the supervisor and two workers
    access = next(line for line in lines if line["event"] == "http_request")
    assert access["correlation_id"] == "REQ-UVICORN-1"
    assert access["path"] == f"/hello?email={REDACTED}"
    hello = next(line for line in lines if line["event"] == "hello_called")
    assert hello["correlation_id"] == "REQ-UVICORN-1"
