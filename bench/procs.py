"""Server processes started by the bench: started in their own session, always stopped.

Each server runs in a new process group (so Ctrl-C in the terminal reaches only the bench,
which then stops them in order); its output goes to a log file, never to a pipe that could
fill up and block it. :func:`stop_all` is registered with ``atexit`` and called from the
bench's ``finally``; it sends SIGTERM to each group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

_RUNNING: list[Server] = []
STARTED: list[dict[str, object]] = []  # every server this process started (name, pid, log)


@dataclass
class Server:
    """A started server process group, its base URL and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def alive(self) -> bool:
        """True while the leader process has not exited."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL what is left."""
        if self in _RUNNING:
            _RUNNING.remove(self)
        pgid = self.process.pid  # the leader of its own session: pgid == pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        # Workers may outlive a leader that died; the group id is still ours.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(name: str, argv: list[str], *, env: dict[str, str], port: int, log_dir: Path) -> Server:
    """Start ``argv`` in its own session with output to ``log_dir/name.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    server = Server(name, process, f"http://127.0.0.1:{port}", log_path)
    _RUNNING.append(server)
    STARTED.append({"name": name, "pid": process.pid, "log": str(log_path)})
    return server


async def wait_ready(server: Server, path: str, *, within: float = 90.0) -> float:
    """Poll ``path`` until it answers 200; return the seconds it took. Raises on exit/timeout."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            if not server.alive():
                raise RuntimeError(
                    f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                response = await client.get(server.base_url + path)
                if response.status_code == 200:
                    return time.monotonic() - started
            if time.monotonic() - started > within:
                raise RuntimeError(
                    f"{server.name} not ready on {path} after {within:.0f}s:\n{server.log_tail()}"
                )
            await asyncio.sleep(0.25)


def stop_all() -> None:
    """Stop every server this process started and has not stopped yet."""
    for server in list(_RUNNING):
        server.stop()


atexit.register(stop_all)
