"""JSON logging for the app and the ASGI server: every line on stdout is one JSON object.

structlog renders; stdlib records (uvicorn, SQLAlchemy, Alembic, warnings) go through
structlog's ``ProcessorFormatter``, so both share one processor chain: context variables, the
correlation ID, level, logger name, ISO UTC timestamp, tracebacks as a JSON field, redaction,
bounds. Every line is at most ``MAX_LINE_BYTES``: a text field longer than ``FIELD_CHARS`` (a
60,000-character URL) is cut where it is built (``bound_fields``), and a line still too long
has its longest values cut (``_render_json``); a cut value says so (``…[cut N chars]``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from tripquote.observability.bounds import FIELD_CHARS, cut, cut_tail, marker
from tripquote.observability.context import correlation_id_var

if TYPE_CHECKING:
    from tripquote.config import Settings

REDACTED = "[REDACTED]"

SENSITIVE_KEY = re.compile(
    r"authori[sz]ation|token|secret|passw(or)?d|passwd|pwd|e-?mail|phone|cookie|api[_-]?key"
    r"|credential",
    re.IGNORECASE,
)
"""Keys whose values never reach a log line (matched anywhere in the key, any case)."""

_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer " + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),  # JWT
    (re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}"), REDACTED),  # Telegram bot token
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), REDACTED),
    (re.compile(r"(://[^:/@\s]+):[^@/\s]+@"), r"\1:" + REDACTED + "@"),  # URL password
    (re.compile(r"\+[1-9][\d().\s-]{5,18}\d"), REDACTED),  # phone number, E.164 style
    (
        re.compile(
            r"(?i)([?&][\w-]*(?:token|secret|password|api_key|email|phone)[\w-]*=)[^&\s\"']*"
        ),
        r"\1" + REDACTED,
    ),
)

_NATIONAL_PHONE = re.compile(
    r"(?<![\w.+-])"  # not the tail of a word, a number, an id or an E.164 number
    r"(?:\(\d{2,4}\)[ .-]?\d{2,4}(?:[ .-]\d{2,4}){1,4}"  # (415) 555-0134
    r"|\d{2,4}(?:[ .-]\d{2,4}){2,5})"  # 06 12 34 56 78, 06.12.34.56.78, 415-555-0134
    r"(?!\w|[.:/-]\d)"  # nor the head of a longer one (a date-time, an address)
)
"""A phone number written the national way: groups of digits split by spaces, dots or dashes
(9 to 15 digits in all, see ``_mask_national_phone``), without the ``+`` of E.164."""

_PHONE_HINT = re.compile(r"(?<![\w.+-])(?:\(\d{2,4}\)|\d{2,4}[ .-]\d)")
"""Where ``_NATIONAL_PHONE`` could start (its own head): the UUIDs of every operation line (their
digit groups follow a letter or a dash) never reach that slower pattern."""


def _mask_national_phone(match: re.Match[str]) -> str:
    text = match.group()
    groups = re.findall(r"\d+", text)
    digits = sum(len(group) for group in groups)
    if not 9 <= digits <= 15:
        return text  # an ISO date (8 digits), a short code
    dotted = "." in text and not re.search(r"[ -]", text)
    if dotted and len(groups) == 4 and all(len(g) <= 3 for g in groups):
        return text  # an IPv4 address
    return REDACTED


QUIET_LOGGERS = {"sqlalchemy.engine": "WARNING", "httpx": "WARNING", "httpcore": "WARNING"}
"""httpx logs request URLs at INFO; a Telegram URL holds the bot token."""

_HANDLER_NAME = "tripquote-json"

_PID = [os.getpid()]
"""This process's id, kept current across forks: ``os.getpid`` is a system call, and every log
line asks (``add_pid``, ``LineWriter``)."""
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


class LineWriter:
    """Whole log lines to the current ``sys.stdout``, batched.

    One ``write`` per line made every request pay a system call on the event loop (~40 us on
    this machine's disk, the largest single cost of a trivial request). Lines are gathered and
    written together, in chunks of whole lines of at most ``CHUNK`` bytes: PIPE_BUF on Linux,
    so a chunk written to a pipe shared by several worker processes is never interleaved with
    another process's (POSIX ``write``), and no line is ever split. A line of WARNING or above
    is written at once with everything before it; the rest waits at most ``INTERVAL`` seconds
    (a daemon thread flushes), and everything is flushed at exit and on ``flush()``. What a
    ``kill -9`` can lose is the last ``INTERVAL`` of INFO lines.
    """

    CHUNK = 4096
    INTERVAL = 0.2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: list[str] = []
        self._size = 0
        self._pid = 0

    def write_line(self, line: str, *, urgent: bool = False) -> None:
        """Queue ``line`` (no newline); write at once when ``urgent`` or a chunk is full."""
        data = line + "\n"
        size = len(data) if data.isascii() else len(data.encode("utf-8", "replace"))
        with self._lock:
            if self._size + size > self.CHUNK:
                self._flush_locked()
            self._parts.append(data)
            self._size += size
            if urgent or self._size >= self.CHUNK:
                self._flush_locked()
            elif self._pid != _PID[0]:
                self._start_flusher()

    def flush(self) -> None:
        """Write every queued line now."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._parts:
            return
        text = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        stream = sys.stdout
        stream.write(text)
        stream.flush()

    def _start_flusher(self) -> None:
        # Per process: a forked child inherits the object but not the thread.
        self._pid = _PID[0]
        threading.Thread(target=self._flush_forever, name="log-flush", daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.INTERVAL)
            with contextlib.suppress(Exception):  # a broken stdout must not end the thread
                self.flush()


LINES = LineWriter()

MAX_LINE_BYTES = LineWriter.CHUNK - 1
"""The longest line in bytes, its newline not counted: a line fits in one pipe write."""
atexit.register(LINES.flush)


def flush_logs() -> None:
    """Write every log line still queued (tests reading stdout; shutdown)."""
    LINES.flush()


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler writing through ``LINES`` to whatever ``sys.stdout`` is then."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> Any:
        """The current ``sys.stdout`` (test runners and daemonizers replace it)."""
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and queue it. Written at once: WARNING and above, and the ASGI
        server's own lifecycle lines (a few per process; a spawned worker ends with
        ``os._exit``, which runs no ``atexit`` flush, so its last lines would be lost)."""
        try:
            LINES.write_line(
                self.format(record),
                urgent=record.levelno >= logging.WARNING or record.name == "uvicorn.error",
            )
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Write every queued line."""
        LINES.flush()


