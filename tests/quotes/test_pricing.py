"""pricing: Decimal arithmetic, ISO 4217 minor units, half-up rounding, pricing errors."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tripquote.errors import ItemsInconsistent, PricingValidationFailed
from tripquote.money import decimal_places, format_amount, minor_units, plain_decimal, quantize
from tripquote.quotes.pricing import Pricing, check_client_pricing, price_quote
from tripquote.quotes.rules import ItemDraft, QuoteDraft
from tripquote.quotes.schemas import ItemType

D = Decimal


def item(unit_price: str | Decimal, quantity: int = 1, line_total: str | None = None) -> ItemDraft:
    return ItemDraft(
        id=None,
        type=ItemType.OTHER,
        description="item",
        quantity=quantity,
        unit_price=D(unit_price),
        details={},
        client_line_total=None if line_total is None else D(line_total),
    )


def draft(
    *items: ItemDraft,
    currency: str = "EUR",
    markup: str | Decimal = "0",
    discount: str | Decimal = "0",
    client_pricing: dict[str, Any] | None = None,
) -> QuoteDraft:
    return QuoteDraft(
        client_id="c",
        trip_name="t",
        destination="d",
        start_date=date(2027, 6, 12),
        end_date=date(2027, 6, 22),
        travelers=2,
        currency=currency,
        markup_percent=D(markup),
        discount=D(discount),
        expires_in_days=14,
        notes=None,
        items=tuple(items),
        client_pricing=client_pricing,
    )


def pricing_errors(quote: QuoteDraft) -> dict[str, list[str]]:
    with pytest.raises(PricingValidationFailed) as caught:
        price_quote(quote)
    found: dict[str, list[str]] = {}
    for error in caught.value.details["errors"]:
        found.setdefault(error["path"], []).append(error["code"])
    return found


# --- money primitives ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "places"),
    [
        *[("EUR", 2), ("USD", 2), ("CHF", 2), ("JPY", 0), ("KRW", 0), ("ISK", 0), ("BHD", 3)],
        *[("KWD", 3), ("OMR", 3), ("JOD", 3), ("TND", 3), ("CLF", 4), ("XYZ", 2)],
    ],
)
def test_minor_units_follow_iso_4217(currency: str, places: int) -> None:
    assert minor_units(currency) == places


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1010.925", "EUR", "1010.93"),  # half-up; half-even or a float would give 1010.92
        ("0.005", "USD", "0.01"),
        ("0.0049999", "USD", "0.00"),
        ("2.5", "JPY", "3"),
        ("-2.5", "JPY", "-3"),  # half away from zero
        ("1.2345", "BHD", "1.235"),
        ("7", "EUR", "7.00"),
        ("-0.001", "EUR", "0.00"),  # never "-0.00"
        ("999999999999.995", "EUR", "1000000000000.00"),
    ],
)
def test_quantize_rounds_half_up_to_minor_units(amount: str, currency: str, expected: str) -> None:
    assert format_amount(quantize(D(amount), currency)) == expected


@pytest.mark.parametrize(
    ("value", "places"),
    [
        *[("289.90", 1), ("289.905", 3), ("0.000", 0), ("100", 0), ("1E+5", 0), ("1E-7", 7)],
        ("12.5000000000000000000000000000000001", 34),
    ],
)
def test_decimal_places_is_exact(value: str, places: int) -> None:
    assert decimal_places(D(value)) == places


def test_format_and_plain_never_use_exponents() -> None:
    assert format_amount(D("1E+3")) == "1000"
    assert format_amount(D("1E-7")) == "0.0000001"
    assert plain_decimal(D("15.00")) == "15"
    assert plain_decimal(D("289.90")) == "289.9"
    assert plain_decimal(D("0.000")) == "0"
    assert plain_decimal(D("-1.50")) == "-1.5"
    assert plain_decimal(D("1E+3")) == "1000"


# --- price_quote --------------------------------------------------------------------------


def test_the_briefs_formula_with_half_up_markup() -> None:
    pricing = price_quote(
        draft(item("289.90", 4), item("140.01", 10), item("4199.80"), markup="15", discount="120")
    )
    assert pricing.line_totals == (D("1159.60"), D("1400.10"), D("4199.80"))
    assert pricing.as_json() == {
        "subtotal": "6759.50",
        "markupAmount": "1013.93",  # 6759.50 x 15% = 1013.925
        "discount": "120.00",
        "total": "7653.43",
    }
    assert pricing.line_totals_json() == ["1159.60", "1400.10", "4199.80"]


def test_zero_decimal_and_three_decimal_currencies() -> None:
    jpy = price_quote(draft(item("184300", 2), currency="JPY", markup="12.5", discount="5000"))
    assert jpy.as_json() == {
        "subtotal": "368600",
        "markupAmount": "46075",
        "discount": "5000",
        "total": "409675",
    }
    bhd = price_quote(draft(item("1.234", 3), currency="BHD", markup="10"))
    assert bhd.as_json()["subtotal"] == "3.702"
    assert bhd.as_json()["markupAmount"] == "0.370"  # 0.3702 → 0.370


def test_an_empty_quote_prices_to_zero_in_minor_units() -> None:
    assert price_quote(draft(currency="CAD")).as_json() == dict.fromkeys(
        ("subtotal", "markupAmount", "discount", "total"), "0.00"
    )
    assert price_quote(draft(currency="JPY")).as_json()["total"] == "0"


def test_discount_may_equal_but_not_exceed_subtotal_plus_markup() -> None:
    assert price_quote(draft(item("100"), markup="10", discount="110")).total == D("0.00")
    found = pricing_errors(draft(item("100"), markup="10", discount="110.01"))
    assert found == {"discount": ["exceeds_total"]}


def test_amounts_finer_than_the_currency_are_pricing_errors() -> None:
    found = pricing_errors(draft(item("289.905", 4), item("1.5"), discount="0.001"))
    assert found == {"items[0].unitPrice": ["too_precise"], "discount": ["too_precise"]}
    assert pricing_errors(draft(item("1.5"), currency="JPY")) == {
        "items[0].unitPrice": ["too_precise"]
    }
    # Trailing zeros are not precision: 289.900 is 289.90.
    assert price_quote(draft(item("289.900"))).subtotal == D("289.90")


def test_overflow_is_reported_at_the_path_of_each_amount() -> None:
    found = pricing_errors(draft(item("1000000000000"), item("1"), discount="1E+12"))
    assert found == {"items[0].unitPrice": ["overflow"], "discount": ["overflow"]}
    found = pricing_errors(draft(item("200000000000", 5), item("1")))
    assert found == {
        "items[0].lineTotal": ["overflow"],
        "subtotal": ["overflow"],
        "total": ["overflow"],
    }
    found = pricing_errors(draft(item("600000000000"), markup="100"))
    assert found == {"total": ["overflow"]}  # markup ≤ subtotal, so only the total overflows
    price_quote(draft(item("999999999999.99")))  # just below 10^12


def test_a_huge_exponent_is_overflow_not_a_crash() -> None:
    assert pricing_errors(draft(item(D("1E+999999")))) == {"items[0].unitPrice": ["overflow"]}
    assert pricing_errors(draft(item(D("1E-999999")))) == {"items[0].unitPrice": ["too_precise"]}


def test_every_pricing_problem_is_listed_at_once() -> None:
    found = pricing_errors(draft(item("10.001"), item("5"), discount="100.555"))
    assert found == {
        "items[0].unitPrice": ["too_precise"],
        "discount": ["too_precise", "exceeds_total"],
    }


# --- check_client_pricing -----------------------------------------------------------------

ICELAND = (item("289.90", 4), item("140.01", 10), item("345.00", 4))


def test_matching_client_totals_pass_whatever_their_scale() -> None:
    quote = draft(*ICELAND, markup="15", discount="120")
    pricing = price_quote(quote)
    sent = {
        "subtotal": D("3939.7"),
        "markupAmount": D("590.9600"),
        "discount": D("120"),
        "total": D("4410.66"),
        "lineTotals": [D("1159.6"), D("1400.10"), D("1380")],
    }
    check_client_pricing(replace(quote, client_pricing=sent), pricing)
    check_client_pricing(quote, pricing)  # nothing sent, nothing to compare


def test_a_different_client_total_is_items_inconsistent_with_both_figures() -> None:
    quote = draft(*ICELAND, markup="15", discount="120")
    sent = replace(quote, client_pricing={"subtotal": D("3939.70"), "total": D("4410.65")})
    with pytest.raises(ItemsInconsistent) as caught:
        check_client_pricing(sent, price_quote(quote))
    assert caught.value.details == {
        "errors": [
            {
                "path": "pricing.total",
                "code": "mismatch",
                "message": "total is 4410.65 but the items give 4410.66 EUR.",
            }
        ],
        "sent": {"pricing.total": "4410.65"},
        "computed": {"pricing.total": "4410.66"},
    }


def test_item_line_totals_and_the_line_total_list_are_checked() -> None:
    quote = draft(item("289.90", 4, line_total="1159.60"), item("10", 2, line_total="21"))
    with pytest.raises(ItemsInconsistent) as caught:
        check_client_pricing(quote, price_quote(quote))
    assert [e["path"] for e in caught.value.details["errors"]] == ["items[1].lineTotal"]

    wrong_count = replace(quote, items=quote.items[:1], client_pricing={"lineTotals": [D(1), D(2)]})
    with pytest.raises(ItemsInconsistent) as caught:
        check_client_pricing(wrong_count, price_quote(wrong_count))
    assert caught.value.details["sent"] == {"pricing.lineTotals": ["1", "2"]}
    assert caught.value.details["computed"] == {"pricing.lineTotals": ["1159.60"]}


# --- properties ---------------------------------------------------------------------------

CURRENCIES = ("EUR", "USD", "JPY", "BHD", "KWD", "CHF")


@st.composite
def drafts(draw: st.DrawFn) -> QuoteDraft:
    currency = draw(st.sampled_from(CURRENCIES))
    places = minor_units(currency)
    lines = draw(
        st.lists(
            st.tuples(
                # Mostly everyday prices, sometimes near the 10^12 limit (never above it).
                st.integers(min_value=0, max_value=10**6)
                | st.integers(min_value=0, max_value=10**12 - 1),
                st.integers(min_value=1, max_value=10) | st.integers(min_value=1, max_value=10_000),
            ),
            max_size=12,
        )
    )
    items = [item(D(minor).scaleb(-places), quantity) for minor, quantity in lines]
    markup = D(draw(st.integers(min_value=0, max_value=10_000))).scaleb(-2)
    discount = D(draw(st.integers(min_value=0, max_value=10**10))).scaleb(-places)
    return draft(*items, currency=currency, markup=markup, discount=discount)


def _oracle(quote: QuoteDraft) -> tuple[int, int]:
    """(subtotal, markup) in integer minor units, rounded half-up with integers only."""
    places = minor_units(quote.currency)
    subtotal = sum(int(i.unit_price.scaleb(places)) * i.quantity for i in quote.items)
    hundredths = int(quote.markup_percent.scaleb(2))
    markup, remainder = divmod(subtotal * hundredths, 100 * 100)
    if 2 * remainder >= 100 * 100:
        markup += 1
    return subtotal, markup


def _amounts(pricing: Pricing) -> list[Decimal]:
    return [
        *pricing.line_totals,
        pricing.subtotal,
        pricing.markup_amount,
        pricing.discount,
        pricing.total,
    ]


def _expected_errors(quote: QuoteDraft) -> dict[str, list[str]]:
    """Pricing error paths predicted from integer arithmetic alone."""
    places = minor_units(quote.currency)
    limit = 10 ** (12 + places)
    subtotal, markup = _oracle(quote)
    discount = int(quote.discount.scaleb(places))
    amounts = {
        **{
            f"items[{i}].lineTotal": int(it.unit_price.scaleb(places)) * it.quantity
            for i, it in enumerate(quote.items)
        },
        "subtotal": subtotal,
        "markupAmount": markup,
        "total": subtotal + markup - discount,
    }
    expected = {path: ["overflow"] for path, amount in amounts.items() if amount >= limit}
    if discount > subtotal + markup:
        expected["discount"] = ["exceeds_total"]
    return expected


@given(drafts())
def test_pricing_properties(quote: QuoteDraft) -> None:
    subtotal, markup = _oracle(quote)
    places = minor_units(quote.currency)
    expected_errors = _expected_errors(quote)
    event(f"errors: {sorted(expected_errors)}" if expected_errors else "priced")
    if expected_errors:
        assert pricing_errors(quote) == expected_errors
        return
    pricing = price_quote(quote)
    # The formula, exactly.
    assert pricing.total == pricing.subtotal + pricing.markup_amount - pricing.discount
    assert pricing.subtotal == sum(pricing.line_totals, D(0))
    # An independent integer oracle agrees on the rounding.
    assert pricing.subtotal == D(subtotal).scaleb(-places)
    assert pricing.markup_amount == D(markup).scaleb(-places)
    # No float anywhere; every amount carries exactly the currency's minor units.
    for amount in _amounts(pricing):
        assert type(amount) is Decimal
        assert amount.as_tuple().exponent == -places
        assert not amount.is_signed()
    for text in [*pricing.as_json().values(), *pricing.line_totals_json()]:
        assert len(text.partition(".")[2]) == places
    # The client sending the server's own figures back is always consistent.
    echoed = {key: D(value) for key, value in pricing.as_json().items()}
    echoed["lineTotals"] = [D(v) for v in pricing.line_totals_json()]
    check_client_pricing(replace(quote, client_pricing=echoed), pricing)


@given(drafts(), st.randoms(use_true_random=False))
def test_pricing_does_not_depend_on_item_order(quote: QuoteDraft, rng: Any) -> None:
    shuffled_items = list(quote.items)
    rng.shuffle(shuffled_items)
    shuffled = replace(quote, items=tuple(shuffled_items))
    try:
        pricing = price_quote(quote)
    except PricingValidationFailed:
        with pytest.raises(PricingValidationFailed):
            price_quote(shuffled)
        return
    other = price_quote(shuffled)
    assert (other.subtotal, other.markup_amount, other.discount, other.total) == (
        pricing.subtotal,
        pricing.markup_amount,
        pricing.discount,
        pricing.total,
    )
    assert sorted(other.line_totals) == sorted(pricing.line_totals)
