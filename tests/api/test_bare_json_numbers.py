"""Amounts sent as bare JSON numbers (not strings), written as raw bytes, come back and are
stored to the last digit: no binary float between the request's bytes and the database.

The expected figures are computed here with Decimal from the README's formulas
(``lineTotal = quantity x unitPrice``, ``markupAmount = round(subtotal x markup / 100)``
half-up to the currency's minor units, ``total = subtotal + markupAmount - discount``)."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, quote_body

URL = "/api/agents/quotes"
CENT = Decimal("0.01")
JSON = {"content-type": "application/json"}


def raw_body(body: dict[str, Any], numbers: dict[str, str]) -> bytes:
    """``body`` as JSON text with each placeholder string replaced by a bare number literal."""
    text = json.dumps(body)
    for token, literal in numbers.items():
        assert f'"{token}"' in text, token
        text = text.replace(f'"{token}"', literal)
    return text.encode()


def expected_pricing(
    lines: list[tuple[int, str]], markup: str, discount: str
) -> tuple[list[str], dict[str, str]]:
    """(line totals, pricing) for (quantity, unitPrice literal) lines, as decimal strings."""
    totals = [(quantity * Decimal(price)).quantize(CENT) for quantity, price in lines]
    subtotal = sum(totals, Decimal(0))
    markup_amount = (subtotal * Decimal(markup) / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    discount_amount = Decimal(discount).quantize(CENT)
    total = subtotal + markup_amount - discount_amount
    return [str(t) for t in totals], {
        "subtotal": str(subtotal.quantize(CENT)),
        "markupAmount": str(markup_amount),
        "discount": str(discount_amount),
        "total": str(total.quantize(CENT)),
    }


def _exact(value: Any) -> Decimal:
    assert not isinstance(value, float), value
    return Decimal(str(value)) if not isinstance(value, Decimal) else value


async def _check_stored(
    world: World, quote_id: str, line_totals: list[str], unit_prices: list[str], pricing: Any
) -> None:
    stored = await world.snapshot(quote_id)
    quote = stored["quote"]
    assert quote is not None
    assert _exact(quote["subtotal"]) == Decimal(pricing["subtotal"])
    assert _exact(quote["markup_amount"]) == Decimal(pricing["markupAmount"])
    assert _exact(quote["discount"]) == Decimal(pricing["discount"])
    assert _exact(quote["total"]) == Decimal(pricing["total"])
    assert [_exact(i["unit_price"]) for i in stored["items"]] == [Decimal(p) for p in unit_prices]
    assert [_exact(i["line_total"]) for i in stored["items"]] == [Decimal(t) for t in line_totals]


# (quantity, unitPrice as a bare JSON literal): 0.1 x 3 is 0.30000000000000004 in binary
# floating point; 1e2 and 2.5E+1 are exponents; the last has 13 significant digits.
CREATE_LINES = [(3, "0.1"), (2, "1e2"), (4, "289.9"), (1, "2.5E+1"), (1, "98765432101.23")]
CREATE_MARKUP, CREATE_DISCOUNT = "12.75", "0.1"


async def test_a_create_with_bare_numbers_is_exact(world: World) -> None:
    actor = await world.actor()
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    items = body["items"][: len(CREATE_LINES)]
    numbers: dict[str, str] = {"@markup": CREATE_MARKUP, "@discount": CREATE_DISCOUNT}
    for n, (item, (quantity, price)) in enumerate(zip(items, CREATE_LINES, strict=True)):
        item["quantity"], item["unitPrice"] = f"@q{n}", f"@p{n}"
        numbers[f"@q{n}"], numbers[f"@p{n}"] = str(quantity), price
    body.update(items=items, markupPercent="@markup", discount="@discount", travelers="@tr")
    numbers["@tr"] = "4"
    response = await world.client.post(
        URL, content=raw_body(body, numbers), headers={**actor.headers, **JSON}
    )
    assert response.status_code == 201, response.text
    quote = response.json()["quote"]
    line_totals, pricing = expected_pricing(CREATE_LINES, CREATE_MARKUP, CREATE_DISCOUNT)
    unit_prices = [str(Decimal(p).quantize(CENT)) for _, p in CREATE_LINES]
    assert [i["unitPrice"] for i in quote["items"]] == unit_prices
    assert [i["lineTotal"] for i in quote["items"]] == line_totals
    assert [i["quantity"] for i in quote["items"]] == [q for q, _ in CREATE_LINES]
    assert quote["pricing"] == pricing
    assert pricing["total"] == "111358026255.51"  # the formula, worked by hand once
    assert (quote["markupPercent"], quote["discount"], quote["travelers"]) == ("12.75", "0.10", 4)
    await _check_stored(world, quote["id"], line_totals, unit_prices, pricing)


async def test_a_patch_with_bare_numbers_is_exact_and_rounds_half_up(world: World) -> None:
    actor = await world.actor()
    created = await world.client.post(
        URL, json=quote_body("iceland-ring-road-eur", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201, created.text
    quote_id = created.json()["quoteId"]
    item = dict(created.json()["quote"]["items"][0])
    item.pop("lineTotal")  # computed by the server
    item.pop("id")  # two new items
    # 100.50 x 1 % = 1.005: half-up gives 1.01 (a float 1.005 is 1.00499..., and rounds down).
    lines = [(1, "100.5"), (7, "0.07")]
    patch: dict[str, Any] = {
        "version": 1,
        "markupPercent": "@markup",
        "discount": "@discount",
        "items": [{**item, "quantity": f"@q{n}", "unitPrice": f"@p{n}"} for n in range(2)],
    }
    numbers = {"@markup": "1", "@discount": "1e-1"}
    for n, (quantity, price) in enumerate(lines):
        numbers[f"@q{n}"], numbers[f"@p{n}"] = str(quantity), price
    response = await world.client.patch(
        f"{URL}/{quote_id}", content=raw_body(patch, numbers), headers={**actor.headers, **JSON}
    )
    assert response.status_code == 200, response.text
    quote = response.json()["quote"]
    line_totals, pricing = expected_pricing(lines, "1", "1e-1")
    assert pricing == {
        "subtotal": "100.99",
        "markupAmount": "1.01",
        "discount": "0.10",
        "total": "101.90",
    }
    assert quote["pricing"] == pricing
    assert [i["lineTotal"] for i in quote["items"]] == line_totals == ["100.50", "0.49"]
    assert [i["unitPrice"] for i in quote["items"]] == ["100.50", "0.07"]
    assert (quote["markupPercent"], quote["discount"], quote["version"]) == ("1.00", "0.10", 2)
    await _check_stored(world, quote_id, line_totals, ["100.50", "0.07"], pricing)


@pytest.mark.parametrize(
    "literal",
    ["1234.5678", "1234.5600000000000000001", "0.001"],
)
async def test_a_bare_number_finer_than_cents_is_refused_not_rounded(
    world: World, literal: str
) -> None:
    # A float parser would read 1234.5600000000000000001 as 1234.56 and accept it.
    actor = await world.actor()
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    body["items"][0]["unitPrice"] = "@p"
    before = await world.table_counts()
    response = await world.client.post(
        URL, content=raw_body(body, {"@p": literal}), headers={**actor.headers, **JSON}
    )
    error = assert_envelope(response, "PRICING_VALIDATION_FAILED", 400)
    assert [e["path"] for e in error["details"]["errors"]] == ["items[0].unitPrice"]
    assert await world.table_counts() == before