def _may_hold_secret(text: str) -> bool:
    # Every _VALUE_PATTERNS match contains one of these; most log strings (ids, codes,
    # timestamps) contain none, so the six regexes run only where they could match.
    return (
        "@" in text
        or "+" in text
        or "eyJ" in text
        or "=" in text
        or "earer" in text
        or "EARER" in text
        or (":" in text and len(text) >= 37)
    )


def _may_hold_phone(text: str) -> bool:
    # A national phone number starts as _PHONE_HINT does; most log strings (ids, UUIDs) do not.
    return _PHONE_HINT.search(text) is not None


_SUSPECT = re.compile(r"[@+=]|eyJ|earer|EARER|" + _PHONE_HINT.pattern)


def _may_hide_anything(text: str) -> bool:
    # _may_hold_secret(text) or _may_hold_phone(text) in one search: every value of every log
    # line (about 20 a line) is asked this.
    return _SUSPECT.search(text) is not None or (":" in text and len(text) >= 37)


_KEY_VERDICTS: dict[str, bool] = {}


def _sensitive_key(key: str) -> bool:
    verdict = _KEY_VERDICTS.get(key)
    if verdict is None:
        verdict = bool(SENSITIVE_KEY.search(key))
        if len(_KEY_VERDICTS) < 4096:  # log keys are a small fixed set; stay bounded anyway
            _KEY_VERDICTS[key] = verdict
    return verdict


_PLAIN = frozenset({int, float, bool})
_SEQUENCES = (list, tuple)  # tuples, not ``list | tuple``: that builds a union at every call
_CONTAINERS = (dict, list, tuple)


_SCRUB_MARGIN = 512
"""Characters scrubbed past the part of a text a log line keeps: a secret (an e-mail is at
most 254 characters) that the cut crosses is then masked whole, never left half visible."""


