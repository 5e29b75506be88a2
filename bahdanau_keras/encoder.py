"""The encoder: embedding and a bidirectional GRU (Bahdanau et al. 2014, Section 3.2).

`Encoder.call` is the paper's encoder as Keras layers; training runs the same GRUs as
`kernels.bidirectional_gru` where that kernel applies (see `implementation`).
"""

import keras
import tensorflow as tf

from bahdanau_keras.kernels import bidirectional_gru, use_kernel, validate_implementation
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
        implementation: `"auto"`, `"reference"` or `"fused"`: the GRUs as the Keras
            `Bidirectional(GRU)` layer (`"reference"`) or as `kernels.bidirectional_gru`, the
            same function in one loop with its backward pass written out (`"fused"`, which
            needs float32 computation). `"auto"` takes the kernel where it applies on a
            machine without a GPU (where it was measured).

    Call arguments:
        tokens: int `[batch, src_len]`, padded with `PAD_ID` (0) at the end.
        training: Python bool, enables dropout (and, with the fused GRUs, their
            written-out backward pass).

    Returns:
        `(annotations, mask, initial_state)`: `[batch, src_len, 2 * units]`, bool
        `[batch, src_len]` (`True` at real tokens) and `[batch, decoder_units]`.
    """

    def __init__(self, vocab_size, embedding_dim=256, units=256, decoder_units=512,
                 dropout=0.0, implementation="auto", **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.decoder_units = decoder_units
        self.dropout = dropout
        self.implementation = validate_implementation(implementation)
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
        embedded = self.dropout_layer(self.embedding(tokens), training=training)  # E x_j
        if use_kernel(self.implementation, bidirectional_gru.unsupported(self), self.name):
            # The same GRUs in one loop, with their backward pass written out for training
            # (kernels/bidirectional_gru.py).
            annotations, backward_state = bidirectional_gru.bidirectional_gru(
                self, embedded, mask, written_gradient=bool(training))
        else:
            # h_j = [→h_j; ←h_j]: [batch, src_len, 2 * units] (zeros at padding). The backward
            # GRU reads x_Tx ... x_1: its final state is ←h_1.
            annotations, _, backward_state = self.bidirectional_gru(embedded, mask=mask)
        annotations = self.dropout_layer(annotations, training=training)
        # s_0 = tanh(W_s ←h_1): [batch, decoder_units]
        initial_state = self.initial_state_dense(backward_state)
        return annotations, mask, initial_state

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "decoder_units": self.decoder_units,
            "dropout": self.dropout,
            "implementation": self.implementation,
        }
