"""Tests of the `Encoder`: annotations `h_j = [→h_j; ←h_j]` and `s_0 = tanh(W_s ←h_1)`.

Distinct small sizes: vocabulary 13, embedding 5, 3 units per direction (annotations of 6),
decoder units 7, batch 3, source length 9.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bahdanau_keras import kernels
from bahdanau_keras.encoder import Encoder
from bahdanau_keras.kernels import bidirectional_gru
from bahdanau_keras.text import PAD_ID
from bahdanau_keras.train import seed_everything

VOCAB, EMBEDDING_DIM, UNITS, DECODER_UNITS = 13, 5, 3, 7
LENGTHS = [9, 4, 1]
SRC_LEN = max(LENGTHS)


def make_tokens(lengths=LENGTHS, src_len=SRC_LEN, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCAB, size=(len(lengths), src_len)).astype(np.int32)
    tokens[np.arange(src_len)[None, :] >= np.asarray(lengths)[:, None]] = PAD_ID
    return tokens


def make_encoder(seed=0, **kwargs):
    """A built encoder with every weight random (biases included, so none is trivially 0); the
    reference implementation unless `implementation` says otherwise
    (`tests/test_kernels_bidirectional_gru.py` holds the fused GRUs to it)."""
    kwargs = {"implementation": "reference", **kwargs}
    encoder = Encoder(VOCAB, EMBEDDING_DIM, UNITS, DECODER_UNITS, **kwargs)
    encoder.build((None, None))
    rng = np.random.default_rng(seed)
    encoder.set_weights(
        [0.5 * rng.standard_normal(w.shape).astype(np.float32) for w in encoder.weights])
    return encoder


@pytest.fixture(scope="module")
def encoder():
    return make_encoder()


def test_output_shapes_and_mask(encoder):
    tokens = make_tokens()
    annotations, mask, initial_state = encoder(tokens)
    assert tuple(annotations.shape) == (len(LENGTHS), SRC_LEN, 2 * UNITS)
    assert tuple(mask.shape) == (len(LENGTHS), SRC_LEN) and mask.dtype == tf.bool
    assert tuple(initial_state.shape) == (len(LENGTHS), DECODER_UNITS)
    np.testing.assert_array_equal(mask.numpy(), tokens != PAD_ID)
    np.testing.assert_array_equal(mask.numpy().sum(-1), LENGTHS)
    assert np.all(np.abs(initial_state.numpy()) < 1.0)  # a tanh


def test_weight_names_and_shapes():
    encoder = Encoder(VOCAB, EMBEDDING_DIM, UNITS, DECODER_UNITS, name="encoder")
    encoder.build((None, None))
    # Exact names, whatever number of GRU layers the process created before (Keras would
    # otherwise call them `forward_gru_3/...`).
    keras.layers.GRU(2)
    shapes = {w.path: tuple(w.shape) for w in encoder.weights}
    gru = "encoder/bidirectional_gru/{}_gru/gru_cell/"
    expected = {"encoder/embedding/embeddings": (VOCAB, EMBEDDING_DIM),
                "encoder/initial_state_dense/kernel": (UNITS, DECODER_UNITS),
                "encoder/initial_state_dense/bias": (DECODER_UNITS,)}
    for direction in ("forward", "backward"):
        expected[gru.format(direction) + "kernel"] = (EMBEDDING_DIM, 3 * UNITS)
        expected[gru.format(direction) + "recurrent_kernel"] = (UNITS, 3 * UNITS)
        expected[gru.format(direction) + "bias"] = (2, 3 * UNITS)
    assert shapes == expected
    assert encoder.count_params() == (VOCAB * EMBEDDING_DIM
                                      + 2 * 3 * UNITS * (EMBEDDING_DIM + UNITS + 2)
                                      + (UNITS + 1) * DECODER_UNITS)


def run_gru(encoder, direction, embedded):
    """A fresh forward-running Keras GRU holding one direction's weights, over `embedded`
    `[1, length, embedding_dim]`; returns its outputs `[length, units]` and final state."""
    source = getattr(encoder.bidirectional_gru, f"{direction}_layer")
    gru = keras.layers.GRU(UNITS, return_sequences=True, return_state=True)
    gru.build((None, None, EMBEDDING_DIM))
    gru.set_weights(source.get_weights())
    outputs, state = gru(embedded)
    return outputs.numpy()[0], state.numpy()[0]


def test_annotations_and_initial_state_from_each_direction(encoder):
    """→h_j from a forward GRU over x_1..x_j, ←h_j from a GRU over x_Tx..x_j (the real tokens
    only, reversed), and s_0 = tanh(W_s ←h_1 + b) computed in NumPy."""
    tokens = make_tokens()
    annotations, _, initial_state = encoder(tokens)
    annotations, initial_state = annotations.numpy(), initial_state.numpy()
    w_s, b_s = [w.numpy() for w in encoder.initial_state_dense.weights]
    for b, length in enumerate(LENGTHS):
        embedded = encoder.embedding(tokens[b:b + 1, :length])  # unpadded
        forward, forward_last = run_gru(encoder, "forward", embedded)
        backward, backward_first = run_gru(encoder, "backward", embedded[:, ::-1])
        backward = backward[::-1]  # backward[j] = ←h_j
        np.testing.assert_allclose(forward[-1], forward_last, atol=1e-6)
        np.testing.assert_allclose(annotations[b, :length, :UNITS], forward, atol=1e-5)
        np.testing.assert_allclose(annotations[b, :length, UNITS:], backward, atol=1e-5)
        # ←h_1, the backward state at the first word, is where the backward GRU ends.
        np.testing.assert_allclose(backward[0], backward_first, atol=1e-6)
        np.testing.assert_allclose(
            initial_state[b], np.tanh(backward_first @ w_s + b_s), atol=1e-5)
        # ... and it is not the forward state nor the backward state at the last position.
        assert not np.allclose(initial_state[b], np.tanh(forward_last @ w_s + b_s), atol=1e-3)
        if length > 1:
            assert not np.allclose(
                initial_state[b], np.tanh(backward[-1] @ w_s + b_s), atol=1e-3)


def test_mixed_precision_gradients_are_close_to_float32(encoder):
    """Under `mixed_bfloat16` (float32 weights, bfloat16 computation) the GRUs and their
    gradients give what float32 gives, to bfloat16's precision."""
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")  # as `train` sets it
    try:
        mixed = Encoder(VOCAB, EMBEDDING_DIM, UNITS, DECODER_UNITS)  # "auto": the reference
        mixed.build((None, None))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    mixed.set_weights(encoder.get_weights())
    tokens = make_tokens(seed=10)
    results = []
    for model in (encoder, mixed):
        variables = model.bidirectional_gru.trainable_variables
        with tf.GradientTape() as tape:
            annotations, _, initial_state = model(tokens)
            loss = (tf.reduce_sum(tf.cast(annotations, tf.float32) ** 2)
                    + tf.reduce_sum(tf.cast(initial_state, tf.float32)))
        results.append([annotations, *tape.gradient(loss, variables)])
    assert results[1][0].dtype == tf.bfloat16
    for x, y in zip(*results, strict=True):
        y = tf.cast(y, tf.float32).numpy()
        x = tf.cast(x, tf.float32).numpy()
        assert np.abs(x).max() > 1e-3
        np.testing.assert_allclose(y, x, atol=2e-2 * np.abs(x).max())


