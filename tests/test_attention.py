"""Tests of `BahdanauAttention` against the equations of Bahdanau, Cho and Bengio (2014).

    e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j),  α_ij = softmax_j(e_ij),  c_i = Σ_j α_ij h_j

Sizes are distinct small numbers (batch 3, query 5, value 4, units 7, src_len 11, tgt_len 2)
so that a swapped axis gives a wrong shape instead of passing by accident.

The module runs under any Keras backend and imports no backend itself: tests/test_backends.py
runs it again with `KERAS_BACKEND=jax` (and `torch` where installed), and imports
`numpy_attention` from it. The few tests tied to one backend's tools (`tf.function`,
`jax.jit`) say so in their skip condition.
"""

import os
import warnings

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bahdanau_keras.attention import BahdanauAttention

BATCH, QUERY_DIM, VALUE_DIM, UNITS, SRC_LEN, TGT_LEN = 3, 5, 4, 7, 11, 2
BACKEND = keras.backend.backend()


# -- a NumPy implementation of the paper's equations, written independently of the layer -------

def numpy_attention(layer, query, values, mask=None):
    """`(context, weights)` in float64 from the layer's weights, one (i, j) at a time."""
    w_a = layer.query_dense.kernel.numpy().astype(np.float64).T  # [units, query_dim]
    u_a = layer.key_dense.kernel.numpy().astype(np.float64).T  # [units, value_dim]
    v_a = layer.score_vector.numpy().astype(np.float64)  # [units]
    bias = np.zeros_like(v_a)
    if layer.normalize:
        g = float(layer.score_scale.numpy())
        v_a = g * v_a / np.linalg.norm(v_a)
        bias = layer.score_bias.numpy().astype(np.float64)
    query = np.asarray(query, np.float64)
    values = np.asarray(values, np.float64)
    single_step = query.ndim == 2
    if single_step:
        query = query[:, None, :]
    batch, tgt_len, _ = query.shape
    src_len = values.shape[1]
    mask = np.ones((batch, src_len), bool) if mask is None else np.asarray(mask, bool)
    weights = np.zeros((batch, tgt_len, src_len))
    for b in range(batch):
        for i in range(tgt_len):
            e = np.array([v_a @ np.tanh(w_a @ query[b, i] + u_a @ values[b, j] + bias)
                          for j in range(src_len)])
            real = np.flatnonzero(mask[b])
            if real.size:  # a row with every position masked keeps zero weights
                exp = np.exp(e[real] - e[real].max())
                weights[b, i, real] = exp / exp.sum()
    context = np.einsum("bts,bsd->btd", weights, values)
    if single_step:
        return context[:, 0], weights[:, 0]
    return context, weights


def random_inputs(seed=0, query_rank=2, batch=BATCH, src_len=SRC_LEN, scale=1.0):
    rng = np.random.default_rng(seed)
    query_shape = (batch, QUERY_DIM) if query_rank == 2 else (batch, TGT_LEN, QUERY_DIM)
    query = (scale * rng.standard_normal(query_shape)).astype(np.float32)
    values = (scale * rng.standard_normal((batch, src_len, VALUE_DIM))).astype(np.float32)
    return query, values


def padding_mask(lengths, src_len=SRC_LEN):
    return np.arange(src_len)[None, :] < np.asarray(lengths)[:, None]


MASK = padding_mask([SRC_LEN, 6, 1])  # a full row, a padded row and a one-token row


def make_layer(normalize=False, seed=1, **kwargs):
    """A built layer with every weight random (the normalised variant's `g` and `b` too)."""
    layer = BahdanauAttention(UNITS, normalize=normalize, **kwargs)
    query, values = random_inputs(seed)
    layer(query, values)
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in layer.weights])
    return layer


def to_numpy(x):
    """A backend tensor (or variable) as a NumPy array, in its own dtype."""
    return keras.ops.convert_to_numpy(x)


def as_numpy(x):
    """A backend tensor as a float32 NumPy array (NumPy has no bfloat16 of its own)."""
    return to_numpy(keras.ops.cast(x, "float32"))


