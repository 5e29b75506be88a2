"""Decoding: greedy, sampling and beam search against teacher forcing and brute force.

Everything runs on tiny random `Translator`s with a tiny target vocabulary, so that exhaustive
search is possible and the searches have real choices to make.
"""

import functools
import itertools

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bahdanau_keras.decode import (
    BEAM_OUTPUTS,
    GREEDY_OUTPUTS,
    NEG_INF,
    beam_search_decode,
    decode_sorted,
    greedy_decode,
    length_penalty,
    max_output_lengths,
)
from bahdanau_keras.model import Translator
from bahdanau_keras.text import END_ID, PAD_ID, START_ID

SOURCE_VOCAB, TARGET_VOCAB = 13, 7
MODELS = (0, 6, 8)  # seeds of random models that behave differently from each other
IDS = tf.TensorSpec([None, None], tf.int32)


@functools.lru_cache(maxsize=None)
def tiny_translator(seed=0):
    """A random translator whose next-token distributions are far from uniform.

    Every weight comes from a NumPy generator: no global seed is set (`tf.random.set_seed`
    would destroy the SentencePiece resources of tokenizers that other tests hold)."""
    translator = Translator(SOURCE_VOCAB, TARGET_VOCAB, embedding_dim=8, encoder_units=8,
                            decoder_units=16, attention_units=8)
    rng = np.random.default_rng(seed)
    for weight in translator.weights:
        shape = tuple(weight.shape)
        scale = 1.0 / np.sqrt(shape[0]) if len(shape) > 1 else 0.1
        weight.assign(rng.normal(0.0, scale, shape).astype(np.float32))
    decoder = translator.decoder
    decoder.embedding.embeddings.assign(
        rng.normal(0, 1.0, decoder.embedding.embeddings.shape).astype(np.float32))
    bias = rng.normal(0, 1.0, [TARGET_VOCAB]).astype(np.float32)
    bias[END_ID] = 0.5  # the end token is a real option at every step, but not the only one
    decoder.output_bias.assign(bias)
    return translator


GREEDY_OPTIONS = dict(temperature=0.0, seed=(0, 0), max_length_a=2.0, max_length_b=10,
                      max_length=256)
BEAM_OPTIONS = dict(beam_width=4, alpha=0.6, beta=0.0, max_length_a=2.0, max_length_b=10,
                    max_length=256)
SCALAR = tf.TensorSpec([], tf.float32)
INT = tf.TensorSpec([], tf.int32)


@functools.lru_cache(maxsize=None)
def compiled(model, kind):
    """One `tf.function` per model and search, options as tensors: traced once."""
    translator = tiny_translator(model)
    if kind == "greedy":
        return tf.function(
            lambda s, temperature, seed, a, b, m: greedy_decode(
                translator, s, temperature, seed, a, b, m),
            input_signature=[IDS, SCALAR, tf.TensorSpec([2], tf.int64), SCALAR, SCALAR, INT])
    return tf.function(
        lambda s, width, alpha, beta, a, b, m: beam_search_decode(
            translator, s, width, alpha, beta, a, b, m),
        input_signature=[IDS, INT, SCALAR, SCALAR, SCALAR, SCALAR, INT])


def greedy(source, model=0, **options):
    o = {**GREEDY_OPTIONS, **options}
    return numpy(compiled(model, "greedy")(
        ids(source), float(o["temperature"]), tf.constant(o["seed"], tf.int64),
        float(o["max_length_a"]), float(o["max_length_b"]), int(o["max_length"])))


def beam(source, model=0, **options):
    o = {**BEAM_OPTIONS, **options}
    return numpy(compiled(model, "beam")(
        ids(source), int(o["beam_width"]), float(o["alpha"]), float(o["beta"]),
        float(o["max_length_a"]), float(o["max_length_b"]), int(o["max_length"])))


def numpy(result):
    return {key: value.numpy() for key, value in result.items()}


def ids(sentences):
    """Lists of source ids -> `[batch, src_len]` with `END_ID` and padding."""
    if isinstance(sentences, np.ndarray):
        return tf.constant(sentences, tf.int32)
    width = max(len(s) for s in sentences) + 1
    rows = [list(s) + [END_ID] + [PAD_ID] * (width - len(s) - 1) for s in sentences]
    return tf.constant(rows, tf.int32)


SOURCES = [[4, 5, 6], [7, 8, 9, 10, 11, 12, 4, 5], [12], [6, 6, 7, 9, 5]]


@functools.lru_cache(maxsize=None)
def forward(translator):
    return tf.function(lambda s, t: translator((s, t), training=False),
                       input_signature=[IDS, IDS])


