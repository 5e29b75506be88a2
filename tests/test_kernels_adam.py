"""The fused Adam: Keras' update, Keras' variables and checkpoints, fewer kernels."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bahdanau_keras.kernels.adam import Adam


def _variables(seed=0):
    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.normal(size=shape).astype(np.float32), name=f"w{i}")
            for i, shape in enumerate([(3, 5), (7,), (5, 3)])]


def _gradients(step):
    rng = np.random.default_rng(100 + step)
    return [tf.constant(rng.normal(size=shape).astype(np.float32))
            for shape in [(3, 5), (7,), (5, 3)]]


def _train(optimizer, variables, steps=5, compiled=True):
    def apply(gradients):
        optimizer.apply_gradients(zip(gradients, variables))

    apply = tf.function(apply) if compiled else apply
    for step in range(steps):
        apply(_gradients(step))
    return [v.numpy() for v in variables] + [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("options", [{}, {"clipnorm": 1.0}, {"weight_decay": 0.01}])
def test_same_update_as_keras_adam(compiled, options):
    expected = _train(keras.optimizers.Adam(0.01, **options), _variables(), compiled=compiled)
    actual = _train(Adam(0.01, **options), _variables(), compiled=compiled)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-7)


def test_sparse_gradient_is_applied_densely_like_keras():
    def run(optimizer):
        table = keras.Variable(np.ones((6, 2), np.float32))

        @tf.function
        def step(ids):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.gather(table, ids) ** 2)
            optimizer.apply_gradients([(tape.gradient(loss, table), table)])

        step(tf.constant([0, 2]))
        step(tf.constant([2, 5]))
        return table.numpy()

    np.testing.assert_allclose(run(Adam(0.1)), run(keras.optimizers.Adam(0.1)), rtol=1e-5)


def test_checkpoints_load_both_ways(tmp_path):
    variables = _variables()
    keras_adam = keras.optimizers.Adam(0.01, name="adam")
    _train(keras_adam, variables, steps=2)
    path = tf.train.Checkpoint(optimizer=keras_adam, weights=variables).save(
        str(tmp_path / "keras" / "ckpt"))

    restored_variables = _variables(seed=1)
    fused = Adam(0.01, name="adam")
    fused.build(restored_variables)
    status = tf.train.Checkpoint(optimizer=fused, weights=restored_variables).restore(path)
    status.assert_existing_objects_matched()
    assert int(fused.iterations.numpy()) == 2
    for a, b in zip(fused.variables, keras_adam.variables):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    path = tf.train.Checkpoint(optimizer=fused, weights=restored_variables).save(
        str(tmp_path / "fused" / "ckpt"))
    back_variables = _variables(seed=2)
    back = keras.optimizers.Adam(0.01, name="adam")
    back.build(back_variables)
    tf.train.Checkpoint(optimizer=back, weights=back_variables).restore(
        path).assert_existing_objects_matched()
    assert int(back.iterations.numpy()) == 2


def test_serializable():
    optimizer = Adam(0.003, clipnorm=0.5)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(again, Adam)
    assert again.clipnorm == 0.5
