"""The decoder's step for search (greedy, sampling, beam search), its products fused.

The reference is `Decoder.step`: `Decoder.cell` (the equations of Appendix A.2.2 of
arXiv:1409.0473, with `BahdanauAttention.call` for `c_i` and `α_i`) and
`Decoder.output_logits`, called by the searches of `decode.py` at every output step, with the
encoder's outputs repeated for every hypothesis of a beam. `DecodingStep` here computes the
same logits, states and attention weights (`tests/test_kernels_decoding.py`) with fewer and
larger operations:

- Every product with a weight that does not change during the search is prepared once per
  search, before its loop: `W_a s_{i-1}` and `[U_z; U_r] s_{i-1}` are one product with
  `[W_a, U_z, U_r]`; `[C_z; C_r; C] c_i` and the deep output's `C_o c_i` one product with
  `[C_z; C_r; C, C_o]`; likewise `[W_z; W_r; W, V_o]` for `E y_{i-1}`, with both biases; the
  deep output's concatenation `[s_i; E y_{i-1}; c_i]` is gone; and `W_o = E^T` is transposed
  once (a product with `transpose_b=True` ran about 1.7x slower at these sizes).
- The hypotheses of one sentence read the same annotations, keys and mask: they stay
  `[batch, src_len, ...]`, never repeated or reordered, and the queries of a sentence's beam
  broadcast against them (`[batch, beam, src_len, attention_units]`); `c_i` is one batched
  product per sentence, `[beam, src_len] x [src_len, context_dim]`.

The step is a copy of the reference's equations (that is what a fused kernel is): a change to
`Decoder.cell`, `Decoder.output_logits` or `BahdanauAttention`'s score or softmax must be made
here too, and the tests say when the two differ.
"""

import tensorflow as tf

from bahdanau_keras.attention import BahdanauAttention
from bahdanau_keras.kernels import float32_only


def unsupported(decoder):
    """Why `DecodingStep` cannot compute `decoder`'s step (a phrase), or `None` where it can:
    it needs float32 computation and an attention layer that is exactly `BahdanauAttention`
    (its equations are written out here)."""
    reason = float32_only(decoder, "fused decoding step")
    if reason is None and type(decoder.attention) is not BahdanauAttention:
        reason = ("the fused decoding step writes out BahdanauAttention's equations, and this "
                  f"decoder's attention layer is a {type(decoder.attention).__name__}")
    return reason


