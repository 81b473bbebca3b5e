"""What the worker processes of one ``tripquote serve`` tell each other: whether each is in a
burst of agent requests, so that every process's bulkhead (``proposals/bulkhead.py``) sees a
burst wherever it landed. A connection goes to whichever worker accepts it first: a
burst may fill one worker's pool while another, nearly idle, would serve pages on the same
cores.

The board is a small file (``settings.worker_board``, made by ``tripquote serve --workers
N``), mapped into each worker: ``SLOTS`` slots of two signed 64-bit integers, a process's pid
and whether it is in a burst (1) or not (0). A worker takes the first free slot (pid 0, or a
process that is gone) under an exclusive ``flock`` of the file, then writes its state there
when it changes (one aligned 8-byte store, read whole by the others); readers look at live
processes only (a worker that died leaves its slot to the next one started).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

SLOTS = 64
"""At most this many worker processes share a board (``tripquote serve --workers`` ≤ 64)."""

_SLOT = struct.Struct("=qq")  # pid, in a burst (1) or not (0)


def create_board(path: Path) -> None:
    """Write an empty board at ``path`` (every slot free)."""
    path.write_bytes(bytes(SLOTS * _SLOT.size))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class Board:
    """This process's slot on the board at ``path``: ``set`` its state, ``any_busy`` of all.
    Raises ``OSError`` when the file cannot be opened or mapped, ``RuntimeError`` when
    every slot is taken by a live process."""

    def __init__(self, path: Path) -> None:
        self.pid = os.getpid()
        with path.open("r+b") as file:
            self._map = mmap.mmap(file.fileno(), SLOTS * _SLOT.size)
            fcntl.flock(file, fcntl.LOCK_EX)  # one process takes a slot at a time
            try:
                self._offset = self._take_slot()
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)

    def _take_slot(self) -> int:
        for slot in range(SLOTS):
            offset = slot * _SLOT.size
            pid, _ = _SLOT.unpack_from(self._map, offset)
            if pid in (0, self.pid) or not _alive(pid):
                _SLOT.pack_into(self._map, offset, self.pid, 0)
                return offset
        raise RuntimeError(f"the worker board has no free slot of {SLOTS}")

    def set(self, busy: bool) -> None:
        """Whether this process is in a burst of agent requests."""
        struct.pack_into("=q", self._map, self._offset + 8, int(busy))

    def any_busy(self) -> bool:
        """Whether a live process of the board (this one included) is in a burst."""
        for slot in range(SLOTS):
            pid, busy = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if pid and busy and (pid == self.pid or _alive(pid)):
                return True
        return False
