"""Everyday English sentences for the synthesized speech corpus.

A seeded grammar over an everyday vocabulary (people, food, home, town, travel, work, school,
weather, health, time, money, numbers written as words) plus a list of common conversational
lines. A CTC model misspells the words it never heard, so the grammar aims at breadth: function
words, tenses, negations with contractions, questions, requests, numbers, times, dates and prices.

    from datamodules.speech.sentences import everyday_sentences
    everyday_sentences(5, seed=0)   # five distinct sentences, the same for the same seed
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

# --------------------------------------------------------------------------- numbers as words

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
_MONTHS = (
    "January February March April May June July August September October November December"
).split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def cardinal(n: int, british_and: bool = False) -> str:
    """0 <= n < 10**9 in words: 342 -> "three hundred forty two" ("... and forty two" if british)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            words = f"{cardinal(head, british_and)} {name}"
            if rest:
                joiner = " and " if british_and and rest < 100 else " "
                words += joiner + cardinal(rest, british_and)
            return words
    raise ValueError(n)


def ordinal(n: int) -> str:
    """1 -> "first", 23 -> "twenty third", 40 -> "fortieth"."""
    *head, last = cardinal(n).split()
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def year(y: int) -> str:
    """1984 -> "nineteen eighty four", 2005 -> "two thousand and five", 2021 -> "twenty twenty one"."""
    if 2000 <= y < 2010:
        return "two thousand" + (f" and {_ONES[y - 2000]}" if y > 2000 else "")
    century, rest = divmod(y, 100)
    if rest == 0:
        return f"{cardinal(century)} hundred"
    return f"{cardinal(century)} {'oh ' + _ONES[rest] if rest < 10 else cardinal(rest)}"


def clock_time(rng: random.Random) -> str:
    """A time of day as people say it: "half past seven", "ten fifteen", "nine o'clock"."""
    hour = rng.randint(1, 12)
    style = rng.randrange(6)
    if style == 0:
        return f"{cardinal(hour)} o'clock"
    if style == 1:
        return f"half past {cardinal(hour)}"
    if style == 2:
        return f"quarter {rng.choice(['past', 'to'])} {cardinal(hour)}"
    if style == 3:
        return (
            f"{cardinal(rng.choice([5, 10, 20, 25]))} {rng.choice(['past', 'to'])} {cardinal(hour)}"
        )
    minute = rng.choice([5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 7, 12, 48])
    words = f"{cardinal(hour)} {'oh ' + _ONES[minute] if minute < 10 else cardinal(minute)}"
    if style == 5:
        words += " " + rng.choice(
            ["in the morning", "in the evening", "at night", "in the afternoon"]
        )
    return words


def price(rng: random.Random) -> str:
    """A price in words: "twelve dollars", "three pounds fifty", "ninety nine cents"."""
    currency, cents = rng.choice(
        [("dollar", "cent"), ("pound", "penny"), ("euro", "cent"), ("dollar", "cent")]
    )
    whole = rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 45, 50, 99, 120, 250, 1500])
    unit = currency if whole == 1 else currency + "s"
    style = rng.randrange(4)
    if style == 0:
        return f"{cardinal(whole)} {unit}"
    part = rng.choice([5, 10, 20, 25, 49, 50, 75, 80, 95, 99])
    if style == 1:
        cents_word = ("pence" if cents == "penny" else "cents") if part > 1 else cents
        return f"{cardinal(whole)} {unit} and {cardinal(part)} {cents_word}"
    if style == 2:
        return f"{cardinal(whole)} {unit} {cardinal(part)}"
    return f"{cardinal(part)} {'pence' if cents == 'penny' else 'cents'}"


def date(rng: random.Random) -> str:
    """ "the twenty third of May" or "May twenty third"."""
    month, day = rng.choice(_MONTHS), ordinal(rng.randint(1, 28))
    return f"the {day} of {month}" if rng.random() < 0.5 else f"{month} {day}"


def phone_number(rng: random.Random) -> str:
    """Digits read one by one, with "oh" for zero half the time."""
    zero = rng.choice(["zero", "oh"])
    groups = [[rng.randrange(10) for _ in range(k)] for k in (3, 3, 4)]
    return ", ".join(" ".join(zero if d == 0 else _ONES[d] for d in g) for g in groups)


# --------------------------------------------------------------------------- the lexicon


@dataclass(frozen=True)
class Noun:
    singular: str
    plural: str
    countable: bool = True


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _nouns(spec: str, countable: bool = True) -> list[Noun]:
    """ "apple knife/knives ice_cream" -> Nouns; `_` joins words, `/` gives an irregular plural."""
    out = []
    for item in spec.split():
        singular, _, plural = item.partition("/")
        singular = singular.replace("_", " ")
        plural = plural.replace("_", " ") if plural else _plural(singular)
        out.append(Noun(singular, plural if countable else singular, countable))
    return out


def _words(spec: str) -> list[str]:
    """ "living_room bank" -> ["living room", "bank"]."""
    return [w.replace("_", " ") for w in spec.split()]


