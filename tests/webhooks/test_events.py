"""Every operation that writes a revision has its event type (a statement whose operation has
none would be refused by ``events.type NOT NULL``, failing the save)."""

from __future__ import annotations

from tripquote.quotes.lifecycle import Operation
from tripquote.webhooks.events import ALL_TYPES, EVENT_TYPES, VIEWED


def test_every_operation_has_an_event_type_and_every_type_an_operation_but_the_view() -> None:
    assert set(EVENT_TYPES) == {"CREATE", *(operation.value for operation in Operation)}
    assert sorted([*EVENT_TYPES.values(), VIEWED]) == sorted(ALL_TYPES)
