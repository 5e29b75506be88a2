"""The fused decoding step (`kernels.decoding.DecodingStep`) against the readable reference
(`Decoder.step`, `decode.ReferenceStep`) and NumPy, and the searches with either step.

The sizes are those of tests/test_decoder.py (batch 3, source length 4, units 7, attention
units 3, context 6, vocabulary 19); a beam of 2 hypotheses per sentence.
"""

import numpy as np
import pytest
import tensorflow as tf
from test_decode import SOURCES, ids, tiny_translator
from test_decoder import (
    BATCH,
    OUTPUT_VARIANTS,
    SRC_LEN,
    UNITS,
    VOCAB,
    make_decoder,
    make_dot_decoder,
    make_inputs,
    numpy_step,
)

from bahdanau_keras import decode
from bahdanau_keras.kernels import decoding
from bahdanau_keras.text import END_ID, PAD_ID, START_ID

# Both paths add the same float32 terms in different orders (fused products).
RTOL = 1e-5


def assert_close(actual, expected, name):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=name)


def step_inputs(decoder, beam, seed=3):
    """Previous tokens and states of `BATCH * beam` hypotheses, the sentences' annotations,
    mask and keys."""
    _, annotations, mask, _ = make_inputs(seed=seed)
    rng = np.random.default_rng(seed)
    previous = rng.integers(0, VOCAB, size=BATCH * beam).astype(np.int32)
    state = np.tanh(rng.standard_normal((BATCH * beam, UNITS))).astype(np.float32)
    annotations = tf.constant(annotations)
    keys = decoder.attention.project_keys(annotations)
    return tf.constant(previous), tf.constant(state), annotations, tf.constant(mask), keys


@pytest.mark.parametrize("variant", list(OUTPUT_VARIANTS))
@pytest.mark.parametrize("beam", [1, 2])
def test_fused_step_equals_the_reference_step_and_numpy(variant, beam):
    decoder = make_decoder(**OUTPUT_VARIANTS[variant])
    previous, state, annotations, mask, keys = step_inputs(decoder, beam)
    width = decode.padded_vocab_size(VOCAB)
    fused = decoding.DecodingStep(decoder, logits_width=width, padding_logit=decode.NEG_INF)
    logits, new_state, weights = fused(previous, state, fused.prepare(annotations, mask, keys))
    assert logits.shape == (BATCH * beam, width) and weights.shape == (BATCH * beam, SRC_LEN)
    # The extra columns of the logits hold the padding logit.
    np.testing.assert_array_equal(logits[:, VOCAB:], decode.NEG_INF)
    # The reference repeats each sentence's encoder outputs for its hypotheses.
    repeated = [tf.repeat(x, beam, axis=0) for x in (annotations, mask, keys)]
    expected = decoder.step(previous, state, repeated[2], repeated[0], repeated[1])
    for name, actual, wanted in zip(("logits", "state", "weights"),
                                    (logits[:, :VOCAB], new_state, weights), expected):
        assert_close(actual.numpy(), wanted.numpy(), name)
    # ... and both are the equations, computed in float64.
    by_hand = numpy_step(decoder, previous.numpy(), state.numpy().astype(np.float64),
                         repeated[0].numpy().astype(np.float64), repeated[1].numpy())
    for name, actual, wanted in zip(("logits", "state", "weights"),
                                    (logits[:, :VOCAB], new_state, weights), by_hand):
        np.testing.assert_allclose(actual.numpy(), wanted, rtol=1e-4, atol=1e-5, err_msg=name)


def test_the_reference_step_reads_the_same_sentences():
    decoder = make_decoder()
    previous, state, annotations, mask, keys = step_inputs(decoder, beam=2)
    width = decode.padded_vocab_size(VOCAB)
    reference = decode.ReferenceStep(decoder, logits_width=width)
    fused = decoding.DecodingStep(decoder, logits_width=width, padding_logit=decode.NEG_INF)
    outputs = [step(previous, state, step.prepare(annotations, mask, keys))
               for step in (reference, fused)]
    for name, actual, wanted in zip(("logits", "state", "weights"), *outputs):
        assert_close(actual.numpy(), wanted.numpy(), name)


def test_only_the_sentences_passed_are_decoded():
    """Sentences dropped by a search: the prepared tensors' rows of the sentences left."""
    decoder = make_decoder()
    previous, state, annotations, mask, keys = step_inputs(decoder, beam=2)
    fused = decoding.DecodingStep(decoder)
    sentences = fused.prepare(annotations, mask, keys)
    logits, new_state, weights = fused(previous, state, sentences)
    left = tf.constant([0, 2])  # sentences 0 and 2: hypothesis rows 0, 1, 4, 5
    rows = tf.constant([0, 1, 4, 5])
    part = fused(tf.gather(previous, rows), tf.gather(state, rows),
                 tf.nest.map_structure(lambda x: tf.gather(x, left), sentences))
    for name, actual, wanted in zip(("logits", "state", "weights"), part,
                                    (logits, new_state, weights)):
        assert_close(actual.numpy(), tf.gather(wanted, rows).numpy(), name)