FOOD = _nouns(
    "apple banana orange egg sandwich potato/potatoes tomato/tomatoes onion carrot cookie cake "
    "pie pizza burger lemon pear peach sausage biscuit muffin pancake pepper cucumber strawberry "
    "grape melon cabbage mango pineapple avocado doughnut cupcake sweet chocolate_bar "
    "hot_dog lollipop steak omelette watermelon peanut"
)
FOOD_MASS = _nouns(
    "bread rice soup cheese butter pasta chicken fish meat honey cereal salad chocolate "
    "ice_cream jam yogurt popcorn toast garlic flour porridge spaghetti bacon ham beef lettuce "
    "broccoli fruit cream pepper salt sugar",
    countable=False,
)
DRINKS = _nouns(
    "water milk coffee tea juice lemonade orange_juice hot_chocolate soup wine beer cola "
    "apple_juice",
    countable=False,
)
THINGS = _nouns(
    "cup plate bowl spoon fork knife/knives glass bottle box bag chair table lamp clock key phone "
    "book pen pencil umbrella towel blanket pillow mirror basket bucket candle picture ticket "
    "wallet watch ring computer laptop camera radio television newspaper magazine map card "
    "envelope package present toy ball kettle pan pot jar brush comb toothbrush suitcase "
    "backpack notebook calendar painting photo/photos guitar piano/pianos drum battery charger "
    "remote ladder hammer screwdriver rope bench shelf/shelves drawer sofa bed desk cupboard "
    "fridge oven stove plant vase carpet rug curtain light_bulb calculator coin stamp "
    "sticker balloon puzzle tent torch"
)
CLOTHES = _nouns(
    "shirt jacket coat hat shoe sock glove scarf dress sweater skirt belt tie boot "
    "raincoat uniform t_shirt hoodie cap apron"
) + _nouns("jeans trousers shorts pyjamas sunglasses", countable=False)
DOCUMENTS = _nouns(
    "letter email report book story message note list form card postcard receipt bill "
    "contract recipe essay poem application invitation text_message timetable menu "
    "newspaper article diary textbook"
)
VEHICLES = _nouns("car van truck bike motorbike boat scooter tractor bicycle")
TRANSPORT = _nouns("bus/buses train plane ferry taxi tram flight")
ANIMALS = _nouns(
    "dog cat bird horse cow sheep/sheep pig duck rabbit mouse/mice goat fox/foxes bear lion tiger "
    "frog bee spider owl squirrel deer/deer wolf/wolves monkey elephant snake turtle puppy/puppies "
    "kitten chicken goose/geese donkey parrot hamster butterfly whale dolphin"
)
PEOPLE = _nouns(
    "man/men woman/women child/children boy girl baby/babies teacher doctor nurse driver farmer "
    "cook baker waiter waitress pilot student police_officer engineer artist singer writer "
    "lawyer mechanic cleaner manager shop_assistant builder dentist scientist firefighter "
    "plumber painter musician reporter neighbor friend stranger customer passenger tourist "
    "visitor guest player coach librarian receptionist cashier chef guard postman/postmen "
    "person/people teenager classmate colleague"
)
FAMILY = _words(
    "mother father mum dad sister brother aunt uncle cousin grandmother grandfather grandma "
    "grandpa son daughter wife husband parents kids family boss neighbor best_friend roommate "
    "teacher doctor"
)
EVENTS = _nouns(
    "meeting party game concert lesson class holiday trip exam test interview wedding birthday "
    "appointment movie show match festival dinner lunch breakfast picnic race barbecue "
    "competition conference performance tour rehearsal football_match film presentation"
)
MEDIA = _nouns("song film show programme podcast album video story joke speech")
ROOMS = _words(
    "kitchen bedroom bathroom living_room garage basement attic hallway garden dining_room "
    "office balcony"
)
PLACES = _words(
    "park beach library station office hospital bank market supermarket bakery airport museum "
    "cinema restaurant hotel post_office school church river lake city village farm shop "
    "pharmacy gym zoo stadium bridge corner car_park swimming_pool playground bus_stop "
    "train_station town_hall theatre cafe petrol_station bookshop garden kitchen forest "
    "mountains hills countryside factory university castle harbour square"
)
FURNITURE = (
    "table desk shelf bed sofa chair floor counter windowsill fridge cupboard drawer bench "
    "kitchen table piano doorstep"
).split()
NAMES = (
    "Anna Ben Maria David Sarah James Emma Tom Lucy Daniel Grace Peter Laura Michael Kate John "
    "Sophie Jack Olivia Sam Hannah Chris Emily Paul Rachel Mark Amy Steve Helen Adam Julia "
    "George Chloe Harry Mia Leo Ella Oliver Ruby Noah Alice Henry Rose Luke Zoe Ryan Nina Ali "
    "Fatima Carlos Sofia Raj Priya Wei Mei Kofi Amara Ivan Elena Omar Leila Jamal Yuki Kenji "
    "Lars Ingrid Pablo Lucia Dylan Megan Owen Bella Max Lily Jake Holly Kevin Diana"
).split()
COLORS = "red blue green yellow black white brown grey pink purple orange".split()
ADJ_THING = (
    "big small old new heavy clean dirty empty full expensive cheap broken round long short soft "
    "hard wet dry warm cold beautiful strange useful plastic wooden little large tiny huge bright "
    "dark shiny comfortable nice lovely ugly favorite spare"
).split()
ADJ_FOOD = (
    "fresh hot cold sweet sour salty spicy delicious tasty ripe burnt frozen homemade warm crispy "
    "cheap expensive huge small"
).split()
ADJ_PERSON = (
    "happy sad tired hungry thirsty angry busy kind friendly funny clever nervous excited worried "
    "sick bored proud brave quiet shy polite lazy late early ready sleepy calm lucky careful "
    "famous young old tall strong rich upset surprised confused sorry glad afraid"
).split()
ADJ_PLACE = (
    "crowded quiet empty busy clean noisy dark warm cold beautiful small huge closed open "
    "lovely peaceful dirty famous"
).split()
ADJ_WEATHER = "sunny rainy windy cloudy foggy cold warm hot wet freezing stormy lovely".split()
_SHORT_ADJ = {
    "big": "bigger", "hot": "hotter", "wet": "wetter", "sad": "sadder", "small": "smaller",
    "old": "older", "new": "newer", "clean": "cleaner", "cheap": "cheaper", "long": "longer",
    "short": "shorter", "soft": "softer", "hard": "harder", "warm": "warmer", "cold": "colder",
    "dark": "darker", "large": "larger", "fast": "faster", "slow": "slower", "tall": "taller",
    "young": "younger", "strong": "stronger", "quiet": "quieter", "nice": "nicer",
    "heavy": "heavier", "busy": "busier", "happy": "happier", "funny": "funnier",
    "easy": "easier", "early": "earlier", "dirty": "dirtier", "noisy": "noisier",
    "sunny": "sunnier", "good": "better", "bad": "worse", "far": "farther", "tiny": "tinier",
    "sweet": "sweeter", "fresh": "fresher", "rich": "richer", "kind": "kinder", "late": "later",
    "bright": "brighter", "safe": "safer", "close": "closer", "high": "higher", "low": "lower",
}  # fmt: skip
ADVERBS_MANNER = (
    "quickly slowly carefully quietly loudly happily together again alone outside inside "
    "upstairs downstairs early late well badly hard patiently politely"
).split()


def comparative(adjective: str) -> str:
    """ "big" -> "bigger", "expensive" -> "more expensive"."""
    return _SHORT_ADJ.get(adjective, f"more {adjective}")


def superlative(adjective: str) -> str:
    """ "big" -> "biggest", "expensive" -> "most expensive"."""
    if adjective in _SHORT_ADJ:
        return {"good": "best", "bad": "worst", "far": "farthest"}.get(
            adjective, _SHORT_ADJ[adjective][:-2] + "est"
        )
    return f"most {adjective}"


def article(word: str) -> str:
    """ "a" or "an" by the sound of `word`."""
    lower = word.lower()
    if lower.startswith(("uni", "use", "usu", "euro", "one")):
        return "a"
    if lower.startswith(("hour", "honest", "honour")):
        return "an"
    return "an" if lower[0] in "aeiou" else "a"


# --------------------------------------------------------------------------- verbs


@dataclass(frozen=True)
class Verb:
    base: str
    past: str
    participle: str
    third: str
    ing: str


_DOUBLE_FINAL = set(
    "stop plan shop drop jog hug chat clap grab rob nod beg hop skip rub ship slip tap wrap trip "
    "run swim sit get put cut begin forget win set hit let shut dig spin travel".split()
)


def _third(word: str) -> str:
    if word in ("have",):
        return "has"
    if word in ("do", "go"):
        return word + "es"
    return _plural(word)


