"""Client request body."""

from __future__ import annotations

import functools
import string
from collections.abc import Iterable
from typing import Annotated

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from tripquote.quotes.schemas import DocumentedPattern, Text200, at_most, stripped_pattern

Name = Text200
"""1-200 characters after trimming, no control characters, not only invisible ones."""
_PHONE_CHARACTERS = r"0-9+() .\-"
Phone = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=64, pattern=rf"^[{_PHONE_CHARACTERS}]+$"
    ),
    DocumentedPattern(functools.partial(stripped_pattern, _PHONE_CHARACTERS, 3)),
    at_most(64),
]


def _letters_except(words: Iterable[str], *, longest: int = 63) -> str:
    """A regex of 1 to ``longest`` ASCII letters, any case, that is none of ``words``."""
    forbidden = {word.lower() for word in words}
    lengths = sorted({len(word) for word in forbidden})
    branches = []
    for low, high in zip(
        [1, *(n + 1 for n in lengths)], [*(n - 1 for n in lengths), longest], strict=True
    ):
        if low <= high:  # the lengths no forbidden word has
            branches.append(f"[A-Za-z]{{{low},{high}}}")
    for length in lengths:
        branches.append(_trie_complement("", {w for w in forbidden if len(w) == length}, length))
    return "(?:" + "|".join(branches) + ")"


def _trie_complement(prefix: str, words: set[str], length: int) -> str:
    # Strings of ``length`` letters starting with ``prefix`` that are none of ``words``.
    nexts = sorted({word[len(prefix)] for word in words})
    others = "".join(c for c in string.ascii_lowercase if c not in nexts)
    rest = length - len(prefix) - 1
    branches = [f"[{others}{others.upper()}][A-Za-z]{{{rest}}}"] if others else []
    for char in nexts:
        longer = prefix + char
        if len(longer) < length:
            inner = _trie_complement(longer, {w for w in words if w.startswith(longer)}, length)
            branches.append(f"[{char}{char.upper()}]{inner}")
    return "(?:" + "|".join(branches) + ")"


_ATEXT = "[A-Za-z0-9_+-]"
_LABEL = "[A-Za-z0-9]{1,20}(?:-[A-Za-z0-9]{1,20}){0,2}"
EMAIL_PATTERN = (
    f"^{_ATEXT}{{1,32}}(?:\\.{_ATEXT}{{1,15}}){{0,2}}"
    f"@(?:{_LABEL}\\.){{1,3}}{_letters_except(SPECIAL_USE_DOMAIN_NAMES)}$"
)
"""The addresses the document promises to take: plain ASCII ones (the service also takes
internationalized ones) whose top-level domain is no special-use name (``.test``, ``.local``:
no mail reaches them, and the service refuses them)."""


LOCAL_PART_MAX = 64
"""Octets before the ``@`` (RFC 5321 §4.5.3.1.1); ``email_validator`` checks it only when
strict."""


def _address_alone(value: object) -> object:
    """An e-mail address and nothing else: the parser takes ``Name <address>`` and drops the
    name, so a client's field would be stored other than sent; and at most ``LOCAL_PART_MAX``
    octets before the ``@``."""
    if isinstance(value, str):
        if "<" in value or ">" in value:
            raise PydanticCustomError(
                "value_error", "email must be the address alone, without a name or <brackets>."
            )
        local = value.strip().rpartition("@")[0]
        if len(local.encode("utf-8")) > LOCAL_PART_MAX:
            raise PydanticCustomError(
                "value_error",
                f"email must have at most {LOCAL_PART_MAX} characters before the @ (RFC 5321).",
            )
    return value


class ClientIn(BaseModel):
    """``POST /api/agents/clients`` body; unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="The client's full name.", examples=["Aiko Tanaka"])
    email: (
        Annotated[
            EmailStr,
            BeforeValidator(_address_alone),
            WithJsonSchema({"type": "string", "format": "email", "pattern": EMAIL_PATTERN}),
        ]
        | None
    ) = Field(default=None, examples=["aiko@example.com"])
    phone: Phone | None = Field(default=None, examples=["+81 3 1234 5678"])