def _scrub_text(value: str) -> str:
    if _may_hold_secret(value):
        for pattern, replacement in _VALUE_PATTERNS:
            value = pattern.sub(replacement, value)
    if _may_hold_phone(value):
        value = _NATIONAL_PHONE.sub(_mask_national_phone, value)
    return value


def _scrub_long(value: str, limit: int, *, tail: bool) -> str:
    """A text longer than ``limit + _SCRUB_MARGIN``: only the part a line keeps (the head, or
    the tail of a stack trace) is scrubbed, then cut to ``limit`` as ``bounds.cut`` /
    ``cut_tail`` would (N counted on the text as given). The patterns' cost grows with the
    square of a run of characters they scan (a 60,000-character URL took seconds of the event
    loop); bounded here, it cannot."""
    window = value[-(limit + _SCRUB_MARGIN) :] if tail else value[: limit + _SCRUB_MARGIN]
    scrubbed = _scrub_text(window)
    keep = max(limit - len(marker(len(value))), 0)
    if tail:
        kept = scrubbed[len(scrubbed) - keep :] if len(scrubbed) > keep else scrubbed
        return f"[cut {len(value) - len(kept):,} chars]…" + kept
    kept = scrubbed[:keep]
    return kept + marker(len(value) - len(kept))


def scrub(value: Any, *, tail: bool = False) -> Any:
    """``value`` with sensitive keys masked and bearer/JWT/e-mail/phone/credential text
    replaced; a text longer than ``FIELD_CHARS`` (a stack trace, ``tail``: than a whole line,
    ``MAX_LINE_BYTES``) is cut to it, as ``bound_fields`` and ``_fit_line`` would, only its kept
    part scrubbed (``_scrub_long``)."""
    if isinstance(value, str):
        limit = MAX_LINE_BYTES if tail else FIELD_CHARS
        if len(value) > limit + _SCRUB_MARGIN:
            return _scrub_long(value, limit, tail=tail)
        return _scrub_text(value)
    if isinstance(value, dict):
        scrubbed = {}
        verdicts = _KEY_VERDICTS
        for key, item in value.items():
            if isinstance(key, str) and (verdicts[key] if key in verdicts else _sensitive_key(key)):
                scrubbed[key] = REDACTED
            elif item is None or type(item) in _PLAIN:
                scrubbed[key] = item  # numbers, booleans: nothing to hide
            elif type(item) is str and len(item) <= FIELD_CHARS and not _may_hide_anything(item):
                scrubbed[key] = item
            else:
                scrubbed[key] = scrub(item, tail=key in _TAIL_KEYS)
        return scrubbed
    if isinstance(value, _SEQUENCES):
        return type(value)(scrub(item) for item in value)
    return value


_LINK_PATH = re.compile(r"/p/.*?(/pdf|/accept|/decline)?/?$", re.DOTALL | re.IGNORECASE)
_B64 = "A-Za-z0-9_-"
_TOKEN_LIKE = re.compile(
    rf"(?<![{_B64}])(?![0-9a-fA-F]{{8}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-"
    rf"[0-9a-fA-F]{{12}}(?![{_B64}]))[{_B64}]{{32,64}}(?![{_B64}])"
)
"""A run of 32 to 64 base64url characters that is no UUID (the API's ids): a link's token (43)
or most of one, wherever a client put it (``/<token>``, ``/<token>.html``)."""
LINK_PLACEHOLDER = "[link]"


def redact_path(path: str) -> str:
    """A request path as logged: everything after its first ``/p/`` (a proposal link's token,
    a bearer secret in the URL, however the path around it was mangled: ``//p/<token>``, a
    trailing slash, an encoded ``/`` inside it) replaced by ``[link]``, but the page's own
    ending (``/pdf``, ``/accept``, ``/decline``), kept to tell the requests apart; and any
    other segment that may be a token (``/<token>``: the ``/p`` left out)."""
    if "/p/" in path or "/P/" in path:
        path = _LINK_PATH.sub(lambda m: f"/p/{LINK_PLACEHOLDER}{m.group(1) or ''}", path, 1)
    return _TOKEN_LIKE.sub(LINK_PLACEHOLDER, path) if len(path) > 32 else path


