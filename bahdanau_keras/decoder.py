"""The decoder: a GRU conditioned on Bahdanau attention, with the paper's deep output.

Appendix A.2.2 of arXiv:1409.0473, for target step `i`:

    c_i  = Σ_j α_ij h_j,  α_ij = softmax_j(v_a^T tanh(W_a s_{i-1} + U_a h_j))
    z_i  = σ(W_z E y_{i-1} + U_z s_{i-1} + C_z c_i)
    r_i  = σ(W_r E y_{i-1} + U_r s_{i-1} + C_r c_i)
    s̃_i  = tanh(W E y_{i-1} + U [r_i ∘ s_{i-1}] + C c_i)
    s_i  = (1 - z_i) ∘ s_{i-1} + z_i ∘ s̃_i
    t̃_i  = U_o s_i + V_o E y_{i-1} + C_o c_i,   t_i = maxout(t̃_i)
    p(y_i | y_<i, x) = softmax(W_o t_i)

(The output layer reads `s_i`, as in eq. 4 of the paper, `p(y_i | ...) = g(y_{i-1}, s_i, c_i)`.)
"""

import keras
import tensorflow as tf

from bahdanau_keras.attention import BahdanauAttention
from bahdanau_keras.backprop import part_sizes, sigmoid_grad, step_array, summed_product, tanh_grad