class DecodingStep:
    """`Decoder.step` for the searches, with its weights prepared once.

    Build it once per search, before the loop over output steps (it holds tensors of that
    search only, never state between calls); `prepare` the encoder's outputs once; then call
    it at every step. The search may drop sentences between steps (those that have ended):
    the prepared tensors are `[batch, ...]`, one row per sentence, and it passes the rows of
    the sentences it still decodes.

    The step's rows are `[sentences * beam_width]`, sentence-major: the `beam_width`
    hypotheses of sentence `b` (1 for greedy search) are rows `b * beam_width ...`.

    Args:
        decoder: The `Decoder` (`unsupported(decoder)` is `None`).
        logits_width: The width of the logits, `vocab_size` (the default) or more: the extra
            columns come from zero columns of `W_o` and a bias of `padding_logit`, added once
            here (a search that reads the logits in blocks pads them at no cost per step).
        padding_logit: The logit of the extra columns.

    Call arguments:
        previous_tokens: int32 `[sentences * beam_width]`, `y_{i-1}`.
        state: `[sentences * beam_width, units]`, `s_{i-1}`.
        sentences: What `prepare` returned, or its rows of the sentences being decoded (the
            same rows of every tensor, `tf.gather(x, rows)`).

    Returns:
        `(logits, new_state, attention_weights)`: `[sentences * beam_width, logits_width]`,
        `[sentences * beam_width, units]`, `[sentences * beam_width, src_len]`.
    """

    def __init__(self, decoder, logits_width=None, padding_logit=-1e9):
        reason = unsupported(decoder)
        if reason is not None:
            raise NotImplementedError(reason)
        self.decoder = decoder
        units, embedding_dim = decoder.units, decoder.embedding_dim
        attention = decoder.attention
        score_vector, score_bias = attention.score_weights()
        self.score_column = tf.convert_to_tensor(score_vector)[:, None]  # v_a: [att, 1]
        self.score_bias = None if score_bias is None else tf.convert_to_tensor(score_bias)
        self.attention_units = attention.units
        context_kernel, recurrent_gates, self.candidate_kernel = decoder.loop_kernels()
        # [W_a, U_z, U_r]: [units, att + 2 units]
        self.state_kernel = tf.concat(
            [tf.convert_to_tensor(attention.query_dense.kernel), recurrent_gates], axis=1)
        # The deep output's kernel, by the rows of [s_i; E y_{i-1}; c_i]: U_o, V_o, C_o.
        readout_kernel = tf.convert_to_tensor(decoder.readout_dense.kernel)
        readout_state, readout_input, readout_context = tf.split(
            readout_kernel, [units, embedding_dim, -1], axis=0)
        self.readout_state_kernel = readout_state  # U_o: [units, readout]
        self.readout_size = readout_kernel.shape[-1]  # readout_dim (* 2 with maxout)
        # [W_z; W_r; W, V_o]: [emb, 3 units + readout], with both biases
        self.input_kernel = tf.concat(
            [tf.convert_to_tensor(decoder.input_kernel), readout_input], axis=1)
        self.input_bias = tf.concat(
            [tf.convert_to_tensor(decoder.input_bias),
             tf.convert_to_tensor(decoder.readout_dense.bias)], axis=0)
        # [C_z; C_r; C, C_o]: [context_dim, 3 units + readout]
        self.context_kernel = tf.concat([context_kernel, readout_context], axis=1)
        self.embeddings = tf.convert_to_tensor(decoder.embedding.embeddings)  # E: [vocab, emb]
        if decoder.tie_embeddings:
            # W_o = E^T, transposed once: [readout_dim, vocab]
            self.output_kernel = tf.transpose(self.embeddings)
            self.output_bias = tf.convert_to_tensor(decoder.output_bias)
        else:
            self.output_kernel = tf.convert_to_tensor(decoder.output_dense.kernel)
            self.output_bias = tf.convert_to_tensor(decoder.output_dense.bias)
        padding = 0 if logits_width is None else logits_width - decoder.vocab_size
        if padding < 0:
            raise ValueError(f"`logits_width` must be at least the vocabulary size "
                             f"{decoder.vocab_size}. Received: logits_width={logits_width}")
        if padding:
            self.output_kernel = tf.pad(self.output_kernel, [[0, 0], [0, padding]])
            self.output_bias = tf.pad(self.output_bias, [[0, padding]],
                                      constant_values=padding_logit)

    def prepare(self, annotations, source_mask, keys):
        """The encoder's outputs as the step reads them, one row per sentence: a tuple
        `(keys, annotations, mask, mask_values)`, `[batch, 1, src_len, att]` (with the score
        bias of a normalised attention added once), `[batch, src_len, context_dim]`, bool and
        float32 `[batch, 1, src_len]`."""
        keys = tf.convert_to_tensor(keys)
        if self.score_bias is not None:
            keys = keys + self.score_bias  # b, inside the tanh: added once
        mask = tf.cast(source_mask, tf.bool)[:, None, :]
        return (keys[:, None], tf.convert_to_tensor(annotations), mask,
                tf.cast(mask, tf.float32))

    def __call__(self, previous_tokens, state, sentences):
        decoder = self.decoder
        keys, annotations, mask, mask_values = sentences
        units, attention_units = decoder.units, self.attention_units
        batch, src_len = tf.shape(annotations)[0], tf.shape(annotations)[1]
        embedded = tf.gather(self.embeddings, previous_tokens)  # E y_{i-1}: [rows, emb]
        # W_a s_{i-1}, [U_z; U_r] s_{i-1}: [rows, att], [rows, 2 units]
        query, recurrent = tf.split(
            tf.matmul(state, self.state_kernel), [attention_units, 2 * units], axis=1)
        # e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j): [batch, beam, src_len, att] -> [b, beam, s]
        features = tf.tanh(tf.reshape(query, [batch, -1, 1, attention_units]) + keys)
        scores = tf.reshape(
            tf.matmul(tf.reshape(features, [-1, attention_units]), self.score_column),
            [batch, -1, src_len])
        # α_ij = softmax_j(e_ij) over the real positions, exactly 0 at padding (eq. 6)
        weights = tf.nn.softmax(tf.where(mask, scores, tf.float32.min), axis=-1) * mask_values
        # c_i = Σ_j α_ij h_j: [batch, beam, src_len] x [batch, src_len, context_dim]
        context = tf.reshape(tf.matmul(weights, annotations),
                             [-1, annotations.shape[-1]])  # [rows, context_dim]
        # [W_{z,r} E y_{i-1} + C_{z,r} c_i, W E y_{i-1} + C c_i, V_o E y_{i-1} + C_o c_i],
        # with the biases
        gates_input, candidate_input, readout_input = tf.split(
            tf.matmul(embedded, self.input_kernel) + self.input_bias
            + tf.matmul(context, self.context_kernel),
            [2 * units, units, self.readout_size], axis=1)
        # z_i = σ(W_z E y_{i-1} + U_z s_{i-1} + C_z c_i),
        # r_i = σ(W_r E y_{i-1} + U_r s_{i-1} + C_r c_i)
        update_gate, reset_gate = tf.split(tf.sigmoid(gates_input + recurrent), 2, axis=1)
        # s̃_i = tanh(W E y_{i-1} + U [r_i ∘ s_{i-1}] + C c_i)
        candidate = tf.tanh(
            candidate_input + tf.matmul(reset_gate * state, self.candidate_kernel))
        # s_i = (1 - z_i) ∘ s_{i-1} + z_i ∘ s̃_i
        new_state = (1.0 - update_gate) * state + update_gate * candidate
        # t̃_i = U_o s_i + V_o E y_{i-1} + C_o c_i
        readout = tf.matmul(new_state, self.readout_state_kernel) + readout_input
        if decoder.maxout:
            # t_i,k = max(t̃_i,2k-1, t̃_i,2k)
            readout = tf.reduce_max(
                tf.reshape(readout, [-1, decoder.readout_dim, 2]), axis=-1)
        else:
            readout = tf.tanh(readout)
        # W_o t_i: [rows, logits_width]
        logits = tf.matmul(readout, self.output_kernel) + self.output_bias
        return logits, new_state, tf.reshape(weights, [-1, src_len])