def _ing(word: str) -> str:
    if word.endswith("ie"):
        return word[:-2] + "ying"
    if word.endswith("e") and not word.endswith(("ee", "ye", "oe")) and word != "be":
        return word[:-1] + "ing"
    if word in _DOUBLE_FINAL:
        return word + word[-1] + "ing"
    return word + "ing"


def _regular_past(word: str) -> str:
    if word.endswith("e"):
        return word + "d"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ied"
    if word in _DOUBLE_FINAL:
        return word + word[-1] + "ed"
    return word + "ed"


def verb(spec: str) -> Verb:
    """ "eat ate eaten" or "cook" (regular); `_` joins a particle: "pick_up", "wake_up woke woken"."""
    parts = spec.split()
    words = [p.split("_") for p in parts]
    head, particle = words[0][0], " ".join(words[0][1:])
    past = words[1][0] if len(words) > 1 else _regular_past(head)
    participle = words[2][0] if len(words) > 2 else past

    def with_particle(form: str) -> str:
        return f"{form} {particle}" if particle else form

    return Verb(
        with_particle(head),
        with_particle(past),
        with_particle(participle),
        with_particle(_third(head)),
        with_particle(_ing(head)),
    )


def _verbs(spec: str) -> list[Verb]:
    """Verbs separated by commas: "eat ate eaten, cook, pick_up"."""
    return [verb(item.strip()) for item in spec.split(",") if item.strip()]


# Which verbs go naturally with which kind of object.
VERBS_FOR = {
    "food": _verbs(
        "eat ate eaten, cook, buy bought bought, order, bake, share, taste, finish, cut cut cut, "
        "prepare, want, like, need, bring brought brought, try, sell sold sold, warm_up, "
        "make made made, choose chose chosen, wash, put_away put put, eat_up ate eaten"
    ),
    "drink": _verbs(
        "drink drank drunk, make made made, pour, order, buy bought bought, want, spill, "
        "finish, bring brought brought, heat_up, taste"
    ),
    "thing": _verbs(
        "buy bought bought, find found found, lose lost lost, carry, clean, bring brought brought, "
        "open, sell sold sold, borrow, fix, break broke broken, drop, pick_up, wash, "
        "hide hid hidden, need, want, forget forgot forgotten, move, keep kept kept, paint, wrap, "
        "return, send sent sent, show showed shown, use, look_for, put_away put put, check, "
        "throw_away threw thrown, lend lent lent, hold held held, give_back gave given"
    ),
    "clothes": _verbs(
        "wear wore worn, buy bought bought, wash, iron, fold, find found found, lose lost lost, "
        "try_on, put_on put put, take_off took taken, choose chose chosen, pack, hang_up hung hung, "
        "mend, borrow"
    ),
    "document": _verbs(
        "read read read, write wrote written, send sent sent, open, sign, print, finish, check, "
        "post, answer, forget forgot forgotten, lose lost lost, find found found, "
        "read_out read read, tear_up tore torn, photocopy, translate"
    ),
    "vehicle": _verbs(
        "drive drove driven, park, wash, fix, sell sold sold, buy bought bought, rent, "
        "borrow, clean, paint, repair, ride rode ridden, push"
    ),
    "transport": _verbs(
        "catch caught caught, miss, take took taken, wait_for, book, get_on got got, "
        "get_off got got, board"
    ),
    "person": _verbs(
        "call, meet met met, help, visit, thank, ask, invite, follow, wait_for, look_for, "
        "find found found, see saw seen, remember, trust, know knew known, miss, answer, pay paid paid, "
        "teach taught taught, join, hug, email, phone, pick_up, drive drove driven, "
        "tell told told, warn, forgive forgave forgiven, surprise, cheer_up, thank"
    ),
    "animal": _verbs(
        "feed fed fed, walk, wash, see saw seen, hear heard heard, watch, find found found, "
        "catch caught caught, brush, photograph, take_care_of took taken, chase, follow"
    ),
    "place": _verbs(
        "visit, leave left left, clean, reach, find found found, paint, love, like, "
        "close, open, decorate, explore, tidy, sweep swept swept"
    ),
    "event": _verbs(
        "watch, enjoy, miss, plan, cancel, start, finish, organize, attend, love, hate, "
        "forget forgot forgotten, remember, postpone, prepare_for, book"
    ),
    "media": _verbs(
        "watch, hear heard heard, enjoy, love, like, hate, record, share, finish, download, "
        "listen_to, remember, recommend"
    ),
}
INTRANSITIVE = _verbs(
    "sleep slept slept, run ran run, walk, laugh, cry, smile, sing sang sung, dance, "
    "swim swam swum, work, study, cook, rest, wait, travel, arrive, leave left left, "
    "sit_down sat sat, stand_up stood stood, wake_up woke woken, go_out went gone, "
    "come_back came come, stay_home stayed stayed, listen, talk, play, shout, jump, hurry, "
    "relax, exercise, practise, complain, argue, agree, win won won, lose lost lost, "
    "fall_asleep fell fallen, get_up got got, go_home went gone, eat ate eaten, read read read, "
    "write wrote written, drive drove driven, move, change, improve, clean_up, tidy_up, "
    "give_up gave given, calm_down, slow_down, speak_up spoke spoken, look_around, "
    "go_shopping went gone, go_swimming went gone, go_for_a_walk went gone, "
    "play_outside played played, take_a_nap took taken, have_a_shower had had, "
    "have_breakfast had had, have_lunch had had, have_dinner had had, do_the_dishes did done, "
    "do_homework did done, do_the_laundry did done, make_dinner made made, "
    "make_a_phone_call made made, take_the_bus took taken, catch_a_cold caught caught, "
    "pay_the_bills paid paid, feed_the_cat fed fed, water_the_plants watered watered, "
    "set_the_table set set, wash_the_car washed washed, clean_the_house cleaned cleaned, "
    "walk_the_dog walked walked, play_football played played, play_the_guitar played played, "
    "play_chess played played, ride_a_bike rode ridden, learn_to_drive learned learned, "
    "watch_television watched watched, listen_to_music listened listened, "
    "bake_a_cake baked baked, paint_the_fence painted painted, fix_the_roof fixed fixed"
)

# --------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class Subject:
    text: str
    person: str  # "1s", "2", "3s", "1p", "3p"
    object_form: str
    possessive: str


PRONOUNS = [
    Subject("I", "1s", "me", "my"),
    Subject("you", "2", "you", "your"),
    Subject("he", "3s", "him", "his"),
    Subject("she", "3s", "her", "her"),
    Subject("we", "1p", "us", "our"),
    Subject("they", "3p", "them", "their"),
]
POSSESSIVES = ["my", "your", "his", "her", "our", "their"]


