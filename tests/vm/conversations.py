"""Deterministic conversations for the golden and property tests (no randomness)."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Sequence
from typing import Any

TOPICS = [
    (
        "database",
        "We compared SQLite and PostgreSQL for the page store. PostgreSQL gives "
        "advisory locks and scales to replicas; SQLite is simpler to ship.",
    ),
    (
        "travel",
        "The trip to Lisbon is planned for the second week of May. Flights from "
        "Berlin are cheaper on Tuesdays, and the hotel is near Alfama.",
    ),
    (
        "cooking",
        "The sourdough needs a starter fed twice a day. Bake at 250 degrees with "
        "steam for twenty minutes, then lower to 220.",
    ),
    (
        "budget",
        "The quarterly budget is 42,000 EUR, of which 9,500 go to cloud hosting. "
        "Marketing asked for another 3,000 for the autumn campaign.",
    ),
    (
        "garden",
        "Tomatoes want six hours of sun. The basil went to seed in July because of "
        "the heat, so we will sow it again in partial shade.",
    ),
]

FACTS = {
    3: "My cat is called Miso and she is allergic to chicken.",
    7: "We decided to deploy only on Tuesdays, never on Fridays.",
    12: "Remember that the staging database password rotates every 30 days.",
    18: "I live in Porto and work remotely for a company in Munich.",
}


def _paragraph(topic: int, turn: int, words: int) -> str:
    name, text = TOPICS[topic % len(TOPICS)]
    sentences = text.split(". ")
    out = []
    for i in range(max(1, words // 12)):
        out.append(sentences[(turn + i) % len(sentences)].rstrip(".") + f" (note {turn}.{i}).")
    return f"About the {name}: " + " ".join(out)


def long_conversation(turns: int = 40, *, question: str | None = None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are Pico, a concise assistant for a small team."}
    ]
    for turn in range(turns):
        user = _paragraph(turn, turn, 24)
        if turn in FACTS:
            user = FACTS[turn] + " " + user
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": _paragraph(turn + 2, turn, 48)})
    messages.append(
        {
            "role": "user",
            "content": question or "What is my cat called, and on which day do we deploy?",
        }
    )
    return messages


def short_conversation() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "Hi! I'm planning a trip to Lisbon in May."},
        {"role": "assistant", "content": "Lovely: May is warm and not too crowded yet."},
        {"role": "user", "content": "Which neighbourhood should I stay in?"},
    ]


CLIENT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_pages",
            "description": "Search the team wiki.",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                },
                "required": ["city"],
            },
        },
    },
]


def _call(call_id: str, name: str, **args: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def tool_conversation(rounds: int = 14) -> list[dict[str, Any]]:
    """An agent loop: one user request, then many tool rounds; ends with open results."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a research agent. Use tools."},
        {
            "role": "user",
            "content": "Collect the weather for our offices and the wiki "
            "pages about the deployment policy.",
        },
    ]
    cities = ["Lisbon", "Porto", "Munich", "Berlin", "Madrid", "Paris", "Oslo"]
    for r in range(rounds):
        if r % 3 == 2:
            calls = [
                _call(f"call_{r}_a", "get_weather", city=cities[r % 7]),
                _call(f"call_{r}_b", "get_weather", city=cities[(r + 3) % 7]),
            ]
        else:
            calls = [_call(f"call_{r}", "search_pages", q=f"deployment policy part {r}")]
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        for call in calls:
            if call["function"]["name"] == "get_weather":
                city = json.loads(call["function"]["arguments"])["city"]
                result = json.dumps(
                    {
                        "city": city,
                        "temp_c": 10 + r,
                        "sky": "clear",
                        "hourly": [{"h": h, "t": 8 + (h + r) % 9} for h in range(24)],
                    }
                )
            else:
                result = json.dumps(
                    {
                        "hits": [
                            {
                                "title": f"Deploy policy {r}.{i}",
                                "body": f"Section {i}: deploys happen on Tuesdays; rollback within "
                                f"{15 + i} minutes; owner team {i % 3}. " * 3,
                            }
                            for i in range(6)
                        ]
                    }
                )
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        if r % 5 == 4:
            messages.append(
                {
                    "role": "assistant",
                    "content": f"Progress after round {r}: "
                    "weather collected for several offices; policy pages found.",
                }
            )
            messages.append({"role": "user", "content": "Good, continue with the rest."})
    return messages


def png_data_url(width: int, height: int) -> str:
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    header += struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    header += struct.pack(">I", zlib.crc32(header[12:]))
    return "data:image/png;base64," + base64.b64encode(header + b"\0" * 24).decode()


def image_conversation() -> list[dict[str, Any]]:
    messages = long_conversation(10)[:-1]
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here is the floor plan of the Porto office."},
                {
                    "type": "image_url",
                    "image_url": {"url": png_data_url(1600, 900), "detail": "high"},
                },
            ],
        }
    )
    messages.append({"role": "assistant", "content": "The plan shows two meeting rooms."})
    for turn in range(10, 18):
        messages.append({"role": "user", "content": _paragraph(turn, turn, 24)})
        messages.append({"role": "assistant", "content": _paragraph(turn + 1, turn, 36)})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this photo of the garden: what grows there?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/garden.jpg", "detail": "low"},
                },
            ],
        }
    )
    return messages


def agent_turn(outputs: Sequence[str], parallel: int = 1) -> list[dict[str, Any]]:
    """One user task, then a round of `parallel` tool calls per output group."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Investigate the build."}]
    for n in range(0, len(outputs), parallel):
        calls = [{"id": f"call_{n + k}", "type": "function",
                  "function": {"name": "run", "arguments": f'{{"step": {n + k}}}'}}
                 for k in range(min(parallel, len(outputs) - n))]
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        messages += [{"role": "tool", "tool_call_id": c["id"], "content": outputs[n + k]}
                     for k, c in enumerate(calls)]
    return messages


def log_lines(step: int, lines: int) -> str:
    return "\n".join(f"step {step} line {j}: compiling module m{j} ok in {j % 7} ms"
                     for j in range(lines))
