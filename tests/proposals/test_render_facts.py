"""The page's facts of an item: a hotel's or activity's name is shown once, not again under
a description that says just that."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tripquote.proposals.render import view_of


def _proposal(items: list[dict[str, Any]]) -> str:
    total = sum(int(i["lineTotal"]) for i in items)
    quote = {
        "currency": "EUR",
        "tripName": "Lyon",
        "destination": "Lyon",
        "startDate": "2027-05-01",
        "endDate": "2027-05-04",
        "travelers": 2,
        "items": items,
        "pricing": {
            "subtotal": str(total),
            "markupAmount": "0",
            "discount": "0",
            "total": str(total),
        },
    }
    return json.dumps({"agency": {"name": "A", "timeZone": "Europe/Paris"}, "quote": quote})


def _item(kind: str, description: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "description": description, "quantity": 1, "lineTotal": "100",
            "details": details}  # fmt: skip


def test_a_name_the_description_already_gives_is_not_shown_again() -> None:
    hotel = {
        "name": "Cour des Loges",
        "checkIn": "2027-05-01",
        "checkOut": "2027-05-04",
        "rooms": 1,
    }
    items = [
        _item("HOTEL", "Cour des Loges", hotel),
        _item("HOTEL", "3 nights, courtyard room", hotel),
        _item("ACTIVITY", " cooking class ", {"name": "Cooking class", "date": "2027-05-02"}),
        _item(
            "ACTIVITY", "Half a day in the market", {"name": "Cooking class", "date": "2027-05-02"}
        ),
    ]
    view = view_of(_proposal(items), "h" * 64, datetime(2027, 4, 1, tzinfo=UTC))
    facts = [line.facts for day in view.days for line in day.lines]
    labels = [[label for label, _ in fact] for fact in facts]
    assert labels[0] == ["Check-in", "Check-out", "Rooms"]
    assert ("Hotel", "Cour des Loges") in facts[1]
    assert labels[2] == []
    assert facts[3] == [("Activity", "Cooking class")]