def subject(rng: random.Random) -> Subject:
    """A pronoun, a name, or a noun phrase about a person."""
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(PRONOUNS)
    if roll < 0.65:
        name = rng.choice(NAMES)
        return Subject(name, "3s", name, "")
    if roll < 0.8:
        who = rng.choice(FAMILY)
        det = rng.choice(POSSESSIVES + ["my", "my", "our"])
        plural = who in ("parents", "kids")
        return Subject(
            f"{det} {who}", "3p" if plural else "3s", "them" if plural else "him", "their"
        )
    if roll < 0.92:
        person = rng.choice(PEOPLE)
        if rng.random() < 0.35:
            det = rng.choice(["the", "the", "some", "our", "many", "two", "all the"])
            return Subject(f"{det} {person.plural}", "3p", "them", "their")
        adj = rng.choice(["", "", "", "young ", "old ", "new ", "tall ", "friendly "])
        det = rng.choice(["the", "the", article(adj or person.singular), "that", "our"])
        return Subject(f"{det} {adj}{person.singular}", "3s", "them", "their")
    phrase, person = rng.choice(
        [("everyone", "3s"), ("nobody", "3s"), ("somebody", "3s"), ("my friends and I", "1p"),
         ("both of them", "3p"), ("the whole family", "3s"), ("my brother and I", "1p"),
         ("the children", "3p"), ("most people", "3p"), ("the neighbors", "3p")]
    )  # fmt: skip
    return Subject(phrase, person, "them", "their")


# --------------------------------------------------------------------------- noun phrases

_THING_CLASSES = {
    "food": (FOOD, ADJ_FOOD),
    "drink": (DRINKS, ["hot", "cold", "fresh", "warm", "sweet", "strong"]),
    "thing": (THINGS, ADJ_THING + COLORS),
    "clothes": (CLOTHES, ADJ_THING + COLORS),
    "document": (DOCUMENTS, ["long", "short", "important", "new", "old", "funny", "strange"]),
    "vehicle": (VEHICLES, ["old", "new", "red", "blue", "black", "white", "broken", "fast"]),
    "transport": (TRANSPORT, ["early", "last", "next", "first", "late"]),
    "animal": (ANIMALS, ["little", "big", "old", "young", "hungry", "lost", "friendly", "black"]),
    "event": (EVENTS, ["big", "long", "important", "short", "school", "family", "surprise"]),
    "media": (MEDIA, ["new", "old", "funny", "sad", "famous", "favorite", "long"]),
}


def noun_phrase(rng: random.Random, kind: str, owner: Subject | None = None) -> str:
    """A determiner, maybe an adjective or a number, and a noun of the given kind."""
    if kind == "person":
        roll = rng.random()
        if roll < 0.35:
            return rng.choice(NAMES)
        if roll < 0.6:
            return f"{rng.choice(POSSESSIVES)} {rng.choice(FAMILY)}"
        if roll < 0.75:
            return rng.choice(["me", "you", "him", "her", "us", "them", "everyone"])
        person = rng.choice(PEOPLE)
        return f"the {person.singular}" if rng.random() < 0.7 else f"the {person.plural}"
    if kind == "place":
        adj = rng.choice(ADJ_PLACE) + " " if rng.random() < 0.2 else ""
        return f"{rng.choice(['the', 'the', 'the', 'our', 'that'])} {adj}{rng.choice(PLACES)}"
    if kind == "food" and rng.random() < 0.4:
        nouns, adjectives = FOOD_MASS, ADJ_FOOD
    else:
        nouns, adjectives = _THING_CLASSES[kind]
    noun = rng.choice(nouns)
    adj = rng.choice(adjectives) + " " if rng.random() < 0.3 else ""
    if owner is not None and not owner.possessive:
        owner = None  # a name: "his" or "her" is unknown, "Anna's" sounds odd after "Anna"
    if not noun.countable:
        det = rng.choice(["some", "the", "the", "more", "a lot of", "a little", "this", "enough"])
        if owner is not None and rng.random() < 0.3:
            det = owner.possessive
        return f"{det} {adj}{noun.singular}"
    roll = rng.random()
    if roll < 0.25 and kind != "transport":
        count = rng.choice([2, 2, 3, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 24, 30, 50, 100])
        return f"{cardinal(count)} {adj}{noun.plural}"
    if roll < 0.4:
        det = rng.choice(["the", "these", "those", "some", "all the", "many", "a few", "both"])
        return f"{det} {adj}{noun.plural}"
    if owner is not None and roll < 0.55:
        return f"{owner.possessive} {adj}{noun.singular}"
    det = rng.choice(["the", "the", "a", "a", "this", "that", "my", "your", "another", "our"])
    if det == "a":
        det = article(adj or noun.singular)
    return f"{det} {adj}{noun.singular}"


# --------------------------------------------------------------------------- clauses

PAST_TIMES = [
    "yesterday", "last night", "last week", "last month", "last year", "this morning",
    "two days ago", "an hour ago", "a few minutes ago", "earlier today", "last summer",
    "the day before yesterday", "when I was young", "after lunch", "at the weekend",
    "on Monday", "on Saturday morning", "last Friday", "three weeks ago", "a long time ago",
    "in the spring", "after school", "before breakfast", "last Christmas", "on his birthday",
]  # fmt: skip
FUTURE_TIMES = [
    "tomorrow", "next week", "tonight", "later", "soon", "on Friday", "this weekend",
    "in the morning", "next year", "in two weeks", "after lunch", "the day after tomorrow",
    "next month", "this afternoon", "on Sunday evening", "before the end of the month",
    "after work", "in a few minutes", "next summer", "in the new year", "later this evening",
]  # fmt: skip
HABITUAL_TIMES = [
    "every day", "every morning", "on Sundays", "twice a week", "once a month",
    "at the weekend", "in the evening", "every night", "after dinner", "before work",
    "every summer", "on weekdays", "three times a week", "every other day", "in the winter",
]  # fmt: skip
NOW_TIMES = ["right now", "at the moment", "now", "today", "this week", "these days", "again"]
FREQUENCY = ["always", "usually", "often", "sometimes", "never", "rarely", "hardly ever"]
MODALS = ["can", "could", "should", "must", "might", "would", "may"]
PLACE_PHRASES = [
    "in the kitchen", "at the station", "in the garden", "at home", "at work", "in town",
    "near the river", "at the park", "in the city centre", "on the way home", "at school",
    "in the car", "on the bus", "at the office", "by the window", "at the supermarket",
    "in the living room", "at the corner shop", "upstairs", "outside", "downstairs",
    "at the library", "at the hospital", "on the train", "at the beach", "in the market",
]  # fmt: skip
WITH_PHRASES = [
    "with my friends", "with her sister", "with the children", "with his dad", "for an hour",
    "for a few minutes", "before dinner", "after work", "with a smile", "without any help",
    "for the first time", "by himself", "by herself", "together", "all day", "all morning",
    "in the rain", "as fast as possible", "for the whole family", "with great care",
]  # fmt: skip