def dtype_of(x):
    """A tensor's dtype as Keras names it (`"float16"`), whatever the backend."""
    return keras.backend.standardize_dtype(x.dtype)


def gradients(layer, query, values, mask):
    """The gradients of `Σ c_i² + Σ α_ij` with respect to `query`, `values` and the layer's
    trainable weights, by the backend's own automatic differentiation, as NumPy arrays."""

    def loss(context, weights):
        return keras.ops.sum(context ** 2) + keras.ops.sum(weights)

    trainable = layer.trainable_weights
    if BACKEND == "tensorflow":
        import tensorflow as tf

        query, values = tf.constant(query), tf.constant(values)
        with tf.GradientTape() as tape:
            tape.watch([query, values])
            value = loss(*layer(query, values, mask=mask))
        grads = tape.gradient(value, [query, values] + trainable)
    elif BACKEND == "jax":
        import jax

        def stateless_loss(query, values, trainable_values):
            outputs, _ = layer.stateless_call(trainable_values, [], query, values, mask=mask)
            return loss(*outputs)

        grad_query, grad_values, grad_weights = jax.grad(stateless_loss, argnums=(0, 1, 2))(
            query, values, [w.value for w in trainable])
        grads = [grad_query, grad_values, *grad_weights]
    elif BACKEND == "torch":
        import torch

        query = torch.tensor(query, requires_grad=True)
        values = torch.tensor(values, requires_grad=True)
        value = loss(*layer(query, values, mask=mask))
        grads = torch.autograd.grad(value, [query, values] + [w.value for w in trainable],
                                    allow_unused=True)
    else:
        pytest.skip(f"no gradient helper for the {BACKEND} backend")
    assert len(grads) == 2 + len(trainable)
    for grad in grads:
        assert grad is not None
    return [to_numpy(grad) for grad in grads]


# -- shapes and weights -------------------------------------------------------------------------

@pytest.mark.parametrize("normalize", [False, True])
def test_shapes_and_weights_for_a_2d_query(normalize):
    layer = BahdanauAttention(UNITS, normalize=normalize)
    query, values = random_inputs()
    context, weights = layer(query, values, mask=MASK)
    assert tuple(context.shape) == (BATCH, VALUE_DIM)
    assert tuple(weights.shape) == (BATCH, SRC_LEN)
    shapes = {w.path.split("/", 1)[1]: tuple(w.shape) for w in layer.weights}
    expected = {"query_dense/kernel": (QUERY_DIM, UNITS), "key_dense/kernel": (VALUE_DIM, UNITS),
                "score_vector": (UNITS,)}
    if normalize:
        expected.update({"score_scale": (), "score_bias": (UNITS,)})
    assert shapes == expected
    assert len(layer.trainable_weights) == (5 if normalize else 3)
    assert layer.count_params() == (QUERY_DIM + VALUE_DIM + 1) * UNITS + (
        UNITS + 1 if normalize else 0)
    assert layer.compute_output_shape(query.shape, values.shape) == (
        (BATCH, VALUE_DIM), (BATCH, SRC_LEN))


def test_shapes_for_a_3d_query():
    layer = BahdanauAttention(UNITS)
    query, values = random_inputs(query_rank=3)
    context, weights = layer(query, values, mask=MASK)
    assert tuple(context.shape) == (BATCH, TGT_LEN, VALUE_DIM)
    assert tuple(weights.shape) == (BATCH, TGT_LEN, SRC_LEN)
    assert layer.compute_output_shape(query.shape, values.shape) == (
        (BATCH, TGT_LEN, VALUE_DIM), (BATCH, TGT_LEN, SRC_LEN))
    assert len(layer.weights) == 3


@pytest.mark.parametrize("units", [1, 2, 13])
def test_units_is_independent_of_query_and_value_sizes(units):
    layer = BahdanauAttention(units)
    query, values = random_inputs()
    context, weights = layer(query, values)
    assert tuple(context.shape) == (BATCH, VALUE_DIM)
    assert tuple(weights.shape) == (BATCH, SRC_LEN)
    assert tuple(layer.query_dense.kernel.shape) == (QUERY_DIM, units)
    assert tuple(layer.key_dense.kernel.shape) == (VALUE_DIM, units)
    assert tuple(layer.score_vector.shape) == (units,)


