"""The translator: encoder and decoder together, and the masked training loss."""

import dataclasses

import keras
import tensorflow as tf

from bahdanau_keras.decoder import Decoder
from bahdanau_keras.encoder import Encoder
from bahdanau_keras.text import PAD_ID


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of a `Translator`; `ModelConfig(**json)` and `dataclasses.asdict` round-trip."""

    source_vocab_size: int  # source SentencePiece vocabulary size
    target_vocab_size: int  # target SentencePiece vocabulary size
    embedding_dim: int = 256  # source and target embedding size (and readout size)
    encoder_units: int = 256  # per GRU direction; annotations have twice this
    decoder_units: int = 512  # decoder state s_i
    attention_units: int = 512  # alignment space of v_a, W_a, U_a
    maxout: bool = True  # the paper's maxout deep output
    tie_embeddings: bool = True  # W_o shares the target embedding matrix
    dropout: float = 0.0  # embeddings, annotations and readout, in training only
    normalize_attention: bool = False  # weight-normalised v_a

    def __post_init__(self):
        for name in ("source_vocab_size", "target_vocab_size", "embedding_dim", "encoder_units",
                     "decoder_units", "attention_units"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}")
        for name in ("maxout", "tie_embeddings", "normalize_attention"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False. Received: {value!r}")
        # A string or None must give this message too, not a TypeError from the comparison.
        if (not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool)
                or not 0.0 <= self.dropout < 1.0):
            raise ValueError(f"`dropout` must be a number in [0, 1). Received: {self.dropout!r}")


def softmax_cross_entropy(logits, labels, label_smoothing=0.0):
    """Cross-entropy of `softmax(logits)` `[tokens, vocab]` with int `labels` `[tokens]`,
    optionally against labels smoothed towards the uniform distribution:
    `(1 - ε) (-log p_label) + ε mean_k(-log p_k)`. Returns `[tokens]`.

    The same values and gradients as `tf.nn.softmax_cross_entropy_with_logits` on
    (smoothed) one-hot labels, computed faster on CPU: the forward pass keeps
    `exp(logits - max)` and its sum, and the gradient `(softmax - labels) dy` is one product
    with the label entries subtracted in place, without a one-hot tensor (2 ms for 228 x 8000
    logits against 6 ms for `tf.nn.sparse_softmax_cross_entropy_with_logits`).
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1). Received: {label_smoothing!r}")
    labels = tf.cast(labels, tf.int32)

    @tf.custom_gradient
    def cross_entropy(logits):
        largest = tf.stop_gradient(tf.reduce_max(logits, axis=-1, keepdims=True))
        exp = tf.exp(logits - largest)
        total = tf.reduce_sum(exp, axis=-1, keepdims=True)
        log_normalizer = tf.squeeze(largest + tf.math.log(total), -1)  # log Σ_k exp(logit_k)
        picked = tf.gather(logits, labels, batch_dims=1)  # logit_label
        if label_smoothing:
            nll = (log_normalizer - (1.0 - label_smoothing) * picked
                   - label_smoothing * tf.reduce_mean(logits, axis=-1))
        else:
            nll = log_normalizer - picked

        def grad(upstream):
            gradient = exp * (upstream[:, None] / total)  # softmax × dy
            if label_smoothing:
                vocab = tf.cast(tf.shape(logits)[-1], logits.dtype)
                gradient -= (label_smoothing / vocab) * upstream[:, None]
            label_entries = tf.stack([tf.range(tf.shape(labels)[0]), labels], axis=1)
            return tf.tensor_scatter_nd_sub(
                gradient, label_entries, (1.0 - label_smoothing) * upstream)

        return nll, grad

    return cross_entropy(logits)