def _be(person: str, tense: str, negative: bool, rng: random.Random) -> str:
    present = {"1s": "am", "2": "are", "3s": "is", "1p": "are", "3p": "are"}
    past = {"1s": "was", "2": "were", "3s": "was", "1p": "were", "3p": "were"}
    form = (present if tense == "present" else past)[person]
    if negative:
        if form == "am":
            return "am not"
        return form + ("n't" if rng.random() < 0.6 else " not")
    return form


def _contract(subject_text: str, auxiliary: str, rng: random.Random) -> str:
    """ "I am" -> "I'm", "she will" -> "she'll" (half the time, pronouns only)."""
    contractions = {"am": "'m", "are": "'re", "is": "'s", "will": "'ll", "have": "'ve",
                    "has": "'s", "would": "'d", "had": "'d"}  # fmt: skip
    pronoun = subject_text.lower() in ("i", "you", "he", "she", "we", "they", "it")
    if pronoun and auxiliary in contractions and rng.random() < 0.5:
        if auxiliary in ("are",) and subject_text.lower() in ("i", "he", "she"):
            return f"{subject_text} {auxiliary}"
        return subject_text + contractions[auxiliary]
    return f"{subject_text} {auxiliary}"


def verb_phrase(rng: random.Random, subj: Subject, tense: str, negative: bool = False) -> str:
    """Subject, conjugated verb and its object: "she didn't buy the bread"."""
    if rng.random() < 0.3:
        v, obj = rng.choice(INTRANSITIVE), ""
    else:
        kind = rng.choice(list(VERBS_FOR))
        v = rng.choice(VERBS_FOR[kind])
        obj = " " + noun_phrase(rng, kind, owner=subj)
    third = subj.person == "3s"
    s = subj.text
    if tense == "present":
        if negative:
            aux = "doesn't" if third else "don't"
            if rng.random() < 0.2:
                aux = "does not" if third else "do not"
            return f"{s} {aux} {v.base}{obj}"
        return f"{s} {v.third if third else v.base}{obj}"
    if tense == "past":
        if negative:
            aux = rng.choice(["didn't", "didn't", "did not", "never"])
            return f"{s} {aux} {v.base}{obj}"
        return f"{s} {v.past}{obj}"
    if tense == "future":
        if negative:
            aux = rng.choice(["won't", "will not"])
            return f"{s} {aux} {v.base}{obj}"
        return f"{_contract(s, 'will', rng)} {v.base}{obj}"
    if tense == "going_to":
        be = _be(subj.person, "present", negative, rng)
        return f"{_contract(s, be, rng) if not negative else s + ' ' + be} going to {v.base}{obj}"
    if tense == "progressive":
        be = _be(subj.person, "present", negative, rng)
        return f"{_contract(s, be, rng) if not negative else s + ' ' + be} {v.ing}{obj}"
    if tense == "past_progressive":
        return f"{s} {_be(subj.person, 'past', negative, rng)} {v.ing}{obj}"
    if tense == "perfect":
        have = "has" if third else "have"
        if negative:
            aux = have + ("n't" if rng.random() < 0.7 else " not")
            return f"{s} {aux} {v.participle}{obj}"
        return f"{_contract(s, have, rng)} {rng.choice(['', '', 'already ', 'just '])}{v.participle}{obj}"
    if tense == "modal":
        modal = rng.choice(MODALS)
        if negative:
            modal = {"can": "can't", "could": "couldn't", "should": "shouldn't",
                     "must": "mustn't", "might": "might not", "would": "wouldn't",
                     "may": "may not"}[modal]  # fmt: skip
        return f"{s} {modal} {v.base}{obj}"
    raise ValueError(tense)


_TIME_FOR = {
    "present": HABITUAL_TIMES,
    "past": PAST_TIMES,
    "future": FUTURE_TIMES,
    "going_to": FUTURE_TIMES,
    "progressive": NOW_TIMES,
    "past_progressive": [
        "when I called",
        "at eight o'clock",
        "all evening",
        "when it started to rain",
    ],
    "perfect": ["", "this week", "since Monday", "for years", "recently", "this year"],
    "modal": ["", "tomorrow", "later", "today", "next time", "soon"],
}
TENSES = list(_TIME_FOR)


def clause(rng: random.Random, tense: str | None = None, negative: bool | None = None) -> str:
    """A full clause with optional place, company and time phrases."""
    tense = tense or rng.choice(TENSES)
    negative = rng.random() < 0.2 if negative is None else negative
    subj = subject(rng)
    text = verb_phrase(rng, subj, tense, negative)
    if tense == "present" and not negative and rng.random() < 0.3:
        # frequency adverb goes between subject and verb: "she often cooks"
        text = text.replace(subj.text + " ", f"{subj.text} {rng.choice(FREQUENCY)} ", 1)
    extras = []
    if rng.random() < 0.3:
        extras.append(rng.choice(PLACE_PHRASES))
    if rng.random() < 0.15:
        extras.append(rng.choice(WITH_PHRASES + ADVERBS_MANNER))
    if rng.random() < 0.45:
        extras.append(rng.choice(_TIME_FOR[tense]))
    return " ".join([text, *filter(None, extras)])


def _question(rng: random.Random) -> str:
    """A yes/no or wh- question."""
    subj = subject(rng)
    kind = rng.choice(list(VERBS_FOR))
    v = rng.choice(VERBS_FOR[kind])
    obj = noun_phrase(rng, kind, owner=subj)
    third = subj.person == "3s"
    do = "does" if third else "do"
    be = {"1s": "am", "2": "are", "3s": "is", "1p": "are", "3p": "are"}[subj.person]
    have = "has" if third else "have"
    s = subj.text
    forms = [
        f"{do.capitalize()} {s} {v.base} {obj} {rng.choice(HABITUAL_TIMES)}",
        f"Did {s} {v.base} {obj} {rng.choice(PAST_TIMES)}",
        f"Will {s} {v.base} {obj} {rng.choice(FUTURE_TIMES)}",
        f"{be.capitalize()} {s} {v.ing} {obj} {rng.choice(NOW_TIMES)}",
        f"{have.capitalize()} {s} ever {v.participle} {obj}",
        f"{rng.choice(['Can', 'Could', 'Should', 'Would'])} {s} {v.base} {obj}",
        f"Where did {s} {v.base} {obj}",
        f"When {do} {s} {v.base} {obj}",
        f"Why {'did' if rng.random() < 0.5 else do} {s} {v.base} {obj}",
        f"How often {do} {s} {v.base} {obj}",
        f"What time will {s} {v.base} {obj}",
        f"Who {v.past} {obj}",
        f"How many {rng.choice(FOOD + THINGS).plural} did {s} {rng.choice(['buy', 'want', 'need', 'find', 'bring'])}",
        f"How much {rng.choice(FOOD_MASS + DRINKS).singular} {rng.choice(['do we need', 'is left', 'did you buy', 'should I bring'])}",
        f"What {rng.choice(['are', 'were'])} you doing {rng.choice(PLACE_PHRASES)}",
        f"Which {rng.choice(TRANSPORT).singular} goes to the {rng.choice(PLACES)}",
        f"How long have you {rng.choice(['lived', 'worked', 'stayed', 'waited'])} {rng.choice(['here', 'there', 'in this town', 'at the hotel'])}",
        f"Is there {article(p := rng.choice(PLACES))} {p} near here",
        f"Do you know where {noun_phrase(rng, 'thing')} is",
        f"Have you seen {rng.choice(POSSESSIVES)} {rng.choice(THINGS).singular} anywhere",
    ]
    return rng.choice(forms) + "?"