def redact_query(query: str) -> str:
    """A query string as logged: what may be a link's token (``_TOKEN_LIKE``) replaced by
    ``[link]``."""
    return _TOKEN_LIKE.sub(LINK_PLACEHOLDER, query) if len(query) >= 32 else query


def redact_target(target: str) -> str:
    """A request target (``path?query``) as logged: ``redact_path``, ``redact_query``."""
    path, mark, query = target.partition("?")
    return redact_path(path) + mark + redact_query(query)


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: mask sensitive keys and secret-looking text anywhere in the event."""
    scrubbed: EventDict = scrub(event_dict)
    return scrubbed


_TAIL_KEYS = frozenset({"exception", "stack"})
"""Stack traces: not cut by ``bound_fields`` (a traceback is ours, not a client's), and cut
from their start when a line is too long (their end says what failed)."""


def _bound(value: Any) -> Any:
    if type(value) is str:
        return value if len(value) <= FIELD_CHARS else cut(value, FIELD_CHARS)
    if isinstance(value, dict):
        return {key: _bound(item) for key, item in value.items()}
    if isinstance(value, _SEQUENCES):
        return [_bound(item) for item in value]
    return value


def bound_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: every text value (nested ones too) cut to ``FIELD_CHARS`` characters."""
    for key, value in event_dict.items():
        if type(value) is str:
            if len(value) > FIELD_CHARS and key not in _TAIL_KEYS:
                event_dict[key] = cut(value, FIELD_CHARS)
        elif isinstance(value, _CONTAINERS):
            event_dict[key] = _bound(value)
    return event_dict


def add_correlation_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: ``correlation_id`` from the request context, unless the event sets its own."""
    if "correlation_id" not in event_dict:
        correlation_id = correlation_id_var.get()
        if correlation_id is not None:
            event_dict["correlation_id"] = correlation_id
    return event_dict


def add_pid(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: the process id (several workers write to one stream); read once per process
    (``getpid`` is a system call per log line otherwise)."""
    event_dict.setdefault("pid", _PID[0])
    return event_dict


def _uvicorn_access_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    args = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if (
        getattr(record, "name", "") == "uvicorn.access"
        and isinstance(args, tuple)
        and len(args) == 5
    ):
        client, method, path, http_version, status = args
        event_dict.update(
            event="http_request",
            client_addr=client,
            method=method,
            path=redact_target(path) if isinstance(path, str) else path,
            http_version=http_version,
            status=status,
        )
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        add_correlation_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        add_pid,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def json_formatter(**_ignored: Any) -> logging.Formatter:
    """A stdlib formatter rendering any record as one redacted JSON line (dictConfig factory)."""
    if not structlog.is_configured():
        _configure_structlog()
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), _uvicorn_access_fields],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            bound_fields,
            structlog.processors.JSONRenderer(serializer=_render_json),
        ],
        pass_foreign_args=True,
    )


def _render_json(event: Any, **_: Any) -> str:
    line = orjson.dumps(event, default=str)
    if len(line) > MAX_LINE_BYTES:
        line = _fit_line(event, line)
    return line.decode()


_KEPT_WHEN_NOTHING_FITS = ("event", "level", "logger", "timestamp", "correlation_id", "pid")


def _fit_line(event: dict[str, Any], line: bytes) -> bytes:
    """``event`` rendered in at most ``MAX_LINE_BYTES``: the values above a common size cut to
    it (the longest ones lose most, short ones nothing); only its identity if that cannot fit."""
    fitted = dict(event)
    for _attempt in range(3):
        over = len(line) - MAX_LINE_BYTES
        if over <= 0:
            return line
        sizes = {key: len(_dumps(value)) for key, value in fitted.items()}
        level = _water_level(list(sizes.values()), sum(sizes.values()) - over)
        if level < 64:
            break
        for key, size in sizes.items():
            if size > level:
                fitted[key] = _cut_to_bytes(event[key], level, tail=key in _TAIL_KEYS)
        line = _dumps(fitted)
    if len(line) <= MAX_LINE_BYTES:
        return line
    kept = {
        key: cut(value, 128) if isinstance(value, str) else value
        for key in _KEPT_WHEN_NOTHING_FITS
        if (value := fitted.get(key)) is not None
    }
    return _dumps(kept | {"cut": f"{len(fitted) - len(kept)} fields too long together"})


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


