"""The worker board: a burst in one worker process defers the client's pages in another
(``proposals/board.py``); a process that died is not waited for."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tripquote.proposals.board import SLOTS, Board, create_board
from tripquote.proposals.bulkhead import PublicBulkhead

# Another worker: takes a slot, then sets its state from each line read ("1": in a burst,
# "0": out of it), answering "ok" after each.
OTHER_WORKER = """
import sys
from pathlib import Path
from tripquote.proposals.board import Board
board = Board(Path(sys.argv[1]))
print("ok", flush=True)
for line in sys.stdin:
    board.set(line.strip() == "1")
    print("ok", flush=True)
"""


class Worker:
    """Another process on the board, told when it is in a burst."""

    def __init__(self, board: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", OTHER_WORKER, str(board)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._answered()

    def _answered(self) -> None:
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ok"

    def in_burst(self, busy: bool) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("1\n" if busy else "0\n")
        self.process.stdin.flush()
        self._answered()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def board(tmp_path: Path) -> Path:
    path = tmp_path / "board"
    create_board(path)
    return path


def test_a_burst_in_another_process_is_seen_until_it_ends_or_the_process_dies(
    board: Path,
) -> None:
    mine = Board(board)
    other = Worker(board)
    try:
        assert not mine.any_busy()
        other.in_burst(True)
        assert mine.any_busy()
        other.in_burst(False)
        assert not mine.any_busy()
        other.in_burst(True)
        other.kill()  # in a burst when it died: not waited for
        assert not mine.any_busy()
        mine.set(True)
        assert mine.any_busy()
    finally:
        other.kill()


def test_a_worker_takes_a_dead_ones_slot_and_none_when_every_slot_is_live(
    board: Path,
) -> None:
    other = Worker(board)
    other.kill()
    mine = Board(board)
    assert mine._offset == 0  # the dead worker's slot, the first
    alive = os.getppid()  # a live process other than this one
    board.write_bytes(struct.pack("=qq", alive, 0) * SLOTS)
    with pytest.raises(RuntimeError, match="no free slot"):
        Board(board)


async def test_pages_wait_while_another_worker_is_in_a_burst(board: Path) -> None:
    served = 0

    async def app(scope: object, receive: object, send: object) -> None:
        nonlocal served
        served += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    bulkhead = PublicBulkhead(app, limit=2, queue=10, busy=10, max_wait=60, board=Board(board))
    other = Worker(board)
    try:
        other.in_burst(True)
        transport = httpx.ASGITransport(app=bulkhead)
        async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as client:
            page = asyncio.create_task(client.get("/p/x"))
            await asyncio.sleep(0.1)  # ten looks at the board: still in the other's burst
            assert served == 0 and not page.done()
            other.in_burst(False)
            assert (await page).status_code == 200 and served == 1
    finally:
        other.kill()
