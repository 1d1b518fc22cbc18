"""What two friends tell each other, as templates: for each kind of fact, how its owner
states it (`states`), how the friend asks for it and the owner answers in a word or two
(`asks`, `replies`), how a later question about it is worded (`questions`, each with the
search keywords a model would take from that question), how it is stated with a relative
time for "when" questions, how it is revised, and talk that shares its words without
holding it (`mentions` by the owner, `distractors` by either friend).

A statement, ask or revision may carry its own question, `(text, question, keywords)`:
one that only makes sense when the fact was told that way ("Why was Maya limping?" needs
the friend to have said she was limping). The kind's `questions` fit any telling.

Slots: `{O}` the owner's name, `{X}` the name of whoever is spoken to, fact values
(`{pet}`, `{city}`, ...), `{ago}` a relative time; a capitalised slot name (`{Ago}`,
`{Sport}`) is the value with its first letter upper case. `«...»` marks the snippet that
must be visible for the fact to count as recalled; it always contains the answer.

Statements vary in whether they use the question's words ("dog", "instrument", "work")
or a paraphrase ("the little guy", "practising", "first week at"), as people do.
"""

from __future__ import annotations

from dataclasses import dataclass

# A template, or a template with the question (and keywords) it alone can answer.
Line = str | tuple[str, str, str]


def text_of(line: Line) -> str:
    return line if isinstance(line, str) else line[0]


def question_of(line: Line) -> tuple[str, str] | None:
    return None if isinstance(line, str) else (line[1], line[2])


@dataclass(frozen=True, slots=True)
class Kind:
    key: str
    answer: str  # the slot holding the answer
    questions: tuple[tuple[str, str], ...] = ()  # (question, keywords)
    states: tuple[Line, ...] = ()
    asks: tuple[Line, ...] = ()
    replies: tuple[str, ...] = ()
    reacts: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    # the friend asking after the fact later on, without its value
    checkins: tuple[str, ...] = ()
    distractors: tuple[str, ...] = ()
    when: tuple[tuple[str, str], ...] = ()  # temporal (question, keywords)
    when_states: tuple[str, ...] = ()
    update: tuple[tuple[str, str], ...] = ()  # (question, keywords) about the newest value
    revisions: tuple[Line, ...] = ()  # the owner states `{new}`


KINDS: dict[str, Kind] = {}


def _add(kind: Kind) -> None:
    KINDS[kind.key] = kind


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
    "instrument", "instrument",
    questions=(
        ("What instrument does {O} play?", "{O} instrument play"),
        ("Which instrument is {O} learning?", "{O} instrument learning"),
        ("What instrument has {O} been practising?", "{O} instrument practising"),
    ),
    states=(
        "I've been «practising the {instrument} every night», the neighbours are thrilled.",
        "Finally signed up for lessons, «I'm learning the {instrument}»!",
        ("«My {instrument} teacher says I'm ready» for the community orchestra.",
         "What instrument does {O} have a teacher for?", "{O} instrument teacher"),
        ("«I played the {instrument} at my cousin's wedding» and only messed up once.",
         "What instrument did {O} play at a wedding?", "{O} instrument wedding"),
        ("«Bought a second-hand {instrument} and I've been playing it every evening».",
         "What second-hand instrument did {O} buy?", "{O} second hand instrument"),
        ("My fingers are wrecked, «{instrument} scales for an hour» today.",
         "What instrument does {O} practise scales on?", "{O} instrument scales"),
        "I think «the {instrument} is finally my instrument», it just clicked.",
        "«I've started to play the {instrument}», badly but happily.",
        "«Learning to play the {instrument}» is so humbling.",
    ),
    asks=(
        "Are you still doing those music lessons?",
        "{O}, what are you learning to play again?",
        "What's the instrument you were going on about?",
        "{O}, which instrument did you pick in the end?",
    ),
    replies=(
        "Yes! «The {instrument}», twice a week now.",
        "«The {instrument}»! Slowly, very slowly.",
        "«{Instrument}»! I'm obsessed, honestly.",
        "I play the «{instrument}» now, most evenings.",
    ),
    reacts=(
        "That's so cool, I didn't know you had it in you!",
        "You'll have to play something for me.",
        "Wow, respect. I gave up piano after two months.",
    ),
    mentions=(
        "Practice went badly today, my teacher just sighed a lot.",
        "Recital is in three weeks and I'm already nervous.",
        "Found a great tutorial channel for beginners, total game changer.",
    ),
    checkins=(
        "{O}, how's the instrument going?",
        "Still practising every day?",
        "When's your next recital, {O}?",
        "Do you play in front of people yet?",
    ),
    distractors=(
        "My nephew just started {instrument2} lessons and the whole house suffers.",
        "There was a busker playing the {instrument2} outside the station, so good.",
        "Do you think it's too late to learn an instrument at our age?",
        "{X}, you should come to the open mic night, someone always plays something weird.",
    ),
))  # fmt: skip