@keras.saving.register_keras_serializable(package="bahdanau_keras")
class Translator(keras.Model):
    """A Bahdanau-attention sequence-to-sequence model over token ids.

    Args: the fields of `ModelConfig`, as keyword arguments.

    Call arguments:
        inputs: `(source, target_in)`, int `[batch, src_len]` and `[batch, tgt_len]`.
        training: Python bool.

    Returns:
        `(logits, attention_weights)`: `[batch, tgt_len, target_vocab_size]` and
        `[batch, tgt_len, src_len]`.
    """

    def __init__(self, source_vocab_size, target_vocab_size, embedding_dim=256, encoder_units=256,
                 decoder_units=512, attention_units=512, maxout=True, tie_embeddings=True,
                 dropout=0.0, normalize_attention=False, **kwargs):
        super().__init__(**kwargs)
        self.config = ModelConfig(
            source_vocab_size=source_vocab_size, target_vocab_size=target_vocab_size,
            embedding_dim=embedding_dim, encoder_units=encoder_units,
            decoder_units=decoder_units, attention_units=attention_units, maxout=maxout,
            tie_embeddings=tie_embeddings, dropout=dropout,
            normalize_attention=normalize_attention)
        self.encoder = Encoder(
            source_vocab_size, embedding_dim, encoder_units, decoder_units, dropout=dropout,
            name="encoder")
        self.decoder = Decoder(
            target_vocab_size, embedding_dim, decoder_units, attention_units, maxout=maxout,
            tie_embeddings=tie_embeddings, dropout=dropout,
            normalize_attention=normalize_attention, name="decoder")
        # Every shape is known from the configuration: create the weights now.
        self.build()

    @classmethod
    def from_model_config(cls, config):
        return cls(**dataclasses.asdict(config))

    def build(self, inputs_shape=None):
        self.encoder.build((None, None))
        self.decoder.build((None, None), (None, None, 2 * self.config.encoder_units))

    def call(self, inputs, training=None):
        source, target_in = inputs
        annotations, source_mask, initial_state = self.encoder(source, training=training)
        return self.decoder(target_in, annotations, source_mask, initial_state,
                            training=training)

    def loss_and_count(self, source, target, label_smoothing=0.0, training=False, chunks=1,
                       loop_shards=1):
        """Summed cross-entropy over the real target tokens, and their number.

        `target` is `[batch, tgt_len]` holding `START y_1 ... y_n END` padded with 0; the model
        reads `target[:, :-1]` and predicts `target[:, 1:]`. The deep output and the vocabulary
        projection run once, after the step loop, on the real tokens only (`[num_tokens, ...]`).

        `chunks` splits those tokens into that many independent pieces for the output layers
        and the loss (the sum is the same): TensorFlow's executor runs independent pieces on
        different cores at once, which a single large product with one intra-op thread per op
        cannot (see `train.default_threads`). The sizes must be known when the graph runs, not
        when it is compiled: XLA (`jit_compile`) needs `chunks=1`.

        `loop_shards` splits the batch inside the decoder's step loop in the same way (see
        `Decoder.time_loop`); the loss and its gradient are the same.
        """
        if not isinstance(chunks, int) or isinstance(chunks, bool) or chunks < 1:
            raise ValueError(f"`chunks` must be a positive integer. Received: {chunks!r}")
        target_in, target_out = target[:, :-1], target[:, 1:]
        annotations, source_mask, initial_state = self.encoder(source, training=training)
        states, embedded, contexts, _ = self.decoder.teacher_forcing(
            target_in, annotations, source_mask, initial_state, training=training,
            loop_shards=loop_shards)
        real = tf.not_equal(target_out, PAD_ID)  # [batch, tgt_len - 1]
        pieces = [tf.boolean_mask(x, real) for x in (states, embedded, contexts, target_out)]
        count = tf.shape(pieces[-1])[0]  # real tokens
        if chunks > 1:
            # count // chunks or one more each (the first count % chunks pieces); some may be 0.
            sizes = [count // chunks + tf.cast(i < count % chunks, tf.int32)
                     for i in range(chunks)]
            pieces = zip(*(tf.split(x, sizes) for x in pieces))
        else:
            pieces = [pieces]
        total = tf.constant(0.0)
        for piece_states, piece_embedded, piece_contexts, labels in pieces:
            logits = self.decoder.output_logits(
                piece_states, piece_embedded, piece_contexts, training=training)
            nll = softmax_cross_entropy(tf.cast(logits, tf.float32), labels, label_smoothing)
            total += tf.reduce_sum(nll)
        return total, count

    def get_config(self):
        return {**super().get_config(), **dataclasses.asdict(self.config)}
