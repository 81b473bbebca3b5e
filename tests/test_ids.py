"""Ids are UUIDv7 (RFC 9562 §5.7): made later, they sort later, as text too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tripquote.ids import new_id


def test_ids_are_version_7_and_sort_in_the_order_they_were_made() -> None:
    ids = [new_id() for _ in range(2_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert {uuid.UUID(i).version for i in ids} == {7}
    assert all(i == str(uuid.UUID(i)) for i in ids)  # canonical text, lower case


def test_an_id_made_for_an_instant_carries_its_millisecond() -> None:
    at = datetime(2026, 1, 6, 2, 45, 1, 234_567, tzinfo=UTC)
    made = uuid.UUID(new_id(at))
    assert made.version == 7
    assert made.int >> 80 == int(at.timestamp() * 1000)  # the first 48 bits: Unix ms
    assert new_id(at - timedelta(days=1)) < new_id(at) < new_id()
