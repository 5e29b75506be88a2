"""Write the small English-French sample corpus shipped in `bahdanau_keras/resources/`.

The sentences are generated from a small hand-written grammar (pronouns, names, eight verbs,
twenty nouns, colours), so the sample is the project's own text and carries no licence. It
exercises what the tutorials need: agreement, elision (j', l', n', qu'), adjective reordering
("the red car" -> "la voiture rouge"), accents and French punctuation spacing.

    python scripts/make_sample_corpus.py bahdanau_keras/resources/sample_en_fr.tsv
"""

import random
import sys

VOWELS = "aeiouyhéèêâôœ"

# English, English after does/doesn't, person index -> French forms by person
# persons: 0 je, 1 tu, 2 il, 3 elle, 4 nous, 5 vous, 6 ils, 7 elles
VERBS = {
    "see": ("see", "sees", ["vois", "vois", "voit", "voit", "voyons", "voyez", "voient", "voient"]),
    "like": ("like", "likes", ["aime", "aimes", "aime", "aime", "aimons", "aimez", "aiment",
                               "aiment"]),
    "want": ("want", "wants", ["veux", "veux", "veut", "veut", "voulons", "voulez", "veulent",
                               "veulent"]),
    "have": ("have", "has", ["ai", "as", "a", "a", "avons", "avez", "ont", "ont"]),
    "eat": ("eat", "eats", ["mange", "manges", "mange", "mange", "mangeons", "mangez", "mangent",
                            "mangent"]),
    "buy": ("buy", "buys", ["achète", "achètes", "achète", "achète", "achetons", "achetez",
                            "achètent", "achètent"]),
    "find": ("find", "finds", ["trouve", "trouves", "trouve", "trouve", "trouvons", "trouvez",
                               "trouvent", "trouvent"]),
    "draw": ("draw", "draws", ["dessine", "dessines", "dessine", "dessine", "dessinons",
                               "dessinez", "dessinent", "dessinent"]),
}

PRONOUNS = [  # English, French, person, English third singular
    ("I", "je", 0, False), ("you", "tu", 1, False), ("he", "il", 2, True),
    ("she", "elle", 3, True), ("we", "nous", 4, False), ("you", "vous", 5, False),
    ("they", "ils", 6, False), ("they", "elles", 7, False),
]
NAMES = [("John", "Jean"), ("Mary", "Marie"), ("Peter", "Pierre"), ("Paul", "Paul"),
         ("Julia", "Julie"), ("Tom", "Tom"), ("Luke", "Luc"), ("Sophie", "Sophie")]

# English singular, English plural, French singular, French plural, gender, food
NOUNS = [
    ("cat", "cats", "chat", "chats", "m", False), ("dog", "dogs", "chien", "chiens", "m", False),
    ("house", "houses", "maison", "maisons", "f", False),
    ("car", "cars", "voiture", "voitures", "f", False),
    ("book", "books", "livre", "livres", "m", False),
    ("apple", "apples", "pomme", "pommes", "f", True),
    ("cake", "cakes", "gâteau", "gâteaux", "m", True),
    ("flower", "flowers", "fleur", "fleurs", "f", False),
    ("bicycle", "bicycles", "vélo", "vélos", "m", False),
    ("letter", "letters", "lettre", "lettres", "f", False),
    ("key", "keys", "clé", "clés", "f", False),
    ("orange", "oranges", "orange", "oranges", "f", True),
    ("umbrella", "umbrellas", "parapluie", "parapluies", "m", False),
    ("bird", "birds", "oiseau", "oiseaux", "m", False),
    ("horse", "horses", "cheval", "chevaux", "m", False),
    ("table", "tables", "table", "tables", "f", False),
    ("chair", "chairs", "chaise", "chaises", "f", False),
    ("cheese", "cheeses", "fromage", "fromages", "m", True),
    ("tree", "trees", "arbre", "arbres", "m", False),
    ("strawberry", "strawberries", "fraise", "fraises", "f", True),
]
# English, French m sg, f sg, m pl, f pl
COLOURS = [("red", "rouge", "rouge", "rouges", "rouges"),
           ("black", "noir", "noire", "noirs", "noires"),
           ("green", "vert", "verte", "verts", "vertes"),
           ("white", "blanc", "blanche", "blancs", "blanches"),
           ("blue", "bleu", "bleue", "bleus", "bleues")]
