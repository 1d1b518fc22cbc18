"""Small talk between two friends that carries no fact a probe asks about: session openers
(with the date said once), closers, and filler threads about weather, shows, food, chores,
plans and hobbies (the hobby phrases of `vocab.TOPICS`, retold in a friend's register).

A thread is a list of `(role, text)` with role "S" (who starts it) or "R" (who answers);
`{X}` in a text is the name of the friend spoken to.
"""

from __future__ import annotations

import random
from datetime import datetime

from benchmarks.recall.dialogue import lexicon
from benchmarks.recall.vocab import TOPICS

Thread = list[tuple[str, str]]

GREETINGS = (
    "Hey {X}! How's your week going?",
    "{X}!! Long time. What's new with you?",
    "Morning {X}, survived the week so far?",
    "Hiya! How are things?",
    "Hey you. Got a minute to catch up?",
    "Hi {X}! Sorry I went quiet, life has been a lot.",
)
GREETING_REPLIES = (
    "Hey {X}! Busy but good. You?",
    "Hi! All good here, mostly. What about you?",
    "{X}! Was just thinking about you. Things are fine, you?",
    "Hey! Tired, but surviving. How are you doing?",
    "Hello hello. Not bad at all! What's going on with you?",
)
CLOSERS = (
    ("Anyway, I should get going. Talk soon!", "Bye {X}! Speak soon."),
    ("Right, dinner's ready. Catch up later?", "Definitely, enjoy!"),
    ("Ok I need to sleep. Night {X}!", "Night night!"),
    ("Gotta run, but this was nice.", "Same, let's not leave it so long next time."),
    ("Oops, meeting in five. Later!", "Good luck, talk later {X}."),
)
# How the session's date is said once at its start: a client-added prefix or in the words.
DATE_FORMS = (
    "[Session date: {dmy}, {clock}] {greeting}",
    "[Session date: {dmy}, {clock}] {greeting}",
    "Happy {weekday}! Can you believe it's {dmy} already? {greeting}",
    "{greeting} Writing this on {weekday}, {mdy}, supposed to be working.",
    "It's {mdy} and I've finally got a quiet evening. {greeting}",
)

_FILLERS: tuple[Thread, ...] = (
    [("S", "Ugh, {weather} here. How is it on your side?"),
     ("R", "Same, honestly. I'm living in my hoodie."),
     ("S", "Hot chocolate season, I suppose.")],
    [("S", "Have you watched {show}? I binged four episodes last night."),
     ("R", "Not yet! No spoilers please."),
     ("S", "My lips are sealed. But watch it.")],
    [("S", "Made {dish} last night and there's enough left for a week."),
     ("R", "Save me some! I had cereal for dinner."),
     ("S", "Cereal is a valid dinner, no judgement.")],
    [("S", "Spent the whole day {chore}. Riveting stuff."),
     ("R", "Productive though! I did absolutely nothing."),
     ("S", "Honestly I'm jealous of your nothing.")],
    [("S", "Any plans for the weekend?"),
     ("R", "Not much, maybe {chore2}. You?"),
     ("S", "Probably {chore}, living the dream.")],
    [("S", "{X}, how are you actually doing? You seemed tired last time."),
     ("R", "Better now, thanks for asking. It's just been a lot."),
     ("S", "Well, I'm here if you want to vent.")],
    [("S", "Slept ten hours and I'm still tired, how is that possible."),
     ("R", "Same. It must be the season."),
     ("S", "Or the fourth coffee, who knows.")],
    [("S", "{Other} asked me about {thing} today and I had no idea what to say."),
     ("R", "Ha, just nod and smile. Works every time."),
     ("S", "That's literally my whole strategy.")],
    [("S", "Found a new coffee place near me that does amazing pastries."),
     ("R", "Take me there next time I'm around!"),
     ("S", "Deal. The cardamom bun alone is worth the trip.")],
    [("S", "Did you see the news about {thing}? Everyone at work was talking about it."),
     ("R", "No! What happened?"),
     ("S", "Long story, I'll tell you properly later.")],
    [("S", "I've been {doing} lately and honestly {trouble}."),
     ("R", "Have you tried to {advice}? Apparently {because}."),
     ("S", "Ooh, no, I'll try that this week.")],
    [("S", "{Other} is really into {doing} now. It's all they talk about."),
     ("R", "Ha, everyone needs a thing. Is it catching?"),
     ("S", "A little, I won't lie. {Thing} looks fun.")],
    [("S", "Quick question, {X}: is {thing} worth it or is it hype?"),
     ("R", "Depends. {Caveat}, so maybe start small."),
     ("S", "Sensible as always.")],
    [("S", "Thinking about {doing} this {timeframe}. Mad idea?"),
     ("R", "Not mad at all! Just {advice}, that's what everyone says."),
     ("S", "Noted. I'll report back.")],
    [("S", "How's your {other} doing these days?"),
     ("R", "Good, I think! We had a long call on Sunday."),
     ("S", "Aw, that's nice. Tell them I said hello.")],
    [("S", "I tried {doing} at the weekend. Verdict: harder than it looks."),
     ("R", "Everything is harder than it looks. What went wrong?"),
     ("S", "Mostly that {trouble}, but I'll get there.")],
    [("S", "Is it just me or has this month lasted a year?"),
     ("R", "It's not just you. I've aged a decade."),
     ("S", "Solidarity. Let's survive till payday.")],
    [("S", "I need a new show, I've run out. Any recommendations?"),
     ("R", "Try {show}, I couldn't stop watching."),
     ("S", "Ooh, adding it to the list.")],
    [("S", "Had the most awkward conversation with my {other} today."),
     ("R", "Oh no. About what?"),
     ("S", "{Thing}, somehow. Don't ask.")],
    [("S", "Cooking {dish} tonight, want the recipe?"),
     ("R", "Always. My cooking rotation is getting sad."),
     ("S", "I'll send it over, it's basically foolproof.")],
    [("S", "Did you ever sort out {chore}?"),
     ("R", "Half of it. The other half is a problem for future me."),
     ("S", "Future you is going to be so annoyed.")],
    [("S", "{Other} said I should {advice}. Thoughts?"),
     ("R", "Honestly not bad advice, {because}."),
     ("S", "Fine, I'll give it a go.")],
)  # fmt: skip


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def filler(rng: random.Random, used: set[int]) -> Thread:
    """A filler thread not in `used` (indices of this session's threads so far)."""
    topic = TOPICS[rng.choice(sorted(TOPICS))]
    thing = rng.choice(topic["things"])
    chore, chore2 = rng.sample(lexicon.CHORES, 2)
    slots = {
        "weather": rng.choice(lexicon.WEATHER),
        "show": rng.choice(lexicon.SHOWS),
        "dish": rng.choice(lexicon.DISHES),
        "chore": chore,
        "chore2": chore2,
        "Other": _cap(rng.choice(lexicon.OTHERS)),
        "other": rng.choice(("mum", "dad", "brother", "sister", "gran", "flatmate")),
        "thing": thing,
        "Thing": _cap(thing),
        "doing": rng.choice(topic["doing"]),
        "trouble": rng.choice(topic["trouble"]),
        "advice": rng.choice(topic["advice"]),
        "because": rng.choice(topic["because"]),
        "Caveat": _cap(rng.choice(topic["caveat"])),
        "timeframe": rng.choice(("weekend", "month", "spring", "summer", "autumn", "year")),
    }
    choice = rng.choice([i for i in range(len(_FILLERS)) if i not in used] or [0])
    used.add(choice)
    thread = _FILLERS[choice]
    # Threads end early about a third of the time: not every remark gets a follow-up.
    keep = len(thread) if rng.random() < 0.65 else 2
    return [(role, text.format_map(_Keep(slots))) for role, text in thread[:keep]]


