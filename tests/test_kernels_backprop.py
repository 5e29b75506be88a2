"""The pieces of the hand-written backward loops, against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from bahdanau_keras.kernels.backprop import (
    part_sizes,
    sigmoid_grad,
    step_array,
    summed_product,
    tanh_grad,
)


def test_tanh_and_sigmoid_gradients_from_their_outputs():
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 4, 5)).astype(np.float32)
    for function, grad in ((tf.tanh, tanh_grad), (tf.sigmoid, sigmoid_grad)):
        x_tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x_tensor)
            y = function(x_tensor)
        expected = tape.gradient(y, x_tensor, output_gradients=tf.constant(dy)).numpy()
        np.testing.assert_allclose(grad(y, tf.constant(dy)).numpy(), expected, rtol=1e-6)
    y = np.tanh(x.astype(np.float64))
    np.testing.assert_allclose(tanh_grad(tf.constant(y, tf.float32), dy).numpy(),
                               dy * (1 - y ** 2), rtol=1e-5, atol=1e-6)


def test_summed_product_is_the_sum_of_every_steps_product():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    g = rng.standard_normal((3, 4, 2)).astype(np.float32)
    expected = sum(x[t].T @ g[t] for t in range(3))
    np.testing.assert_allclose(summed_product(tf.constant(x), tf.constant(g)).numpy(),
                               expected, rtol=1e-5, atol=1e-5)
    empty = summed_product(tf.zeros([0, 4, 5]), tf.zeros([0, 4, 2]))
    assert empty.shape == (5, 2) and not np.any(empty.numpy())


@pytest.mark.parametrize("batch, parts, sizes", [
    (64, 2, [32, 32]), (5, 2, [2, 3]), (3, 4, [0, 1, 1, 1]), (7, 3, [2, 2, 3]), (1, 1, [1])])
def test_part_sizes_cover_the_batch(batch, parts, sizes):
    assert [int(size) for size in part_sizes(tf.constant(batch), parts)] == sizes


def test_step_array_reads_twice_eagerly_and_stacks_with_no_step():
    array = step_array(tf.float32, 3, first=tf.ones([2]), last=tf.zeros([2]))
    array = array.write(1, tf.fill([2], 5.0))
    assert array.read(1).numpy().tolist() == [5.0, 5.0]
    assert array.read(1).numpy().tolist() == [5.0, 5.0]  # not cleared by the first read
    np.testing.assert_array_equal(array.stack().numpy(), [[1, 1], [5, 5], [0, 0]])

    @tf.function
    def no_step(batch):
        zeros = tf.zeros([batch, 4])
        return step_array(tf.float32, 1, last=zeros).stack()[:0]

    assert no_step(tf.constant(3)).shape == (0, 3, 4)
