"""The OpenAPI document's pattern of each text field accepts exactly what the field's validator
accepts (within the field's length): a client generator or fuzzer that trusts the document is
never refused for the text of a name, and the document never calls a taken string invalid."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from tripquote.clients.schemas import ClientIn
from tripquote.quotes.schemas import WHITE_SPACE, QuoteIn, Text200

# Every kind of character the rules tell apart: controls (line breaks among them), the white
# space strip removes (\x1c-\x1f is Python's white space, not Unicode's), invisible format
# characters (BMP and astral), visible letters and digits, phone punctuation.
_INTERESTING = (
    "\x00\t\n\x0b\x0c\r\x1c\x1f \x7f\x85\x9f\xa0\xad\u200b\u2028\u202f\u3000\ufeff"
    "\U000e0001\U0001d173aZ9+()-.é漢\U0001f600\u202e\u2066\u200e"
)
TEXT = st.text(alphabet=st.sampled_from(_INTERESTING), max_size=8) | st.text(max_size=8)


FIELDS = [
    (ClientIn, "name"),
    (ClientIn, "phone"),
    (QuoteIn, "clientId"),
    (QuoteIn, "tripName"),
    (QuoteIn, "notes"),
]


def _accepted(model: Any, name: str, value: str) -> bool:
    payload = {"name": "x"} if model is ClientIn else {}
    try:
        model.model_validate({**payload, name: value}, by_alias=True, strict=False)
    except ValidationError as exc:
        return not any(error["loc"][0] == name for error in exc.errors())
    return True


@functools.cache
def _string_schema(model: Any, name: str) -> tuple[dict[str, Any], re.Pattern[str]]:
    schema = model.model_json_schema()["properties"][name]
    string = next(s for s in schema.get("anyOf", [schema]) if s.get("type") == "string")
    # ECMA 262's $ is the end of the text; Python's also matches before a final line break.
    return string, re.compile(string["pattern"].removesuffix("$") + r"\Z")


@pytest.mark.parametrize(("model", "name"), FIELDS, ids=lambda v: getattr(v, "__name__", v))
@settings(max_examples=400, deadline=None)
@given(value=TEXT)
@example(value=" \u200b ")  # only invisible: refused
@example(value="\u200ba\u200b")
@example(value="a\x1f")  # \x1f is not stripped: a control character
@example(value="\t a \n")
@example(value="a\nb")
@example(value="  1  ")
@example(value=" 123 ")
def test_the_documented_pattern_is_the_validator(model: Any, name: str, value: str) -> None:
    string, pattern = _string_schema(model, name)
    if len(value) > string.get("maxLength", sys.maxsize):
        return
    documented = pattern.search(value) is not None and len(value) >= string.get("minLength", 0)
    assert documented == _accepted(model, name, value), (name, value, string["pattern"][:80])


def test_strip_removes_exactly_the_unicode_white_space() -> None:
    # WHITE_SPACE is what the patterns allow around a value: pydantic's strip_whitespace.
    # Candidates: Python's white space (a superset of Unicode's), separators and controls.
    adapter = TypeAdapter(Text200)
    stripped = set()
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if not (char.isspace() or unicodedata.category(char) in ("Zs", "Zl", "Zp", "Cc", "Cf")):
            continue
        try:
            if adapter.validate_python("a" + chr(code)) == "a":
                stripped.add(code)
        except ValidationError:
            pass
    assert stripped == WHITE_SPACE