def _cut_to_bytes(value: Any, budget: int, *, tail: bool) -> str:
    """``value`` (as text) cut to render in at most ``budget`` bytes, marker included."""
    text = value if isinstance(value, str) else _dumps(value).decode()
    cutter = cut_tail if tail else cut
    low, high = 0, len(text)  # characters kept: the most that fit (escapes take up to 6 bytes)
    while low < high:
        middle = (low + high + 1) // 2
        if len(_dumps(cutter(text, middle))) <= budget:
            low = middle
        else:
            high = middle - 1
    return cutter(text, low)


def _water_level(sizes: list[int], target: int) -> int:
    """The largest cap L with ``sum(min(size, L)) <= target``."""
    ordered = sorted(sizes, reverse=True)
    rest = sum(ordered)
    for count, size in enumerate(ordered, start=1):
        rest -= size
        level = (target - rest) // count  # the ``count`` largest capped at L, the others whole
        if count == len(ordered) or level >= ordered[count]:
            return max(level, 0)
    return 0


class StdoutLogger:
    """structlog's output end for our own events: each rendered line to the current
    ``sys.stdout`` through ``LINES``, WARNING and above at once. Skipping stdlib logging
    (LogRecord, handler lock, ProcessorFormatter) halves the cost of the per-operation line;
    stdlib records (uvicorn, SQLAlchemy) keep that path and join the same ``LINES``."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or "tripquote"

    def msg(self, message: str) -> None:
        """Queue one rendered JSON line (see ``LineWriter``)."""
        LINES.write_line(message)

    def urgent(self, message: str) -> None:
        """Write one rendered JSON line now, with every line queued before it."""
        LINES.write_line(message, urgent=True)

    debug = info = log = msg
    warning = warn = error = critical = exception = fatal = urgent


def _stdout_logger(*args: Any) -> StdoutLogger:
    return StdoutLogger(args[0] if args and isinstance(args[0], str) else None)


def _add_logger_name(logger: WrappedLogger, _: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("logger", getattr(logger, "name", "tripquote"))
    return event_dict


def configure_cli_logging() -> None:
    """The CLI's commands: CRITICAL only (a command's failure is its own one JSON line, so an
    error logged on the way would say it twice), one JSON object a line on stderr (stdout
    keeps each command's own output, e.g. its ``--json`` result). ``serve`` and ``demo``
    switch to ``configure_logging`` when their app starts."""
    _configure_structlog("CRITICAL", factory=structlog.PrintLoggerFactory(sys.stderr))
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _configure_structlog(
    level: str = "INFO", *, factory: Callable[..., Any] = _stdout_logger
) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_correlation_id,
            structlog.processors.add_log_level,
            _add_logger_name,
            add_pid,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact,
            bound_fields,
            # Ours, after the redaction: its digit groups would send every line through the
            # phone-number search.
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=_render_json),
        ],
        logger_factory=factory,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        # Not cached: a later configure_logging (another level) must reach every logger.
        cache_logger_on_first_use=False,
    )


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    structlog.get_logger("tripquote").critical("uncaught_exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


def configure_logging(settings: Settings) -> None:
    """Route every log line (app, uvicorn, alembic) to stdout as one JSON object."""
    _configure_structlog(settings.log_level)
    handler = StdoutHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Loggers that brought their own stream handlers (uvicorn's defaults) now defer to root.
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            own = [h for h in logger.handlers if type(h) is logging.StreamHandler]
            for old in own:
                logger.removeHandler(old)
            if own:  # a logger silenced on purpose (uvicorn.access off) stays silent
                logger.propagate = True
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn whose access and error lines are JSON."""
    level = settings.log_level.upper()
    # Plain data and import strings only: with ``workers > 1`` uvicorn pickles this into each
    # spawned worker, which builds the formatter itself. Formatter names are uvicorn's own so
    # its ``use_colors`` handling finds them.
    formatter = {"()": f"{__name__}.json_formatter"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": dict(formatter), "access": dict(formatter)},
        "handlers": {
            "default": {"class": f"{__name__}.StdoutHandler", "formatter": "default"},
        },
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
            **{name: {"level": lvl} for name, lvl in QUIET_LOGGERS.items()},
        },
        "root": {"handlers": ["default"], "level": level},
    }