def _numbers(rng: random.Random) -> str:
    """Sentences built around a number: ages, prices, times, dates, counts, phone numbers."""
    n = rng.choice(
        [rng.randint(2, 20), rng.randint(21, 99), rng.randint(100, 999), rng.randint(1000, 99999)]
    )
    name = rng.choice(NAMES)
    thing = rng.choice(FOOD + THINGS + ANIMALS + PEOPLE)
    forms = [
        f"{name} is {cardinal(rng.randint(2, 95))} years old",
        f"My {rng.choice(FAMILY)} turned {cardinal(rng.randint(18, 90))} {rng.choice(PAST_TIMES)}",
        f"The {rng.choice(['ticket', 'book', 'jacket', 'meal', 'taxi', 'room', 'bike', 'haircut'])} costs {price(rng)}",
        f"I paid {price(rng)} for {noun_phrase(rng, rng.choice(['food', 'thing', 'clothes']))}",
        f"The {rng.choice(TRANSPORT).singular} leaves at {clock_time(rng)}",
        f"The {rng.choice(EVENTS).singular} starts at {clock_time(rng)}",
        f"We {rng.choice(['usually', 'always', 'often'])} have {rng.choice(['breakfast', 'lunch', 'dinner'])} at {clock_time(rng)}",
        f"Let's meet at {clock_time(rng)} {rng.choice(['outside the ' + rng.choice(PLACES), 'at the ' + rng.choice(PLACES), 'tomorrow', 'on ' + rng.choice(_DAYS)])}",
        f"{rng.choice(['My', 'Her', 'His', 'Our'])} birthday is on {date(rng)}",
        f"The {rng.choice(EVENTS).singular} is on {rng.choice(_DAYS)}, {date(rng)}",
        f"{name} was born in {year(rng.randint(1930, 2024))}",
        f"They moved to {rng.choice(['this town', 'the city', 'the countryside', 'a new house'])} in {year(rng.randint(1950, 2024))}",
        f"There are {cardinal(n)} {thing.plural} in the {rng.choice(PLACES)}",
        f"There were about {cardinal(n)} {rng.choice(PEOPLE).plural} at the {rng.choice(EVENTS).singular}",
        f"{rng.choice(['My', 'Her', 'His', 'The office'])} phone number is {phone_number(rng)}",
        f"It is {cardinal(rng.randint(1, 40))} degrees outside {rng.choice(['today', 'this morning', 'right now'])}",
        f"The {rng.choice(['river', 'road', 'bridge', 'field', 'garden', 'wall'])} is {cardinal(rng.randint(2, 900))} meters {rng.choice(['long', 'wide', 'high'])}",
        f"Our team {rng.choice(['won', 'lost'])} {cardinal(rng.randint(1, 6))} to {cardinal(rng.randint(0, 5))} {rng.choice(PAST_TIMES)}",
        f"Take bus number {cardinal(rng.randint(1, 199))} to the {rng.choice(PLACES)}",
        f"The {rng.choice(['office', 'flat', 'doctor', 'classroom', 'restaurant'])} is on the {ordinal(rng.randint(1, 20))} floor",
        f"It takes {cardinal(rng.randint(2, 59))} minutes to walk to the {rng.choice(PLACES)}",
        f"{name} came {ordinal(rng.randint(1, 12))} in the race",
        f"I need {cardinal(rng.randint(2, 12))} {rng.choice(FOOD).plural} and {noun_phrase(rng, 'food')}",
        f"The {rng.choice(['house', 'car', 'shop', 'farm', 'company'])} was sold for {cardinal(rng.randint(2, 900))} thousand {rng.choice(['dollars', 'pounds', 'euros'])}",
        f"About {cardinal(rng.choice([10, 20, 25, 30, 40, 50, 60, 75, 80, 90]))} percent of the {rng.choice(PEOPLE).plural} agreed",
        f"{rng.choice(['Page', 'Room', 'Chapter', 'Gate', 'Platform', 'Seat'])} {cardinal(rng.randint(1, 120))} is {rng.choice(['on the left', 'over there', 'closed today', 'upstairs', 'at the end of the hall'])}",
        f"The baby is {cardinal(rng.randint(2, 11))} months old",
        f"We waited for {cardinal(rng.randint(2, 90))} minutes",
        f"Count from {cardinal(rng.randint(1, 10))} to {cardinal(rng.randint(11, 100))}",
        f"The year {year(rng.randint(1800, 2030))} was {rng.choice(['a good year', 'a difficult year', 'very long ago', 'when everything changed'])}",
    ]
    return rng.choice(forms)