def test_symbolic_call_gives_the_output_shapes():
    layer = BahdanauAttention(UNITS)
    query = keras.Input((TGT_LEN, QUERY_DIM))
    values = keras.Input((SRC_LEN, VALUE_DIM))
    context, weights = layer(query, values)
    assert tuple(context.shape) == (None, TGT_LEN, VALUE_DIM)
    assert tuple(weights.shape) == (None, TGT_LEN, SRC_LEN)


# -- the equations ------------------------------------------------------------------------------

@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalize"])
@pytest.mark.parametrize("query_rank", [2, 3], ids=["2d", "3d"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_matches_numpy_equations(normalize, query_rank, masked):
    layer = make_layer(normalize)
    query, values = random_inputs(seed=2, query_rank=query_rank)
    mask = MASK if masked else None
    context, weights = layer(query, values, mask=mask)
    expected_context, expected_weights = numpy_attention(layer, query, values, mask)
    np.testing.assert_allclose(to_numpy(weights), expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(context), expected_context, rtol=1e-5, atol=1e-5)


def test_normalize_uses_scale_and_bias():
    """Changing `g` or `b` changes the scores: they are really used (and `v` is normalised)."""
    layer = make_layer(normalize=True)
    query, values = random_inputs(seed=3)
    _, before = layer(query, values)
    # Scaling v_a leaves g v_a / ||v_a|| unchanged.
    layer.score_vector.assign(layer.score_vector * 10.0)
    _, scaled = layer(query, values)
    np.testing.assert_allclose(to_numpy(scaled), to_numpy(before), rtol=1e-5, atol=1e-6)
    layer.score_scale.assign(layer.score_scale * 3.0)
    _, rescaled = layer(query, values)
    assert not np.allclose(to_numpy(rescaled), to_numpy(before), atol=1e-4)
    layer.score_scale.assign(layer.score_scale / 3.0)
    layer.score_bias.assign(layer.score_bias + 1.0)
    _, biased = layer(query, values)
    assert not np.allclose(to_numpy(biased), to_numpy(before), atol=1e-4)


def test_normalize_initial_scale_is_tfa_default():
    layer = BahdanauAttention(UNITS, normalize=True)
    layer(*random_inputs())
    np.testing.assert_allclose(layer.score_scale.numpy(), np.sqrt(1.0 / UNITS), rtol=1e-6)
    np.testing.assert_array_equal(layer.score_bias.numpy(), np.zeros(UNITS))


def test_3d_query_equals_2d_query_per_step():
    layer = make_layer()
    query, values = random_inputs(seed=4, query_rank=3)
    context, weights = layer(query, values, mask=MASK)
    for i in range(TGT_LEN):
        step_context, step_weights = layer(query[:, i], values, mask=MASK)
        np.testing.assert_allclose(to_numpy(context)[:, i], to_numpy(step_context), atol=1e-6)
        np.testing.assert_allclose(to_numpy(weights)[:, i], to_numpy(step_weights), atol=1e-6)


# -- precomputed keys, no state -----------------------------------------------------------------

@pytest.mark.parametrize("query_rank", [2, 3])
def test_precomputed_keys_give_identical_results(query_rank):
    layer = make_layer()
    query, values = random_inputs(seed=5, query_rank=query_rank)
    keys = layer.project_keys(values)
    assert tuple(keys.shape) == (BATCH, SRC_LEN, UNITS)
    np.testing.assert_allclose(
        to_numpy(keys), values @ layer.key_dense.kernel.numpy(), rtol=1e-5, atol=1e-6)
    context, weights = layer(query, values, mask=MASK)
    context_k, weights_k = layer(query, values, mask=MASK, keys=keys)
    np.testing.assert_array_equal(to_numpy(context_k), to_numpy(context))
    np.testing.assert_array_equal(to_numpy(weights_k), to_numpy(weights))


def test_keys_argument_is_used():
    """With `keys` given the layer uses them instead of recomputing from `values`."""
    layer = make_layer()
    query, values = random_inputs(seed=6)
    other_keys = layer.project_keys(values[::-1])
    _, weights = layer(query, values, keys=other_keys)
    _, expected = layer(query, values[::-1])
    np.testing.assert_allclose(to_numpy(weights), to_numpy(expected), atol=1e-6)


def test_layer_stores_nothing_between_calls():
    layer = make_layer()
    query_a, values_a = random_inputs(seed=7)
    query_b, values_b = random_inputs(seed=8)
    attributes = dict(vars(layer))
    first = layer(query_a, values_a, mask=MASK)
    context_b, weights_b = layer(query_b, values_b)
    again = layer(query_a, values_a, mask=MASK)
    # The second call saw nothing of the first: it matches the equations on its own inputs.
    expected_context, expected_weights = numpy_attention(layer, query_b, values_b)
    np.testing.assert_allclose(to_numpy(weights_b), expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(context_b), expected_context, rtol=1e-5, atol=1e-5)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(to_numpy(x), to_numpy(y))
    # No attribute was added or rebound by the calls, and no tensor hangs on the layer.
    assert set(vars(layer)) == set(attributes)
    changed = [k for k, v in vars(layer).items() if v is not attributes[k]
               and not k.startswith("_")]
    assert changed == []
    assert not [k for k, v in vars(layer).items() if keras.ops.is_tensor(v)
                and not isinstance(v, keras.Variable) and not hasattr(v, "assign")]
    assert len(layer.weights) == 3


# -- masking ------------------------------------------------------------------------------------

@pytest.mark.parametrize("query_rank", [2, 3])
def test_masked_positions_get_exactly_zero_and_the_rest_sums_to_one(query_rank):
    layer = make_layer()
    query, values = random_inputs(seed=9, query_rank=query_rank, scale=3.0)
    _, weights = layer(query, values, mask=MASK)
    weights = to_numpy(weights)
    mask = MASK if query_rank == 2 else np.broadcast_to(MASK[:, None], weights.shape)
    assert np.all(weights[~mask] == 0.0)
    assert np.all(weights[mask] > 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    assert np.all(weights[..., 0] > 0)


def test_one_token_row_gets_all_the_weight():
    layer = make_layer()
    query, values = random_inputs(seed=10)
    context, weights = layer(query, values, mask=MASK)
    np.testing.assert_array_equal(to_numpy(weights)[2], np.eye(SRC_LEN)[0])
    np.testing.assert_allclose(to_numpy(context)[2], values[2, 0], rtol=1e-6)


@pytest.mark.parametrize("query_rank", [2, 3])
def test_one_token_source_gives_weight_one_without_warnings(query_rank):
    """A source of one position (an empty sentence and its end token) is not a mistake: no
    warning (`keras.ops.softmax` warns on an axis of size 1), and the weight is 1."""
    layer = make_layer()
    query, values = random_inputs(seed=24, query_rank=query_rank, src_len=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        context, weights = layer(query, values)
        _, masked_weights = layer(query, values, mask=np.array([[True], [False], [True]]))
    np.testing.assert_array_equal(to_numpy(weights), 1.0)
    expected = values[:, 0] if query_rank == 2 else np.repeat(values[:, :1], TGT_LEN, 1)
    np.testing.assert_allclose(to_numpy(context), expected, rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(masked_weights)[[0, 2]], 1.0)
    np.testing.assert_array_equal(to_numpy(masked_weights)[1], 0.0)


@pytest.mark.parametrize("query_rank", [2, 3])
@pytest.mark.parametrize("normalize", [False, True])
def test_fully_masked_row_gives_zeros_not_nan(query_rank, normalize):
    layer = make_layer(normalize)
    query, values = random_inputs(seed=11, query_rank=query_rank, scale=10.0)
    mask = padding_mask([4, 0, SRC_LEN])
    context, weights = layer(query, values, mask=mask)
    context, weights = to_numpy(context), to_numpy(weights)
    assert np.all(np.isfinite(context)) and np.all(np.isfinite(weights))
    np.testing.assert_array_equal(weights[1], np.zeros_like(weights[1]))
    np.testing.assert_array_equal(context[1], np.zeros_like(context[1]))
    # The other rows are unaffected.
    np.testing.assert_allclose(weights[0].sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weights[2].sum(-1), 1.0, rtol=1e-6)


def test_fully_masked_row_has_finite_gradients():
    layer = make_layer()
    query, values = random_inputs(seed=12)
    mask = padding_mask([0, 3, 0])
    grads = gradients(layer, query, values, mask)
    for grad in grads:
        assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grads[1][0], 0.0)  # no gradient into a masked row
    np.testing.assert_array_equal(grads[1][2], 0.0)
    assert np.any(grads[1][1, :3] != 0.0)  # the real row does get one


@pytest.mark.parametrize("query_rank", [2, 3])
def test_mask_accepts_numbers(query_rank):
    layer = make_layer()
    query, values = random_inputs(seed=13, query_rank=query_rank)
    bool_out = layer(query, values, mask=MASK)
    int_out = layer(query, values, mask=MASK.astype(np.int32))
    for x, y in zip(bool_out, int_out):
        np.testing.assert_array_equal(to_numpy(x), to_numpy(y))


@pytest.mark.parametrize("query_rank", [2, 3])
@pytest.mark.parametrize("normalize", [False, True])
def test_padding_invariance(query_rank, normalize):
    """Appending masked positions (holding anything) to the values changes nothing."""
    layer = make_layer(normalize)
    query, values = random_inputs(seed=14, query_rank=query_rank)
    extra = 5
    rng = np.random.default_rng(15)
    padded_values = np.concatenate(
        [values, 100.0 * rng.standard_normal((BATCH, extra, VALUE_DIM)).astype(np.float32)],
        axis=1)
    padded_mask = np.concatenate([MASK, np.zeros((BATCH, extra), bool)], axis=1)
    context, weights = layer(query, values, mask=MASK)
    padded_context, padded_weights = layer(query, padded_values, mask=padded_mask)
    np.testing.assert_allclose(to_numpy(padded_context), to_numpy(context), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(padded_weights)[..., :SRC_LEN], to_numpy(weights), rtol=1e-6, atol=1e-7)
    assert np.all(to_numpy(padded_weights)[..., SRC_LEN:] == 0.0)


def test_no_mask_equals_all_true_mask():
    layer = make_layer()
    query, values = random_inputs(seed=16, query_rank=3)
    a = layer(query, values)
    b = layer(query, values, mask=np.ones((BATCH, SRC_LEN), bool))
    for x, y in zip(a, b):
        np.testing.assert_allclose(to_numpy(x), to_numpy(y), atol=1e-7)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function needs the TensorFlow backend")
def test_works_inside_tf_function_with_unknown_lengths():
    import tensorflow as tf

    layer = make_layer()
    query, values = random_inputs(seed=17, query_rank=3)

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, QUERY_DIM]), tf.TensorSpec([None, None, VALUE_DIM]),
        tf.TensorSpec([None, None], tf.bool)])
    def attend(q, v, m):
        return layer(q, v, mask=m)

    context, weights = attend(query, values, MASK)
    expected_context, expected_weights = numpy_attention(layer, query, values, MASK)
    np.testing.assert_allclose(to_numpy(weights), expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(context), expected_context, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit needs the JAX backend")
@pytest.mark.parametrize("query_rank", [2, 3])
def test_works_inside_jax_jit(query_rank):
    import jax

    layer = make_layer(normalize=True)
    query, values = random_inputs(seed=17, query_rank=query_rank)

    @jax.jit
    def attend(trainable_values, q, v, m):
        outputs, _ = layer.stateless_call(trainable_values, [], q, v, mask=m)
        return outputs

    context, weights = attend([w.value for w in layer.trainable_weights], query, values, MASK)
    expected_context, expected_weights = numpy_attention(layer, query, values, MASK)
    np.testing.assert_allclose(to_numpy(weights), expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(context), expected_context, rtol=1e-5, atol=1e-5)


# -- configuration and serialisation ------------------------------------------------------------

@pytest.mark.parametrize("normalize", [False, True])
def test_config_round_trip(normalize):
    layer = make_layer(normalize, kernel_initializer="he_normal", name="my_attention")
    config = layer.get_config()
    assert config["units"] == UNITS and config["normalize"] is normalize
    assert config["name"] == "my_attention"
    clone = BahdanauAttention.from_config(config)
    assert clone.get_config() == config
    query, values = random_inputs(seed=18, query_rank=3)
    clone(query, values)
    assert [w.path for w in clone.weights] == [w.path for w in layer.weights]
    clone.set_weights(layer.get_weights())
    for x, y in zip(layer(query, values, mask=MASK), clone(query, values, mask=MASK)):
        np.testing.assert_array_equal(to_numpy(x), to_numpy(y))
    assert isinstance(clone.kernel_initializer, keras.initializers.HeNormal)


def test_serialize_keras_object_round_trip():
    layer = make_layer(normalize=True)
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "bahdanau_keras>BahdanauAttention"
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is BahdanauAttention
    assert clone.get_config() == layer.get_config()
    query, values = random_inputs(seed=19)
    clone(query, values)
    clone.set_weights(layer.get_weights())
    for x, y in zip(layer(query, values, mask=MASK), clone(query, values, mask=MASK)):
        np.testing.assert_array_equal(to_numpy(x), to_numpy(y))


def test_saved_inside_a_functional_model(tmp_path):
    query = keras.Input((TGT_LEN, QUERY_DIM))
    values = keras.Input((SRC_LEN, VALUE_DIM))
    outputs = BahdanauAttention(UNITS, normalize=True, name="attention")(query, values)
    model = keras.Model([query, values], list(outputs))
    rng = np.random.default_rng(20)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("attention"), BahdanauAttention)
    inputs = list(random_inputs(seed=21, query_rank=3))
    for x, y in zip(model(inputs), loaded(inputs)):
        np.testing.assert_array_equal(to_numpy(x), to_numpy(y))


