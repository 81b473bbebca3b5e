"""Column types that keep money exact (``NUMERIC``) and instants aware, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine


class Money(TypeDecorator[Decimal]):
    """``NUMERIC(18, 4)`` on PostgreSQL: every amount below 10^12 in every ISO 4217 currency
    (up to 4 minor units: CLF), exactly.
    ``Money(precision, scale)`` is what older migrations created (``NUMERIC(14, 2)``)."""

    impl = Numeric(18, 4)
    cache_ok = True

    def __init__(self, precision: int = 18, scale: int = 4) -> None:
        super().__init__(precision, scale)
        self.precision, self.scale = precision, scale

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        return None if value is None else Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class Percent(Money):
    """``NUMERIC(5, 2)`` percentages (0.00 - 100.00), exact."""

    impl = Numeric(5, 2)
    cache_ok = True

    def __init__(self, precision: int = 5, scale: int = 2) -> None:
        super().__init__(precision, scale)


def in_utc(at: datetime) -> datetime:
    """The aware ``at`` in UTC; one outside years 1-9999 once in UTC
    (``0001-01-01T00:00:00+01:00``) is the nearest instant inside: as a bound of a range
    (``updatedSince``, a replay's ``since`` / ``until``) every stored instant is on the same
    side of it."""
    try:
        return at.astimezone(UTC)
    except OverflowError:
        return (datetime.min if at.year == 1 else datetime.max).replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware instant: ``timestamptz``, read back in UTC; a naive datetime is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return in_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        instant: datetime = value
        return instant.astimezone(UTC)