def _description(rng: random.Random) -> str:
    """Descriptions with be: weather, feelings, where things are, comparisons."""
    name = rng.choice(NAMES)
    thing = rng.choice(THINGS)
    prep = rng.choice(["on", "under", "behind", "next to", "in front of", "near", "beside", "in"])
    adj = rng.choice(ADJ_THING)
    i_am = rng.choice(["I am", "I was", "I'm"])
    forms = [
        f"It {rng.choice(('is', 'was', 'is'))} {rng.choice(ADJ_WEATHER)} and {rng.choice(ADJ_WEATHER)} {rng.choice(['today', 'this morning', 'outside', 'all week', 'in the mountains'])}",
        f"The weather will be {rng.choice(ADJ_WEATHER)} {rng.choice(FUTURE_TIMES)}",
        f"It {rng.choice(['rained', 'snowed'])} {rng.choice(['all day', 'all night', 'for hours'])} {rng.choice(PAST_TIMES)}",
        f"{name} {rng.choice(['is', 'was', 'looks', 'seems', 'felt'])} {rng.choice(ADJ_PERSON)} {rng.choice(['today', 'this morning', 'after the game', 'because of the news', ''])}",
        f"{i_am} {rng.choice(ADJ_PERSON)} because {clause(rng, 'past')}",
        f"The {thing.singular} is {prep} the {rng.choice(FURNITURE)}",
        f"The {thing.plural} are {prep} the {rng.choice(FURNITURE)}",
        f"I left {rng.choice(POSSESSIVES)} {thing.singular} {prep} the {rng.choice(FURNITURE)}",
        f"This {thing.singular} is {comparative(adj)} than that one",
        f"{name} is {comparative(rng.choice(ADJ_PERSON[:30] + ['tall', 'young', 'old', 'strong']))} than {rng.choice(NAMES)}",
        f"This is the {superlative(rng.choice(['good', 'bad', 'big', 'small', 'busy', 'quiet', 'beautiful', 'expensive', 'cheap', 'old']))} {rng.choice(PLACES)} in {rng.choice(['town', 'the city', 'the country', 'the world', 'the area'])}",
        f"The {rng.choice(FOOD).singular} {rng.choice(['tastes', 'smells', 'looks'])} {rng.choice(ADJ_FOOD)}",
        f"The {rng.choice(PLACES)} was {rng.choice(ADJ_PLACE)} {rng.choice(PAST_TIMES)}",
        f"The {rng.choice(ROOMS)} is {rng.choice(ADJ_PLACE)} and {rng.choice(ADJ_PLACE)}",
        f"Her {rng.choice(CLOTHES).singular} is {rng.choice(COLORS)} and {rng.choice(COLORS)}",
        f"The {rng.choice(ANIMALS).singular} is {rng.choice(['sleeping', 'hiding', 'sitting', 'waiting', 'playing'])} {prep} the {rng.choice(FURNITURE)}",
        f"Our {rng.choice(ANIMALS).singular} {rng.choice(['caught', 'chased', 'found', 'scared'])} a {rng.choice(ANIMALS).singular} in the garden",
        f"There is {article(a := rng.choice(ADJ_THING))} {a} {thing.singular} {prep} the {rng.choice(FURNITURE)}",
        f"There isn't any {rng.choice(FOOD_MASS + DRINKS).singular} left in the {rng.choice(['fridge', 'cupboard', 'kitchen', 'shop'])}",
        f"There was a lot of {rng.choice(FOOD_MASS + DRINKS).singular} on the {rng.choice(['floor', 'table', 'counter'])}",
        f"The {rng.choice(PEOPLE).singular} who {rng.choice(['lives next door', 'works at the bank', 'sold us the car', 'fixed the roof', 'teaches my son', 'called yesterday'])} {rng.choice(['is very kind', 'has a big dog', 'speaks three languages', 'is moving away', 'was right', 'left early'])}",
        f"The {thing.singular} that {rng.choice(['I bought', 'you gave me', 'she found', 'we lost', 'he fixed'])} {rng.choice(['is broken', 'was too small', 'works well', 'looks new', 'is in the car'])}",
        f"My {rng.choice(ROOMS)} is {rng.choice(['too small', 'very cold', 'always tidy', 'full of boxes', 'painted ' + rng.choice(COLORS)])}",
        f"{rng.choice(['The', 'That', 'This'])} {rng.choice(ADJ_THING)} {thing.singular} belongs to {rng.choice(NAMES)}",
    ]
    return rng.choice(forms)


def _request(rng: random.Random) -> str:
    """Imperatives, requests, offers and suggestions."""
    kind = rng.choice(["food", "drink", "thing", "clothes", "document"])
    stative = ("like", "love", "hate", "want", "need", "remember", "forget", "taste")
    v = rng.choice([v for v in VERBS_FOR[kind] if v.base not in stative])
    obj = noun_phrase(rng, kind)
    forms = [
        f"Please {v.base} {obj}",
        f"Don't forget to {v.base} {obj}",
        f"Could you {v.base} {obj}, please?",
        f"Can you help me {v.base} {obj}?",
        f"Would you like {article(f := rng.choice(FOOD).singular)} {f}?",
        f"Would you like some more {rng.choice(FOOD_MASS + DRINKS).singular}?",
        f"Let's {v.base} {obj} {rng.choice(FUTURE_TIMES)}",
        f"Can I have {article(f := rng.choice(FOOD).singular)} {f} and {noun_phrase(rng, 'drink')}, please?",
        f"Remember to {rng.choice(INTRANSITIVE).base} {rng.choice(FUTURE_TIMES)}",
        f"Please {rng.choice(['close', 'open', 'shut', 'lock'])} the {rng.choice(['door', 'window', 'gate', 'box', 'drawer'])} when you leave",
        f"Turn {rng.choice(['left', 'right'])} at the {rng.choice(PLACES)} and walk {rng.choice(['straight on', 'for five minutes', 'past the bank'])}",
        f"Be careful with {obj}",
        f"Why don't we {rng.choice(INTRANSITIVE).base} {rng.choice(FUTURE_TIMES)}?",
        f"You should {v.base} {obj} {rng.choice(['first', 'soon', 'before it is too late', 'today'])}",
        f"Try not to {rng.choice(['drop', 'lose', 'forget', 'break'])} {noun_phrase(rng, 'thing')}",
        f"Put {noun_phrase(rng, 'thing')} {rng.choice(['on', 'under', 'next to', 'in'])} the {rng.choice(FURNITURE)}",
        f"Ask {rng.choice(NAMES)} to {v.base} {obj}",
        f"Tell {rng.choice(['him', 'her', 'them', rng.choice(NAMES)])} that {clause(rng)}",
        f"Please don't {rng.choice(['shout', 'run', 'talk', 'eat', 'play football'])} in the {rng.choice(ROOMS + ['library', 'hospital', 'classroom'])}",
    ]
    return rng.choice(forms)


def _complex(rng: random.Random) -> str:
    """Two clauses joined, infinitives, gerunds and reported speech."""
    subj = subject(rng)
    s = subj.text
    third = subj.person == "3s"
    vi = rng.choice(INTRANSITIVE)
    kind = rng.choice(list(VERBS_FOR))
    v = rng.choice(VERBS_FOR[kind])
    obj = noun_phrase(rng, kind, owner=subj)
    want = rng.choice(
        ["want", "need", "hope", "try", "plan", "decide", "forget", "promise", "learn"]
    )
    want_form = verb(want).third if third else want
    likes = rng.choice(["enjoy", "like", "love", "hate", "prefer"])
    likes = verb(likes).third if third else likes
    forms = [
        f"{clause(rng, 'past')}, {rng.choice(['but', 'and', 'so'])} {clause(rng, 'past')}",
        f"{clause(rng, 'past')} because {clause(rng, 'past')}",
        f"When {clause(rng, 'past', False)}, {clause(rng, 'past_progressive')}",
        f"If {clause(rng, 'present', False)}, {clause(rng, 'future')}",
        f"{clause(rng, 'future')} after {clause(rng, 'present', False)}",
        f"Before {clause(rng, 'past', False)}, {clause(rng, 'past')}",
        f"{clause(rng, 'present')}, but {clause(rng, 'present')}",
        f"{s} {want_form} to {v.base} {obj}",
        f"{s} {verb(want).past} to {vi.base} {rng.choice(_TIME_FOR['past'])}",
        f"{s} {likes} {v.ing} {obj}",
        f"{s} {rng.choice(['stopped', 'started', 'finished', 'kept', 'enjoyed', 'hated'])} {v.ing} {obj}",
        f"{s} would like to {vi.base} {rng.choice(FUTURE_TIMES)}",
        f"{rng.choice(NAMES)} said that {clause(rng, 'past')}",
        f"{rng.choice(NAMES)} told me that {clause(rng, rng.choice(['past', 'future', 'present']))}",
        f"I think that {clause(rng)}",
        f"I don't think {clause(rng, rng.choice(['future', 'present', 'past']), False)}",
        f"I'm not sure {rng.choice(['why', 'if', 'when', 'where'])} {clause(rng, 'past', False)}",
        f"Do you know {rng.choice(['why', 'if', 'when', 'where'])} {clause(rng, 'past', False)}?",
        f"While {clause(rng, 'past_progressive', False)}, {clause(rng, 'past', False)}",
        f"As soon as {clause(rng, 'present', False)}, {clause(rng, 'future', False)}",
        f"{s} {'is' if third else 'are'} too {rng.choice(ADJ_PERSON)} to {vi.base} {rng.choice(['today', 'now', 'this evening'])}",
        f"It is {rng.choice(['easy', 'hard', 'important', 'nice', 'difficult', 'fun'])} to {v.base} {obj}",
        f"{s} {rng.choice(['spent', 'spend' if not third else 'spends'])} {rng.choice(['the afternoon', 'two hours', 'all evening', 'the whole day'])} {v.ing} {obj}",
        f"{clause(rng, 'perfect')}, so {clause(rng, 'going_to', False)}",
        f"Although {clause(rng, 'past', False)}, {clause(rng, 'past', False)}",
    ]
    return rng.choice(forms)


