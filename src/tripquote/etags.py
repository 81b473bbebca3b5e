"""Entity tags and the two preconditions that carry them, ``If-Match`` and ``If-None-Match``
(RFC 9110 §8.8.3, §13.1.1, §13.1.2): the grammar once, for both headers.

A quote version's ETag is strong, its decimal version quoted: ``"5"`` (``"5-expired"`` once it
reads EXPIRED: ``etag``). A header is ``*`` or a comma-separated list of entity tags (empty
list elements are ignored, RFC 9110 §5.6.1); any other value is malformed: 400
QUOTE_VALIDATION_FAILED at the header's name. A well-formed tag that names no version
(``"abc"``, ``"0"``, ``"05"``, ``W/"5"`` under If-Match's strong comparison) is not malformed:
it simply matches nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import Headers

from tripquote.errors import QuoteValidationFailed, field_error
from tripquote.quotes.lifecycle import QuoteStatus
from tripquote.quotes.rules import MAX_VERSION

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text (%x80-FF).
# A tag may hold a comma, so a list is scanned tag by tag, never split on commas.
_ETAGC = r"[\x21\x23-\x7e\x80-\xff]"
_TAG = rf'(W/)?("{_ETAGC}*")'
_FIRST = re.compile(rf"[ \t,]*{_TAG}")  # OWS and empty list elements, then a tag
_NEXT = re.compile(rf"[ \t]*,[ \t,]*{_TAG}")  # OWS "," OWS (empty elements too), then a tag
_END = re.compile(r"[ \t,]*")  # trailing OWS and empty elements
_VERSION = re.compile(r'"([1-9][0-9]{0,9})(?:-expired)?"')  # as ETag sends it: no sign, no 0…

PATTERN = rf"^[ \t]*(\*|[ \t,]*{_TAG}([ \t]*,[ \t,]*{_TAG})*[ \t,]*)[ \t]*$"
"""The grammar as a JSON Schema ``pattern`` (ECMA 262), for the OpenAPI document."""
STRONG_TAG_PATTERN = f'^"{_ETAGC}*"$'
"""One strong entity tag as a JSON Schema ``pattern``: what the OpenAPI document asks in
If-Match (``*``, weak tags and lists, which the grammar also takes, name no single version)."""


@dataclass(frozen=True, slots=True)
class EntityTag:
    """One entity tag: its opaque tag (quotes included) and whether it is weak."""

    opaque: str
    weak: bool = False


ANY: Literal["*"] = "*"
Condition = Literal["*"] | tuple[EntityTag, ...]
"""A parsed precondition header: ``*`` (any current representation) or its tags, in order."""


def etag(version: int, status: str | None = None) -> str:
    """The strong ETag of a quote version (RFC 9110 §8.8.3): ``"5"``; read EXPIRED
    (``status``, as of the read), ``"5-expired"``. A SENT quote whose offer has ended reads
    EXPIRED at the version that sent it until the expiry sweep writes the next one: another
    representation, so another tag (a cache revalidating its SENT copy gets 200, not 304).
    Both name version 5 in If-Match."""
    return f'"{version}-expired"' if status == QuoteStatus.EXPIRED else f'"{version}"'


def field_value(headers: Headers, name: str) -> str | None:
    """Header field ``name`` as one value, every line of it: the lines joined by commas (RFC
    9110 §5.3), so ``If-Match: "1"`` and ``If-Match: "2"`` is the list ``"1", "2"``, and two
    lines of a one-value field (``Authorization``, ``Content-Type``) are refused as one value
    that is none, never one of them chosen; None when it was not sent."""
    lines = headers.getlist(name)
    return ", ".join(lines) if lines else None


def condition(headers: Headers, header: str) -> Condition | None:
    """The precondition ``header`` (``If-Match``, ``If-None-Match``) of a request, every line
    of it (``field_value``), parsed (``parse``): None when absent, QUOTE_VALIDATION_FAILED
    when malformed."""
    return parse(field_value(headers, header), header)


def parse(value: str | None, header: str) -> Condition | None:
    """``value`` of the precondition ``header`` (``If-Match``, ``If-None-Match``); None when
    absent. QUOTE_VALIDATION_FAILED at ``header`` when it is neither ``*`` nor a list of at
    least one entity tag (e.g. an unquoted ``5``)."""
    if value is None:
        return None
    if value.strip(" \t") == ANY:
        return ANY
    tags: list[EntityTag] = []
    match = _FIRST.match(value)
    end = 0
    while match is not None:
        tags.append(EntityTag(opaque=match.group(2), weak=match.group(1) is not None))
        end = match.end()
        match = _NEXT.match(value, end)
    tail = _END.match(value, end)
    if not tags or tail is None or tail.end() != len(value):
        raise QuoteValidationFailed(
            f'{header} must be * or a list of entity tags as ETag sends them, e.g. "5".',
            details={
                "errors": [
                    field_error(header, "invalid", 'Expected an entity tag like "5" (quoted).')
                ]
            },
        )
    return tuple(tags)


def version_of(tag: EntityTag) -> int | None:
    """The quote version a strong tag names (strong comparison, RFC 9110 §8.8.3.2): None for a
    weak tag or one no version's ETag equals."""
    match = None if tag.weak else _VERSION.fullmatch(tag.opaque)
    if match is None or int(match.group(1)) > MAX_VERSION:
        return None
    return int(match.group(1))


NO_VERSION = 0
"""What ``if_match_version`` answers for tags that name no version: no quote ever has
version 0, so the precondition fails (412 QUOTE_CONFLICT_VERSION, ``expectedVersion`` 0)."""


def if_match_version(condition: Condition | None) -> int | None:
    """The version an If-Match condition names for an edit: None when absent or ``*`` (any
    current quote: the body's ``version`` then names it), ``NO_VERSION`` when no tag can
    match a version; QUOTE_VALIDATION_FAILED at If-Match when the tags name several versions
    (an edit is made to one version, as body and If-Match must agree)."""
    if condition is None or condition == ANY:
        return None
    versions = {v for v in map(version_of, condition) if v is not None}
    if len(versions) > 1:
        raise QuoteValidationFailed(
            "If-Match names several versions: name the one edited.",
            details={
                "errors": [
                    field_error("If-Match", "ambiguous", "Send the one ETag of the version edited.")
                ]
            },
        )
    return versions.pop() if versions else NO_VERSION


def match_fails(condition: Condition | None, current: str) -> bool:
    """Whether If-Match is false for a representation whose ETag is ``current`` (RFC 9110
    §13.1.1: ``*`` matches any; strong comparison, a weak tag matches nothing): the request is
    then refused, 412."""
    if condition is None or condition == ANY:
        return False
    return not any(not tag.weak and tag.opaque == current for tag in condition)


def none_match_fails(condition: Condition | None, current: str) -> bool:
    """Whether If-None-Match is false for a representation whose ETag is ``current``
    (RFC 9110 §13.1.2: ``*`` matches any; weak comparison, ``W/"5"`` matches ``"5"``): a GET
    or HEAD then answers 304 Not Modified (§15.4.5)."""
    if condition is None:
        return False
    if condition == ANY:
        return True
    opaque = current.removeprefix("W/")
    return any(tag.opaque == opaque for tag in condition)