@keras.saving.register_keras_serializable(package="bahdanau_keras")
class Decoder(keras.Model):
    """Attention decoder whose time loop runs inside the graph.

    Everything that does not depend on the step is computed outside the loop: the key
    projection `U_a h_j`, the embedding projections `W_{z,r} E y_{i-1}` and `W E y_{i-1}`, and
    (in `output_logits`) the deep output and the vocabulary projection. The loop itself only
    computes attention from `s_{i-1}` and the GRU update.

    Args:
        vocab_size: Target vocabulary size.
        embedding_dim: Size of the target embeddings `E y`.
        units: Size of the decoder state `s_i`.
        attention_units: Size of the alignment space of `BahdanauAttention`.
        readout_dim: Size of `t_i`; defaults to `embedding_dim`.
        maxout: Use the paper's maxout over pairs of `t̃_i` (otherwise `tanh`).
        tie_embeddings: Use the target embedding matrix as `W_o` (needs
            `readout_dim == embedding_dim`); saves `vocab_size * readout_dim` parameters.
        dropout: Dropout rate on the target embeddings and on `t_i` while training.
        normalize_attention: Weight-normalised attention (see `BahdanauAttention`).

    Call arguments:
        target_in: int `[batch, tgt_len]`, the teacher-forced inputs `y_{i-1}` (start token
            first, padded with 0).
        annotations: `[batch, src_len, value_dim]` from the encoder.
        source_mask: bool `[batch, src_len]`.
        initial_state: `[batch, units]`, `s_0`.
        training: Python bool.

    Returns:
        `(logits, attention_weights)`: `[batch, tgt_len, vocab_size]` and
        `[batch, tgt_len, src_len]`.
    """

    def __init__(self, vocab_size, embedding_dim=256, units=512, attention_units=512,
                 readout_dim=None, maxout=True, tie_embeddings=True, dropout=0.0,
                 normalize_attention=False, **kwargs):
        super().__init__(**kwargs)
        readout_dim = embedding_dim if readout_dim is None else readout_dim
        if tie_embeddings and readout_dim != embedding_dim:
            raise ValueError(
                "`tie_embeddings=True` needs `readout_dim == embedding_dim`. Received: "
                f"readout_dim={readout_dim}, embedding_dim={embedding_dim}")
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.attention_units = attention_units
        self.readout_dim = readout_dim
        self.maxout = maxout
        self.tie_embeddings = tie_embeddings
        self.dropout = dropout
        self.normalize_attention = normalize_attention
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.attention = BahdanauAttention(
            attention_units, normalize=normalize_attention, name="attention")
        # t̃_i = U_o s_i + V_o E y_{i-1} + C_o c_i, on the concatenation [s_i; E y_{i-1}; c_i].
        self.readout_dense = keras.layers.Dense(
            readout_dim * (2 if maxout else 1), name="readout_dense")
        if not tie_embeddings:
            self.output_dense = keras.layers.Dense(vocab_size, name="output_dense")  # W_o
        self.dropout_layer = keras.layers.Dropout(dropout)

    def build(self, target_in_shape, annotations_shape, source_mask_shape=None,
              initial_state_shape=None):
        # The argument names are those of `call` with `_shape` appended: Keras builds a layer
        # called before `build` by matching them.
        context_dim = annotations_shape[-1]
        self.context_dim = context_dim
        self.embedding.build(target_in_shape)
        self.attention.build((None, self.units), annotations_shape)
        # [W_z; W_r; W]: [embedding_dim, 3 * units], and its bias
        self.input_kernel = self.add_weight(
            name="input_kernel", shape=(self.embedding_dim, 3 * self.units),
            initializer="glorot_uniform")
        self.input_bias = self.add_weight(
            name="input_bias", shape=(3 * self.units,), initializer="zeros")
        # [C_z; C_r; C]: [context_dim, 3 * units]
        self.context_kernel = self.add_weight(
            name="context_kernel", shape=(context_dim, 3 * self.units),
            initializer="glorot_uniform")
        # [U_z; U_r; U]: [units, 3 * units]
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(self.units, 3 * self.units),
            initializer="orthogonal")
        self.readout_dense.build((None, self.units + self.embedding_dim + context_dim))
        if self.tie_embeddings:
            self.output_bias = self.add_weight(
                name="output_bias", shape=(self.vocab_size,), initializer="zeros")
        else:
            self.output_dense.build((None, self.readout_dim))

    # -- pieces shared by teacher forcing and by step-by-step decoding -------------------------

    def embed(self, tokens, training=None):
        """`E y`: `[..., embedding_dim]`."""
        return self.dropout_layer(self.embedding(tokens), training=training)

    def _weight(self, variable):
        """A raw weight in the compute dtype (float16/bfloat16 under mixed precision)."""
        return tf.cast(variable, self.compute_dtype)

    def project_inputs(self, embedded):
        """`[W_z; W_r; W] E y + b`: `[..., 3 * units]`, loop-invariant under teacher forcing."""
        # A 2-D product: a [batch, tgt_len, emb] x [emb, 3 units] batch product would compute
        # its kernel gradient as one [emb, 3 units] product per sentence, then sum them.
        flat = tf.reshape(embedded, [-1, self.embedding_dim])  # [batch * tgt_len, emb]
        projected = tf.matmul(flat, self._weight(self.input_kernel)) + self._weight(
            self.input_bias)
        return tf.reshape(projected, tf.concat([tf.shape(embedded)[:-1], [3 * self.units]], 0))

    def loop_kernels(self):
        """`(C, [U_z; U_r], U, W_a)`: the kernels the step reads, split once outside the time
        loop (a slice taken inside the loop has a full-size `[units, 3 units]` gradient at
        every step). `W_a` is `None` when the attention layer is not a `BahdanauAttention`
        (or overrides its `call` or `project_query`): the step then calls the layer, which
        projects the query itself."""
        # tf.split, not two slices: its gradient is one concatenation, where each slice's
        # gradient would be a zero-filled full-size kernel.
        recurrent_gates, recurrent_candidate = tf.split(
            self._weight(self.recurrent_kernel), [2 * self.units, self.units], axis=1)
        query_kernel = None
        kind = type(self.attention)
        if (issubclass(kind, BahdanauAttention) and kind.call is BahdanauAttention.call
                and kind.project_query is BahdanauAttention.project_query):
            query_kernel = self._weight(self.attention.query_dense.kernel)
        return (self._weight(self.context_kernel), recurrent_gates, recurrent_candidate,
                query_kernel)

    def cell(self, projected_input, state, keys, annotations, source_mask, kernels=None):
        """One decoder step from `s_{i-1}` (`state`, `[batch, units]`) and the projected input.

        Returns `(s_i, c_i, α_i)`: `[batch, units]`, `[batch, context_dim]`, `[batch, src_len]`.
        """
        return self._cell(projected_input, state, keys, annotations, source_mask,
                          kernels or self.loop_kernels())[:3]

    def _cell(self, projected_input, state, keys, annotations, source_mask, kernels,
              query_offset=None):
        """`cell`, also returning `r_i ∘ s_{i-1}`; `query_offset` (`[batch, attention_units]`)
        is added to `W_a s_{i-1}` (the training loop adds zeros there to read the gradient of
        `W_a s_{i-1}`)."""
        context_kernel, recurrent_gates, recurrent_candidate, query_kernel = kernels
        # c_i and α_i from s_{i-1} (keys = U_a h_j were computed once per source batch).
        if query_kernel is None:
            context, weights = self.attention(state, annotations, mask=source_mask, keys=keys)
        else:
            projected_query = tf.matmul(state, query_kernel)  # W_a s_{i-1}
            if query_offset is not None:
                projected_query += query_offset
            context, weights = self.attention.attend(
                projected_query, annotations, source_mask, keys)
        units = self.units
        # [batch, 3 units]
        gates_input = projected_input + tf.matmul(context, context_kernel)
        gates_input, candidate_input = tf.split(gates_input, [2 * units, units], axis=-1)
        # U_z s_{i-1}, U_r s_{i-1}: [batch, 2 units]
        gates = tf.sigmoid(gates_input + tf.matmul(state, recurrent_gates))
        update_gate, reset_gate = tf.split(gates, 2, axis=-1)  # z_i, r_i
        # s̃_i = tanh(W E y_{i-1} + U [r_i ∘ s_{i-1}] + C c_i)
        reset_state = reset_gate * state
        candidate = tf.tanh(candidate_input + tf.matmul(reset_state, recurrent_candidate))
        # s_i = (1 - z_i) ∘ s_{i-1} + z_i ∘ s̃_i, written s_{i-1} + z_i ∘ (s̃_i - s_{i-1}): one
        # operation fewer, forward and backward
        new_state = state + update_gate * (candidate - state)
        return new_state, context, weights, reset_state

    def output_logits(self, states, embedded, contexts, training=None):
        """Deep output: `t̃ = U_o s_i + V_o E y_{i-1} + C_o c_i`, `t = maxout(t̃)`, `W_o t`.

        Works on any leading shape, e.g. `[num_real_tokens, ...]` gathered after the loop.
        Returns logits `[..., vocab_size]`.
        """
        readout = self.readout_dense(tf.concat([states, embedded, contexts], axis=-1))
        if self.maxout:
            # t_i,k = max(t̃_i,2k-1, t̃_i,2k)
            shape = tf.concat([tf.shape(readout)[:-1], [self.readout_dim, 2]], axis=0)
            readout = tf.reduce_max(tf.reshape(readout, shape), axis=-1)
        else:
            readout = tf.tanh(readout)
        readout = self.dropout_layer(readout, training=training)
        if self.tie_embeddings:
            # W_o = E^T: [..., readout_dim] x [vocab, readout_dim]^T
            embeddings = self._weight(self.embedding.embeddings)
            return tf.matmul(readout, embeddings, transpose_b=True) + self._weight(self.output_bias)
        return self.output_dense(readout)

    # -- teacher forcing -----------------------------------------------------------------------

    def teacher_forcing(self, target_in, annotations, source_mask, initial_state, training=None,
                        loop_shards=1):
        """Run the whole target sequence through the step loop (`loop_shards`: the `shards`
        of `time_loop`).

        Returns `(states, embedded, contexts, attention_weights)`, each batch-major:
        `[batch, tgt_len, units]`, `[batch, tgt_len, embedding_dim]`,
        `[batch, tgt_len, context_dim]`, `[batch, tgt_len, src_len]`.
        """
        embedded = self.embed(target_in, training=training)  # E y_{i-1}: [batch, tgt_len, emb]
        annotations = tf.cast(annotations, self.compute_dtype)
        initial_state = tf.cast(initial_state, self.compute_dtype)
        projected = self.project_inputs(embedded)  # [batch, tgt_len, 3 units]
        keys = self.attention.project_keys(annotations)  # U_a h_j: [batch, src_len, att]
        states, contexts, weights = self.time_loop(
            tf.transpose(projected, [1, 0, 2]), keys, annotations, source_mask, initial_state,
            self.loop_kernels(), shards=loop_shards)
        states = tf.transpose(states, [1, 0, 2])
        contexts = tf.transpose(contexts, [1, 0, 2])
        weights = tf.transpose(weights, [1, 0, 2])
        return states, embedded, contexts, weights

    # Set to False to let TensorFlow differentiate the loop step by step (the tests' reference).
    hoist_weight_gradients = True
    # Set to False for TensorFlow's gradient of each step instead of `_fused_loop`'s.
    fused_loop = True

    def time_loop(self, projected, keys, annotations, source_mask, initial_state, kernels,
                  shards=1):
        """The step loop over time-major projected inputs `[tgt_len, batch, 3 units]`.

        One `tf.while_loop` in the graph. Returns time-major
        `(states, contexts, attention_weights)`.

        `shards` splits the batch into that many independent parts inside each step (the same
        results): TensorFlow's executor runs independent operations on different cores at
        once, and the steps themselves must run one after the other. With one thread per
        operation (`train.default_threads`), 2 parts suit a 2-core CPU; 1 suits a GPU. (The
        step-by-step reference gradient, `hoist_weight_gradients = False`, runs one part.)

        Its gradient is TensorFlow's, except for the kernels multiplied at every step (`C`,
        `[U_z; U_r]`, `U`, `W_a`): differentiated step by step, each would cost a
        `[units, batch] x [batch, 3 units]` product per step (a short inner dimension, slow),
        summed across steps. Instead the loop treats them as constants and their gradients
        are computed after it, each as one product over every step at once: the gradient of
        `x_i K` is `Σ_i x_i^T g_i`, where `g_i` is the gradient of the product's output, which
        for `C`, `[U_z; U_r]` and `U` is the gradient of the projected input it is added to,
        and for `W_a` that of a zero offset added to `W_a s_{i-1}`. That gradient (not the
        fused one below) can be taken once per forward pass: a persistent tape asking twice
        gets TensorFlow's error for a non-persistent one (set `hoist_weight_gradients = False`
        for that).

        With `BahdanauAttention` in float32 (and `fused_loop`, the default), the backward
        loop is written out as well (`_fused_loop`): the chain rule through one step by
        hand, on the values the forward loop kept, instead of TensorFlow's gradient of each
        operation (+11% training speed on this project's 2-core benchmark). The other
        cases (another attention layer, mixed precision, `fused_loop = False`) take
        TensorFlow's gradient of the step, with the kernels' gradients after the loop.
        """
        batch = tf.shape(annotations)[0]
        initializer = (
            initial_state,
            tf.zeros([batch, tf.shape(annotations)[2]], annotations.dtype),
            tf.zeros([batch, tf.shape(annotations)[1]], annotations.dtype),
            tf.zeros_like(initial_state),
        )
        if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
            raise ValueError(f"`shards` must be a positive integer. Received: {shards!r}")
        if not self.hoist_weight_gradients:
            def step(carry, projected_input):
                return self._cell(projected_input, carry[0], keys, annotations, source_mask,
                                  kernels)

            return tf.scan(step, projected, initializer=initializer)[:3]

        kind = type(self.attention)
        # The fused loop writes out `_cell`'s equations and those of BahdanauAttention's
        # `attend`: only when neither is overridden.
        if (self.fused_loop and kernels[3] is not None and projected.dtype == tf.float32
                and type(self)._cell is Decoder._cell
                and all(getattr(kind, name) is getattr(BahdanauAttention, name)
                        for name in ("attend", "score", "masked_softmax"))):
            return self._fused_loop(projected, keys, annotations, source_mask, initial_state,
                                    kernels, shards)
        units = self.units
        query_kernel = kernels[3]
        kernels = [kernel for kernel in kernels if kernel is not None]

        @tf.custom_gradient
        def loop(projected, keys, annotations, initial_state, *kernels):
            inputs = [projected, keys, annotations, initial_state]
            if query_kernel is not None:
                # Zeros added to W_a s_{i-1}: their gradient is that of W_a s_{i-1}.
                offsets = tf.zeros(tf.concat(
                    [tf.shape(projected)[:2], [query_kernel.shape[-1]]], axis=0), projected.dtype)
                inputs.append(offsets)
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                # The batch in `shards` parts, each its own chain of operations in the step.
                batch = tf.shape(initial_state)[0]
                sizes = part_sizes(batch, shards)
                parts = [tf.split(x, sizes, axis=0) for x in (keys, annotations)] + [
                    [None] * shards if source_mask is None else tf.split(source_mask, sizes)]
                parts = list(zip(*parts))  # [(keys, annotations, mask) of part k]

                def step(carry, elems):
                    constant = [tf.stop_gradient(kernel) for kernel in kernels]
                    if query_kernel is None:
                        constant.append(None)
                    # elems[k]: part k's (projected input,) or (projected input, query offset)
                    return tuple(self._cell(elems[k][0], carry[k][0], *parts[k], constant,
                                            *elems[k][1:]) for k in range(shards))

                # Time-major step inputs of each part.
                elems = [tf.split(projected, sizes, axis=1)]
                if query_kernel is not None:
                    elems.append(tf.split(offsets, sizes, axis=1))
                elems = tuple(zip(*elems))
                initial = tuple(zip(*(tf.split(x, sizes, axis=0)
                                      for x in (initial_state,) + initializer[1:])))
                results = tf.scan(step, elems, initializer=initial)
                states, contexts, weights, reset_states = (
                    tf.concat([part[j] for part in results], axis=1) for j in range(4))

            def grad(d_states, d_contexts, d_weights, variables=None):
                outputs = [states, contexts, weights]
                output_grads = [tf.zeros_like(x) if g is None else g
                                for x, g in zip(outputs, (d_states, d_contexts, d_weights))]
                sources = inputs + list(variables or [])
                grads = tape.gradient(outputs, sources, output_gradients=output_grads,
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
                d_projected = grads[0]  # [tgt_len, batch, 3 units]
                # s_{i-1} of every step (also when there is no step at all).
                previous_states = tf.concat([initial_state[None], states], axis=0)[:-1]

                kernel_grads = [
                    summed_product(contexts, d_projected),  # C
                    summed_product(previous_states, d_projected[..., :2 * units]),  # [U_z; U_r]
                    summed_product(reset_states, d_projected[..., 2 * units:]),  # U
                ]
                if query_kernel is not None:
                    kernel_grads.append(summed_product(previous_states, grads[4]))  # W_a
                input_grads = grads[:4] + kernel_grads
                if variables:
                    return input_grads, grads[len(inputs):]
                return input_grads

            return (states, contexts, weights), grad

        return loop(projected, keys, annotations, initial_state, *kernels)

    def _fused_loop(self, projected, keys, annotations, source_mask, initial_state, kernels,
                    shards):
        """`time_loop` for `BahdanauAttention` in float32, with a backward loop written out.

        The forward step is `_cell`'s equations with `W_a s_{i-1}` and `[U_z; U_r] s_{i-1}` as
        one product. The backward loop runs the chain rule through one step by hand (below),
        reading what the forward loop kept in its TensorArrays; the weights' gradients are
        summed after it, each in one product. Tested against TensorFlow's step-by-step
        gradient (`hoist_weight_gradients = False`).
        """
        context_kernel, recurrent_gates, candidate_kernel, query_kernel = kernels
        score_vector, score_bias = self.attention.score_weights()
        if score_bias is not None:
            keys = keys + score_bias  # b, inside the tanh: added to U_a h_j once
        # [W_a, U_z, U_r]: W_a s_{i-1} and [U_z; U_r] s_{i-1} in one product
        state_kernel = tf.concat([query_kernel, recurrent_gates], axis=1)
        units, attention_units = self.units, query_kernel.shape[-1]
        context_dim, dtype = annotations.shape[-1], projected.dtype

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
                    state, keys_k, values_k = states[k], part_keys[k], part_values[k]
                    projected_state = tf.matmul(state, state_kernel)
                    query, recurrent = tf.split(
                        projected_state, [attention_units, 2 * units], axis=1)
                    # e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)
                    features = tf.tanh(query[:, None, :] + keys_k)
                    scores = tf.reshape(
                        tf.matmul(tf.reshape(features, [-1, attention_units]), score_column),
                        [sizes[k], src_len])
                    if part_masks[k] is None:
                        weights = tf.nn.softmax(scores)
                    else:
                        weights = tf.nn.softmax(tf.where(
                            part_masks[k][0], scores, dtype.min)) * part_masks[k][1]
                    context = tf.matmul(weights[:, None, :], values_k)[:, 0]
                    gates_input, candidate_input = tf.split(
                        part_inputs[k].read(i) + tf.matmul(context, context_kernel),
                        [2 * units, units], axis=1)
                    gates = tf.sigmoid(gates_input + recurrent)
                    update, reset = tf.split(gates, 2, axis=1)
                    reset_state = reset * state
                    candidate = tf.tanh(candidate_input + tf.matmul(reset_state,
                                                                    candidate_kernel))
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

        return loop(projected, keys, annotations, initial_state, state_kernel, context_kernel,
                    candidate_kernel, score_vector)

    def call(self, target_in, annotations, source_mask=None, initial_state=None, training=None):
        if initial_state is None:
            initial_state = tf.zeros([tf.shape(annotations)[0], self.units], annotations.dtype)
        states, embedded, contexts, weights = self.teacher_forcing(
            target_in, annotations, source_mask, initial_state, training=training)
        return self.output_logits(states, embedded, contexts, training=training), weights

    # -- one step, for search ------------------------------------------------------------------

    def step(self, previous_tokens, state, keys, annotations, source_mask, kernels=None):
        """One decoding step from the previous output tokens `[batch]`. A search loop passes
        `kernels=self.loop_kernels()`, computed once before the loop.

        Returns `(logits, new_state, attention_weights)`: `[batch, vocab_size]`,
        `[batch, units]`, `[batch, src_len]`.
        """
        embedded = self.embed(previous_tokens)
        state = tf.cast(state, self.compute_dtype)
        new_state, context, weights = self.cell(
            self.project_inputs(embedded), state, keys, annotations, source_mask, kernels)
        return self.output_logits(new_state, embedded, context), new_state, weights

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "attention_units": self.attention_units,
            "readout_dim": self.readout_dim,
            "maxout": self.maxout,
            "tie_embeddings": self.tie_embeddings,
            "dropout": self.dropout,
            "normalize_attention": self.normalize_attention,
        }
