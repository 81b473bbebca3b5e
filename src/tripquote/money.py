"""Money: ISO 4217 minor units and the one rounding place (half-up), on Decimal only."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Context, Decimal
from types import MappingProxyType

__all__ = [
    "AMOUNT_LIMIT",
    "EXACT",
    "MINOR_UNITS",
    "decimal_places",
    "fmt_money",
    "format_amount",
    "minor_units",
    "plain_decimal",
    "quantize",
]

_ZERO_DECIMALS = (
    *("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"),
    *("RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"),
)
# ISO 4217 (list one, SIX Financial Information) exponents that differ from the usual 2.
MINOR_UNITS: Mapping[str, int] = MappingProxyType(
    {
        **dict.fromkeys(_ZERO_DECIMALS, 0),
        **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
        **dict.fromkeys(("CLF", "UYW"), 4),
    }
)
DEFAULT_MINOR_UNITS = 2

AMOUNT_LIMIT = Decimal(10) ** 12
"""Every amount must stay below 10^12 major units (fits Numeric(18, 4) with room to spare)."""

# Arithmetic runs only once every input is < 10^12 (schemas.py bounds them to 30 decimals):
# quantities ≤ 10^4, items ≤ 10^4 and markup ≤ 100.00 keep every exact intermediate under
# 60 significant digits, so this context never rounds; quantize() alone rounds.
EXACT = Context(prec=60, rounding=ROUND_HALF_UP)


def minor_units(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 code (JPY 0, BHD 3, default 2)."""
    return MINOR_UNITS.get(currency, DEFAULT_MINOR_UNITS)


_QUANTA = {places: Decimal(1).scaleb(-places) for places in set(MINOR_UNITS.values()) | {2}}


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's ISO 4217 minor units, half-up; the only rounding in tripquote."""
    places = minor_units(currency)
    quantum = _QUANTA.get(places) or Decimal(1).scaleb(-places)
    rounded = amount.quantize(quantum, ROUND_HALF_UP, EXACT)
    # Normalise negative zero so "-0.00" can never be rendered.
    return rounded.copy_abs() if rounded.is_zero() else rounded


def decimal_places(value: Decimal) -> int:
    """Significant digits after the point, exactly (``289.900`` → 1); no context rounding."""
    _sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0 or value.is_zero():
        return 0
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -exponent - trailing_zeros)


def format_amount(amount: Decimal) -> str:
    """A Decimal as a plain decimal string without exponent (``Decimal("1E+3")`` → ``"1000"``)."""
    return format(amount, "f")


def plain_decimal(value: Decimal) -> str:
    """Canonical text of a value, trailing zeros dropped exactly (``15.00`` → ``"15"``)."""
    sign, digits, exponent = value.as_tuple()
    if isinstance(exponent, int) and exponent < 0:
        significant = len(digits)
        while significant > 1 and digits[significant - 1] == 0 and exponent < 0:
            significant -= 1
            exponent += 1
        value = Decimal((sign, digits[:significant], exponent))
    return "0" if value.is_zero() else format_amount(value)


def fmt_money(amount: Decimal, currency: str) -> str:
    """``amount`` as a decimal string with exactly the currency's minor units."""
    return format(quantize(amount, currency), "f")