_add(Kind(
    "job", "company",
    questions=(
        ("Where does {O} work?", "{O} work"),
        ("Which company did {O} join?", "{O} company join"),
        ("What company does {O} work for?", "{O} company work"),
    ),
    states=(
        ("I got the job! «I start at {company}» in two weeks.",
         "Where did {O} start a new job?", "{O} start new job"),
        ("«First week at {company}» done, everyone's lovely so far.",
         "Where did {O} just finish a first week of work?", "{O} first week work"),
        ("«Signed the contract with {company}» this morning, I can finally relax.",
         "Which company did {O} sign a contract with?", "{O} company contract"),
        ("«My commute to the {company} office» is long but the team is great.",
         "Which office does {O} commute to?", "{O} office commute"),
        "«I'm going to work for {company}»! Still feels unreal.",
        ("«The {company} job offer came through» and I said yes on the spot.",
         "Which company made {O} a job offer?", "{O} company job offer"),
        "«I work at {company} now», still learning everyone's names.",
        "«Started work at {company}» on Monday, so many acronyms.",
    ),
    asks=(
        ("Did you hear back after that interview?",
         "Which company did {O} interview with?", "{O} company interview"),
        ("So where did you end up accepting, {O}?",
         "Which offer did {O} end up accepting?", "{O} offer accepting"),
        "Which place did you go with in the end?",
        "{O}, which company did you pick?",
    ),
    replies=(
        "«{company}»! They offered more than I asked for.",
        "I went with «{company}», the other one felt off.",
        "Yes!! «{company} said yes».",
        "I'll work at «{company}», starting next month.",
    ),
    reacts=(
        "Congrats!! That's huge.",
        "Oh that's brilliant news, you deserve it.",
        "Finally! They'd be mad not to want you.",
    ),
    mentions=(
        "Work is chaos this week, three deadlines on the same day.",
        "My manager scheduled a meeting about meetings. Again.",
        "Got a lovely message from a client today, made my week.",
    ),
    checkins=(
        "{O}, how's the new job?",
        "How's work treating you?",
        "Do you like the company so far, {O}?",
        "Is the new office nice?",
    ),
    distractors=(
        "My sister is job hunting and it's brutal out there.",
        "Half my friends are switching companies this year.",
        "{X}, do you ever think about quitting work and opening a café?",
        "Saw a job ad for a lighthouse keeper. Tempting.",
    ),
    when=(("When did {O} start at {company}?", "{O} start {company}"),),
    when_states=(
        "«I started at {company} {ago}» and my brain is completely full.",
        "«{Ago} was my first day at {company}», I got lost twice.",
    ),
    update=(
        ("Where does {O} work now?", "{O} work now"),
        ("Which company is {O} working for these days?", "{O} company working"),
    ),
    revisions=(
        ("Big change: «I handed in my notice and I'm joining {new}» next month.",
         "Which company is {O} joining?", "{O} company joining"),
        "So I left {company}. «I'm at {new} now» and it's so much calmer.",
        "«Accepted an offer from {new}», my last day at the old place is Friday.",
        "Quick update: «I work at {new} now», the old job got too much.",
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
    "sport", "sport",
    questions=(
        ("What sport did {O} take up?", "{O} sport"),
        ("Which sport is {O} into?", "{O} sport"),
        ("What does {O} do to stay fit?", "{O} stay fit"),
    ),
    states=(
        ("I joined a «{sport} club» and I'm hooked.",
         "What club did {O} join?", "{O} club join"),
        ("«Tried {sport} for the first time» and I can't feel my arms.",
         "What sport did {O} try for the first time?", "{O} sport first time"),
        ("«{Sport} twice a week now», it's the only thing keeping me sane.",
         "What does {O} do twice a week?", "{O} twice week"),
        ("Spent Saturday «at a {sport} session», absolutely knackered.",
         "What kind of session did {O} go to on Saturday?", "{O} session Saturday"),
        ("New hobby alert: «I've taken up {sport}»!",
         "What sport has {O} taken up?", "{O} sport taken"),
        "«{Sport} is my new sport», who knew.",
        "«I've been doing {sport} to stay fit», it's brutal.",
    ),
    asks=(
        ("What's the new exercise thing you were doing?",
         "What exercise is {O} doing?", "{O} exercise"),
        "{O}, are you still going to that club?",
        ("What have you been doing for fitness lately?",
         "What does {O} do for fitness?", "{O} fitness"),
    ),
    replies=(
        "«{Sport}»! I'm terrible but it's so fun.",
        "Yes, «{sport}», Tuesdays and Thursdays.",
        "«{Sport}», and my whole body hurts.",
        "My sport now is «{sport}», I'm addicted.",
    ),
    reacts=(
        "Look at you, so sporty.",
        "That sounds exhausting but fun.",
        "Respect. I'd last five minutes.",
    ),
    mentions=(
        "My legs are dead after last night's session.",
        "Coach says my technique is finally improving.",
        "Bought proper shoes for training, what a difference.",
    ),
    checkins=(
        "{O}, still doing your sport?",
        "How's training going?",
        "Been to the club this week, {O}?",
    ),
    distractors=(
        "My brother keeps telling me to join his {sport2} team.",
        "I should really do more exercise than walking to the fridge.",
        "{X}, want to try a sport class with me sometime?",
        "Watched a {sport2} tournament on TV, looked brutal.",
    ),
    update=(
        ("What sport is {O} into now?", "{O} sport now"),
    ),
    revisions=(
        "I've given up {sport}. «It's all about {new} now».",
        ("«Switched from {sport} to {new}», my knees said thank you.",
         "What has {O} switched to?", "{O} switched"),
        "«My sport now is {new}», {sport} got boring.",
    ),
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
    "book", "book",
    questions=(
        ("What book is {O} reading?", "{O} book reading"),
        ("What book was {O} reading?", "{O} book reading"),
    ),
    states=(
        ("«I'm halfway through {book}» and I can't put it down.",
         "What book is {O} halfway through?", "{O} book halfway"),
        ("Stayed up till 2am «finishing {book}». Worth it.",
         "What book did {O} stay up late finishing?", "{O} book finishing"),
        ("«{book} is wrecking me emotionally», in a good way.",
         "Which book is wrecking {O} emotionally?", "{O} book wrecking emotionally"),
        "«Started reading {book} on the train» this morning.",
        "«Reading {book} at the moment», it's gorgeous.",
        "«The book I'm reading is {book}» and it's so good.",
    ),
    asks=(
        "What are you reading at the moment?",
        "{O}, what was that book you mentioned?",
        ("Anything good on your nightstand?",
         "What book is on {O}'s nightstand?", "{O} book nightstand"),
    ),
    replies=(
        "«{book}»! You'd love it.",
        "«{book}». Slow start but trust me.",
        "Still «{book}», I'm a slow reader.",
        "The book I'm reading is «{book}», you'd love it.",
    ),
    reacts=("Ooh, I've heard good things.", "Adding it to my list.", "I need to read more."),
    mentions=(
        "My book club picked something awful this month.",
        "Reading before bed instead of scrolling, day four.",
        "Left my book on the bus. Devastated.",
    ),
    checkins=(
        "{O}, finished the book yet?",
        "Still reading that book?",
        "Is the book as good as you hoped, {O}?",
    ),
    distractors=(
        "My mum only reads crime novels and judges everyone else.",
        "{X}, have you read anything good lately?",
        "The library near me is closing, it's so sad.",
        "Everyone at work is reading the same self-help book.",
    ),
    update=(("What book is {O} reading now?", "{O} book reading now"),),
    revisions=(
        "Finished that one. «Now I'm onto {new}».",
        "«Switched to {new}», the other one dragged.",
        "«Now I'm reading {new}», much better.",
    ),
))  # fmt: skip

_add(Kind(
    "course", "course",
    questions=(
        ("What class did {O} sign up for?", "{O} class sign"),
        ("What course is {O} taking?", "{O} course taking"),
    ),
    states=(
        "«Signed up for a {course} class» on Wednesday nights!",
        ("First «{course} lesson» tonight and I'm nervous.",
         "What lesson did {O} have for the first time?", "{O} first lesson"),
        "My «{course} course» is harder than I expected.",
        "«I'm doing a {course} evening class», don't laugh.",
    ),
    asks=(
        "What was the evening class you were thinking about?",
        ("{O}, did you enrol in the end?",
         "What did {O} enrol in?", "{O} enrol"),
        ("What are you learning on Wednesdays now?",
         "What is {O} learning on Wednesdays?", "{O} learning Wednesdays"),
    ),
    replies=(
        "«{Course}»! Week three and I'm hooked.",
        "Yes, «{course}», it starts next month.",
        "«{Course}». The teacher is hilarious.",
        "I'm taking a «{course}» class, Wednesdays.",
    ),
    reacts=("That sounds so fun!", "Love that for you.", "Brave! I'd be hopeless."),
    mentions=(
        "Homework for class took me all evening.",
        "There's a retired guy in my class who's a genius at it.",
    ),
    checkins=(
        "{O}, how's the class going?",
        "Still enjoying the course?",
        "Did you go to class this week, {O}?",
    ),
    distractors=(
        "My aunt keeps trying to get me into evening classes.",
        "{X}, you should take a class with me!",
        "The community centre has a new course timetable out.",
    ),
    when=(("When did {O} start the {course} class?", "{O} start {course} class"),),
    when_states=(
        "«I started the {course} class {ago}», my hands are a mess.",
        "«{Ago} was my first {course} lesson».",
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
    "promotion", "role",
    questions=(
        ("What position was {O} promoted to?", "{O} promoted position"),
        ("What is {O}'s new job title?", "{O} new job title"),
    ),
    states=(
        "They made me «{role}»! Still can't believe it.",
        ("Got the promotion, «I'm officially {role}»!",
         "What promotion did {O} get?", "{O} promotion"),
        ("«The {role} role is mine»! Celebrating tonight.",
         "What role did {O} get?", "{O} role"),
        "«I got promoted to {role}»! Drinks are on me.",
        "New title at work: «{role}»!",
    ),
    asks=(
        "Did you hear about the promotion?",
        "{O}, what's the new title?",
        "So what are they calling you now?",
    ),
    replies=("«{Role}»! Bigger desk, same coffee.", "Yes! «{Role}», starting Monday.",
             "I got promoted to «{role}»!"),
    reacts=("You deserve it!!", "Drinks on you then!", "Told you they'd notice."),
    mentions=(
        "Managing people is a whole new kind of tired.",
        "The new responsibilities are a lot, but good.",
    ),
    checkins=(
        "How's the new role, {O}?",
        "{O}, enjoying being promoted?",
        "Is the new job title going to your head?",
    ),
    distractors=(
        "My friend got passed over for a promotion again.",
        "{X}, you'd make a great manager, you know.",
        "Performance reviews are this month, dreading it.",
    ),
    when=(("When did {O} get promoted?", "{O} promoted"),),
    when_states=(
        "«{Ago} they told me I'm the new {role}»!",
        "«I got promoted to {role} {ago}».",
    ),
))  # fmt: skip

_add(Kind(
    "concert", "band",
    questions=(
        ("Which band did {O} see live?", "{O} band live"),
        ("What concert did {O} go to?", "{O} concert"),
    ),
    states=(
        "«Saw {band} live» and I'm still buzzing.",
        ("Went to «the {band} gig», best night in ages.",
         "Which gig did {O} go to?", "{O} gig"),
        ("«{band} played my favourite song» and I cried a bit.",
         "Which band played {O}'s favourite song?", "{O} band favourite song"),
        "«The {band} concert» was unreal, best band I've seen live.",
    ),
    asks=(
        "How was the gig? Who were you seeing again?",
        ("{O}, who was playing on Friday?",
         "Which band did {O} see on Friday?", "{O} band Friday"),
        ("What was the concert you got tickets for?",
         "What concert did {O} get tickets for?", "{O} concert tickets"),
    ),
    replies=("«{band}»! They were incredible.", "«{band}», front row!",
             "We saw «{band}» live, best concert ever."),
    reacts=("Jealous! Were they good?", "That sounds amazing.", "I love them!"),
    mentions=("Lost my voice from all the singing.", "The merch queue was longer than the set."),
    checkins=(
        "{O}, any more concerts lined up?",
        "Still thinking about that gig?",
        "Seen any bands live since, {O}?",
    ),
    distractors=(
        "Tickets for everything are so expensive now.",
        "{X}, want to go to a gig sometime?",
        "My flatmate plays his records way too loud.",
    ),
    when=(("When did {O} see {band} live?", "{O} see {band} live"),),
    when_states=(
        "«We saw {band} {ago}» and my ears are still ringing.",
        "«{Ago} I finally saw {band} live».",
    ),
))  # fmt: skip

# Trips are the one kind a person has several of: said with the city, asked about by time
# ("when") or by order ("the first city after ..."), never by a bare "where".
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

# The kinds a person has one of, which single, adjacent, temporal and update probes ask about.
SINGLE = ("pet", "instrument", "job", "move", "sport", "vehicle", "sibling", "book", "course",
          "injury", "promotion", "concert")  # fmt: skip
TEMPORAL = tuple(k for k, v in KINDS.items() if v.when)
UPDATABLE = tuple(k for k, v in KINDS.items() if v.revisions)

# Multi-hop questions: (name, question, keywords) over two facts of the same person.
MULTI_HOP = (
    ("sibling_city", "Which city did {O}'s {relation} move to?",
     ("{O} {relation}", "{relation} city move")),
    ("pet_of_player", "What is the name of the {species} that belongs to the person who plays "
     "the {instrument}?", ("plays {instrument}", "{species} name")),
    ("trip_after_promotion", "What was the first city {O} visited after getting promoted?",
     ("{O} promoted", "{O} city visited")),
)  # fmt: skip