class _Keep(dict[str, str]):
    """Leaves `{X}` for the caller to fill."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


_REMARKS = (
    "Also, {chore} is still on my list.",
    "Oh and {other} says hi.",
    "I've been {doing} on and off, too.",
    "Work has been busy, but fine.",
    "Also {weather} here, typical.",
    "Still thinking about {show}, by the way.",
    "I made {dish} again, by the way.",
    "Not much else to report, really.",
    "Did I tell you {other} is into {doing} now?",
    "Can't stop thinking about {thing}, weirdly.",
    "This week flew by.",
    "Honestly I need a holiday.",
    "We should call properly soon.",
    "Sorry, typing this on the bus.",
    "My phone is on 3% so forgive the typos.",
    "Also I finally finished {chore}.",
    "Random, but {other} recommended {show} and it's good.",
    "Oh, and I tried to {advice}, like someone suggested.",
)


def remark(rng: random.Random, used: set[int]) -> str:
    """A sentence people add to a message in passing; it states nothing a question asks.
    Not one in `used` (this session's so far)."""
    topic = TOPICS[rng.choice(sorted(TOPICS))]
    slots = {
        "chore": rng.choice(lexicon.CHORES),
        "other": rng.choice(lexicon.OTHERS),
        "doing": rng.choice(topic["doing"]),
        "weather": rng.choice(lexicon.WEATHER),
        "show": rng.choice(lexicon.SHOWS),
        "dish": rng.choice(lexicon.DISHES),
        "thing": rng.choice(topic["things"]),
        "advice": rng.choice(topic["advice"]),
    }
    choice = rng.choice([i for i in range(len(_REMARKS)) if i not in used] or [0])
    used.add(choice)
    return _cap(_REMARKS[choice].format(**slots))


def opener(rng: random.Random, when: datetime) -> tuple[Thread, str]:
    """The first exchange of a session, and the date string it states (the snippet)."""
    form = rng.choice(DATE_FORMS)
    dmy = f"{when.day} {when:%B %Y}"
    mdy = f"{when:%B} {when.day}, {when.year}"
    clock = f"{(when.hour - 1) % 12 + 1}:{when:%M} {'am' if when.hour < 12 else 'pm'}"
    greeting = rng.choice(GREETINGS)
    said = "{mdy}" in form and dmy not in form
    first = form.format(dmy=dmy, mdy=mdy, clock=clock, weekday=f"{when:%A}", greeting=greeting)
    thread = [("S", first), ("R", rng.choice(GREETING_REPLIES))]
    return thread, mdy if said else dmy


def closer(rng: random.Random) -> Thread:
    first, second = rng.choice(CLOSERS)
    return [("S", first), ("R", second)]
