"""The encoder: embedding and a bidirectional GRU (Bahdanau et al. 2014, Section 3.2)."""

import keras
import tensorflow as tf

from bahdanau_keras.text import PAD_ID


@keras.saving.register_keras_serializable(package="bahdanau_keras")
class Encoder(keras.Model):
    """Reads the source sentence into annotations `h_j = [→h_j; ←h_j]`.

    The calculation follows the steps:

    1. Embed the source ids, `E x_j`: `[batch, src_len, embedding_dim]`.
    2. Run a forward and a backward GRU over the real (unpadded) tokens; the annotation of
       position `j` concatenates both states: `[batch, src_len, 2 * units]`.
    3. Initialise the decoder from the backward GRU's state at the first source word,
       `s_0 = tanh(W_s ←h_1)` (Appendix A.2.2): `[batch, decoder_units]`.

    Args:
        vocab_size: Source vocabulary size.
        embedding_dim: Size of the source embeddings.
        units: Size of each GRU direction; the annotations have `2 * units` features.
        decoder_units: Size of the decoder state that `s_0` initialises.
        dropout: Dropout rate on the embeddings and on the annotations while training.

    Call arguments:
        tokens: int `[batch, src_len]`, padded with `PAD_ID` (0) at the end.
        training: Python bool, enables dropout.

    Returns:
        `(annotations, mask, initial_state)`: `[batch, src_len, 2 * units]`, bool
        `[batch, src_len]` (`True` at real tokens) and `[batch, decoder_units]`.
    """

    def __init__(self, vocab_size, embedding_dim=256, units=256, decoder_units=512,
                 dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.decoder_units = decoder_units
        self.dropout = dropout
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.bidirectional_gru = keras.layers.Bidirectional(
            # A fixed name: otherwise Keras numbers it by how many GRUs the process made before
            # (`forward_gru_3/...`), and the weights' paths differ between identical models.
            keras.layers.GRU(units, return_sequences=True, return_state=True, name="gru"),
            merge_mode="concat", name="bidirectional_gru")
        self.initial_state_dense = keras.layers.Dense(
            decoder_units, activation="tanh", name="initial_state_dense")  # W_s
        self.dropout_layer = keras.layers.Dropout(dropout)

    def build(self, tokens_shape):
        self.embedding.build(tokens_shape)
        self.bidirectional_gru.build(tuple(tokens_shape) + (self.embedding_dim,))
        self.initial_state_dense.build((None, self.units))

    def call(self, tokens, training=None):
        tokens = tf.convert_to_tensor(tokens)
        mask = tf.not_equal(tokens, PAD_ID)  # [batch, src_len]
        embedded = self.dropout_layer(self.embedding(tokens), training=training)
        # h_j = [→h_j; ←h_j]: [batch, src_len, 2 * units]; ←h_1 is the backward final state.
        annotations, backward_state = self.run_gru(embedded, mask)
        annotations = self.dropout_layer(annotations, training=training)
        # s_0 = tanh(W_s ←h_1): [batch, decoder_units]
        initial_state = self.initial_state_dense(backward_state)
        return annotations, mask, initial_state

    def run_gru(self, embedded, mask):
        """Both GRU directions over `embedded` `[batch, src_len, embedding_dim]`, in one loop.

        The same function as `self.bidirectional_gru(embedded, mask=mask)` (Keras' GRU with
        `reset_after=True`, whose weights it reads), computed faster: the input projections of
        both directions are one product before the loop (Keras multiplies each step's inputs
        inside its loop), and step `t` of the loop advances the forward GRU at position `t`
        and the backward GRU at position `src_len - 1 - t`. At padding a direction keeps its
        state (the backward one therefore starts from zeros at the last real token) and the
        annotations are zeros.

        Returns `(annotations, backward_state)`: `[batch, src_len, 2 * units]` and ←h_1
        `[batch, units]`.
        """
        units = self.units
        dtype = self.compute_dtype
        embedded = tf.cast(embedded, dtype)
        cells = (self.bidirectional_gru.forward_layer.cell,
                 self.bidirectional_gru.backward_layer.cell)
        # [W_z W_r W_h] of both directions: [embedding_dim, 6 units]; biases [2, 3 units] each,
        # row 0 for the input and row 1 for the recurrent product (Keras' reset_after layout).
        kernel = tf.cast(tf.concat([cell.kernel for cell in cells], axis=1), dtype)
        input_bias = tf.cast(tf.concat([cell.bias[0] for cell in cells], axis=0), dtype)
        flat = tf.reshape(embedded, [-1, self.embedding_dim])
        projected = tf.reshape(tf.matmul(flat, kernel) + input_bias,
                               tf.concat([tf.shape(embedded)[:2], [6 * units]], axis=0))
        projected = tf.transpose(projected, [1, 0, 2])  # time-major [src_len, batch, 6 units]
        forward_input, backward_input = tf.split(projected, 2, axis=-1)
        time_mask = tf.transpose(mask)[:, :, tf.newaxis]  # [src_len, batch, 1]
        recurrent = [(tf.cast(cell.recurrent_kernel, dtype), tf.cast(cell.bias[1], dtype))
                     for cell in cells]

        def gru(inputs, state, real, recurrent_kernel, recurrent_bias):
            x_z, x_r, x_h = tf.split(inputs, 3, axis=-1)
            inner = tf.matmul(state, recurrent_kernel) + recurrent_bias
            h_z, h_r, h_h = tf.split(inner, 3, axis=-1)
            update = tf.sigmoid(x_z + h_z)
            reset = tf.sigmoid(x_r + h_r)
            candidate = tf.tanh(x_h + reset * h_h)
            new_state = update * state + (1.0 - update) * candidate
            return tf.where(real, new_state, state)

        def step(carry, elems):
            forward_state, backward_state = carry
            forward_x, backward_x, forward_real, backward_real = elems
            return (gru(forward_x, forward_state, forward_real, *recurrent[0]),
                    gru(backward_x, backward_state, backward_real, *recurrent[1]))

        zeros = tf.zeros([tf.shape(embedded)[0], units], dtype)
        forward_states, backward_states = tf.scan(
            step, (forward_input, tf.reverse(backward_input, [0]), time_mask,
                   tf.reverse(time_mask, [0])),
            initializer=(zeros, zeros))
        backward_state = backward_states[-1]  # ←h_1: the last step read position 0
        annotations = tf.concat([forward_states, tf.reverse(backward_states, [0])], axis=-1)
        annotations = tf.where(time_mask, annotations, tf.zeros_like(annotations))
        return tf.transpose(annotations, [1, 0, 2]), backward_state

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "decoder_units": self.decoder_units,
            "dropout": self.dropout,
        }
