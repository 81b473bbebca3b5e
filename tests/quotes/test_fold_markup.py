"""``pricing.fold_markup``: the markup folded into the line prices adds up exactly."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tripquote.money import minor_units, quantize
from tripquote.quotes.pricing import fold_markup

CURRENCIES = st.sampled_from(["JPY", "EUR", "USD"])


@given(
    currency=CURRENCIES,
    cents=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=40),
    percent=st.integers(min_value=0, max_value=10_000),
)
def test_the_folded_lines_add_up_to_subtotal_plus_markup(
    currency: str, cents: list[int], percent: int
) -> None:
    unit = Decimal(1).scaleb(-minor_units(currency))
    lines = tuple(c * unit for c in cents)
    subtotal = sum(lines, Decimal(0))
    markup = quantize(subtotal * Decimal(percent) / 10_000, currency)
    folded = fold_markup(lines, markup, currency)
    assert sum(folded, Decimal(0)) == subtotal + markup
    for line, shown in zip(lines, folded, strict=True):
        assert shown >= line  # a share is never negative
        assert shown == quantize(shown, currency)  # in the currency's minor units
        if subtotal:  # each share within one minor unit of its exact proportion
            assert abs((shown - line) - markup * line / subtotal) < unit


def test_the_kyoto_quote_folds_as_its_page_shows() -> None:
    # 12.5 %: shares 46075, 6087.5, 51537.5, 2200, 44225; the one yen left over goes to the
    # first of the two equal remainders.
    lines = tuple(Decimal(x) for x in ("368600", "48700", "412300", "17600", "353800"))
    folded = fold_markup(lines, Decimal("150125"), "JPY")
    assert folded == tuple(Decimal(x) for x in ("414675", "54788", "463837", "19800", "398025"))
    assert sum(folded) == Decimal("1351125")
