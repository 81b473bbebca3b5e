"""Quote pricing: Decimal end to end, rounding in one place (``tripquote.money.quantize``, half-up).

lineTotal = quantity * unitPrice; subtotal = sum of lineTotal;
markupAmount = round_half_up(subtotal * markupPercent / 100);
total = subtotal + markupAmount - discount.
Every amount carries exactly the currency's ISO 4217 minor units.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from tripquote.errors import ItemsInconsistent, PricingValidationFailed, field_error
from tripquote.money import (
    AMOUNT_LIMIT,
    EXACT,
    decimal_places,
    format_amount,
    minor_units,
    quantize,
)

if TYPE_CHECKING:
    from tripquote.quotes.rules import QuoteDraft

__all__ = ["Pricing", "check_client_pricing", "price_quote"]


@dataclass(frozen=True, slots=True)
class Pricing:
    """Server-computed amounts of one quote, each quantized to the currency's minor units."""

    line_totals: tuple[Decimal, ...]
    subtotal: Decimal
    markup_amount: Decimal
    discount: Decimal
    total: Decimal

    def as_json(self) -> dict[str, str]:
        """``{subtotal, markupAmount, discount, total}`` as decimal strings (line totals apart)."""
        return {
            "subtotal": format_amount(self.subtotal),
            "markupAmount": format_amount(self.markup_amount),
            "discount": format_amount(self.discount),
            "total": format_amount(self.total),
        }

    def line_totals_json(self) -> list[str]:
        """Line totals in item order as decimal strings."""
        return [format_amount(amount) for amount in self.line_totals]


def price_quote(draft: QuoteDraft, *, whole: bool = True) -> Pricing:
    """Price a validated draft; raises PricingValidationFailed listing every pricing problem.
    ``whole=False`` leaves out the rules between fields (an amount's places in the currency,
    the discount within the total): see ``rules.validate_quote``."""
    currency = draft.currency
    places = minor_units(currency)
    errors: list[dict[str, str]] = []

    inputs = [(f"items[{i}].unitPrice", item.unit_price) for i, item in enumerate(draft.items)]
    inputs.append(("discount", draft.discount))
    inputs_overflow = False
    for path, amount in inputs:
        if amount.copy_abs() >= AMOUNT_LIMIT:
            errors.append(_overflow(path))
            inputs_overflow = True
        elif whole and decimal_places(amount) > places:
            errors.append(
                field_error(
                    path,
                    "too_precise",
                    f"{_label(path)} has more decimal places than {currency} allows "
                    f"(ISO 4217: {places}).",
                )
            )
    if inputs_overflow:
        # Sums of amounts that are out of range mean nothing; report the inputs only.
        raise PricingValidationFailed(details={"errors": errors})

    with localcontext(EXACT):
        lines = [item.unit_price * item.quantity for item in draft.items]
        subtotal = sum(lines, Decimal(0))
        markup = quantize(subtotal * draft.markup_percent / 100, currency)
        total = subtotal + markup - draft.discount
        computed = [(f"items[{i}].lineTotal", line) for i, line in enumerate(lines)]
        computed += [("subtotal", subtotal), ("markupAmount", markup), ("total", total)]
        errors.extend(
            _overflow(path) for path, amount in computed if amount.copy_abs() >= AMOUNT_LIMIT
        )
        if whole and draft.discount > subtotal + markup:
            errors.append(
                field_error(
                    "discount",
                    "exceeds_total",
                    "discount must not be more than subtotal + markupAmount "
                    f"({format_amount(quantize(subtotal + markup, currency))} {currency}).",
                )
            )
    if errors:
        raise PricingValidationFailed(details={"errors": errors})
    return Pricing(
        line_totals=tuple(quantize(line, currency) for line in lines),
        subtotal=quantize(subtotal, currency),
        markup_amount=markup,
        discount=quantize(draft.discount, currency),
        total=quantize(total, currency),
    )


def check_client_pricing(draft: QuoteDraft, pricing: Pricing) -> None:
    """Compare client-sent totals and item lineTotals with ``pricing``; raises ItemsInconsistent."""
    sent: dict[str, Any] = {}
    computed: dict[str, Any] = {}
    errors: list[dict[str, str]] = []

    def compare(path: str, client: Decimal, server: Decimal) -> None:
        if client != server:  # by value: "7630.4" equals 7630.40
            sent[path] = format_amount(client)
            computed[path] = format_amount(server)
            errors.append(
                field_error(
                    path,
                    "mismatch",
                    f"{_label(path)} is {format_amount(client)} but the items give "
                    f"{format_amount(server)} {draft.currency}.",
                )
            )

    for i, (item, line) in enumerate(zip(draft.items, pricing.line_totals, strict=True)):
        if item.client_line_total is not None:
            compare(f"items[{i}].lineTotal", item.client_line_total, line)
    client = draft.client_pricing or {}
    for name, server in (
        ("subtotal", pricing.subtotal),
        ("markupAmount", pricing.markup_amount),
        ("discount", pricing.discount),
        ("total", pricing.total),
    ):
        if client.get(name) is not None:
            compare(f"pricing.{name}", client[name], server)
    client_lines = client.get("lineTotals")
    if client_lines is not None:
        if len(client_lines) != len(pricing.line_totals):
            sent["pricing.lineTotals"] = [format_amount(v) for v in client_lines]
            computed["pricing.lineTotals"] = pricing.line_totals_json()
            errors.append(
                field_error(
                    "pricing.lineTotals",
                    "mismatch",
                    f"lineTotals has {len(client_lines)} entries but the quote has "
                    f"{len(pricing.line_totals)} items.",
                )
            )
        else:
            for i, (value, line) in enumerate(zip(client_lines, pricing.line_totals, strict=True)):
                compare(f"pricing.lineTotals[{i}]", value, line)
    if errors:
        raise ItemsInconsistent(details={"errors": errors, "sent": sent, "computed": computed})


def _overflow(path: str) -> dict[str, str]:
    return field_error(
        path, "overflow", f"{_label(path)} must be less than 10^12 in the currency's major units."
    )


def _label(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def fold_markup(
    line_totals: tuple[Decimal, ...], markup_amount: Decimal, currency: str
) -> tuple[Decimal, ...]:
    """Each line total with its share of ``markup_amount`` folded in, as an agency shows prices
    to its client: shares proportional to the line totals, each rounded down to the currency's
    minor units, the minor units left over given to the largest remainders (Hamilton's
    largest-remainder method), so the folded lines sum exactly to subtotal + markupAmount."""
    subtotal = sum(line_totals, Decimal(0))
    if not line_totals or subtotal == 0 or markup_amount == 0:
        return line_totals
    unit = Decimal(1).scaleb(-minor_units(currency))
    exact = [markup_amount * line / subtotal for line in line_totals]
    floors = [(share // unit) * unit for share in exact]
    left = int((markup_amount - sum(floors, Decimal(0))) / unit)
    by_remainder = sorted(range(len(exact)), key=lambda i: (exact[i] - floors[i], -i), reverse=True)
    for i in by_remainder[:left]:
        floors[i] += unit
    return tuple(
        quantize(line + share, currency) for line, share in zip(line_totals, floors, strict=True)
    )
