"""Text processing: normalisation and the SentencePiece tokenizer, inside the graph."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bahdanau_keras import data
from bahdanau_keras.text import (
    END_ID,
    PAD_ID,
    START_ID,
    UNKNOWN_ID,
    SubwordTokenizer,
    normalize,
    normalize_python,
    train_sentencepiece,
)


@pytest.fixture(scope="module")
def tokenizer():
    """A French tokenizer learned from the targets of the sample corpus."""
    corpus = data.read_corpus(data.SAMPLE_CORPUS)
    return SubwordTokenizer(train_sentencepiece(
        normalize_python([t for _, t in corpus.pairs]), vocab_size=600))


def round_trip(tokenizer, sentences):
    ids = tokenizer.tokenize(tf.constant(sentences, tf.string))
    return [s.decode("utf-8") for s in tokenizer.detokenize(ids).numpy()]


# -- normalize -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("Je t\u2019aime\u202f!", "Je t'aime !"),  # narrow no-break space, typographic apostrophe
    ("Vraiment\u00a0?", "Vraiment ?"),  # no-break space
    ("  Il   pleut.\t\n", "Il pleut."),  # runs of white space, both ends
    ("\u00c9l\u00e8ve \u00c0 l'\u00c9COLE, \u00e7a va\u202f?",
     "\u00c9l\u00e8ve \u00c0 l'\u00c9COLE, \u00e7a va ?"),
    ("\u00abOui\u00bb, dit-il.", "\u00abOui\u00bb, dit-il."),  # guillemets stay
    ("\u201cHi,\u201d he said.", '"Hi," he said.'),
    ("Cafe\u0301", "Caf\u00e9"),  # NFKC composes the accent
    ("a\u2581b \u2581", "a b"),  # SentencePiece's word boundary is a space
])
def test_normalize(raw, expected):
    assert normalize(tf.constant(raw)).numpy().decode("utf-8") == expected
    assert normalize_python([raw]) == [expected]


def test_normalize_keeps_shape_and_case():
    out = normalize(tf.constant([["A\u202fB", "c"], ["D", "\u00e9\u00c9"]]))
    assert out.shape == (2, 2)
    assert out.numpy()[1, 1].decode("utf-8") == "\u00e9\u00c9"


def test_normalize_never_fails_on_invalid_utf8():
    sentences = [b"caf\xe9 ok", b"\xff\xfe", "fine \u2019".encode("utf-8"), b"ab\xc3"]
    out = normalize_python(sentences)
    assert out[0] == "caf\ufffd ok"
    assert "\ufffd" in out[1] and "\ufffd" in out[3]
    assert out[2] == "fine '"
    assert normalize_python([]) == []


# -- tokenizer -------------------------------------------------------------------------------


def test_special_ids_and_vocabulary(tokenizer):
    assert 300 < tokenizer.vocab_size <= 600
    pieces = [p.decode() for p in tokenizer.id_to_piece(
        tf.constant([PAD_ID, START_ID, END_ID, UNKNOWN_ID])).numpy()]
    assert pieces == ["<pad>", "<s>", "</s>", "<unk>"]
    ids = tokenizer.tokenize(tf.constant(["Bonjour !", "Je t'aime."]))
    assert ids.dtype == tf.int32
    flat = ids.flat_values.numpy()
    assert flat.size and (flat > UNKNOWN_ID).all()  # byte fallback: never <unk>, no specials


@pytest.mark.parametrize("sentence", [
    "Je t\u2019aime !",
    "Je t'aime\u202f!",
    "\u00c0 demain, \u00c9lodie\u202f; \u00e7a va\u00a0?",
    "J'ai 1\u202f234,56\u00a0\u20ac \u2014 \u00ab\u00a0vraiment\u00a0\u00bb",
    "Emoji \U0001F600\U0001F44D\U0001F3FD and \u2764\ufe0f",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u4f60\u597d\u4e16\u754c "
    "\u0393\u03b5\u03b9\u03ac",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \ud55c\uad6d\uc5b4",
    "x",
    "",
    "a\u2581b",
])
def test_round_trip_examples(tokenizer, sentence):
    assert round_trip(tokenizer, [sentence]) == normalize_python([sentence])


def test_round_trip_gives_natural_text(tokenizer):
    assert round_trip(tokenizer, ["Je t\u2019aime\u202f!"]) == ["Je t'aime !"]
    assert round_trip(tokenizer, ["  Il  fait BEAU, n'est-ce pas\u00a0?"]) == [
        "Il fait BEAU, n'est-ce pas ?"]


ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " .,;:!?'\"-()\u2019\u202f\u00a0\t\u00ab\u00bb\u2026\u20ac$%&/\u2581\u00ad"
    "\u00e0\u00e2\u00e4\u00e7\u00e9\u00e8\u00ea\u00eb\u00ee\u00ef\u00f4\u00f6\u00f9\u00fb\u00fc"
    "\u00ff\u0153\u00e6\u00c0\u00c9\u00c8\u00c7\u00d4\u0152\u00df\u00f1\u00e1\u00ed\u00f3\u00fa"
    "\u0142\u0151\u00f8\u00e5"
    "\U0001F600\U0001F44D\U0001F3FD\u2764\U0001F1EB\U0001F1F7"
    "\u043f\u0440\u0438\u0432\u0435\u0442\u4f60\u597d\u03b1\u03b2\u05e9\u0645\ud55c"
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet=ALPHABET, max_size=40), min_size=1, max_size=4))
def test_round_trip_property(tokenizer, sentences):
    """detokenize(tokenize(x)) == normalize(x): case, accents, punctuation and unseen
    characters all come back (byte fallback), also in a batch."""
    assert round_trip(tokenizer, sentences) == normalize_python(sentences)


def test_detokenize_stops_at_end_and_ignores_pad_and_start(tokenizer):
    ids = tokenizer.tokenize(tf.constant(["Bonjour !", "Merci."]))
    hello, thanks = (list(row) for row in ids.numpy())
    width = len(hello) + len(thanks) + 4
    rows = [
        [START_ID] + hello + [END_ID] + thanks,  # everything after END is dropped
        hello + [END_ID, END_ID],
        [START_ID, PAD_ID] + thanks,  # no END: all of it, padding ignored
        [END_ID] + hello,
    ]
    dense = np.array([r + [PAD_ID] * (width - len(r)) for r in rows], np.int32)
    expected = ["Bonjour !", "Bonjour !", "Merci.", ""]
    assert [s.decode() for s in tokenizer.detokenize(dense).numpy()] == expected
    ragged = tf.ragged.constant(rows, dtype=tf.int32)
    assert [s.decode() for s in tokenizer.detokenize(ragged).numpy()] == expected
    int64 = tf.constant(dense, tf.int64)
    assert [s.decode() for s in tokenizer.detokenize(int64).numpy()] == expected


def test_save_and_load(tokenizer, tmp_path):
    path = str(tmp_path / "target.model")
    tokenizer.save(path)
    loaded = SubwordTokenizer.load(path)
    assert loaded.vocab_size == tokenizer.vocab_size
    sentences = tf.constant(["Nous avons un chat.", "\u00c0 bient\u00f4t \U0001F600"])
    assert loaded.tokenize(sentences).to_list() == tokenizer.tokenize(sentences).to_list()
    assert (tmp_path / "target.model").read_bytes() == tokenizer.model_proto


def test_tokenizer_survives_setting_the_global_seed():
    """Setting the seed (as `keras.utils.set_random_seed` does) drops TensorFlow's cached
    kernels; the SentencePiece model resource must outlive them, eagerly and in a graph."""
    corpus = data.read_corpus(data.SAMPLE_CORPUS)
    tokenizer = SubwordTokenizer(train_sentencepiece(
        normalize_python([s for s, _ in corpus.pairs]), vocab_size=500))
    sentences = tf.constant(["John loves Mary.", "Où est la gare ?"])
    tokenize = tf.function(tokenizer.tokenize)
    expected = tokenize(sentences).to_list()
    assert tokenizer.tokenize(sentences).to_list() == expected
    tf.random.set_seed(1)
    assert tokenize(sentences).to_list() == expected
    assert tokenizer.tokenize(sentences).to_list() == expected
    assert round_trip(tokenizer, ["John loves Mary."]) == ["John loves Mary."]


def test_bad_model_proto_is_rejected():
    with pytest.raises(ValueError, match="model_proto"):
        SubwordTokenizer(b"")
    with pytest.raises(ValueError, match="model_proto"):
        SubwordTokenizer("not bytes")


def test_train_sentencepiece_small_vocabulary_and_empty_input():
    sentences = ["Le chat dort.", "Le chien mange.", "Un oiseau chante."] * 20
    # Fewer pieces than characters + byte pieces: raised to what the text needs, no error.
    proto = train_sentencepiece(sentences, vocab_size=50)
    tok = SubwordTokenizer(proto)
    assert tok.vocab_size >= 260
    assert round_trip(tok, ["Le chat mange.", "Z\u00e8bre \U0001F600"]) == [
        "Le chat mange.", "Z\u00e8bre \U0001F600"]
    with pytest.raises(ValueError, match="empty"):
        train_sentencepiece(["", ""], vocab_size=500)
