"""Value pools for the dialogue generator: the people, pets, places, things and times that
facts are made of. Each pool is large enough that two conversations rarely share a value,
and no value contains another pool's word (so a snippet names exactly one fact)."""

from __future__ import annotations

from benchmarks.recall.vocab import CITIES as _ASSISTANT_CITIES
from benchmarks.recall.vocab import FIRST_NAMES as _ASSISTANT_NAMES

NAMES = tuple(
    dict.fromkeys(
        (
            *_ASSISTANT_NAMES,
            "Maya", "Jon", "Caroline", "Melanie", "Theo", "Aisha", "Marcus", "Leah", "Diego",
            "Nadia", "Owen", "Keiko", "Ruth", "Samir", "Bianca", "Callum", "Esther", "Farid",
            "Greta", "Hugo", "Ivy", "Joel", "Kira", "Luca", "Mira", "Nico", "Olive", "Pavel",
            "Rosa", "Stefan", "Talia", "Umar", "Vera", "Wes", "Xiomara", "Yusuf", "Zoe",
            "Audrey", "Bruno", "Celine", "Dev", "Emeka", "Freya", "Gideon", "Harriet",
        )
    )
)  # fmt: skip
CITIES = tuple(
    dict.fromkeys(
        (
            *_ASSISTANT_CITIES,
            "Lyon", "Glasgow", "Bologna", "Ghent", "Tallinn", "Ljubljana", "Cork", "Bergen",
            "Leeds", "Halifax", "Denver", "Tucson", "Oaxaca", "Cusco", "Hobart", "Perth",
            "Osaka", "Taipei", "Penang", "Dubrovnik", "Salzburg", "Innsbruck", "Galway",
            "Split", "Granada", "Valencia", "Marseille", "Nantes", "Bruges", "Utrecht",
        )
    )
)  # fmt: skip

# species -> (young word, breeds); the young word is what people say before a name exists
SPECIES = {
    "dog": ("puppy", ("beagle mix", "rescue greyhound", "border collie", "corgi",
                      "lab cross", "dachshund", "whippet", "scruffy terrier")),
    "cat": ("kitten", ("tabby", "grey shorthair", "ginger tom", "tortoiseshell",
                       "black rescue", "Maine Coon")),
    "rabbit": ("bunny", ("lop-eared", "dwarf lionhead", "Dutch", "Rex")),
}  # fmt: skip
PET_NAMES = (
    "Biscuit", "Pickles", "Mochi", "Waffles", "Juniper", "Pretzel", "Clementine", "Bowie",
    "Nacho", "Tinsel", "Pumpernickel", "Tofu", "Marbles", "Ziggy", "Noodle", "Paprika",
    "Crumpet", "Dumpling", "Pistachio", "Sprocket", "Tater", "Bramble", "Fennel", "Gizmo",
    "Hazel", "Kiwi", "Lentil", "Muffin", "Nutmeg", "Poppy", "Rascal", "Sushi", "Truffle",
)  # fmt: skip
INSTRUMENTS = (
    "cello", "ukulele", "trumpet", "banjo", "clarinet", "harp", "saxophone", "violin",
    "mandolin", "bass guitar", "accordion", "flute", "drums", "oboe",
)  # fmt: skip
COMPANIES = (
    "Northwind Labs", "Brightline Health", "Copperleaf Studios", "Harbor & Finch",
    "Tidewater Analytics", "Bluebird Logistics", "Greymatter Games", "Juniper Civic",
    "Kestrel Energy", "Lumen Architects", "Mossgrove Bank", "Oakhurst Press",
    "Pinecrest Clinic", "Quarry Robotics", "Riverstone Foods", "Saltmarsh Media",
)  # fmt: skip
ROLES = (
    "team lead", "senior designer", "head of operations", "lead engineer", "charge nurse",
    "deputy editor", "project manager", "head chef", "area manager", "principal analyst",
)  # fmt: skip
SPORTS = (
    "bouldering", "padel", "rowing", "fencing", "ultimate frisbee", "open water swimming",
    "trail running", "roller derby", "kickboxing", "table tennis", "archery", "netball",
)  # fmt: skip
VEHICLES = (
    "Subaru Outback", "Honda Jazz", "Vespa", "Volvo estate", "Mini Cooper", "Kia Niro",
    "Ford Transit camper", "Brompton", "Toyota Yaris", "Skoda Octavia", "cargo e-bike",
)  # fmt: skip
BOOKS = (
    "The Overstory", "Piranesi", "Station Eleven", "Circe", "The Remains of the Day",
    "Project Hail Mary", "Pachinko", "The Night Circus", "Klara and the Sun", "Middlemarch",
    "Lonesome Dove", "The Secret History", "A Gentleman in Moscow", "Homegoing",
)  # fmt: skip
COURSES = (
    "pottery", "Italian", "life drawing", "woodturning", "sign language", "stand-up comedy",
    "beekeeping", "welding", "calligraphy", "Portuguese", "bookbinding", "first aid",
)  # fmt: skip
BANDS = (
    "Khruangbin", "Fleet Foxes", "Wet Leg", "Bombay Bicycle Club", "Big Thief", "Alvvays",
    "Hiatus Kaiyote", "The War on Drugs", "Arlo Parks", "Fontaines D.C.", "Vulfpeck",
)  # fmt: skip
# (what people say in the statement, the phrase a question uses, body part)
INJURIES = (
    ("sprained my ankle", "sprain an ankle", "ankle"),
    ("cracked a rib", "crack a rib", "rib"),
    ("pulled a hamstring", "pull a hamstring", "hamstring"),
    ("broke my wrist", "break a wrist", "wrist"),
    ("tore a ligament in my knee", "tear a knee ligament", "knee"),
    ("dislocated my shoulder", "dislocate a shoulder", "shoulder"),
)
SIBLINGS = ("sister", "brother", "cousin")
# Things friends talk about that carry no fact: shows, dishes, places, chores.
SHOWS = (
    "that baking competition", "the heist series everyone's on about", "a nature documentary",
    "the new detective show", "a Korean drama", "the football", "a cooking show",
    "the space documentary", "some dating show", "the courtroom drama",
)  # fmt: skip
DISHES = (
    "a huge pot of chili", "ramen from scratch", "shakshuka", "a lasagne", "dumplings",
    "a Thai green curry", "banana bread", "paella", "tacos", "a mushroom risotto",
)  # fmt: skip
CHORES = (
    "sorting out the garage", "doing my taxes", "painting the hallway", "deep cleaning the oven",
    "clearing out the wardrobe", "fixing the leaky tap", "assembling a bookshelf",
)  # fmt: skip
WEATHER = (
    "it has not stopped raining", "it's finally sunny", "it's freezing", "the heat is unreal",
    "there's a storm rolling in", "it's grey and drizzly", "the wind is ridiculous",
)  # fmt: skip
OTHERS = (
    "my boss", "my neighbour", "my mum", "my dad", "a coworker", "my flatmate",
    "an old school friend", "my aunt", "my manager", "the guy upstairs",
)  # fmt: skip
