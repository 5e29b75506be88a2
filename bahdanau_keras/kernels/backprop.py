"""Pieces shared by the hand-written backward loops of `kernels.bidirectional_gru` and
`kernels.decoder_loop`: the gradients of `tanh` and `σ` from their outputs, the kernels'
gradients summed over every step in one product, the parts of a batch, and the TensorArrays
the loops keep their step values in.
"""

import tensorflow as tf


def tanh_grad(y, dy):
    """`dy (1 - y²)`, the gradient through `y = tanh(x)`, as one operation."""
    return tf.raw_ops.TanhGrad(y=y, dy=dy)


def sigmoid_grad(y, dy):
    """`dy y (1 - y)`, the gradient through `y = σ(x)`, as one operation."""
    return tf.raw_ops.SigmoidGrad(y=y, dy=dy)


def summed_product(x, g):
    """`Σ_i x_i^T g_i` over every leading index as one product: the gradient of a kernel `K`
    multiplied at every step (`x_i K`) from the gradients `g_i` of the products.

    `x`: `[..., m]`, `g`: `[..., n]` with the same leading shape; returns `[m, n]`.
    """
    return tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), tf.reshape(g, [-1, g.shape[-1]]),
                     transpose_a=True)


def part_sizes(batch, parts):
    """The sizes of `parts` consecutive parts of a batch of `batch` rows (a scalar tensor),
    as even as possible, the larger ones last; some are 0 when `batch < parts`."""
    return [(batch + k) // parts for k in range(parts)]


def step_array(dtype, size, first=None, last=None):
    """A TensorArray of `size` elements for a loop to write step by step; `first` is written
    at 0 and `last` at `size - 1` now.

    An element is read at most once in graph mode, but eager TensorArrays forget an element
    after its first read unless told otherwise: `clear_after_read=False`, so that a gradient
    can be asked for twice in eager mode too. A stack of zero elements needs a fully known
    element shape, which a batch of unknown size does not have: the loops give an array a
    `last` element (zeros) and slice it off after stacking.
    """
    array = tf.TensorArray(dtype, size=size, clear_after_read=False)
    if first is not None:
        array = array.write(0, first)
    if last is not None:
        array = array.write(size - 1, last)
    return array
