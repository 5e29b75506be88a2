"""The decoder's step loop with `BahdanauAttention` in float32, its backward pass written out.

The reference is `Decoder.time_loop`'s readable path: `Decoder.cell` (the equations of
Appendix A.2.2 of arXiv:1409.0473, with `BahdanauAttention.call` for `c_i` and `α_i`) at
every target step, differentiated by TensorFlow. `time_loop` here computes the same states,
contexts and attention weights, and the same gradients for every input and weight
(`tests/test_kernels_decoder_loop.py`), faster on the 2-core CPU of `docs/benchmarks.md`
(+11-13% training steps/s for the backward loop, +3.5-4% for the parts, both interleaved):

- TensorFlow differentiates a `tf.while_loop` operation by operation, pushing every
  intermediate onto a stack and multiplying by each kernel with `transpose_b=True` at every
  step (about 1.7x slower than the kernel transposed once, at these sizes). Here the forward
  loop keeps the few values the backward step needs in TensorArrays (`s_{i-1}`, `α_i`,
  `[z_i, r_i]`, `s̃_i`, `s̃_i - s_{i-1}`, `tanh(W_a s_{i-1} + U_a h_j)`); the backward loop
  applies the chain rule through one step by hand, with the kernels transposed once before
  it; and the kernels' gradients are summed after it, one product each over every step
  (`Σ_i x_i^T g_i`) instead of a `[units, batch] x [batch, 3 units]` product per step.
- `W_a s_{i-1}` and `[U_z; U_r] s_{i-1}` are one product `s_{i-1} [W_a, U_z, U_r]`.
- `shards` splits the batch into that many independent parts inside each step (the same
  results): TensorFlow's executor runs independent operations on different cores at once,
  and the steps themselves must run one after the other. With one thread per operation
  (`train.default_threads`), 2 parts suit a 2-core CPU.

The forward step is a copy of the reference's equations (that is what a fused kernel is):
a change to `Decoder.cell` or to `BahdanauAttention`'s score or softmax must be made here
too, and the tests say when the two differ.
"""

import tensorflow as tf

from bahdanau_keras.attention import BahdanauAttention
from bahdanau_keras.kernels import float32_only
from bahdanau_keras.kernels.backprop import (
    part_sizes,
    sigmoid_grad,
    step_array,
    summed_product,
    tanh_grad,
)


def unsupported(decoder):
    """Why `time_loop` cannot compute `decoder`'s loop (a phrase), or `None` where it can: it
    needs float32 computation and an attention layer that is exactly `BahdanauAttention` (its
    equations are written out here): not another layer, nor none (`attention=None`)."""
    reason = float32_only(decoder, "fused decoder loop")
    if reason is None and decoder.attention is None:
        reason = ("the fused decoder loop writes out BahdanauAttention's equations, and this "
                  "decoder has no attention (attention=None)")
    elif reason is None and type(decoder.attention) is not BahdanauAttention:
        reason = ("the fused decoder loop writes out BahdanauAttention's equations, and this "
                  f"decoder's attention layer is a {type(decoder.attention).__name__}")
    return reason


