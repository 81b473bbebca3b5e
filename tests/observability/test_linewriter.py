"""LineWriter: log lines batched into whole-line writes of at most PIPE_BUF bytes, WARNING and
above at once, the rest flushed by a background thread or at exit."""

from __future__ import annotations

import io
import sys
import threading
import time
from typing import Any

import pytest

from tripquote.observability.logging import LineWriter, flush_logs


class RecordingStdout(io.StringIO):
    """A stdout that records each write (what reaches the file descriptor after flush)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.writes.append(text)
        return super().write(text)


def _record_stdout(monkeypatch: pytest.MonkeyPatch) -> RecordingStdout:
    # In the test body, not a fixture: pytest's capture re-installs sys.stdout after set-up.
    # Lines earlier tests left in the process's writer go out first, not into the recording.
    flush_logs()
    fake = RecordingStdout()
    monkeypatch.setattr(sys, "stdout", fake)
    return fake


def _writer() -> LineWriter:
    writer = LineWriter()
    writer._pid = -1
    writer._start_flusher = lambda: None  # type: ignore[method-assign]
    return writer


def test_lines_are_written_in_whole_line_chunks_of_at_most_pipe_buf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdout = _record_stdout(monkeypatch)
    writer = _writer()
    lines = [f'{{"n":{n},"pad":"{"x" * (n % 300)}"}}' for n in range(200)]
    for line in lines:
        writer.write_line(line)
    writer.flush()
    assert "".join(stdout.writes) == "".join(line + "\n" for line in lines)
    assert len(stdout.writes) > 1
    for chunk in stdout.writes:
        assert chunk.endswith("\n")
        assert len(chunk.encode()) <= LineWriter.CHUNK


def test_nothing_is_written_before_a_flush_or_an_urgent_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdout = _record_stdout(monkeypatch)
    writer = _writer()
    writer.write_line("info 1")
    writer.write_line("info 2")
    assert stdout.writes == []
    writer.write_line("error", urgent=True)
    assert stdout.writes == ["info 1\ninfo 2\nerror\n"]


def test_a_line_longer_than_a_chunk_is_written_alone_and_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdout = _record_stdout(monkeypatch)
    writer = _writer()
    writer.write_line("before")
    long_line = "y" * (LineWriter.CHUNK + 10)
    writer.write_line(long_line)
    writer.write_line("after")
    writer.flush()
    assert stdout.writes == ["before\n", long_line + "\n", "after\n"]


def test_chunk_size_counts_bytes_not_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = _record_stdout(monkeypatch)
    writer = _writer()
    line = "é" * 1000  # 2,000 bytes in UTF-8, 1,000 characters
    for _ in range(5):
        writer.write_line(line)
    writer.flush()
    assert all(len(chunk.encode()) <= LineWriter.CHUNK for chunk in stdout.writes)
    assert len(stdout.writes) == 3  # 2 + 2 + 1 lines


def test_the_background_thread_writes_queued_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = _record_stdout(monkeypatch)
    writer = LineWriter()
    writer.write_line("queued")
    deadline = time.monotonic() + 10
    while not stdout.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stdout.writes == ["queued\n"]


def test_lines_from_threads_are_never_mixed(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = _record_stdout(monkeypatch)
    writer = _writer()

    def emit(tag: str) -> None:
        for n in range(300):
            writer.write_line(f"{tag}-{n}-" + "z" * 50, urgent=n % 37 == 0)

    threads = [threading.Thread(target=emit, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.flush()
    written: list[Any] = "".join(stdout.writes).splitlines()
    assert sorted(written) == sorted(f"t{i}-{n}-" + "z" * 50 for i in range(4) for n in range(300))
    for i in range(4):
        mine = [line for line in written if line.startswith(f"t{i}-")]
        assert mine == [f"t{i}-{n}-" + "z" * 50 for n in range(300)]
