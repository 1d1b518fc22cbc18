"""Kinds of fact about home life: pets, moves, family, vehicles, injuries, trips (see
`kind.py` for the template language)."""

from __future__ import annotations

from benchmarks.recall.dialogue.kind import Kind

KINDS: list[Kind] = []
_add = KINDS.append

_add(Kind(
    "pet", "pet",
    questions=(
        ("What is the name of {O}'s {species}?", "{O} {species} name"),
        ("What did {O} name the {species}?", "{O} name {species}"),
        ("What is {O}'s {species} called?", "{O} {species} called"),
        ("What is the name of {O}'s {breed}?", "{O} {breed} name"),
        ("What is {O}'s {young} called?", "{O} {young} called"),
    ),
    states=(
        "Big news: we adopted a {breed} and «named him {pet}»!",
        "Meet «{pet}, our new {breed}». He sleeps about twenty hours a day.",
        "So the shelter said yes! «The {young} is called {pet}» and he already owns the sofa.",
        "We've got a {species}! «His name is {pet}» and he's a total menace.",
        "«Our {species} {pet}» has decided my slippers are his now.",
        "«{pet} came home with us on Sunday», the tiniest {breed} you've ever seen.",
        "Honestly «adopting {pet} was the best decision», that little {breed} is pure joy.",
        "The new {species} finally has a name: «we're calling him {pet}».",
        "«Our {species} is called {pet}», and he snores like an old man.",
        "Took «my {species} {pet}» to the beach and he lost his mind.",
    ),
    asks=(
        "Did you ever pick a name for the {young}?",
        "{O}, what did you end up calling the new {species}?",
        "So what's the little {breed} called?",
        "Has the {young} got a name yet?",
    ),
    replies=(
        "«{pet}»! After a character in my favourite cartoon.",
        "We went with «{pet}». The kids voted and I lost.",
        "«{pet}», because he looks exactly like one.",
        "Yes! «{pet}». It suits him way too well.",
        "His name is «{pet}», and he answers to it about half the time.",
    ),
    reacts=(
        "A {breed}! I need pictures immediately.",
        "Stop, that's adorable. Send photos!",
        "Oh I love that. How's he settling in?",
    ),
    mentions=(
        "The {species} learned to open the fridge. I wish I was joking.",
        "Had to take the little guy to the vet, he ate half a sock.",
        "Walking the {species} at 6am in the rain builds character, apparently.",
        "My little gremlin chewed through the phone charger again.",
        "Someone at the park asked to pet the {species} and he rolled straight onto his back.",
    ),
    checkins=(
        "{O}, how's the {species} doing?",
        "How's your {young} settling in, {O}?",
        "Any new {species} stories?",
        "Does the {species} have a name tag yet, {O}?",
    ),
    distractors=(
        "My neighbour's {species2} barks at every single delivery van.",
        "There's a {species2} café opening near work, I might need to go.",
        "Picking names is so hard, my cousin changed her baby's name twice.",
        "Saw the cutest {species2} on the bus today, wearing a tiny raincoat.",
        "{X}, a friend is fostering a {species2} and keeps trying to give it to me.",
        "{X}, would you ever get a {species2}? I keep looking at adoption sites.",
    ),
    when=(("When did {O} adopt the {species}?", "{O} adopt {species}"),),
    when_states=(
        "«We picked up the {young} from the shelter {ago}», he's still figuring out stairs.",
        "«{Ago} we finally adopted a {breed}»! Still pinching myself.",
        "«We brought a {species} home {ago}», a {breed} called {pet}.",
    ),
))  # fmt: skip

