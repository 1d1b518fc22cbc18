"""Kinds of fact about work and pastimes: instruments, jobs, promotions, sports, books,
courses, concerts (see `kind.py` for the template language)."""

from __future__ import annotations

from benchmarks.recall.dialogue.kind import Kind

KINDS: list[Kind] = []
_add = KINDS.append

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