@pytest.mark.parametrize("query_shape, values_shape, name", [
    ((BATCH, 2, TGT_LEN, QUERY_DIM), (BATCH, SRC_LEN, VALUE_DIM), "query"),
    ((QUERY_DIM,), (BATCH, SRC_LEN, VALUE_DIM), "query"),
    ((BATCH, QUERY_DIM), (BATCH, VALUE_DIM), "values"),
])
def test_bad_ranks_raise_value_error_naming_the_shape(query_shape, values_shape, name):
    layer = BahdanauAttention(UNITS)
    with pytest.raises(ValueError, match=f"`{name}` must have shape") as info:
        layer(np.zeros(query_shape, "float32"), np.zeros(values_shape, "float32"))
    received = query_shape if name == "query" else values_shape
    assert f"{name}.shape={received}" in str(info.value)


def test_runs_on_the_backend_named_by_keras_backend():
    """tests/test_backends.py reruns this module with `KERAS_BACKEND` set; this proves it ran
    there on that backend (Keras reads the variable before its configuration file)."""
    requested = os.environ.get("KERAS_BACKEND")
    if requested is None:
        pytest.skip("KERAS_BACKEND is not set")
    assert BACKEND == requested


@pytest.mark.parametrize("units", [0, -3, 2.5, "7", None, True])
def test_bad_units_raise_value_error_naming_the_value(units):
    with pytest.raises(ValueError, match="units") as info:
        BahdanauAttention(units)
    assert f"units={units!r}" in str(info.value)