_add(Kind(
    "move", "city",
    questions=(
        ("Which city did {O} move to?", "{O} city move"),
        ("Where does {O} live?", "{O} live"),
        ("What city is {O} living in?", "{O} city living"),
    ),
    states=(
        ("We signed the lease! «We're moving to {city}» at the end of the month.",
         "Where is {O} moving?", "{O} moving"),
        ("«Unpacking boxes in our new flat in {city}», send snacks.",
         "Where is {O}'s new flat?", "{O} new flat"),
        "«Living in {city} now» and I still get lost going to the shop.",
        "The «move to {city}» is done, my back will never recover.",
        ("«We found a place in {city}»! Tiny kitchen, huge windows.",
         "Where did {O} find a new place?", "{O} new place"),
        "«We live in {city} now», can you believe it?",
        "«Our move to {city}» is booked for the first of the month!",
    ),
    asks=(
        "So where are you guys moving?",
        "{O}, did you pick a city in the end?",
        "Where's the new place?",
    ),
    replies=(
        "«{city}»! Close to the river.",
        "«{city}», we found a flat with a tiny balcony.",
        "We decided on «{city}». Scary but exciting.",
        "We're going to live in «{city}»!",
    ),
    reacts=(
        "Oh exciting! New city, new you.",
        "I'll have to come and visit.",
        "That's a big step, good for you.",
    ),
    mentions=(
        "The new neighbourhood has an amazing bakery on the corner.",
        "Still haven't unpacked the last boxes. They live in the hallway now.",
        "The buses here are so much better than I expected.",
    ),
    checkins=(
        "How's the new city, {O}?",
        "Do you like living there?",
        "{O}, settled into the new place yet?",
        "Made any friends in the new city?",
    ),
    distractors=(
        "My cousin wants to move abroad but can't decide which city.",
        "Rent prices everywhere are insane right now.",
        "{X}, would you ever move to a different city?",
        "A friend just moved back home after two years away.",
    ),
    when=(("When did {O} move to {city}?", "{O} move {city}"),),
    when_states=(
        "«We moved to {city} {ago}» and I still haven't found the kettle.",
        "«{Ago} we finally moved into the place in {city}».",
    ),
    update=(
        ("Where does {O} live now?", "{O} live now"),
        ("Which city is {O} living in now?", "{O} city living"),
    ),
    revisions=(
        ("We're moving again! «Got a place in {new}» because of the job.",
         "Where did {O} get a new place?", "{O} new place"),
        ("Update: «we've relocated to {new}», long story.",
         "Where has {O} relocated to?", "{O} relocated"),
        ("«Our new address is in {new}», so come visit.",
         "Where is {O}'s new address?", "{O} new address"),
        "Plot twist: «we live in {new} now».",
    ),
))  # fmt: skip

_add(Kind(
    "sibling", "sib",
    questions=(
        ("What is the name of {O}'s {relation}?", "{O} {relation} name"),
        ("What is {O}'s {relation} called?", "{O} {relation} called"),
    ),
    states=(
        "«My {relation} {sib}» is staying with us this week.",
        "Had lunch with «my {relation} {sib}», we laughed for two hours.",
        "«{sib}, my {relation}», is getting married next spring!",
        "«{sib} (my {relation})» just called to borrow money. Again.",
    ),
    asks=(
        "What's your {relation}'s name again?",
        "{O}, remind me who was visiting?",
        "Which {relation} was it, the older one?",
    ),
    replies=(
        "«{sib}»! The one who makes terrible puns.",
        "«{sib}», you met at my birthday.",
        "Yes, «{sib}», the older one.",
    ),
    reacts=("Aw, say hi from me!", "Sounds like a lovely time.", "Ha, I remember the stories."),
    mentions=(
        "My {relation} is being dramatic about the family holiday again.",
        "Family group chat is on fire tonight.",
    ),
    checkins=(
        "How's your {relation} doing, {O}?",
        "Is your {relation} still visiting?",
    ),
    distractors=(
        "My mate's {relation} just had twins!",
        "{X}, how's your family doing?",
        "Siblings are exhausting, aren't they.",
    ),
))  # fmt: skip

# Said about a sibling by name only: the second hop of "Which city did X's sister move to?"

_add(Kind(
    "sibling_move", "city",
    states=(
        "«{sib} finally moved to {city}», we're planning to visit.",
        "Big family news: «{sib} got a flat in {city}».",
        "«{sib} is living in {city} now», still can't believe it.",
        "«{sib} decided to move to {city}», the whole family is in shock.",
        "«{sib} is going to move to {city}» for work, end of the year.",
    ),
    reacts=("Oh wow, good for them!", "That's exciting, free holidays for you."),
))  # fmt: skip