def test_padding_positions_do_not_leak_into_real_ones(encoder):
    """A sentence alone, padded with extra zeros, and among longer sentences gives the same
    annotations at its real positions and the same initial state."""
    sentence = make_tokens([5], 5, seed=3)
    alone = encoder(sentence)
    padded = encoder(np.pad(sentence, [(0, 0), (0, 6)]))
    batch = make_tokens([11, 5, 2], 11, seed=4)
    batch[1] = np.pad(sentence[0], (0, 6))
    among = encoder(batch)
    for other, row in ((padded, 0), (among, 1)):
        np.testing.assert_allclose(other[0].numpy()[row, :5], alone[0].numpy()[0], atol=1e-5)
        np.testing.assert_allclose(other[2].numpy()[row], alone[2].numpy()[0], atol=1e-5)
        np.testing.assert_array_equal(other[1].numpy()[row, 5:], False)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(length=st.integers(1, 6), extra=st.integers(1, 5), seed=st.integers(0, 1000))
def test_property_padding_invariance(length, extra, seed):
    encoder = _property_encoder()
    sentence = make_tokens([length], length, seed=seed)
    annotations, _, initial_state = encoder(sentence)
    padded_annotations, mask, padded_state = encoder(np.pad(sentence, [(0, 0), (0, extra)]))
    np.testing.assert_allclose(
        padded_annotations.numpy()[:, :length], annotations.numpy(), atol=1e-5)
    np.testing.assert_allclose(padded_state.numpy(), initial_state.numpy(), atol=1e-5)
    assert mask.numpy().sum() == length


