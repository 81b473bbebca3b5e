"""JSON in and out of the quote domain without a binary float anywhere on the money path.

Parsing (RFC 8259): every number with a fraction or an exponent becomes ``decimal.Decimal``
straight from its text; integers stay ``int``. Pydantic's own JSON parser goes through
``float``, so request bodies are parsed here and validated in Python mode.
Rendering: ``Decimal`` as a plain decimal string (``"1010.93"``, never an exponent), dates and
date-times as ISO 8601, UTC date-times ending in ``Z``.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, NoReturn

import orjson

from tripquote.errors import QuoteValidationFailed, field_error

__all__ = ["canonical", "dumps", "loads"]


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _Rejected(ValueError):
    """A JSON text that parses but is not acceptable (NaN, duplicate key, lone surrogate)."""


def loads(raw: bytes) -> Any:
    """Parse UTF-8 JSON (RFC 8259) to dict/list/str/int/Decimal/bool/None; QuoteValidationFailed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"The body is not valid UTF-8 (invalid byte at offset {exc.start}).")
    try:
        value = json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        _fail(f"Malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.")
    except _Rejected as exc:
        _fail(str(exc))
    except RecursionError:
        _fail("The JSON document is nested too deeply.")
    except ValueError:
        # int() refuses integers longer than sys.get_int_max_str_digits() (4300 by default).
        _fail("The JSON document contains a number with too many digits.")
    if _SURROGATE_ESCAPE.search(text):  # a lone surrogate can only come from a \u escape
        _check_strings(value)
    return value


def dumps(obj: Any) -> bytes:
    """Render UTF-8 JSON bytes: Decimal as plain decimal text, dates ISO 8601, UTC with ``Z``."""
    return orjson.dumps(obj, default=_default, option=orjson.OPT_UTC_Z)


def canonical(obj: Any) -> bytes:
    """``dumps`` with object keys sorted: equal for equal JSON values, and only for them
    (``true`` is not ``1``, as it is for Python's ``==``; key order does not count)."""
    return orjson.dumps(obj, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_SORT_KEYS)


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise TypeError("NaN and infinite Decimals have no JSON form")
        # Format "f" never uses exponent notation: Decimal("1E+3") renders as "1000".
        return format(obj, "f")
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _fail(message: str) -> NoReturn:
    raise QuoteValidationFailed(
        "The request body is not valid JSON.",
        details={"errors": [field_error("", "json_invalid", message)]},
    )


def _reject_constant(name: str) -> NoReturn:
    raise _Rejected(f"{name} is not a valid JSON number (RFC 8259 §6).")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate names are ambiguous (RFC 8259 §4): parsers disagree on which one wins, so refuse.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Rejected("An object in the body has the same key more than once.")
    return result


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates (``"\\ud800"``): they are not Unicode text and cannot be stored."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            _check_text(node)
        elif isinstance(node, dict):
            for key, item in node.items():
                _check_text(key)
                stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        _fail("A string in the body contains an unpaired UTF-16 surrogate escape.")