_add(Kind(
    "vehicle", "vehicle",
    questions=(
        ("What vehicle did {O} buy?", "{O} vehicle buy"),
        ("What did {O} buy to get around?", "{O} buy get around"),
    ),
    states=(
        ("«Picked up a used {vehicle}» on Saturday, it smells like old crisps.",
         "What used vehicle did {O} pick up?", "{O} used vehicle"),
        ("We finally caved and «bought a {vehicle}»!",
         "What has {O} bought?", "{O} bought"),
        ("«The {vehicle} is finally ours», no more waiting for buses.",
         "What did {O} get so there is no more waiting for buses?", "{O} waiting buses"),
        "Guess who «owns a {vehicle}» now.",
        "«We decided to buy a {vehicle}», fingers crossed it lasts.",
        "Had to «buy a {vehicle} to get around» out here.",
    ),
    asks=(
        ("Did you go for the car in the end?",
         "Which car did {O} go for?", "{O} car"),
        ("{O}, what did you end up buying?",
         "What did {O} end up buying?", "{O} buying"),
        "So which one did you get?",
    ),
    replies=(
        "«The {vehicle}»! Second-hand but mint.",
        "«A {vehicle}». Don't laugh.",
        "We went with «the {vehicle}».",
        "We decided to buy «the {vehicle}» in the end.",
    ),
    reacts=("Ooh, road trip time!", "Nice, very grown up.", "Practical AND cute, love it."),
    mentions=(
        "Parking is a nightmare near my place.",
        "Filled it up and nearly cried at the price.",
        "It made a weird noise on the motorway, fingers crossed.",
    ),
    checkins=(
        "How's the new car, {O}?",
        "Taken it on a road trip yet?",
        "Did you buy insurance for it, {O}?",
    ),
    distractors=(
        "My dad keeps sending me car adverts.",
        "{X}, do you know a decent mechanic?",
        "Someone reversed into my neighbour's car this morning.",
        "I should learn to drive properly one day.",
    ),
    when=(("When did {O} buy the {vehicle}?", "{O} buy {vehicle}"),),
    when_states=(
        "«We bought the {vehicle} {ago}» and I've already scratched it.",
        "«{Ago} I finally bought a {vehicle}».",
    ),
))  # fmt: skip

_add(Kind(
    "injury", "injury",
    questions=(
        ("What injury did {O} have?", "{O} injury"),
        ("How did {O} get hurt?", "{O} hurt"),
    ),
    states=(
        ("Don't laugh, «I {injury} getting off the bus».",
         "What happened to {O} getting off the bus?", "{O} getting off bus"),
        ("«I {injury}» playing football with my nephew.",
         "What injury did {O} get playing football?", "{O} injury football"),
        ("Slipped on the stairs and «{injury}». Ouch.",
         "What happened when {O} slipped on the stairs?", "{O} slipped stairs"),
        "Annoying injury news: «I {injury}» at the climbing wall.",
        "Got hurt at the weekend, «I {injury}».",
    ),
    asks=(
        ("What happened to you? You were limping!",
         "Why was {O} limping?", "{O} limping"),
        "{O}, how's the injury?",
        ("Why were you at the hospital?",
         "Why was {O} at the hospital?", "{O} hospital"),
    ),
    replies=(
        "«{Injury}» of all things. So embarrassing.",
        "I «{injury}» at training. Six weeks off.",
        "Stupid injury, I «{injury}». Six weeks off.",
    ),
    reacts=("Oh no! Are you okay?", "Ouch, take it easy.", "That sounds awful, rest up."),
    mentions=(
        "Physio exercises are so boring.",
        "Still hobbling around, but better.",
        "The painkillers make me so sleepy.",
    ),
    checkins=(
        "{O}, how's the injury healing?",
        "Are you still hurt?",
        "Can you walk properly yet, {O}?",
    ),
    distractors=(
        "My dad hurt his back lifting a sofa.",
        "{X}, please be careful on those stairs.",
        "A guy at work broke his toe on a filing cabinet.",
    ),
    when=(("When did {O} {injury_q}?", "{O} {injury_q}"),),
    when_states=(
        "«I {injury} {ago}» and I'm already bored of the sofa.",
        "«{Ago} I {injury}» tripping over a dog lead.",
    ),
))  # fmt: skip

_add(Kind(
    "trip", "city",
    states=(
        "«Just got back from {city}», the food was unreal.",
        "«We spent four days in {city}» and walked about a million steps.",
        "«{city} was amazing», I want to live there.",
        "Back home after «a long weekend in {city}», so tired.",
        "«We visited {city}» for a few days, so pretty.",
        "«{city} is such a fun city», I didn't want to leave.",
    ),
    asks=("How was the trip? Where did you end up going?", "{O}, where did you go in the end?"),
    replies=("«{city}»! We walked everywhere.", "«{city}», and it rained every day."),
    reacts=("Jealous! Was it as nice as it looks?", "Sounds dreamy. Send recs.",
            "Oh I've always wanted to go there."),
    mentions=("I'm still jetlagged from the trip.", "Finally printed the holiday photos."),
    checkins=(
        "{O}, where's your next trip?",
        "Which city would you visit again?",
        "Planning any trips, {O}?",
    ),
    distractors=(
        "My parents are going on a cruise, can you imagine.",
        "{X}, we should plan a trip together one day.",
        "Flights are so expensive this year.",
        "A coworker just came back from a trip and won't stop talking about it.",
    ),
    when=(("When did {O} go to {city}?", "{O} go {city}"),),
    when_states=(
        "«We were in {city} {ago}», still dreaming about it.",
        "«{Ago} I flew to {city}» for a few days, it was perfect.",
    ),
))  # fmt: skip
