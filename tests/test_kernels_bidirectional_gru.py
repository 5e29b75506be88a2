"""The fused bidirectional GRU (`kernels.bidirectional_gru`) against the readable reference
(`keras.layers.Bidirectional(GRU)` with the mask, in `Encoder.call`).

Values and gradients for every weight and the embedded input, with masks, an all-padding
source, a batch of one, eagerly and in a `tf.function`. The sizes are those of
tests/test_encoder.py (vocabulary 13, embedding 5, 3 units per direction, decoder units 7,
source lengths 9, 4 and 1).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_encoder import EMBEDDING_DIM, LENGTHS, SRC_LEN, UNITS, make_encoder, make_tokens

from bahdanau_keras.kernels import bidirectional_gru
from bahdanau_keras.text import PAD_ID

# 1e-5 relative to each array's largest element: float32 sums in another order (the kernel
# sums the recurrent kernels' gradients over every step in one product, TensorFlow step by
# step), which moves the last bits (about 1e-7 relative) through 9 steps.
RTOL = 1e-5


def assert_close(actual, expected, name):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max(),
                               err_msg=name)


def fused_and_reference(seed=0):
    reference = make_encoder(seed=seed, implementation="reference")
    fused = make_encoder(seed=seed, implementation="fused")
    return fused, reference


def gru_gradients(run, embedded, variables, seed=8):
    """`run(embedded)` -> `(annotations, backward_state)`, and the gradients of a loss that
    reads both, for `embedded` and `variables`."""
    batch, src_len = embedded.shape[:2]
    rng = np.random.default_rng(seed)
    weights = tf.constant(rng.standard_normal((batch, src_len, 2 * UNITS)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(embedded)
        annotations, backward_state = run(embedded)
        loss = tf.reduce_sum(annotations * weights) + tf.reduce_sum(backward_state ** 2)
    return [annotations, backward_state, *tape.gradient(loss, [embedded, *variables])]


@pytest.mark.parametrize("lengths", [LENGTHS, [4, 0, 9], [3]])
@pytest.mark.parametrize("function", [False, True])
def test_gru_values_and_gradients_equal_the_keras_layer(lengths, function):
    """`bidirectional_gru` computes what the Keras `Bidirectional(GRU)` layer whose weights
    it reads gives with the mask, at every position (padding included: zeros), with the same
    gradients for the embedded input and every GRU weight; also for a source of padding only
    (`[4, 0, 9]`) and a batch of one."""
    encoder = make_encoder(seed=7, implementation="fused")
    tokens = make_tokens(lengths, max(lengths), seed=7)
    mask = tf.not_equal(tokens, PAD_ID)
    embedded = encoder.embedding(tokens)
    variables = encoder.bidirectional_gru.trainable_variables

    def keras_layer(embedded):
        annotations, _, backward_state = encoder.bidirectional_gru(embedded, mask=mask)
        return annotations, backward_state

    def kernel(embedded):
        return bidirectional_gru.bidirectional_gru(encoder, embedded, mask)

    def run(gru):
        def gradients():
            return gru_gradients(gru, embedded, variables)

        return [x.numpy() for x in (tf.function(gradients)() if function else gradients())]

    expected, actual = run(keras_layer), run(kernel)
    names = ["annotations", "backward state", "embedded"] + [v.path for v in variables]
    for name, x, y in zip(names, actual, expected, strict=True):
        assert np.abs(y).max() > 1e-3, name
        assert_close(x, y, name)
    if 0 in lengths:  # a source of padding only: zero annotations, ←h_1 = 0
        row = lengths.index(0)
        assert not np.any(actual[0][row]) and not np.any(actual[1][row])


@pytest.mark.parametrize("function", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_encoder_values_and_gradients_equal_the_reference(function, training):
    """The whole encoder (embedding, GRUs, s_0 = tanh(W_s ←h_1)) with either implementation:
    the same annotations, mask and initial state, and the same gradients for every weight:
    while training from the written-out backward loop, otherwise from TensorFlow's own
    gradient of the forward loop."""
    fused, reference = fused_and_reference(seed=3)
    tokens = make_tokens([7, 0, 2], 7, seed=3)
    rng = np.random.default_rng(4)
    annotation_weights = tf.constant(rng.standard_normal((3, 7, 2 * UNITS)), tf.float32)

    def run(encoder):
        def gradients():
            with tf.GradientTape() as tape:
                annotations, mask, initial_state = encoder(tokens, training=training)
                loss = (tf.reduce_sum(annotations * annotation_weights)
                        + tf.reduce_sum(tf.sin(initial_state)))
            return [annotations, tf.cast(mask, tf.float32), initial_state,
                    *(tf.convert_to_tensor(g) for g in tape.gradient(
                        loss, encoder.trainable_variables))]

        return [x.numpy() for x in (tf.function(gradients)() if function else gradients())]

    expected, actual = run(reference), run(fused)
    names = ["annotations", "mask", "initial state"] + [
        v.path for v in reference.trainable_variables]
    for name, x, y in zip(names, actual, expected, strict=True):
        assert np.abs(y).max() > 1e-3, name
        assert_close(x, y, name)


def test_a_source_of_no_position():
    """A batch of sources with no position (which Keras' GRU layer cannot take): empty
    annotations, ←h_1 = 0 and zero gradients."""
    encoder = make_encoder(seed=9, implementation="fused")
    embedded = tf.zeros([2, 0, EMBEDDING_DIM])
    variables = encoder.bidirectional_gru.trainable_variables
    with tf.GradientTape() as tape:
        tape.watch(embedded)
        annotations, backward_state = bidirectional_gru.bidirectional_gru(
            encoder, embedded, tf.zeros([2, 0], tf.bool))
        loss = tf.reduce_sum(annotations) + tf.reduce_sum(backward_state)
    assert annotations.shape == (2, 0, 2 * UNITS)
    assert not np.any(backward_state.numpy()) and backward_state.shape == (2, UNITS)
    grads = tape.gradient(loss, variables, unconnected_gradients="zero")
    assert [g.shape for g in grads] == [v.shape for v in variables]
    assert not any(np.any(tf.convert_to_tensor(g).numpy()) for g in grads)


def test_works_in_a_tf_function_with_unknown_shapes():
    fused, reference = fused_and_reference(seed=6)
    tokens = make_tokens(seed=6)
    encode = tf.function(fused, input_signature=[tf.TensorSpec([None, None], tf.int32)])
    for x, y in zip(encode(tokens), reference(tokens)):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=RTOL, atol=1e-6)
    assert encode(tokens[:1, :4])[0].shape == (1, 4, 2 * UNITS)


def test_unsupported_says_why():
    assert bidirectional_gru.unsupported(make_encoder()) is None
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = make_encoder()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    reason = bidirectional_gru.unsupported(mixed)
    assert "float32 only" in reason and "bfloat16" in reason
    # Called where it does not apply, the kernel refuses (the layer's dispatch never does).
    with pytest.raises(NotImplementedError, match="bfloat16"):
        bidirectional_gru.bidirectional_gru(
            mixed, tf.zeros([1, SRC_LEN, EMBEDDING_DIM], tf.bfloat16),
            tf.ones([1, SRC_LEN], tf.bool))
