"""Both GRU directions of the `Encoder` in one loop, with the backward pass written out.

The reference is `Encoder.call`'s readable path: `keras.layers.Bidirectional(GRU)` with the
source mask (Section 3.2 of arXiv:1409.0473). `bidirectional_gru` here reads that layer's
weights and computes the same annotations `h_j = [→h_j; ←h_j]` and final backward state
`←h_1`, with the same gradients (`tests/test_kernels_bidirectional_gru.py`), faster on the
2-core CPU of `docs/benchmarks.md` (+1.7% training steps/s for the one loop, +2.0% for the
written-out backward loop, both interleaved):

- the input projections of both directions are one product before the loop (Keras' GRU
  multiplies each step's inputs inside its loop), and step `t` of one `tf.while_loop`
  advances the forward GRU at position `t` and the backward GRU at position `src_len - 1 - t`;
- the backward loop applies the chain rule through one step by hand, on the values the
  forward loop kept, with the recurrent kernels transposed once; the gradients of the
  recurrent kernels and biases are summed after it, one product each.

It also takes a source of no position at all (`src_len = 0`: `←h_1 = 0`), which Keras' GRU
layer does not. The step is a copy of Keras' GRU equations with `reset_after=True` (see
`gru_loop`), the layout of the weights it reads.
"""

import tensorflow as tf

from bahdanau_keras.kernels import float32_only
from bahdanau_keras.kernels.backprop import sigmoid_grad, step_array, summed_product, tanh_grad


def unsupported(encoder):
    """Why `bidirectional_gru` cannot compute `encoder`'s GRUs (a phrase), or `None` where it
    can: it computes in float32 only."""
    return float32_only(encoder, "fused bidirectional GRU")


def bidirectional_gru(encoder, embedded, mask, written_gradient=True):
    """`encoder.bidirectional_gru(embedded, mask=mask)`, computed in one loop.

    At padding a direction keeps its state (the backward one therefore starts from zeros at
    the last real token) and the annotations are zeros, as in Keras' layer.

    Args:
        encoder: The `Encoder` whose `bidirectional_gru` weights the loop reads
            (`unsupported(encoder)` is `None`).
        embedded: `[batch, src_len, embedding_dim]`, `E x_j`.
        mask: bool `[batch, src_len]`, `True` at real tokens.
        written_gradient: Give the loop the backward pass written out here (training);
            with `False`, TensorFlow differentiates the forward loop itself (the same
            gradients, slower), and the graph holds no custom gradient: a SavedModel of it
            keeps every function it needs (`export.py` saves inference graphs so).

    Returns:
        `(annotations, backward_state)`: `[batch, src_len, 2 * units]` and ←h_1
        `[batch, units]`.
    """
    reason = unsupported(encoder)
    if reason is not None:
        raise NotImplementedError(reason)
    units = encoder.units
    cells = (encoder.bidirectional_gru.forward_layer.cell,
             encoder.bidirectional_gru.backward_layer.cell)
    # [W_z W_r W_h] of both directions: [embedding_dim, 6 units]; biases [2, 3 units] each,
    # row 0 for the input and row 1 for the recurrent product (Keras' reset_after layout).
    kernel = tf.concat([cell.kernel for cell in cells], axis=1)
    input_bias = tf.concat([cell.bias[0] for cell in cells], axis=0)
    flat = tf.reshape(embedded, [-1, encoder.embedding_dim])  # [batch * src_len, emb]
    projected = tf.reshape(tf.matmul(flat, kernel) + input_bias,
                           tf.concat([tf.shape(embedded)[:2], [6 * units]], axis=0))
    projected = tf.transpose(projected, [1, 0, 2])  # time-major [src_len, batch, 6 units]
    forward_input, backward_input = tf.split(projected, 2, axis=-1)
    time_mask = tf.transpose(mask)[:, :, tf.newaxis]  # [src_len, batch, 1]
    recurrent_kernels = [tf.convert_to_tensor(cell.recurrent_kernel) for cell in cells]
    recurrent_biases = [cell.bias[1] for cell in cells]
    forward_states, backward_states = gru_loop(
        units, (forward_input, tf.reverse(backward_input, [0])),
        (time_mask, tf.reverse(time_mask, [0])), recurrent_kernels, recurrent_biases,
        written_gradient)
    # ←h_1: the last step read position 0 (s_0 = 0 when there is no position)
    backward_state = backward_states[-1]
    forward_states, backward_states = forward_states[1:], backward_states[1:]
    annotations = tf.concat([forward_states, tf.reverse(backward_states, [0])], axis=-1)
    annotations = tf.where(time_mask, annotations, tf.zeros_like(annotations))
    return tf.transpose(annotations, [1, 0, 2]), backward_state


