"""The client's own tools in the generated conversations: their schemas (sent on every
request, as a chat app would) and the JSON results of calls to them."""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from typing import Any

from benchmarks.recall.vocab import CITIES, FIRST_NAMES, MONTHS, SURNAMES


def _schema(name: str, description: str, param: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {param: {"type": "string"}},
                "required": [param],
            },
        },
    }


CLIENT_TOOLS: list[dict[str, Any]] = [
    _schema("lookup_order", "Look up an order by id.", "order_id"),
    _schema("check_flight", "Flight status by flight number.", "flight_number"),
    _schema("get_invoice", "Fetch an invoice by id.", "invoice_id"),
    _schema("get_ticket", "Fetch a support ticket by id.", "ticket_id"),
    _schema("get_weather", "Current weather for a city.", "city"),
]


@dataclass(frozen=True, slots=True)
class Lookup:
    """One client tool call and its result; `fields` are the probe-able values, chosen
    with enough entropy that no other lookup of a conversation shows the same one."""

    tool: str
    arguments: dict[str, str]
    entity: str
    key: str
    result: dict[str, Any]
    fields: dict[str, str]
    request: str
    reply: str

    @property
    def content(self) -> str:
        return json.dumps(self.result)


def _code(rng: random.Random, letters: int, digits: int) -> str:
    head = "".join(rng.choices(string.ascii_uppercase, k=letters))
    tail = "".join(rng.choices(string.digits, k=digits))
    return head + tail


def _date(rng: random.Random) -> str:
    return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"


def make_lookup(rng: random.Random) -> Lookup:
    """A probe-able lookup: order, flight, invoice or ticket, with nested JSON."""
    kind = rng.choice(("order", "flight", "invoice", "ticket"))
    if kind == "order":
        key = f"A-{rng.randint(10000, 99999)}"
        fields = {
            "tracking_number": _code(rng, 2, 10),
            "carrier": rng.choice(("DHL", "UPS", "CTT")),
            "eta": _date(rng),
        }
        result = {
            "order": {"id": key, "status": "shipped", "items": rng.randint(1, 6)},
            "shipment": fields,
        }
        return Lookup(
            "lookup_order",
            {"order_id": key},
            "order",
            key,
            result,
            {"tracking_number": fields["tracking_number"]},
            f"Can you look up order {key}? I want to know where it is.",
            "It has shipped; the shipment details are in the result above.",
        )
    if kind == "flight":
        key = _code(rng, 2, 4)
        gate = f"{rng.choice('ABCDE')}{rng.randint(1, 48)}"
        booking = _code(rng, 3, 5)
        result = {
            "flight": {"number": key, "status": rng.choice(("on time", "delayed"))},
            "departure": {
                "gate": gate,
                "terminal": str(rng.randint(1, 5)),
                "time": f"{rng.randint(5, 22):02d}:{rng.choice(('05', '20', '35', '50'))}",
            },
            "passenger": {
                "seat": f"{rng.randint(1, 40)}{rng.choice('ACDF')}",
                "booking_reference": booking,
            },
        }
        return Lookup(
            "check_flight",
            {"flight_number": key},
            "flight",
            key,
            result,
            {"booking_reference": booking},
            f"Could you check flight {key} for me? I'm flying out soon.",
            "Here's the status of your flight; the departure details are listed.",
        )
    if kind == "invoice":
        key = f"INV-{rng.randint(10000, 99999)}"
        fields = {
            "total": f"{rng.randint(100, 9999)}.{rng.randint(0, 99):02d}",
            "due_date": _date(rng),
        }
        result = {
            "invoice": {"id": key, "currency": "EUR", **fields},
            "customer": {"name": _person(rng), "country": rng.choice(("PT", "DE", "FR", "NL"))},
        }
        return Lookup(
            "get_invoice",
            {"invoice_id": key},
            "invoice",
            key,
            result,
            {"total": fields["total"]},
            f"Please pull up invoice {key}, accounting is asking about it.",
            "I found the invoice; the amounts and dates are in the result.",
        )
    key = f"SUP-{rng.randint(1000, 9999)}"
    code = f"RC-{rng.randint(10000, 99999)}"
    result = {
        "ticket": {
            "id": key,
            "priority": rng.choice(("low", "high", "urgent")),
            "assignee": _person(rng),
            "resolution_code": code,
        },
        "history": [{"event": "opened"}, {"event": "assigned"}],
    }
    return Lookup(
        "get_ticket",
        {"ticket_id": key},
        "ticket",
        key,
        result,
        {"resolution_code": code},
        f"What's the state of support ticket {key}?",
        "The ticket is assigned and being worked on; details are in the result.",
    )


def make_weather(rng: random.Random) -> Lookup:
    """A filler lookup nobody asks about later."""
    city = rng.choice(CITIES)
    result = {
        "city": city,
        "temp_c": rng.randint(-5, 34),
        "conditions": rng.choice(("sunny", "cloudy", "light rain", "windy", "foggy")),
        "observed": f"{rng.randint(1, 28)} {rng.choice(MONTHS)}",
    }
    return Lookup(
        "get_weather",
        {"city": city},
        "city",
        city,
        result,
        {},
        f"What's the weather like in {city} right now?",
        f"It's {result['conditions']} in {city} at the moment.",
    )
