"""What facts are about: attributes (with the shape of their values), events with two
slots, and the value generators. Values never contain ". " or ", " so that the extraction
rule of `grammar.py` finds where they end."""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from benchmarks.recall.vocab import (
    FIRST_NAMES,
    MONTHS,
    RESTAURANTS,
    SURNAMES,
    TEA_WORDS,
    TEAS,
    VENUES,
)

PERSONAL = (
    ("my locker code", "digits4"),
    ("my wifi password", "password"),
    ("my gym membership number", "member"),
    ("my library card number", "digits8"),
    ("my bike lock combination", "digits3"),
    ("my license plate", "plate"),
    ("my flight confirmation code", "pnr"),
    ("my employee ID", "employee"),
    ("my storage unit number", "unit"),
    ("my insurance policy number", "policy"),
    ("my parking spot", "spot"),
    ("my dentist", "doctor"),
    ("my piano teacher", "person"),
    ("my landlord's phone number", "phone"),
    ("my home router address", "ip"),
    ("my favorite tea", "tea"),
    ("my cat's name", "pet"),
    ("my dog's name", "pet"),
    ("my anniversary", "date"),
    ("my passport expiry date", "date"),
    ("my seat at the theater", "seat"),
    ("my hotel room number", "digits3"),
    ("my mailbox number", "digits3"),
    ("my tax reference", "employee"),
    ("my favorite restaurant", "restaurant"),
    ("my accountant", "person"),
)
PLACES = (
    "office",
    "garage",
    "studio",
    "storage room",
    "server room",
    "rooftop",
    "bike shed",
    "basement",
    "lab",
    "warehouse",
    "clubhouse",
    "workshop",
    "back gate",
    "greenhouse",
    "archive room",
    "gallery",
    "boathouse",
    "print room",
)
PEOPLE_ATTRS = (
    ("{name}'s birthday", "date"),
    ("{name}'s desk extension", "digits4"),
    ("{name}'s favorite restaurant", "restaurant"),
)

EVENTS = (
    "quarterly offsite",
    "charity run",
    "book launch",
    "team retreat",
    "board review",
    "product demo day",
    "alumni dinner",
    "wine tasting",
    "hackathon kickoff",
    "design review",
    "volunteer day",
    "science fair",
    "budget meeting",
    "photo walk",
    "jazz night",
    "family reunion",
    "garden party",
    "investor call",
    "press preview",
    "choir concert",
    "pottery class",
    "chess tournament",
)
SLOT_PAIRS = (
    (("venue", "venue"), ("start time", "time")),
    (("organizer", "person"), ("budget", "money")),
    (("meeting room", "room"), ("dial-in code", "digits6")),
)


def attributes(rng: random.Random) -> list[tuple[str, str]]:
    """Every attribute a conversation may state, shuffled, each with its value shape."""
    found = list(PERSONAL)
    found += [(f"the {place} door code", "digits5") for place in PLACES]
    names = list(FIRST_NAMES)
    rng.shuffle(names)
    for index, name in enumerate(names):
        template, shape = PEOPLE_ATTRS[index % len(PEOPLE_ATTRS)]
        found.append((template.format(name=name), shape))
    rng.shuffle(found)
    return found


def events(rng: random.Random) -> list[tuple[str, tuple[tuple[str, str], tuple[str, str]]]]:
    found = [(event, rng.choice(SLOT_PAIRS)) for event in EVENTS]
    rng.shuffle(found)
    return found


def _digits(rng: random.Random, count: int) -> str:
    return str(rng.randint(1, 9)) + "".join(rng.choices(string.digits, k=count - 1))


def make_value(rng: random.Random, shape: str) -> str:
    if shape.startswith("digits"):
        return _digits(rng, int(shape[len("digits") :]))
    upper = string.ascii_uppercase
    makers: dict[str, Callable[[], str]] = {
        "password": lambda: (
            f"{rng.choice(TEA_WORDS)}-{rng.choice(TEA_WORDS)}-{rng.randint(10, 99)}"
        ),
        "member": lambda: f"GM-{_digits(rng, 6)}",
        "plate": lambda: "-".join(
            ("".join(rng.choices(upper, k=2)), _digits(rng, 2), "".join(rng.choices(upper, k=2)))
        ),
        "pnr": lambda: "".join(rng.choices(upper + "23456789", k=6)),
        "employee": lambda: f"E{_digits(rng, 6)}",
        "unit": lambda: f"{rng.choice('ABCDEFG')}{rng.randint(100, 450)}",
        "policy": lambda: f"POL-{_digits(rng, 4)}-{_digits(rng, 4)}",
        "spot": lambda: f"level {rng.randint(1, 6)} spot {rng.randint(10, 240)}",
        "doctor": lambda: f"Dr {rng.choice(SURNAMES)}",
        "person": lambda: f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}",
        "phone": lambda: f"+351 9{_digits(rng, 2)} {_digits(rng, 3)} {_digits(rng, 3)}",
        "ip": lambda: f"192.168.{rng.randint(0, 9)}.{rng.randint(2, 254)}",
        "tea": lambda: rng.choice(TEAS),
        "pet": lambda: rng.choice(
            (
                "Biscuit",
                "Mochi",
                "Pepper",
                "Juno",
                "Tofu",
                "Ziggy",
                "Olive",
                "Rocket",
                "Maple",
                "Nimbus",
                "Pickle",
                "Sable",
                "Waffles",
            )
        ),
        "date": lambda: f"{rng.choice(MONTHS)} {rng.randint(1, 28)}",
        "seat": lambda: f"row {rng.choice('BCDEFGHJK')} seat {rng.randint(1, 30)}",
        "restaurant": lambda: rng.choice(RESTAURANTS),
        "venue": lambda: rng.choice(VENUES),
        "time": lambda: f"{rng.randint(8, 21)}:{rng.choice(('00', '15', '30', '45'))}",
        "money": lambda: f"{rng.randint(3, 90) * 100} euros",
        "room": lambda: f"room {rng.randint(2, 9)}{rng.randint(10, 60)}",
    }
    return makers[shape]()