def teacher_forced(translator, source, tokens, lengths):
    """Per-sentence summed log-probability of `tokens[:length]`, and the attention, recomputed
    by teacher forcing through `Translator.call`."""
    source = ids(source)
    tokens = np.asarray(tokens, np.int32)
    target_in = np.concatenate([np.full([len(tokens), 1], START_ID, np.int32), tokens[:, :-1]],
                               axis=1)
    logits, attention = forward(translator)(source, tf.constant(target_in))
    log_probs = tf.nn.log_softmax(logits).numpy()
    picked = np.take_along_axis(log_probs, tokens[:, :, None], axis=2)[:, :, 0]
    real = np.arange(tokens.shape[1])[None, :] < np.asarray(lengths)[:, None]
    return np.where(real, picked, 0.0).sum(axis=1), attention.numpy()


def check_well_formed(tokens, lengths, vocab=TARGET_VOCAB):
    """Each row: `lengths - 1` real tokens (never PAD or START or END), `END_ID`, then PAD."""
    tokens = np.asarray(tokens)
    for row, length in zip(tokens.reshape(-1, tokens.shape[-1]), np.asarray(lengths).ravel()):
        assert 1 <= length <= len(row), (row, length)
        body = row[: length - 1]
        assert np.all((body != PAD_ID) & (body != START_ID) & (body != END_ID)), row
        assert np.all((body >= 0) & (body < vocab)), row
        assert row[length - 1] == END_ID, row
        assert np.all(row[length:] == PAD_ID), row


def check_attention(attention, lengths, source):
    """Rows of chosen tokens sum to 1 over the real source positions, 0 on padding; rows after
    the end are zero."""
    source = ids(source).numpy()
    real = source != PAD_ID  # [batch, src_len]
    for b in range(len(source)):
        rows = attention[b, : lengths[b]]
        np.testing.assert_allclose(rows[:, real[b]].sum(axis=1), 1.0, atol=1e-5)
        assert np.all(rows[:, ~real[b]] == 0.0)
        assert np.all(attention[b, lengths[b]:] == 0.0)


# -- greedy and beam search against each other and against teacher forcing --------------------


