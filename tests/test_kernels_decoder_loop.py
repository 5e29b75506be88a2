"""The fused decoder loop (`kernels.decoder_loop`) against the readable reference
(`Decoder.cell` in `Decoder.time_loop`, differentiated by TensorFlow).

Values and gradients for every weight, the annotations and the initial state, with masks, an
all-padding source, no target step, batches not divisible by the loop's parts, eagerly and in a
`tf.function`. The sizes are those of tests/test_decoder.py (batch 3, source length 4, target
length 8, units 7, attention units 3, context 6, vocabulary 19).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_decoder import (
    ATTENTION_UNITS,
    BATCH,
    SRC_LEN,
    TGT_LEN,
    UNITS,
    VOCAB,
    make_decoder,
    make_dot_decoder,
    make_inputs,
    twin,
)

from bahdanau_keras.kernels import decoder_loop

# float32 allows 1e-5 relative to each array's largest element here: both paths add the same
# terms in different orders (the kernel sums the weights' gradients over every step in one
# product, TensorFlow step by step), which moves the last bits of float32 (about 1e-7 relative)
# through 8 steps. Elements much smaller than an array's largest one can only be held to that
# absolute scale, not to their own size.
RTOL = 1e-5


def assert_close(actual, expected, name):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=name)


def loop_gradients(decoder, function=False, seed=30, rows=None, empty_source=False,
                   tgt_len=TGT_LEN):
    """The logits and attention weights, and the gradients of a loss that reads both, for
    every trainable weight, the annotations and the initial state: the first `rows`
    sentences of the batch, the first `tgt_len` target steps; with `empty_source`, the second
    sentence's source is all padding."""
    target, annotations, mask, state = (x[:rows] for x in make_inputs(seed=seed))
    target = target[:, :tgt_len]
    if empty_source:
        mask = mask.copy()
        mask[1] = False
    annotations, state = tf.constant(annotations), tf.constant(state)
    rng = np.random.default_rng(seed + 1)
    logit_weights = tf.constant(
        rng.standard_normal((BATCH, TGT_LEN, VOCAB))[:rows, :tgt_len], tf.float32)
    attention_weights = tf.constant(
        rng.standard_normal((BATCH, TGT_LEN, SRC_LEN))[:rows, :tgt_len], tf.float32)
    sources = decoder.trainable_variables + [annotations, state]

    def run():
        with tf.GradientTape() as tape:
            tape.watch([annotations, state])
            states, embedded, contexts, weights = decoder.teacher_forcing(
                target, annotations, mask, state)
            logits = decoder.output_logits(states, embedded, contexts)
            loss = (tf.reduce_sum(logits * logit_weights)
                    + 10.0 * tf.reduce_sum(weights * attention_weights))
        gradients = tape.gradient(loss, sources)
        return [logits, weights] + [tf.zeros(s.shape) if g is None else tf.convert_to_tensor(g)
                                    for s, g in zip(sources, gradients)]

    names = (["logits", "attention weights"] + [v.path for v in decoder.trainable_variables]
             + ["annotations", "initial_state"])
    return names, [g.numpy() for g in (tf.function(run)() if function else run())]


def fused_and_reference(seed=31, **kwargs):
    reference = make_decoder(seed=seed, implementation="reference", **kwargs)
    return twin(reference, implementation="fused"), reference


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("function", [False, True])
def test_values_and_gradients_equal_the_reference(normalize, function):
    """Every output and gradient, with the loop in 2 parts (3 sentences: 1 and 2)."""
    fused, reference = fused_and_reference(normalize_attention=normalize)
    assert fused.loop_shards == 2
    names, expected = loop_gradients(reference)
    _, actual = loop_gradients(fused, function=function)
    assert len(actual) == len(expected) == len(fused.trainable_variables) + 4
    for name, x, y in zip(names, actual, expected, strict=True):
        assert np.abs(y).max() > 1e-3, name  # every gradient is far from zero
        assert_close(x, y, name)


@pytest.mark.parametrize("function", [False, True])
def test_an_all_padding_source(function):
    """A sentence whose source is all padding attends to nothing (α = 0, c = 0): the same
    outputs and gradients as the reference, all finite."""
    fused, reference = fused_and_reference(seed=36)
    names, expected = loop_gradients(reference, empty_source=True)
    assert not np.any(expected[1][1])  # no attention for that sentence
    _, actual = loop_gradients(fused, function=function, empty_source=True)
    for name, x, y in zip(names, actual, expected, strict=True):
        assert np.all(np.isfinite(x)), name
        assert_close(x, y, name)


@pytest.mark.parametrize("shards, rows", [(1, None), (3, None), (4, None), (2, 1), (3, 2)])
def test_any_number_of_parts(shards, rows):
    """The batch in 1, 3 or 4 parts (3 sentences: some parts empty), 1 sentence in 2 parts,
    2 in 3: the outputs and gradients of the reference, eagerly and in a tf.function."""
    fused, reference = fused_and_reference(seed=34, loop_shards=shards)
    names, expected = loop_gradients(reference, rows=rows)
    for function in (False, True):
        _, actual = loop_gradients(fused, function=function, rows=rows)
        for name, x, y in zip(names, actual, expected, strict=True):
            assert_close(x, y, name)


@pytest.mark.parametrize("function", [False, True])
def test_no_target_step(function):
    """A target of no step: empty outputs and zero gradients, as the reference gives."""
    fused, reference = fused_and_reference(seed=35)
    names, expected = loop_gradients(reference, tgt_len=0)
    _, actual = loop_gradients(fused, function=function, tgt_len=0)
    for name, x, y in zip(names, actual, expected, strict=True):
        assert x.shape == y.shape, name
        assert not np.any(x) and not np.any(y), name


def test_gradient_can_be_taken_twice_eagerly():
    """A persistent tape may ask for the fused loop's gradient more than once."""
    fused, _ = fused_and_reference(seed=37)
    target, annotations, mask, state = make_inputs(seed=37)
    annotations = tf.constant(annotations)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(annotations)
        states, _, contexts, _ = fused.teacher_forcing(target, annotations, mask, state)
        loss = tf.reduce_sum(states) + tf.reduce_sum(contexts ** 2)
    first = tape.gradient(loss, annotations).numpy()
    second = tape.gradient(loss, annotations).numpy()
    assert np.abs(first).max() > 1e-3
    np.testing.assert_array_equal(first, second)


# -- where the kernel applies -------------------------------------------------------------------

def test_unsupported_says_why():
    assert decoder_loop.unsupported(make_decoder()) is None
    assert "DotAttention" in decoder_loop.unsupported(make_dot_decoder())
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = make_decoder()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert "bfloat16" in decoder_loop.unsupported(mixed)
    # Called where it does not apply, the kernel refuses (the layer's dispatch never does).
    target, annotations, mask, state = make_inputs()
    with pytest.raises(NotImplementedError, match="DotAttention"):
        decoder_loop.time_loop(make_dot_decoder(), tf.zeros([BATCH, 2, 3 * UNITS]),
                               tf.zeros([BATCH, SRC_LEN, ATTENTION_UNITS]), annotations, mask,
                               state)


@pytest.mark.parametrize("shards", [0, 1.5, True])
def test_shards_must_be_a_positive_integer(shards):
    decoder = make_decoder()
    _, annotations, mask, state = make_inputs()
    with pytest.raises(ValueError, match=f"Received: shards={shards!r}"):
        decoder_loop.time_loop(decoder, tf.zeros([BATCH, 2, 3 * UNITS]),
                               decoder.attention.project_keys(annotations), annotations, mask,
                               state, shards=shards)
