"""Long conversations for the loop tests: seeded filler with one distinctive fact in it.

The fact message is written so that only its full text (level 0) holds the answer: the
fact sits mid-message, after a long opening sentence, and is not phrased as a claim
("my X is ..."), so hints, abstracts and claim pages do not give it away and the model
has to search and fault. Filler never uses the words the question searches for.
"""

from __future__ import annotations

import random
import re
from typing import Any

from tests.loop.scripted import Fact

SYSTEM = "You are a friendly assistant for everyday chores."
QUESTION = "What is my locker code?"
LOCKER_CODE = "4471-ZETA"
LOCKER = Fact("locker code", re.compile(r"\bcode (?:is )?(\d{4}-[A-Z]{4})\b"))
FACT_TURN = 5
FACT_MESSAGE = (
    "Quick update from the gym today, where the new membership finally kicked in and the "
    "staff walked me through every single machine on the main floor before lunch. The "
    "changing rooms look clean and the showers are warm. The locker I rented opens with the "
    f"code {LOCKER_CODE}, so that part is sorted. Later this week the sauna might be worth "
    "a try as well, if the evenings stay cold."
)
# The same fact said plainly: a claim, which the VM core may keep as its own page.
CLAIM_MESSAGE = f"By the way, my locker code is {LOCKER_CODE}. Please keep that in mind."

_TOPICS = ["tomatoes", "the bike", "sourdough", "the garden shed", "a trip to Porto",
           "the telescope", "chess openings", "watercolours", "the hiking boots",
           "jazz records", "the balcony plants", "a birthday dinner", "the old piano",
           "bird feeders", "camping gear", "the fish tank", "a pottery class", "kites"]
_VERBS = ["thinking about", "worried about", "planning", "reading about", "fixing",
          "cleaning", "comparing prices for", "asking a friend about", "sketching"]
_DETAILS = ["the weekend looks sunny", "the neighbours recommended it", "it has been on my "
            "list for months", "the budget is tight this month", "my sister is visiting",
            "the shop closes early on Sundays", "it rained all of last week",
            "the instructions were confusing", "a magazine article made it sound easy"]
_ADVICE = ["Start small and keep notes on what works.", "Ask at the local shop; they "
           "usually know the quirks.", "A checklist helps more than you would expect.",
           "Try it once on a quiet afternoon before committing.", "Compare two or three "
           "options side by side first.", "Keep the receipt in case it does not fit.",
           "Morning light is usually the kindest for this.", "Patience pays off here, "
           "so take breaks between steps."]


def filler_turn(rng: random.Random, turn: int) -> tuple[str, str]:
    topic, verb, detail = rng.choice(_TOPICS), rng.choice(_VERBS), rng.choice(_DETAILS)
    user = (f"Turn {turn}: I am {verb} {topic} again, and {detail}. "
            f"What would you suggest for {topic} this time?")
    advice = " ".join(rng.sample(_ADVICE, 3))
    assistant = f"For {topic}, a few ideas. {advice} Tell me how it goes with {topic}."
    return user, assistant


def conversation(turns: int, *, seed: int = 7, fact_turn: int | None = FACT_TURN,
                 fact: str = FACT_MESSAGE) -> list[dict[str, Any]]:
    """System prompt plus `turns` user/assistant pairs; the user states `fact` at
    `fact_turn` (0-based) and the assistant acknowledges it."""
    rng = random.Random(seed)
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for turn in range(turns):
        user, assistant = filler_turn(rng, turn)
        if turn == fact_turn:
            user, assistant = fact, "Good to hear the gym is working out. Enjoy the sauna!"
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    return messages