def time_loop(decoder, projected, keys, annotations, source_mask, initial_state, shards=1):
    """`decoder.time_loop` for `BahdanauAttention` in float32, with its backward loop written
    out and the batch in `shards` parts.

    Args:
        decoder: The `Decoder` whose weights the loop reads (`unsupported(decoder)` is `None`).
        projected: `[batch, tgt_len, 3 units]`, `[W_z; W_r; W] E y_{i-1} + b` of every step.
        keys: `[batch, src_len, attention_units]`, `U_a h_j`.
        annotations: `[batch, src_len, context_dim]`, `h_j`.
        source_mask: bool `[batch, src_len]` or `None`.
        initial_state: `[batch, units]`, `s_0`.
        shards: Positive int, the parts of the batch inside each step.

    Returns:
        `(states, contexts, attention_weights)`, batch-major: `[batch, tgt_len, units]`,
        `[batch, tgt_len, context_dim]`, `[batch, tgt_len, src_len]`.
    """
    reason = unsupported(decoder)
    if reason is not None:
        raise NotImplementedError(reason)
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ValueError(f"`shards` must be a positive integer. Received: shards={shards!r}")
    context_kernel, recurrent_gates, candidate_kernel = decoder.loop_kernels()
    query_kernel = tf.convert_to_tensor(decoder.attention.query_dense.kernel)  # W_a
    # v_a (g v_a / ||v_a|| when normalised) and b, as TensorFlow tensors
    score_vector, score_bias = (
        None if x is None else tf.convert_to_tensor(x)
        for x in decoder.attention.score_weights())
    if score_bias is not None:
        keys = keys + score_bias  # b, inside the tanh: added to U_a h_j once
    # [W_a, U_z, U_r]: W_a s_{i-1} and [U_z; U_r] s_{i-1} in one product
    state_kernel = tf.concat([query_kernel, recurrent_gates], axis=1)
    units, attention_units = decoder.units, query_kernel.shape[-1]
    context_dim, dtype = annotations.shape[-1], projected.dtype
    projected = tf.transpose(projected, [1, 0, 2])  # time-major [tgt_len, batch, 3 units]

    @tf.custom_gradient
    def loop(projected, keys, annotations, initial_state, state_kernel, context_kernel,
             candidate_kernel, score_vector):
        steps = tf.shape(projected)[0]
        batch = tf.shape(initial_state)[0]
        src_len = tf.shape(annotations)[1]
        sizes = part_sizes(batch, shards)

        def parts(x, axis=0):
            return tf.split(x, sizes, axis=axis)

        part_keys, part_values, part_states = parts(keys), parts(annotations), parts(
            initial_state)
        if source_mask is None:
            part_masks = [None] * shards
        else:
            mask = tf.cast(source_mask, tf.bool)
            part_masks = list(zip(parts(mask), parts(tf.cast(mask, dtype))))
        part_inputs = [tf.TensorArray(dtype, size=steps).unstack(x)
                       for x in parts(projected, axis=1)]
        score_column = score_vector[:, None]

        def forward_step(i, states, saved):
            new_states, new_saved = [], []
            for k in range(shards):
                state, keys_k, values_k = states[k], part_keys[k], part_values[k]  # s_{i-1}
                # [W_a s_{i-1}, U_z s_{i-1}, U_r s_{i-1}]
                projected_state = tf.matmul(state, state_kernel)
                query, recurrent = tf.split(
                    projected_state, [attention_units, 2 * units], axis=1)
                # e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)
                features = tf.tanh(query[:, None, :] + keys_k)
                scores = tf.reshape(
                    tf.matmul(tf.reshape(features, [-1, attention_units]), score_column),
                    [sizes[k], src_len])
                # α_ij = softmax_j(e_ij) over the real positions (0 at padding)
                if part_masks[k] is None:
                    weights = tf.nn.softmax(scores)
                else:
                    weights = tf.nn.softmax(tf.where(
                        part_masks[k][0], scores, dtype.min)) * part_masks[k][1]
                # c_i = Σ_j α_ij h_j
                context = tf.matmul(weights[:, None, :], values_k)[:, 0]
                gates_input, candidate_input = tf.split(
                    part_inputs[k].read(i) + tf.matmul(context, context_kernel),
                    [2 * units, units], axis=1)
                # [z_i, r_i] = σ(W_{z,r} E y_{i-1} + U_{z,r} s_{i-1} + C_{z,r} c_i)
                gates = tf.sigmoid(gates_input + recurrent)
                update, reset = tf.split(gates, 2, axis=1)
                # s̃_i = tanh(W E y_{i-1} + U [r_i ∘ s_{i-1}] + C c_i)
                reset_state = reset * state
                candidate = tf.tanh(candidate_input + tf.matmul(reset_state,
                                                                candidate_kernel))
                # s_i = (1 - z_i) ∘ s_{i-1} + z_i ∘ s̃_i, as s_{i-1} + z_i ∘ (s̃_i - s_{i-1})
                difference = candidate - state
                new_state = state + update * difference
                new_state.set_shape(state.shape)
                new_states.append(new_state)
                values = (new_state, context, weights, reset_state, gates, candidate,
                          difference, features)
                # states[k] holds s_0 at 0, s_i at i + 1
                new_saved.append(tuple(
                    array.write(i + 1 if j == 0 else i, x)
                    for j, (array, x) in enumerate(zip(saved[k], values))))
            return i + 1, tuple(new_states), tuple(new_saved)

        saved = tuple(
            (step_array(dtype, steps + 1, first=part_states[k]),)
            # contexts, weights and reset states get a last element (zeros) so that they
            # stack also when there is no step
            + tuple(step_array(dtype, steps + 1, last=tf.zeros(shape, dtype))
                    for shape in ([sizes[k], context_dim], [sizes[k], src_len],
                                  [sizes[k], units]))
            + tuple(step_array(dtype, steps) for _ in range(4))
            for k in range(shards))
        _, _, saved = tf.while_loop(
            lambda i, *_: i < steps, forward_step, (0, tuple(part_states), saved))

        def stacked(j):  # saved value j of every part: [steps (+ 1), batch, ...]
            return tf.concat([saved[k][j].stack() for k in range(shards)], axis=1)

        all_states = stacked(0)  # [s_0, ..., s_T]
        states, previous_states = all_states[1:], all_states[:-1]
        contexts, weights, reset_states = (stacked(j)[:steps] for j in (1, 2, 3))

        def grad(d_states, d_contexts, d_weights):
            # The backward loop's products with transposed kernels, transposed once here
            # (a product with `transpose_b=True` ran ~1.7x slower at these sizes).
            transposed = [tf.transpose(kernel) for kernel in (
                candidate_kernel, context_kernel, state_kernel)]
            transposed_values = [tf.transpose(x, [0, 2, 1]) for x in part_values]

            def step_arrays(x):  # time-major x, each part readable step by step
                return [tf.TensorArray(dtype, size=steps).unstack(part)
                        for part in parts(x, axis=1)]

            d_state_arrays = step_arrays(
                tf.zeros_like(states) if d_states is None else d_states)
            d_context_arrays = step_arrays(
                tf.zeros_like(contexts) if d_contexts is None else d_contexts)
            d_weight_arrays = None if d_weights is None else step_arrays(d_weights)

            def backward_step(j, d_next, d_keys, d_score_vector, written):
                i = j - 1  # step i, from the last to the first
                results = ([], [], [], [])
                for k in range(shards):
                    # s_{i-1}, α_i, [z_i, r_i], s̃_i, s̃_i - s_{i-1}, tanh(W_a s_{i-1} + U_a h)
                    state, step_weights, gates, candidate, difference, features = (
                        saved[k][index].read(i) for index in (0, 2, 4, 5, 6, 7))
                    update, reset = tf.split(gates, 2, axis=1)
                    # s_i = s_{i-1} + z_i ∘ (s̃_i - s_{i-1})
                    d_state = d_next[k] + d_state_arrays[k].read(i)
                    d_candidate = d_state * update
                    # s̃_i = tanh(W E y_{i-1} + U [r_i ∘ s_{i-1}] + C c_i)
                    d_candidate_input = tanh_grad(candidate, d_candidate)
                    d_reset_state = tf.matmul(d_candidate_input, transposed[0])
                    # [z_i, r_i] = σ(W_{z,r} E y_{i-1} + U_{z,r} s_{i-1} + C_{z,r} c_i)
                    d_gates = sigmoid_grad(gates, tf.concat(
                        [d_state * difference, d_reset_state * state], axis=1))
                    d_projected = tf.concat([d_gates, d_candidate_input], axis=1)
                    # c_i = Σ_j α_ij h_j
                    d_context = tf.matmul(d_projected, transposed[1]) + d_context_arrays[
                        k].read(i)
                    d_weight = tf.matmul(d_context[:, None, :], transposed_values[k])[:, 0]
                    if d_weight_arrays is not None:
                        d_weight += d_weight_arrays[k].read(i)
                    # α_i = softmax(e_i) (0 at masked positions, where α_ij = 0)
                    d_scores = step_weights * (d_weight - tf.reduce_sum(
                        step_weights * d_weight, axis=1, keepdims=True))
                    # e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)
                    d_features = tanh_grad(features, d_scores[:, :, None] * score_vector)
                    d_projected_state = tf.concat(
                        [tf.reduce_sum(d_features, axis=1), d_gates], axis=1)
                    d_previous = (d_state - d_candidate + d_reset_state * reset
                                  + tf.matmul(d_projected_state, transposed[2]))
                    d_features += d_keys[k]
                    for x, y in ((d_previous, d_next[k]), (d_features, d_keys[k])):
                        x.set_shape(y.shape)  # the loop's shapes (an empty part: 0 rows)
                    results[0].append(d_previous)
                    results[1].append(d_features)
                    results[2].append(d_score_vector[k] + tf.matmul(
                        tf.reshape(d_scores, [1, -1]),
                        tf.reshape(features, [-1, attention_units])))
                    results[3].append(tuple(
                        array.write(i, x) for array, x in zip(
                            written[k], (d_projected, d_context, d_projected_state))))
                return (i,) + tuple(tuple(result) for result in results)

            # d_projected, d_context, d_projected_state of each step, and a last element
            # (zeros) so that they stack also when there is no step
            written = tuple(
                tuple(step_array(dtype, steps + 1, last=tf.zeros([sizes[k], size], dtype))
                      for size in (3 * units, context_dim, attention_units + 2 * units))
                for k in range(shards))
            _, d_initial_state, d_keys, d_score_vector, written = tf.while_loop(
                lambda j, *_: j > 0, backward_step,
                (steps, tuple(tf.zeros_like(x) for x in part_states),
                 tuple(tf.zeros_like(x) for x in part_keys),
                 tuple(tf.zeros([1, attention_units], dtype) for _ in range(shards)),
                 written))
            d_projected, d_contexts, d_projected_states = (
                tf.concat([written[k][j].stack() for k in range(shards)], axis=1)[:steps]
                for j in range(3))

            return [
                d_projected,
                tf.concat(d_keys, axis=0),
                # Σ_i α_ij d c_i: [batch, src_len, steps] x [batch, steps, context_dim]
                tf.matmul(tf.transpose(weights, [1, 2, 0]),
                          tf.transpose(d_contexts, [1, 0, 2])),
                tf.concat(d_initial_state, axis=0),
                summed_product(previous_states, d_projected_states),  # [W_a, U_z, U_r]
                summed_product(contexts, d_projected),  # C
                summed_product(reset_states, d_projected[..., 2 * units:]),  # U
                tf.add_n(d_score_vector)[0],  # v_a
            ]

        return (states, contexts, weights), grad

    states, contexts, weights = loop(
        projected, keys, annotations, initial_state, state_kernel, context_kernel,
        candidate_kernel, score_vector)
    return tuple(tf.transpose(x, [1, 0, 2]) for x in (states, contexts, weights))