def test_greedy_equals_beam_one_without_length_penalty():
    for seed in MODELS:
        g = greedy(SOURCES, seed)
        b = beam(SOURCES, seed, beam_width=1, alpha=0.0, beta=0.0)
        np.testing.assert_array_equal(g["tokens"], b["tokens"])
        np.testing.assert_array_equal(g["lengths"], b["lengths"])
        np.testing.assert_allclose(g["scores"], b["log_probs"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(g["scores"], b["scores"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(g["attention"], b["attention"], atol=1e-6)


def test_scores_equal_teacher_forcing():
    for seed in MODELS[:2]:
        translator = tiny_translator(seed)
        g = greedy(SOURCES, seed)
        expected, _ = teacher_forced(translator, SOURCES, g["tokens"], g["lengths"])
        np.testing.assert_allclose(g["scores"], expected, rtol=1e-4, atol=1e-4)
        b = beam(SOURCES, seed, beam_width=5, alpha=0.6, beta=0.0)
        for k in range(5):
            expected, _ = teacher_forced(translator, SOURCES, b["nbest_tokens"][:, k],
                                         b["nbest_lengths"][:, k])
            np.testing.assert_allclose(b["nbest_log_probs"][:, k], expected, rtol=1e-4,
                                       atol=1e-4)


def test_large_beam_is_at_least_as_good_as_greedy():
    better = 0
    for seed in MODELS:
        translator = tiny_translator(seed)
        g = greedy(SOURCES, seed, max_length_a=0.0, max_length_b=6)
        b = beam(SOURCES, seed, beam_width=64, alpha=0.0, beta=0.0, max_length_a=0.0,
                 max_length_b=6)
        assert np.all(b["log_probs"] >= g["scores"] - 1e-4), (b["log_probs"], g["scores"])
        better += int(np.sum(b["log_probs"] > g["scores"] + 1e-3))
        # What beam search reports is what the model gives its tokens.
        expected, attention = teacher_forced(translator, SOURCES, b["tokens"], b["lengths"])
        np.testing.assert_allclose(b["log_probs"], expected, rtol=1e-4, atol=1e-4)
        for i, length in enumerate(b["lengths"]):
            np.testing.assert_allclose(b["attention"][i, :length], attention[i, :length],
                                       atol=1e-5)
    assert better > 0, "the random models should give greedy search something to miss"


def all_hypotheses(max_length):
    """Every output a search may give: up to `max_length - 1` real tokens, then `END_ID`."""
    real = [t for t in range(TARGET_VOCAB) if t not in (PAD_ID, START_ID, END_ID)]
    for n in range(max_length):
        for body in itertools.product(real, repeat=n):
            yield list(body) + [END_ID]


def brute_force(translator, sentence, max_length, alpha, beta):
    """Every hypothesis of one sentence scored `log P / lp + cp` from teacher forcing."""
    hypotheses = list(all_hypotheses(max_length))
    tokens = np.zeros([len(hypotheses), max_length], np.int32)
    for i, h in enumerate(hypotheses):
        tokens[i, : len(h)] = h
    lengths = np.array([len(h) for h in hypotheses])
    log_probs, attention = teacher_forced(translator, [sentence] * len(hypotheses), tokens,
                                          lengths)
    real = np.arange(max_length)[None, :, None] < lengths[:, None, None]
    coverage = np.where(real, attention, 0.0).sum(axis=1)  # [n, src_len]
    cp = beta * np.log(np.clip(coverage, 1e-10, 1.0)).sum(axis=1)
    scores = log_probs / ((5.0 + lengths) / 6.0) ** alpha + cp
    return tokens, scores


@pytest.mark.parametrize("alpha,beta", [(0.0, 0.0), (1.0, 0.0), (0.6, 0.5)])
def test_beam_search_with_a_huge_beam_is_exhaustive_search(alpha, beta):
    max_length = 4
    width = (TARGET_VOCAB - 3) ** max_length  # at least every partial hypothesis
    sources = [SOURCES[0], SOURCES[2]]  # padding in the batch too
    for seed in (0, 8):
        translator = tiny_translator(seed)
        b = beam(sources, seed, beam_width=width, alpha=alpha, beta=beta, max_length_a=0.0,
                 max_length_b=max_length)
        for i, sentence in enumerate(sources):
            tokens, scores = brute_force(translator, sentence, max_length, alpha, beta)
            order = np.argsort(-scores, kind="stable")
            valid = np.isfinite(b["nbest_scores"][i])
            assert valid.sum() == len(scores)  # every hypothesis found, each once
            found = b["nbest_tokens"][i][valid]
            found = np.pad(found, [(0, 0), (0, max(0, max_length - found.shape[1]))])
            np.testing.assert_array_equal(found[0], tokens[order[0]])  # the best one
            np.testing.assert_allclose(b["nbest_scores"][i][valid], scores[order], atol=2e-4)
            assert {tuple(t) for t in found} == {tuple(t) for t in tokens}
            # The entries that do not exist are marked as such.
            assert np.all(b["nbest_tokens"][i][~valid] == PAD_ID)
            assert np.all(b["nbest_lengths"][i][~valid] == 0)


# -- penalties, n-best lists, lengths -----------------------------------------------------------


def test_length_penalty_formula():
    np.testing.assert_allclose(length_penalty(tf.constant([1, 7]), 0.6).numpy(),
                               [1.0, 2.0 ** 0.6], rtol=1e-6)
    np.testing.assert_allclose(length_penalty(tf.constant([13]), 0.0).numpy(), [1.0])
    np.testing.assert_allclose(length_penalty(tf.constant([1]), 2.0).numpy(), [1.0])


@pytest.mark.parametrize("alpha,beta", [(0.0, 0.0), (0.8, 0.0), (0.6, 0.7)])
def test_reported_scores_follow_the_documented_penalties(alpha, beta):
    b = beam(SOURCES, 0, beam_width=4, alpha=alpha, beta=beta)
    lp = ((5.0 + b["nbest_lengths"]) / 6.0) ** alpha
    if beta == 0.0:
        np.testing.assert_allclose(b["nbest_scores"], b["nbest_log_probs"] / lp, rtol=1e-5)
    # The best hypothesis: coverage from the attention that it returns.
    real = ids(SOURCES).numpy() != PAD_ID
    coverage = b["attention"].sum(axis=1)  # [batch, src_len]
    cp = beta * np.where(real, np.log(np.clip(coverage, 1e-10, 1.0)), 0.0).sum(axis=1)
    np.testing.assert_allclose(b["scores"], b["log_probs"] / lp[:, 0] + cp, rtol=1e-5,
                               atol=1e-5)
    if beta:
        assert np.any(cp < -1e-3)  # the penalty did something


def test_length_penalty_changes_what_is_preferred():
    short = beam(SOURCES, 8, beam_width=8, alpha=0.0)
    long = beam(SOURCES, 8, beam_width=8, alpha=3.0)
    assert long["lengths"].sum() > short["lengths"].sum()


def test_nbest_lists_are_sorted_distinct_and_well_formed():
    for seed in MODELS[:2]:
        b = beam(SOURCES, seed, beam_width=6, alpha=0.6, beta=0.2)
        scores = b["nbest_scores"]
        assert np.all(np.isfinite(scores))
        assert np.all(np.diff(scores, axis=1) <= 0)
        np.testing.assert_array_equal(b["tokens"], b["nbest_tokens"][:, 0])
        np.testing.assert_array_equal(b["scores"], scores[:, 0])
        for i in range(len(SOURCES)):
            rows = {tuple(r[: n]) for r, n in zip(b["nbest_tokens"][i], b["nbest_lengths"][i])}
            assert len(rows) == 6
        check_well_formed(b["nbest_tokens"], b["nbest_lengths"])


def test_every_sentence_ends_with_end_then_padding():
    for seed in MODELS:
        g = greedy(SOURCES, seed)
        check_well_formed(g["tokens"], g["lengths"])
        assert g["tokens"].shape[1] == g["lengths"].max()  # the loop stops when all ended
        b = beam(SOURCES, seed, beam_width=3, alpha=0.6)
        check_well_formed(b["tokens"], b["lengths"])
        sampled = greedy(SOURCES, seed, temperature=1.5, seed=(seed, 1))
        check_well_formed(sampled["tokens"], sampled["lengths"])
        assert sampled["tokens"].shape[1] == sampled["lengths"].max()


def test_maximum_output_length_follows_the_input_length():
    source = ids(SOURCES)
    limits = max_output_lengths(source != PAD_ID, 0.5, 1).numpy()
    real = np.array([len(s) + 1 for s in SOURCES])
    np.testing.assert_array_equal(limits, np.ceil(0.5 * real + 1).astype(int))
    options = dict(max_length_a=0.5, max_length_b=1)
    outputs = [greedy(SOURCES, 0, **options), greedy(SOURCES, 0, temperature=1.0, **options),
               beam(SOURCES, 0, beam_width=3, alpha=0.0, **options)]
    reached = 0
    for out in outputs:
        assert np.all(out["lengths"] <= limits), (out["lengths"], limits)
        reached += int(np.sum(out["lengths"] == limits))
        check_well_formed(out["tokens"], out["lengths"])
    b = outputs[2]
    assert np.all(b["nbest_lengths"] <= limits[:, None])
    assert reached > 0
    # The absolute cap, and the floor of one token (the end token).
    capped = greedy(SOURCES, 0, max_length_a=3.0, max_length_b=5, max_length=2)
    assert capped["tokens"].shape[1] <= 2 and np.all(capped["lengths"] <= 2)
    ended = beam(SOURCES, 0, beam_width=2, max_length_a=0.0, max_length_b=0)
    np.testing.assert_array_equal(ended["tokens"], [[END_ID]] * len(SOURCES))


def test_never_chooses_padding_or_start_even_when_most_likely():
    translator = tiny_translator(5)
    bias = translator.decoder.output_bias.numpy()
    saved = bias.copy()
    try:
        bias[PAD_ID], bias[START_ID] = 50.0, 40.0
        translator.decoder.output_bias.assign(bias)
        source = ids(SOURCES)
        for out in (greedy_decode(translator, source, max_length_b=5),
                    greedy_decode(translator, source, temperature=1.0, max_length_b=5),
                    beam_search_decode(translator, source, 3, max_length_b=5)):
            out = numpy(out)
            check_well_formed(out["tokens"], out["lengths"])
            expected, _ = teacher_forced(translator, SOURCES, out["tokens"], out["lengths"])
            np.testing.assert_allclose(out["log_probs" if "log_probs" in out else "scores"],
                                       expected, rtol=1e-4, atol=1e-3)
    finally:
        translator.decoder.output_bias.assign(saved)


# -- sampling -----------------------------------------------------------------------------------


def test_sampling_is_deterministic_for_a_seed_and_differs_across_seeds():
    translator = tiny_translator(0)

    def sample(seed, temperature=1.0):
        return greedy(SOURCES * 3, 0, temperature=temperature, seed=seed)

    first, again, other = sample((1, 2)), sample((1, 2)), sample((1, 3))
    np.testing.assert_array_equal(first["tokens"], again["tokens"])
    np.testing.assert_array_equal(first["scores"], again["scores"])
    assert first["tokens"].shape != other["tokens"].shape or np.any(
        first["tokens"] != other["tokens"])
    # Scores are the model's log-probabilities of what was drawn (not tempered ones).
    expected, _ = teacher_forced(translator, SOURCES * 3, first["tokens"], first["lengths"])
    np.testing.assert_allclose(first["scores"], expected, rtol=1e-4, atol=1e-4)
    # A temperature near 0 is greedy search.
    cold = sample((4, 4), temperature=1e-4)
    np.testing.assert_array_equal(cold["tokens"], greedy(SOURCES * 3, 0)["tokens"])


# -- batches ------------------------------------------------------------------------------------


def trim(out, i, key="tokens"):
    return out[key][i, : out["lengths"][i]]


def check_same_alone_and_in_batch(sentences, index, seed=0):
    sentence = sentences[index]
    for decode, options in ((greedy, {}), (beam, dict(beam_width=3, alpha=0.6, beta=0.3))):
        alone = decode([sentence], seed, **options)
        together = decode(sentences, seed, **options)
        np.testing.assert_array_equal(trim(alone, 0), trim(together, index))
        np.testing.assert_allclose(alone["scores"][0], together["scores"][index], rtol=1e-4,
                                   atol=1e-4)
        length, src_len = alone["lengths"][0], len(sentence) + 1
        np.testing.assert_allclose(alone["attention"][0, :length, :src_len],
                                   together["attention"][index, :length, :src_len], atol=1e-5)
        assert np.all(together["attention"][index, :, src_len:] == 0.0)


def test_a_sentence_decodes_the_same_alone_and_in_a_batch():
    for index in range(len(SOURCES)):
        check_same_alone_and_in_batch(SOURCES, index)


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.integers(4, SOURCE_VOCAB - 1), min_size=0, max_size=9),
                min_size=2, max_size=5), st.data())
def test_batch_invariance_property(sentences, data):
    index = data.draw(st.integers(0, len(sentences) - 1))
    check_same_alone_and_in_batch(sentences, index, seed=8)


def test_attention_of_chosen_tokens_is_a_distribution_over_the_real_source():
    for seed in MODELS[:2]:
        g = greedy(SOURCES, seed)
        check_attention(g["attention"], g["lengths"], SOURCES)
        b = beam(SOURCES, seed, beam_width=4, alpha=0.6, beta=0.2)
        check_attention(b["attention"], b["lengths"], SOURCES)
        s = greedy(SOURCES, seed, temperature=1.0)
        check_attention(s["attention"], s["lengths"], SOURCES)


def test_empty_batch():
    empty = tf.zeros([0, 3], tf.int32)
    for out in (greedy_decode(tiny_translator(0), empty),
                beam_search_decode(tiny_translator(0), empty, 3)):
        assert out["tokens"].shape[0] == 0 and out["scores"].shape == (0,)


def test_negative_infinity_is_far_below_any_real_score():
    # A 256-token hypothesis of log-probability -40 a token is still far above NEG_INF / 2.
    assert 256 * -40.0 > NEG_INF / 2


# -- sorted batches ------------------------------------------------------------------------------


def in_sorted_batches(search, batch_size, outputs):
    return tf.function(lambda s: decode_sorted(search, s, batch_size, outputs),
                       input_signature=[IDS])


@pytest.mark.parametrize("batch_size", [1, 3, 5, 100])
def test_sorted_batches_give_the_results_of_one_batch(batch_size):
    translator = tiny_translator(6)
    source = ids([[4, 5, 6], [7, 8, 9, 10, 11, 12, 4, 5], [12], [], [6, 6, 7, 9, 5]] * 2)
    searches = [
        (lambda s: greedy_decode(translator, s), GREEDY_OUTPUTS),
        (lambda s: beam_search_decode(translator, s, 3, alpha=0.6, beta=0.2), BEAM_OUTPUTS),
    ]
    for search, outputs in searches:
        whole = numpy(tf.function(search)(source))
        sorted_ = numpy(in_sorted_batches(search, batch_size, outputs)(source))
        assert sorted(sorted_) == sorted(whole) == sorted(outputs)
        for key, value in whole.items():
            assert sorted_[key].dtype == value.dtype and sorted_[key].shape == value.shape, key
            if value.dtype.kind in "iub":
                np.testing.assert_array_equal(sorted_[key], value, err_msg=key)
            else:
                np.testing.assert_allclose(sorted_[key], value, rtol=1e-5, atol=1e-5,
                                           err_msg=key)


def test_sorted_batches_of_nothing():
    translator = tiny_translator(0)
    out = decode_sorted(lambda s: greedy_decode(translator, s), tf.zeros([0, 3], tf.int32), 4)
    assert out["tokens"].shape[0] == 0 and out["attention"].shape[0] == 0