_ENCODERS = []


def _property_encoder():
    if not _ENCODERS:
        _ENCODERS.append(make_encoder(seed=5))
    return _ENCODERS[0]


def test_works_in_a_tf_function_with_unknown_shapes(encoder):
    tokens = make_tokens(seed=6)
    eager = encoder(tokens)
    encode = tf.function(encoder, input_signature=[tf.TensorSpec([None, None], tf.int32)])
    for x, y in zip(eager, encode(tokens)):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-6)


def test_dropout_only_in_training():
    encoder = make_encoder(dropout=0.5)
    tokens = make_tokens(seed=7)
    first = encoder(tokens, training=False)[0].numpy()
    np.testing.assert_array_equal(encoder(tokens)[0].numpy(), first)
    seed_everything(0)
    trained = encoder(tokens, training=True)[0].numpy()
    assert not np.allclose(trained, first)
    assert np.all(np.isfinite(trained))


@pytest.mark.parametrize("implementation", ["reference", "fused", "auto"])
def test_config_round_trip(implementation):
    encoder = make_encoder(implementation=implementation)
    config = encoder.get_config()
    assert {k: config[k] for k in ("vocab_size", "embedding_dim", "units", "decoder_units",
                                   "dropout", "implementation")} == dict(
        vocab_size=VOCAB, embedding_dim=EMBEDDING_DIM, units=UNITS,
        decoder_units=DECODER_UNITS, dropout=0.0, implementation=implementation)
    clone = Encoder.from_config(config)
    assert clone.get_config() == config
    clone.build((None, None))
    assert [(w.path, tuple(w.shape)) for w in clone.weights] == [
        (w.path, tuple(w.shape)) for w in encoder.weights]
    clone.set_weights(encoder.get_weights())
    tokens = make_tokens(seed=8)
    for x, y in zip(encoder(tokens), clone(tokens)):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    serialized = keras.saving.serialize_keras_object(encoder)
    assert serialized["registered_name"] == "bahdanau_keras>Encoder"
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config


# -- the implementation: one dispatch point ----------------------------------------------------

def spy_on_the_kernel(monkeypatch):
    """Calls of `kernels.bidirectional_gru.bidirectional_gru` (which still runs)."""
    calls = []
    original = bidirectional_gru.bidirectional_gru

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(bidirectional_gru, "bidirectional_gru", spy)
    return calls


@pytest.mark.parametrize("gpu", [False, True])
def test_auto_runs_the_fused_gru_in_float32_without_a_gpu(encoder, monkeypatch, gpu):
    """`"auto"` takes the kernel in float32 on a machine without a GPU (where it was
    measured), the Keras layer with one; `"fused"` always; `"reference"` never."""
    monkeypatch.setattr(kernels, "gpu_present", lambda: gpu)
    calls = spy_on_the_kernel(monkeypatch)
    tokens = make_tokens(seed=11)
    expected = encoder(tokens)  # "reference"
    assert not calls
    for implementation, runs in (("auto", 0 if gpu else 1), ("fused", 1)):
        other = make_encoder(implementation=implementation)
        other.set_weights(encoder.get_weights())
        for x, y in zip(other(tokens), expected):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-6)
        assert len(calls) == runs
        calls.clear()


def test_auto_runs_the_reference_under_bfloat16(monkeypatch):
    monkeypatch.setattr(kernels, "gpu_present", lambda: False)
    calls = spy_on_the_kernel(monkeypatch)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = make_encoder(implementation="auto")
        fused = make_encoder(implementation="fused")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    tokens = make_tokens(seed=12)
    assert mixed(tokens)[0].dtype == tf.bfloat16
    assert not calls
    with pytest.raises(ValueError, match="implementation='fused'.*float32 only.*bfloat16"):
        fused(tokens)


@pytest.mark.parametrize("implementation", ["Reference", "keras", None, 1])
def test_implementation_must_be_one_of_three(implementation):
    with pytest.raises(ValueError, match=re.escape(
            "`implementation` must be one of ('auto', 'reference', 'fused'). Received: "
            f"implementation={implementation!r}")):
        Encoder(VOCAB, implementation=implementation)
