"""The ids tripquote gives what it stores: quotes, items, clients, agents, agencies, saves,
proposals, webhook subscriptions. (Not an event's id, ``evt_`` and 32 random hex digits,
made by the statement that writes its event: it leads the index of one day's partition of
``events`` only, which the day's writes keep in memory.)

Every id is a UUID version 7 (RFC 9562 §5.7) in its canonical text form (36 characters, lower
case): 48 bits of Unix time in milliseconds, then random bits. Ids made later sort later (as
text too), so a new row's key lands at the right edge of each index it leads, the pages
already in memory, instead of on a random page of an index that grows with every quote ever
written (what a random version 4 id costs once the index outgrows the buffer cache: a read
and a full-page WAL image per insert). The time in an id is when it was made, to the
millisecond: not a secret, and never read back as a fact about the row.
"""

from __future__ import annotations

from datetime import datetime

from uuid_utils import uuid7


def new_id(at: datetime | None = None) -> str:
    """A new id (UUIDv7 text); ``at``: the instant it carries (timezone-aware; default now).
    Ids made within one millisecond by one process still sort in the order they were made."""
    if at is None:
        return str(uuid7())
    return str(uuid7(nanoseconds=int(at.timestamp() * 1_000_000) * 1_000))