# -- mixed precision ----------------------------------------------------------------------------

@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def mixed_policy(request):
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


@pytest.mark.parametrize("query_rank", [2, 3])
@pytest.mark.parametrize("normalize", [False, True])
def test_mixed_precision(mixed_policy, query_rank, normalize):
    compute_dtype = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}[mixed_policy]
    layer = BahdanauAttention(UNITS, normalize=normalize)
    query, values = random_inputs(seed=22, query_rank=query_rank, scale=4.0)
    mask = padding_mask([SRC_LEN, 0, 5])
    context, weights = layer(query, values, mask=mask)
    assert layer.compute_dtype == compute_dtype
    assert all(w.dtype == "float32" for w in layer.weights)  # variables stay float32
    assert dtype_of(context) == compute_dtype and dtype_of(weights) == compute_dtype
    context, weights = as_numpy(context), as_numpy(weights)
    assert np.all(np.isfinite(context)) and np.all(np.isfinite(weights))
    full_mask = mask if query_rank == 2 else np.broadcast_to(mask[:, None], weights.shape)
    assert np.all(weights[~full_mask] == 0.0)
    np.testing.assert_array_equal(weights[1], 0.0)
    np.testing.assert_array_equal(context[1], 0.0)
    np.testing.assert_allclose(weights[[0, 2]].sum(-1), 1.0, atol=2e-2)
    # Close to the float64 equations, within the precision of the compute dtype.
    expected_context, expected_weights = numpy_attention(layer, query, values, mask)
    atol = 2e-2 if compute_dtype == "bfloat16" else 5e-3
    np.testing.assert_allclose(weights, expected_weights, atol=atol)
    np.testing.assert_allclose(context, expected_context, atol=10 * atol)
    # Precomputed keys under mixed precision are in the compute dtype too.
    keys = layer.project_keys(values)
    assert dtype_of(keys) == compute_dtype
    same_context, same_weights = layer(query, values, mask=mask, keys=keys)
    np.testing.assert_array_equal(as_numpy(same_weights), weights)