def test_unsupported_decoders_take_the_reference_step():
    assert decoding.unsupported(make_decoder()) is None
    dot = make_dot_decoder()
    assert "DotAttention" in decoding.unsupported(dot)
    with pytest.raises(NotImplementedError, match="DotAttention"):
        decoding.DecodingStep(dot)
    assert isinstance(decode.step_function(make_dot_decoder(implementation="auto")),
                      decode.ReferenceStep)
    assert isinstance(decode.step_function(make_decoder(implementation="auto")),
                      decoding.DecodingStep)
    assert isinstance(decode.step_function(make_decoder(implementation="reference")),
                      decode.ReferenceStep)
    with pytest.raises(ValueError, match="logits_width"):
        decoding.DecodingStep(make_decoder(), logits_width=VOCAB - 1)


@pytest.mark.parametrize("vocab, k", [(19, 1), (19, 4), (64, 3), (200, 5), (8000, 4), (3, 3)])
def test_top_tokens_are_top_k_of_the_log_probabilities(vocab, k):
    rng = np.random.default_rng(vocab + k)
    logits = (3 * rng.standard_normal((6, vocab))).astype(np.float32)
    logits[0, PAD_ID] = logits[1, START_ID] = 50.0  # the most likely, and never chosen
    width = decode.padded_vocab_size(vocab)
    padded = np.pad(logits, [[0, 0], [0, width - vocab]], constant_values=decode.NEG_INF)
    top_logits, top_ids, log_normalizer = decode.top_tokens(tf.constant(padded), k, vocab)
    log_probs = tf.nn.log_softmax(logits).numpy()
    np.testing.assert_allclose(log_normalizer, logits[:, 0] - log_probs[:, 0], rtol=1e-6)
    allowed = log_probs + np.where(np.isin(np.arange(vocab), [PAD_ID, START_ID]),
                                   decode.NEG_INF, 0.0)
    expected_values, expected_ids = tf.math.top_k(allowed, k=k)
    choosable = vocab - 2
    np.testing.assert_array_equal(top_ids[:, :choosable], expected_ids[:, :choosable])
    np.testing.assert_allclose(top_logits[:, :choosable] - log_normalizer[:, None],
                               expected_values[:, :choosable], rtol=1e-5, atol=1e-5)
    # Fewer tokens than asked for: the rest are PAD_ID, never a chosen token.
    assert np.all(top_ids[:, choosable:] == PAD_ID)
    assert np.all(top_logits[:, choosable:] <= decode.NEG_INF / 2)


@pytest.mark.parametrize("model", [0, 6])
def test_searches_give_the_same_results_with_either_step(model):
    fused = tiny_translator(model)
    assert decoding.unsupported(fused.decoder) is None and fused.decoder.implementation == "auto"
    source = ids(SOURCES * 2)
    original = fused.decoder.implementation
    try:
        results = []
        for implementation in ("fused", "reference"):
            fused.decoder.implementation = implementation
            results.append([
                decode.greedy_decode(fused, source),
                decode.greedy_decode(fused, source, temperature=1.0, seed=(3, 4)),
                decode.beam_search_decode(fused, source, 3, alpha=0.6, beta=0.2),
            ])
    finally:
        fused.decoder.implementation = original
    for with_kernel, with_reference in zip(*results):
        assert sorted(with_kernel) == sorted(with_reference)
        for key in with_kernel:
            actual, expected = with_kernel[key].numpy(), with_reference[key].numpy()
            if actual.dtype.kind in "iub":
                np.testing.assert_array_equal(actual, expected, err_msg=key)
            else:
                np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5, err_msg=key)


def test_ended_sentences_leave_the_loop():
    """Greedy search drops the sentences that have ended: the results equal those of each
    sentence decoded alone, for sentences that end at very different steps."""
    translator = tiny_translator(0)
    sentences = [[4], [7, 8, 9, 10, 11, 12, 4, 5, 6, 7, 8], [12, 5], [6, 6, 7, 9, 5, 4, 4]] * 3
    together = decode.greedy_decode(translator, ids(sentences), max_length_b=3)
    lengths = together["lengths"].numpy()
    assert len(set(lengths)) > 2  # the sentences end at different steps
    for index, sentence in enumerate(sentences):
        alone = decode.greedy_decode(translator, ids([sentence]), max_length_b=3)
        length = int(alone["lengths"][0])
        assert lengths[index] == length
        np.testing.assert_array_equal(together["tokens"][index, :length],
                                      alone["tokens"][0, :length])
        assert np.all(together["tokens"][index, length:] == PAD_ID)
        assert together["tokens"][index, length - 1] == END_ID
        np.testing.assert_allclose(together["scores"][index], alone["scores"][0], rtol=1e-5)
