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

`Decoder.cell` computes the first five equations (one step), `Decoder.time_loop` runs it over
the target, and `Decoder.output_logits` computes the last two. Training runs the same loop as
`kernels.decoder_loop` where that kernel applies (see `implementation`).

Without attention (`attention=None`) the decoder is the paper's baseline RNNencdec (Cho et al.,
2014, arXiv:1406.1078): one context vector for the whole sentence, the encoder's summary
`c = [→h_{T_x}; ←h_1]` (the last states of its two GRUs), read at every step where `c_i` is
read above, `c_i = c`.
"""

import keras
import tensorflow as tf
from keras import ops

from bahdanau_keras.attention import BahdanauAttention
from bahdanau_keras.config import ATTENTIONS
from bahdanau_keras.kernels import decoder_loop, use_kernel, validate_implementation, validate_parts


def validate_attention(attention):
    """Returns `attention` if it is one of `ATTENTIONS` (`"bahdanau"` or `None`); raises a
    `ValueError` that names what it received."""
    if not (attention is None or isinstance(attention, str)) or attention not in ATTENTIONS:
        raise ValueError(
            "`attention` must be 'bahdanau' (Bahdanau attention) or None (no attention: the "
            f"encoder's summary is the context of every step). Received: attention={attention!r}")
    return attention


@keras.saving.register_keras_serializable(package="bahdanau_keras")
class Decoder(keras.Model):
    """Attention decoder whose time loop runs inside the graph.

    The calculation follows the steps:

    1. Embed the teacher-forced inputs, `E y_{i-1}`, and project them for the gates and the
       candidate, `[W_z; W_r; W] E y_{i-1}` (they do not depend on the state: once, before
       the loop); project the annotations into the attention's keys, `U_a h_j` (once per
       sentence, `project_keys`).
    2. Loop over the target steps (`time_loop`), each one `cell`: attention from `s_{i-1}`,
       then the GRU update to `s_i`.
    3. The deep output and the vocabulary projection (`output_logits`), after the loop.

    With `attention=None` (RNNencdec, the paper's baseline) step 1 computes the encoder's
    summary `c = [→h_{T_x}; ←h_1]` instead of the keys, and each `cell` reads it as its
    context `c_i = c`: the same vector at every step, without attention weights (`α_i` is
    returned as zeros, so that the outputs keep their shapes).

    Args:
        vocab_size: Target vocabulary size.
        embedding_dim: Size of the target embeddings `E y`.
        units: Size of the decoder state `s_i`.
        attention_units: Size of the alignment space of `BahdanauAttention` (unused without
            attention).
        readout_dim: Size of `t_i`; defaults to `embedding_dim`.
        maxout: Use the paper's maxout over pairs of `t̃_i` (otherwise `tanh`).
        tie_embeddings: Use the target embedding matrix as `W_o` (needs
            `readout_dim == embedding_dim`); saves `vocab_size * readout_dim` parameters.
        dropout: Dropout rate on the target embeddings and on `t_i` while training.
        normalize_attention: Weight-normalised attention (see `BahdanauAttention`).
        attention: `"bahdanau"` (the default: `BahdanauAttention`) or `None`: no attention,
            the context of every step is the encoder's summary `[→h_{T_x}; ←h_1]` (read from
            the annotations, which must then hold a forward and a backward half, in that
            order, and padding only at the end).
        implementation: `"auto"`, `"reference"` or `"fused"`: the step loop of `time_loop`
            as written here (`"reference"`), or `kernels.decoder_loop`, the same function
            with its backward pass written out (`"fused"`, which needs float32 computation
            and exactly `BahdanauAttention`: not without attention). `"auto"` takes the
            kernel where it applies on a
            machine without a GPU (where it was measured). A subclass that changes `cell`
            must use `"reference"`: the kernel holds its own copy of these equations.
        loop_shards: Positive int, the parts of the batch inside each step of the fused loop
            (2 suits a 2-core CPU; the reference ignores it).

    Call arguments:
        target_in: int `[batch, tgt_len]`, the teacher-forced inputs `y_{i-1}` (start token
            first, padded with 0).
        annotations: `[batch, src_len, value_dim]` from the encoder.
        source_mask: bool `[batch, src_len]`.
        initial_state: `[batch, units]`, `s_0`.
        training: Python bool.

    Returns:
        `(logits, attention_weights)`: `[batch, tgt_len, vocab_size]` and
        `[batch, tgt_len, src_len]` (zeros without attention).
    """

    def __init__(self, vocab_size, embedding_dim=256, units=512, attention_units=512,
                 readout_dim=None, maxout=True, tie_embeddings=True, dropout=0.0,
                 normalize_attention=False, implementation="auto", loop_shards=2,
                 attention="bahdanau", **kwargs):
        super().__init__(**kwargs)
        self.attention_type = validate_attention(attention)
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
        self.implementation = validate_implementation(implementation)
        self.loop_shards = validate_parts("loop_shards", loop_shards)
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.attention = None  # RNNencdec: no attention layer
        if attention == "bahdanau":
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
        if self.attention is None and context_dim % 2:
            raise ValueError(
                "Without attention the context is the summary [→h_{T_x}; ←h_1] of a "
                "bidirectional encoder: the annotations must have an even number of features "
                f"(a forward half, then a backward half). Received: {context_dim}")
        self.context_dim = context_dim
        self.embedding.build(target_in_shape)
        if self.attention is not None:
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
        """`[W_z; W_r; W] E y + b`: `[..., 3 * units]`, computed for every step at once."""
        # A 2-D product: a [batch, tgt_len, emb] x [emb, 3 units] batch product would compute
        # its kernel gradient as one [emb, 3 units] product per sentence, then sum them.
        flat = tf.reshape(embedded, [-1, self.embedding_dim])  # [batch * tgt_len, emb]
        projected = tf.matmul(flat, self._weight(self.input_kernel)) + self._weight(
            self.input_bias)
        return tf.reshape(projected, tf.concat([tf.shape(embedded)[:-1], [3 * self.units]], 0))

    def project_keys(self, annotations, source_mask=None):
        """What every step reads of the source and that no step changes, computed once per
        sentence: the attention's keys `U_a h_j` (`[batch, src_len, attention_units]`), or
        without attention the encoder's summary `c` (`[batch, context_dim]`,
        `source_summary`). `cell` takes it as its `keys`."""
        if self.attention is None:
            return self.source_summary(annotations, source_mask)
        return self.attention.project_keys(annotations)

    @staticmethod
    def source_summary(annotations, source_mask=None):
        """The encoder's summary of each sentence, `c = [→h_{T_x}; ←h_1]`, `[batch, context_dim]`:
        the context of every step without attention.

        The forward GRU's state at the last real source position `T_x` and the backward GRU's
        state at the first (`←h_1`, which has read the whole sentence backwards): the first
        half of the annotation `h_{T_x}` and the second half of `h_1`.

        Args:
            annotations: `[batch, src_len, context_dim]`, `h_j = [→h_j; ←h_j]`, padded at the
                end.
            source_mask: bool `[batch, src_len]` (`True` at real tokens), or `None` (every
                position is real).
        """
        half = annotations.shape[-1] // 2  # the units of each direction
        if source_mask is None:
            lengths = tf.fill([tf.shape(annotations)[0]], tf.shape(annotations)[1])
        else:
            lengths = tf.reduce_sum(tf.cast(source_mask, tf.int32), axis=1)  # T_x: [batch]
        last = tf.maximum(lengths - 1, 0)  # the position of x_{T_x} (0 for an empty source)
        forward_last = tf.gather(annotations[:, :, :half], last, batch_dims=1)  # →h_{T_x}
        backward_first = annotations[:, 0, half:]  # ←h_1
        return tf.concat([forward_last, backward_first], axis=-1)  # c: [batch, context_dim]

    def loop_kernels(self):
        """`(C, [U_z; U_r], U)`: the kernels `cell` multiplies by, split once before a loop
        over the steps (a slice taken at every step would copy `U` at every step, and its
        gradient would be a full-size `[units, 3 units]` tensor at every step)."""
        # [U_z; U_r; U] -> [U_z; U_r], U. tf.split, not two slices: its gradient is one
        # concatenation, where each slice's would be a zero-filled full-size kernel.
        recurrent_gates, recurrent_candidate = tf.split(
            self._weight(self.recurrent_kernel), [2 * self.units, self.units], axis=1)
        return self._weight(self.context_kernel), recurrent_gates, recurrent_candidate

    def cell(self, projected_input, state, keys, annotations, source_mask, kernels=None):
        """One decoder step, the equations of Appendix A.2.2, from `s_{i-1}`.

        Args:
            projected_input: `[batch, 3 units]`, `[W_z; W_r; W] E y_{i-1} + b`
                (`project_inputs`).
            state: `[batch, units]`, `s_{i-1}`.
            keys: `project_keys(annotations, source_mask)`: `[batch, src_len,
                attention_units]`, `U_a h_j`; without attention the summary `c`,
                `[batch, context_dim]`.
            annotations: `[batch, src_len, context_dim]`, `h_j`.
            source_mask: bool `[batch, src_len]` or `None`.
            kernels: `loop_kernels()`, computed once by a loop over the steps (computed here
                when `None`).

        Returns:
            `(s_i, c_i, α_i)`: `[batch, units]`, `[batch, context_dim]`, `[batch, src_len]`
            (`α_i` zeros without attention).
        """
        context_kernel, recurrent_gates, recurrent_candidate = kernels or self.loop_kernels()
        units = self.units
        if self.attention is None:
            # RNNencdec: c_i = c = [→h_{T_x}; ←h_1] at every step (computed once, `keys`);
            # no α_i, zeros in its place.
            context = keys
            attention_weights = tf.zeros(tf.shape(annotations)[:2], context.dtype)
        else:
            # c_i = Σ_j α_ij h_j, α_ij = softmax_j(v_a^T tanh(W_a s_{i-1} + U_a h_j))
            context, attention_weights = self.attention(
                state, annotations, mask=source_mask, keys=keys)
        # [W_{z,r} E y_{i-1} + C_{z,r} c_i, W E y_{i-1} + C c_i]: [batch, 2 units], [batch, units]
        # (keras.ops.split cuts at indices, here after the 2 units of the gates)
        gates_input, candidate_input = ops.split(
            projected_input + ops.matmul(context, context_kernel), [2 * units], axis=-1)
        # z_i = σ(W_z E y_{i-1} + U_z s_{i-1} + C_z c_i),
        # r_i = σ(W_r E y_{i-1} + U_r s_{i-1} + C_r c_i)
        update_gate, reset_gate = ops.split(
            ops.sigmoid(gates_input + ops.matmul(state, recurrent_gates)), 2, axis=-1)
        # s̃_i = tanh(W E y_{i-1} + U [r_i ∘ s_{i-1}] + C c_i)
        candidate = ops.tanh(
            candidate_input + ops.matmul(reset_gate * state, recurrent_candidate))
        # s_i = (1 - z_i) ∘ s_{i-1} + z_i ∘ s̃_i
        new_state = (1.0 - update_gate) * state + update_gate * candidate
        return new_state, context, attention_weights

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

    def teacher_forcing(self, target_in, annotations, source_mask, initial_state, training=None):
        """Run the whole target sequence through the step loop (steps 1 and 2).

        Returns `(states, embedded, contexts, attention_weights)`, each batch-major:
        `[batch, tgt_len, units]`, `[batch, tgt_len, embedding_dim]`,
        `[batch, tgt_len, context_dim]`, `[batch, tgt_len, src_len]`.
        """
        embedded = self.embed(target_in, training=training)  # E y_{i-1}: [batch, tgt_len, emb]
        annotations = tf.cast(annotations, self.compute_dtype)
        initial_state = tf.cast(initial_state, self.compute_dtype)
        projected = self.project_inputs(embedded)  # [batch, tgt_len, 3 units]
        # U_a h_j: [batch, src_len, att]; without attention, c: [batch, context_dim]
        keys = self.project_keys(annotations, source_mask)
        states, contexts, weights = self.time_loop(
            projected, keys, annotations, source_mask, initial_state)
        return states, embedded, contexts, weights

    def time_loop(self, projected, keys, annotations, source_mask, initial_state):
        """`cell` at every target step `i = 1 .. tgt_len`, from `s_0`, in one in-graph loop.

        Args:
            projected: `[batch, tgt_len, 3 units]`, `project_inputs` of every step.
            keys, annotations, source_mask: as for `cell`.
            initial_state: `[batch, units]`, `s_0`.

        Returns:
            `(states, contexts, attention_weights)`: `[batch, tgt_len, units]`,
            `[batch, tgt_len, context_dim]`, `[batch, tgt_len, src_len]`.
        """
        if use_kernel(self.implementation, decoder_loop.unsupported(self), self.name):
            # The same function, with its backward pass written out (kernels/decoder_loop.py).
            return decoder_loop.time_loop(self, projected, keys, annotations, source_mask,
                                          initial_state, shards=self.loop_shards)
        kernels = self.loop_kernels()

        def step(previous, projected_input):
            state = previous[0]  # s_{i-1}
            return self.cell(projected_input, state, keys, annotations, source_mask, kernels)

        batch = tf.shape(annotations)[0]
        initializer = (
            initial_state,  # s_0
            tf.zeros([batch, tf.shape(annotations)[2]], annotations.dtype),  # (c_0, unused)
            tf.zeros([batch, tf.shape(annotations)[1]], annotations.dtype),  # (α_0, unused)
        )
        # tf.scan runs over the leading axis: time-major [tgt_len, batch, ...] in and out.
        outputs = tf.scan(step, tf.transpose(projected, [1, 0, 2]), initializer=initializer)
        return tuple(tf.transpose(x, [1, 0, 2]) for x in outputs)

    def call(self, target_in, annotations, source_mask=None, initial_state=None, training=None):
        if initial_state is None:
            initial_state = tf.zeros([tf.shape(annotations)[0], self.units], annotations.dtype)
        states, embedded, contexts, weights = self.teacher_forcing(
            target_in, annotations, source_mask, initial_state, training=training)
        return self.output_logits(states, embedded, contexts, training=training), weights

    # -- one step, for search ------------------------------------------------------------------

    def step(self, previous_tokens, state, keys, annotations, source_mask, kernels=None):
        """One decoding step from the previous output tokens `[batch]`; `keys` is
        `project_keys(annotations, source_mask)`. A search loop computes it and
        `kernels=self.loop_kernels()` once, before the loop.

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
            "implementation": self.implementation,
            "loop_shards": self.loop_shards,
            "attention": self.attention_type,
        }