GREETINGS = [("Hello!", "Bonjour !"), ("Thank you.", "Merci."), ("Good night.", "Bonne nuit."),
             ("How are you?", "Comment allez-vous ?"), ("See you tomorrow.", "À demain."),
             ("Good morning!", "Bonjour !"), ("Goodbye!", "Au revoir !"), ("Yes.", "Oui."),
             ("No.", "Non."), ("Please.", "S'il vous plaît."), ("Welcome!", "Bienvenue !"),
             ("Excuse me.", "Excusez-moi."), ("I am hungry.", "J'ai faim."),
             ("I am thirsty.", "J'ai soif."), ("It is cold.", "Il fait froid."),
             ("It is hot.", "Il fait chaud.")]


def elide(word, following):
    """je -> j', le/la -> l', ne -> n', que -> qu' before a vowel."""
    return word[:-1] + "'" if following[0].lower() in VOWELS else word + " "


def noun_phrase(rng, noun, allow_indefinite=True):
    en_sg, en_pl, fr_sg, fr_pl, gender, _ = noun
    plural = rng.random() < 0.3
    kind = rng.choice(["the", "a", "my"] if allow_indefinite else ["the", "my"])
    colour = rng.choice(COLOURS) if rng.random() < 0.35 else None
    en_noun = en_pl if plural else en_sg
    fr_noun = fr_pl if plural else fr_sg
    if colour:
        index = (2 if plural else 0) + (1 if gender == "f" else 0)
        en_noun = f"{colour[0]} {en_noun}"
        fr_noun = f"{fr_noun} {colour[1 + index]}"
    if plural:
        en = {"the": "the", "a": "some", "my": "my"}[kind]
        fr = {"the": "les ", "a": "des ", "my": "mes "}[kind]
    elif kind == "the":
        en, fr = "the", elide("le" if gender == "m" else "la", fr_noun)
    elif kind == "a":
        en = "an" if en_noun[0] in "aeiou" else "a"
        fr = "un " if gender == "m" else "une "
    else:
        en = "my"
        fr = "mon " if gender == "m" or fr_noun[0] in VOWELS else "ma "
    return f"{en} {en_noun}", f"{fr}{fr_noun}"


def subject(rng):
    if rng.random() < 0.7:
        en, fr, person, third = rng.choice(PRONOUNS)
        return en, fr, person, third
    en, fr = rng.choice(NAMES)
    return en, fr, 2, True


def sentence(rng):
    kind = rng.random()
    if kind < 0.03:
        return rng.choice(GREETINGS)
    if kind < 0.10:
        (en_a, fr_a), (en_b, fr_b) = rng.sample(NAMES, 2)
        return f"{en_a} loves {en_b}.", f"{fr_a} aime {fr_b}."
    verb = rng.choice(list(VERBS))
    base, third_form, french = VERBS[verb]
    nouns = [n for n in NOUNS if n[5]] if verb == "eat" else NOUNS
    en_subject, fr_subject, person, third = subject(rng)
    form = rng.random()
    if form < 0.6:  # statement
        en_object, fr_object = noun_phrase(rng, rng.choice(nouns))
        en_verb = third_form if third else base
        en = f"{en_subject} {en_verb} {en_object}."
        fr = f"{elide(fr_subject, french[person]) if fr_subject == 'je' else fr_subject + ' '}"
        fr += f"{french[person]} {fr_object}."
    elif form < 0.8:  # negation: definite or possessive objects only
        en_object, fr_object = noun_phrase(rng, rng.choice(nouns), allow_indefinite=False)
        en = f"{en_subject} {'does' if third else 'do'}n't {base} {en_object}."
        fr = f"{fr_subject} {elide('ne', french[person])}{french[person]} pas {fr_object}."
    else:  # question
        if person == 0:
            en_subject, fr_subject, person, third = "you", "tu", 1, False
        en_object, fr_object = noun_phrase(rng, rng.choice(nouns))
        en = f"{'Does' if third else 'Do'} {en_subject} {base} {en_object}?"
        fr = f"Est-ce {elide('que', fr_subject)}{fr_subject} {french[person]} {fr_object} ?"
    en = en[0].upper() + en[1:]
    fr = fr[0].upper() + fr[1:]
    return en, fr


def main(path, count=3000, seed=1409):
    rng = random.Random(seed)
    pairs, seen = [], set()
    for en, fr in GREETINGS:
        pairs.append((en, fr))
        seen.add(en)
    while len(pairs) < count:
        en, fr = sentence(rng)
        if en not in seen:
            seen.add(en)
            pairs.append((en, fr))
    with open(path, "w", encoding="utf-8") as f:
        for en, fr in pairs:
            f.write(f"{en}\t{fr}\n")


if __name__ == "__main__":
    main(sys.argv[1])