def gru_loop(units, inputs, real, kernels, biases, written_gradient=True):
    """Two GRUs (Keras' `reset_after` form) side by side in one `tf.while_loop`, with the
    backward loop written out (unless `written_gradient` is `False`: see
    `bidirectional_gru`).

    Args:
        units: The GRUs' state size.
        inputs: Per GRU, its time-major projected inputs `x_t` (biases added),
            `[steps, batch, 3 units]`.
        real: Per GRU, bool `[steps, batch, 1]` (a GRU keeps its state where `False`).
        kernels, biases: Per GRU, the recurrent kernel `R` `[units, 3 units]` and bias `b`
            `[3 units]`.

    Step `t`, from `s_0 = 0`:

        [h_z, h_r, h_h] = s_{t-1} R + b
        z_t, r_t = σ(x_z + h_z), σ(x_r + h_r)
        s̃_t = tanh(x_h + r_t ∘ h_h)
        s_t = z_t ∘ s_{t-1} + (1 - z_t) ∘ s̃_t, written s̃_t + z_t ∘ (s_{t-1} - s̃_t)

    Returns:
        The states of each GRU from `s_0`, `[steps + 1, batch, units]`. The gradient runs
        the chain rule through one step by hand on the values the forward loop kept, and
        sums the gradients of `R` and `b` after the loop in one product each (the kernels
        the backward step multiplies by are transposed once).
    """
    dtype = inputs[0].dtype
    count = len(inputs)

    def loop(*args):
        inputs, kernels, biases = args[:count], args[count:2 * count], args[2 * count:]
        steps = tf.shape(inputs[0])[0]
        zeros = tf.zeros([tf.shape(inputs[0])[1], units], dtype)
        input_arrays = [tf.TensorArray(dtype, size=steps).unstack(x) for x in inputs]
        real_arrays = [tf.TensorArray(tf.bool, size=steps, clear_after_read=False)
                       .unstack(x) for x in real]  # read forward and backward

        def forward_step(t, states, saved):
            new_states, new_saved = [], []
            for g in range(count):
                state = states[g]
                input_gates, input_candidate = tf.split(
                    input_arrays[g].read(t), [2 * units, units], axis=1)
                recurrent_gates, recurrent_candidate = tf.split(
                    tf.matmul(state, kernels[g]) + biases[g], [2 * units, units], axis=1)
                gates = tf.sigmoid(input_gates + recurrent_gates)
                update, reset = tf.split(gates, 2, axis=1)
                candidate = tf.tanh(input_candidate + reset * recurrent_candidate)
                difference = state - candidate
                new_state = tf.where(real_arrays[g].read(t),
                                     candidate + update * difference, state)
                new_state.set_shape(state.shape)
                new_states.append(new_state)
                # states at t + 1 (s_0 at 0)
                values = (new_state, gates, candidate, difference, recurrent_candidate)
                new_saved.append(tuple(array.write(t + 1 if j == 0 else t, x)
                                       for j, (array, x) in enumerate(zip(saved[g], values))))
            return t + 1, tuple(new_states), tuple(new_saved)

        saved = tuple((step_array(dtype, steps + 1, first=zeros),) + tuple(
            step_array(dtype, steps) for _ in range(4)) for _ in range(count))
        _, _, saved = tf.while_loop(
            lambda t, *_: t < steps, forward_step, (0, (zeros,) * count, saved))
        all_states = [saved[g][0].stack() for g in range(count)]  # [s_0, ..., s_T]

        def grad(*d_states):
            transposed = [tf.transpose(kernel) for kernel in kernels]  # once, for the loop
            d_arrays = [tf.TensorArray(dtype, size=steps).unstack(
                tf.zeros_like(all_states[g][1:]) if d is None else d[1:])
                for g, d in enumerate(d_states)]

            def backward_step(j, d_next, written):
                t = j - 1  # from the last step to the first
                d_previous, new_written = [], []
                for g in range(count):
                    state, gates, candidate, difference, recurrent_candidate = (
                        array.read(t) for array in saved[g])  # state: s_{t-1}
                    update, reset = tf.split(gates, 2, axis=1)
                    d_state = d_next[g] + d_arrays[g].read(t)
                    d_new = tf.where(real_arrays[g].read(t), d_state, 0.0)
                    d_update_path = d_new * update
                    d_candidate_input = tanh_grad(candidate, d_new - d_update_path)
                    d_gates = sigmoid_grad(gates, tf.concat(
                        [d_new * difference, d_candidate_input * recurrent_candidate],
                        axis=1))
                    d_recurrent = tf.concat([d_gates, d_candidate_input * reset], axis=1)
                    d_input = tf.concat([d_gates, d_candidate_input], axis=1)
                    previous = (d_state - d_new + d_update_path
                                + tf.matmul(d_recurrent, transposed[g]))
                    previous.set_shape(d_next[g].shape)
                    d_previous.append(previous)
                    new_written.append((written[g][0].write(t, d_input),
                                        written[g][1].write(t, d_recurrent)))
                return t, tuple(d_previous), tuple(new_written)

            # and a last element (zeros) so that they stack also when there is no step
            last = tf.zeros([tf.shape(zeros)[0], 3 * units], dtype)
            written = tuple(tuple(step_array(dtype, steps + 1, last=last) for _ in range(2))
                            for _ in range(count))
            _, _, written = tf.while_loop(
                lambda j, *_: j > 0, backward_step, (steps, (zeros,) * count, written))
            d_inputs, d_kernels, d_biases = [], [], []
            for g in range(count):
                d_input, d_recurrent = (array.stack()[:steps] for array in written[g])
                d_inputs.append(d_input)
                # Σ_t s_{t-1}^T d[h_z, h_r, h_h]_t and Σ_t d[h_z, h_r, h_h]_t
                d_kernels.append(summed_product(all_states[g][:-1], d_recurrent))
                d_biases.append(tf.reduce_sum(d_recurrent, axis=[0, 1]))
            return d_inputs + d_kernels + d_biases

        return tuple(all_states), grad

    if not written_gradient:
        return loop(*inputs, *kernels, *biases)[0]
    return tf.custom_gradient(loop)(*inputs, *kernels, *biases)