# Common lines of everyday conversation that a grammar would not produce.
PHRASES = """
Good morning, how are you today?
Thank you very much for your help.
I'm sorry, I didn't hear what you said.
Could you say that again, please?
What's the time?
Excuse me, where is the nearest bus stop?
Nice to meet you.
See you later.
Have a nice weekend.
I'll be back in a minute.
Don't worry about it.
That sounds like a great idea.
How much is this?
I'm just looking, thanks.
Can I pay by card?
Keep the change.
Is this seat taken?
What do you do for a living?
Where are you from?
I've never been there before.
It was a pleasure to see you again.
Let me know if you need anything.
I'm afraid I can't come tonight.
What would you like to drink?
The food here is really good.
Could we have the bill, please?
I'm running a bit late.
Sorry to keep you waiting.
How was your day?
What are you doing this weekend?
Happy birthday, I hope you have a wonderful day.
Congratulations on your new job.
Take care of yourself.
Get well soon.
I don't feel very well today.
My head hurts.
I think I'm catching a cold.
You should see a doctor.
The shop closes at six.
We're out of milk again.
Who left the lights on?
Could you turn the music down a little?
Dinner is ready.
Wash your hands before you eat.
Have you done your homework?
It's your turn to do the dishes.
Where did I put my glasses?
I can't find my keys anywhere.
The kettle has just boiled.
Would you like milk and sugar?
It's raining cats and dogs.
Shall we go for a walk?
I'd rather stay at home.
That's not what I meant.
I completely agree with you.
I'm not so sure about that.
It depends on the weather.
What a beautiful day.
The traffic was terrible this morning.
I missed the last train home.
My phone battery is almost dead.
Can you send me the address?
I'll call you when I get there.
Please leave a message after the tone.
The meeting has been moved to Thursday.
I'm looking forward to seeing you.
Thanks for coming.
Make yourself at home.
Help yourself to some cake.
Mind the gap between the train and the platform.
The next stop is the city centre.
All passengers must show their tickets.
Please fasten your seat belts.
We will be landing in twenty minutes.
How long does it take to get there?
Is it far from here?
It's just around the corner.
Go straight ahead and turn left at the lights.
I'm lost, can you help me?
What does this word mean?
How do you spell your name?
Could you speak a little more slowly?
I'm learning English at the moment.
Practice makes perfect.
Better late than never.
There's no place like home.
Every cloud has a silver lining.
Actions speak louder than words.
Nobody is perfect.
Time flies when you're having fun.
It's never too late to learn.
Good night and sleep well.
What's for dinner tonight?
I'm starving.
Let's order a pizza.
The children are playing in the garden.
The baby is finally asleep.
Grandma is coming to stay for a week.
We're going on holiday next month.
Don't forget your umbrella.
It's getting dark outside.
Close the curtains, please.
The heating isn't working.
Someone is knocking at the door.
I'll get it.
Who's there?
The post has arrived.
There's a parcel for you.
I haven't seen him for ages.
How time flies.
What a lovely surprise.
I can't believe it's already Friday.
Monday mornings are always busy.
The weekend went by too quickly.
I need a cup of coffee.
Could you lend me a pen?
May I borrow your phone for a moment?
Of course, here you are.
You're welcome.
No problem at all.
It doesn't matter.
Never mind.
Good luck with your exam.
I passed my driving test.
She got the job.
They're getting married in June.
We've bought a new house.
He's moving to another city.
The film was better than the book.
I fell asleep in front of the television.
Turn off the light when you leave the room.
The dog needs to go out.
The cat is sleeping on my bed again.
Water the plants while I'm away.
The garden looks lovely in the spring.
Autumn is my favorite season.
It snowed all night.
The roads are very icy this morning.
Drive carefully.
Fill up the tank, please.
The car won't start.
Call a taxi for me, please.
How much is a return ticket?
The train is delayed by fifteen minutes.
Which platform does the train leave from?
Is breakfast included?
I'd like to book a table for two.
Do you have any vegetarian dishes?
The soup is too salty.
Could I have a glass of water?
Enjoy your meal.
Cheers.
""".strip().splitlines()

_GENERATORS: list[tuple[Callable[[random.Random], str], float]] = [
    (lambda rng: clause(rng), 3.0),
    (_question, 2.0),
    (_numbers, 2.0),
    (_description, 2.0),
    (_request, 1.5),
    (_complex, 2.5),
]


def _finish(text: str) -> str:
    """Capitalize, tidy spaces, end with a full stop unless the generator chose "?"."""
    text = " ".join(text.split()).strip(" ,")
    if text[-1] not in ".?!":
        text += "."
    return text[0].upper() + text[1:]


def everyday_sentences(count: int, seed: int = 0) -> list[str]:
    """`count` distinct everyday English sentences, deterministic in `seed`.

    The conversational `PHRASES` come first (shuffled by the seed), then the grammar's output.
    """
    rng = random.Random(seed)
    phrases = list(PHRASES)
    rng.shuffle(phrases)
    out: list[str] = []
    seen: set[str] = set()
    generators, weights = zip(*_GENERATORS, strict=True)
    phrase_every = max(1, round(10_000 / len(phrases)))  # spread the phrases over a large pool
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise RuntimeError(f"the grammar could only make {len(out)} distinct sentences")
        if phrases and attempts % phrase_every == 1:
            sentence = phrases.pop()
        else:
            sentence = _finish(rng.choices(generators, weights)[0](rng))
        key = sentence.lower()
        if key not in seen and 3 <= len(sentence.split()) <= 24:
            seen.add(key)
            out.append(sentence)
    return out
