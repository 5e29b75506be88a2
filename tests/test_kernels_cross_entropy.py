"""The chunked loss and the cross-entropy with its own gradient (`kernels.cross_entropy`)
against NumPy and against the readable reference (`Decoder.output_logits` and Keras'
categorical cross-entropy, as `Translator.loss_and_count` computes them).

Sizes of tests/test_decoder.py: vocabulary 19, embedding 5, units 7, context 6.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_decoder import CONTEXT_DIM, EMBEDDING_DIM, UNITS, VOCAB, make_decoder

from bahdanau_keras.kernels import cross_entropy
from bahdanau_keras.model import Translator

# -- the cross-entropy against NumPy ------------------------------------------------------------


@pytest.mark.parametrize("function", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_values_and_gradients(label_smoothing, function):
    """Against a float64 NumPy reference: `-Σ_k q_k log softmax(x)_k` with
    `q = (1 - ε) one_hot + ε / vocab`, whose gradient is `(softmax(x) - q) dy`."""
    rng = np.random.default_rng(20)
    logits = 4.0 * rng.standard_normal((6, 11)).astype(np.float32)
    logits[2] += 50.0  # large logits stay finite
    labels = rng.integers(0, 11, size=6).astype(np.int32)
    upstream = rng.standard_normal(6).astype(np.float32)

    def run(logits, labels, upstream):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            nll = cross_entropy.softmax_cross_entropy(logits, labels, label_smoothing)
            weighted = tf.reduce_sum(nll * upstream)
        return nll, tape.gradient(weighted, logits)

    nll, gradient = (tf.function(run) if function else run)(
        tf.constant(logits), labels, upstream)
    x = logits.astype(np.float64)
    log_softmax = x - x.max(-1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
    q = (1 - label_smoothing) * np.eye(11)[labels] + label_smoothing / 11
    np.testing.assert_allclose(nll.numpy(), -(q * log_softmax).sum(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gradient.numpy(), (np.exp(log_softmax) - q) * upstream[:, None],
                               rtol=1e-5, atol=1e-6)
    # No tokens: an empty loss and gradient.
    empty_nll, empty_gradient = run(tf.zeros([0, 11]), np.zeros([0], np.int32), np.zeros([0]))
    assert empty_nll.shape == (0,) and empty_gradient.shape == (0, 11)


@pytest.mark.parametrize("label_smoothing", [1.0, -0.5])
def test_bad_label_smoothing_is_refused(label_smoothing):
    with pytest.raises(ValueError, match=rf"label_smoothing.*Received: {label_smoothing}"):
        cross_entropy.softmax_cross_entropy(tf.zeros([2, 3]), [0, 1], label_smoothing)


# -- the loss in pieces against the reference ---------------------------------------------------

def reference_loss(decoder, states, embedded, contexts, labels, label_smoothing):
    """`Translator.loss_and_count`'s readable sum."""
    logits = decoder.output_logits(states, embedded, contexts)
    return tf.reduce_sum(keras.losses.categorical_crossentropy(
        tf.one_hot(labels, VOCAB), logits, from_logits=True, label_smoothing=label_smoothing))


def token_inputs(tokens, seed=0):
    rng = np.random.default_rng(seed)
    return ([tf.constant(rng.standard_normal((tokens, n)), tf.float32)
             for n in (UNITS, EMBEDDING_DIM, CONTEXT_DIM)],
            tf.constant(rng.integers(0, VOCAB, tokens), tf.int32))


def loss_and_gradients(loss_fn, decoder, tokens, function):
    inputs, labels = token_inputs(tokens)

    def run():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = loss_fn(*inputs, labels)
        sources = decoder.trainable_variables + inputs
        gradients = tape.gradient(loss, sources)
        return [loss] + [tf.zeros(s.shape) if g is None else tf.convert_to_tensor(g)
                         for s, g in zip(sources, gradients)]

    names = ["loss"] + [v.path for v in decoder.trainable_variables] + [
        "states", "embedded", "contexts"]
    return names, [x.numpy() for x in (tf.function(run)() if function else run())]


@pytest.mark.parametrize("variant", [dict(), dict(maxout=False, tie_embeddings=False)])
@pytest.mark.parametrize("chunks", [1, 2, 3, 64])
@pytest.mark.parametrize("function", [False, True])
def test_summed_loss_equals_the_reference(variant, chunks, function):
    """The summed loss in 1, 2, 3 or 64 pieces (more pieces than the 13 tokens: some are
    empty) and its gradients for the output layer's weights and the gathered states,
    embeddings and contexts equal the reference's (with label smoothing)."""
    decoder = make_decoder(seed=50, **variant)
    names, expected = loss_and_gradients(
        lambda *x: reference_loss(decoder, *x, label_smoothing=0.1), decoder, 13, False)
    _, actual = loss_and_gradients(
        lambda *x: cross_entropy.summed_loss(decoder, *x, label_smoothing=0.1, chunks=chunks),
        decoder, 13, function)
    for name, x, y in zip(names, actual, expected, strict=True):
        # 1e-5 relative to the array's largest element: float32 sums in another order
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5 * np.abs(y).max(), err_msg=name)
    # What the output layer reads has gradients far from zero.
    used = ["readout_dense", "states", "embedded", "contexts"] + (
        ["embedding", "output_bias"] if decoder.tie_embeddings else ["output_dense"])
    for name, y in zip(names, expected):
        if any(part in name for part in used):
            assert np.abs(y).max() > 1e-3, name


@pytest.mark.parametrize("function", [False, True])
def test_no_token(function):
    """No real token: a zero loss and zero gradients, in any number of pieces."""
    decoder = make_decoder(seed=51)
    for chunks in (1, 3):
        _, results = loss_and_gradients(
            lambda *x, chunks=chunks: cross_entropy.summed_loss(decoder, *x, chunks=chunks),
            decoder, 0, function)
        assert float(results[0]) == 0.0
        assert not any(np.any(g) for g in results[1:])


@pytest.mark.parametrize("chunks", [0, -1, 1.5, True])
def test_chunks_must_be_a_positive_integer(chunks):
    decoder = make_decoder()
    inputs, labels = token_inputs(3)
    with pytest.raises(ValueError, match=f"Received: chunks={chunks!r}"):
        cross_entropy.summed_loss(decoder, *inputs, labels, chunks=chunks)


def test_unsupported_says_why():
    sizes = dict(source_vocab_size=11, target_vocab_size=13, embedding_dim=4, encoder_units=3,
                 decoder_units=5, attention_units=6)
    assert cross_entropy.unsupported(Translator(**sizes)) is None
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = Translator(**sizes)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    reason = cross_entropy.unsupported(mixed)
    assert "float32 only" in reason and "mixed_bfloat16" in reason