def test_policy_is_restored_after_mixed_precision_tests():
    assert keras.config.dtype_policy().name == "float32"
    assert BahdanauAttention(UNITS).compute_dtype == "float32"


# -- properties ---------------------------------------------------------------------------------

_LAYERS = {}


def property_layer(normalize):
    if normalize not in _LAYERS:
        _LAYERS[normalize] = make_layer(normalize, seed=23)
    return _LAYERS[normalize]


@st.composite
def attention_inputs(draw):
    batch = draw(st.integers(1, 4))
    src_len = draw(st.integers(1, 9))
    tgt_len = draw(st.one_of(st.none(), st.integers(1, 3)))
    scale = draw(st.sampled_from([0.0, 0.1, 1.0, 30.0]))
    seed = draw(st.integers(0, 2**16))
    mask = np.array(draw(st.lists(st.lists(st.booleans(), min_size=src_len, max_size=src_len),
                                  min_size=batch, max_size=batch)), bool)
    rng = np.random.default_rng(seed)
    query_shape = (batch, QUERY_DIM) if tgt_len is None else (batch, tgt_len, QUERY_DIM)
    query = (scale * rng.standard_normal(query_shape)).astype(np.float32)
    values = (scale * rng.standard_normal((batch, src_len, VALUE_DIM))).astype(np.float32)
    return query, values, mask


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=attention_inputs(), normalize=st.booleans())
def test_property_weights_are_a_distribution_over_unmasked_positions(inputs, normalize):
    query, values, mask = inputs
    layer = property_layer(normalize)
    context, weights = layer(query, values, mask=mask)
    context, weights = to_numpy(context), to_numpy(weights)
    full_mask = mask if query.ndim == 2 else np.broadcast_to(mask[:, None], weights.shape)
    assert np.all(np.isfinite(weights)) and np.all(np.isfinite(context))
    assert np.all(weights >= 0.0)
    assert np.all(weights[~full_mask] == 0.0)
    sums = weights.sum(-1)  # [batch] or [batch, tgt_len]
    has_real = mask.any(-1) if query.ndim == 2 else np.broadcast_to(
        mask.any(-1)[:, None], sums.shape)
    np.testing.assert_allclose(sums[has_real], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(sums[~has_real], 0.0)
    # The context is the weighted sum of the values.
    equation = "bs,bsd->bd" if query.ndim == 2 else "bts,bsd->btd"
    np.testing.assert_allclose(
        context, np.einsum(equation, weights, values), rtol=1e-5, atol=1e-4)
