"""The translator: encoder and decoder together, and the masked training loss.

`Translator.loss_and_count` is the loss as the tutorial writes it; training computes the same
sum with `kernels.cross_entropy` where that kernel applies (see `implementation`).
"""

import dataclasses

import keras
import tensorflow as tf

from bahdanau_keras.decoder import Decoder, validate_attention
from bahdanau_keras.encoder import Encoder
from bahdanau_keras.kernels import (
    cross_entropy,
    use_kernel,
    validate_implementation,
    validate_parts,
)
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
    # "bahdanau", or None: no attention, the encoder's summary [→h_{T_x}; ←h_1] is the context
    # of every step (RNNencdec, the paper's baseline)
    attention: str | None = "bahdanau"

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
        validate_attention(self.attention)


@keras.saving.register_keras_serializable(package="bahdanau_keras")
class Translator(keras.Model):
    """A Bahdanau-attention sequence-to-sequence model over token ids.

    Args:
        source_vocab_size, target_vocab_size, embedding_dim, encoder_units, decoder_units,
        attention_units, maxout, tie_embeddings, dropout, normalize_attention, attention: the
            fields of `ModelConfig` (the model's shape). `attention=None` is the paper's
            baseline RNNencdec: no attention, the encoder's summary `[→h_{T_x}; ←h_1]` is
            the context of every decoder step (see `Decoder`), and the attention weights
            returned are zeros.
        implementation: `"auto"`, `"reference"` or `"fused"`, for the encoder, the decoder
            and the loss: the readable layers (`"reference"`) or the kernels of
            `bahdanau_keras.kernels` (`"fused"`: the same functions and gradients, faster on
            CPU; float32 only). `"auto"` takes each kernel where it applies on a machine
            without a GPU.
        loop_shards: Positive int, the parts of the batch inside each step of the fused
            decoder loop (`kernels.decoder_loop`); the reference ignores it.
        loss_chunks: Positive int, the pieces of the real tokens for the output layer and the
            loss in `kernels.cross_entropy`; the reference ignores it. XLA (`jit_compile`)
            needs 1.
        **kwargs: Base model arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(source, target_in)`, int `[batch, src_len]` and `[batch, tgt_len]`.
        training: Python bool.

    Returns:
        `(logits, attention_weights)`: `[batch, tgt_len, target_vocab_size]` and
        `[batch, tgt_len, src_len]`.
    """

    def __init__(self, source_vocab_size, target_vocab_size, embedding_dim=256, encoder_units=256,
                 decoder_units=512, attention_units=512, maxout=True, tie_embeddings=True,
                 dropout=0.0, normalize_attention=False, implementation="auto", loop_shards=2,
                 loss_chunks=2, attention="bahdanau", **kwargs):
        super().__init__(**kwargs)
        self.config = ModelConfig(
            source_vocab_size=source_vocab_size, target_vocab_size=target_vocab_size,
            embedding_dim=embedding_dim, encoder_units=encoder_units,
            decoder_units=decoder_units, attention_units=attention_units, maxout=maxout,
            tie_embeddings=tie_embeddings, dropout=dropout,
            normalize_attention=normalize_attention, attention=attention)
        self.implementation = validate_implementation(implementation)
        self.loop_shards = validate_parts("loop_shards", loop_shards)
        self.loss_chunks = validate_parts("loss_chunks", loss_chunks)
        self.encoder = Encoder(
            source_vocab_size, embedding_dim, encoder_units, decoder_units, dropout=dropout,
            implementation=implementation, name="encoder")
        self.decoder = Decoder(
            target_vocab_size, embedding_dim, decoder_units, attention_units, maxout=maxout,
            tie_embeddings=tie_embeddings, dropout=dropout,
            normalize_attention=normalize_attention, implementation=implementation,
            loop_shards=loop_shards, attention=attention, name="decoder")
        # Every shape is known from the configuration: create the weights now.
        self.build()

    @classmethod
    def from_model_config(cls, config, **options):
        """A `Translator` of the shape `config` (a `ModelConfig`), with `options` for the
        other constructor arguments (`implementation`, `loop_shards`, `loss_chunks`, `name`,
        ...)."""
        return cls(**dataclasses.asdict(config), **options)

    def build(self, inputs_shape=None):
        self.encoder.build((None, None))
        self.decoder.build((None, None), (None, None, 2 * self.config.encoder_units))

    def call(self, inputs, training=None):
        source, target_in = inputs
        annotations, source_mask, initial_state = self.encoder(source, training=training)
        return self.decoder(target_in, annotations, source_mask, initial_state,
                            training=training)

    def loss_and_count(self, source, target, label_smoothing=0.0, training=False):
        """Summed cross-entropy over the real target tokens, and their number.

        The model reads `target[:, :-1]` and predicts `target[:, 1:]`; the loss of a token is
        `-Σ_k q_k log p(k | y_<i, x)`, with the labels smoothed towards the uniform
        distribution, `q = (1 - ε) one_hot(y_i) + ε / vocab` (`ε = label_smoothing`). The deep
        output and the vocabulary projection run once, after the step loop, on the real tokens
        only (`[tokens, ...]`): most of the decoder's work, none of it spent on padding.

        Args:
            source: int `[batch, src_len]`, padded with 0.
            target: int `[batch, tgt_len]`, `START y_1 ... y_n END` padded with 0.
            label_smoothing: float in `[0, 1)`.
            training: Python bool (dropout).

        Returns:
            `(loss_sum, token_count)`: a float32 scalar and an int32 scalar.
        """
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1). Received: {label_smoothing!r}")
        target_in, target_out = target[:, :-1], target[:, 1:]
        annotations, source_mask, initial_state = self.encoder(source, training=training)
        states, embedded, contexts, _ = self.decoder.teacher_forcing(
            target_in, annotations, source_mask, initial_state, training=training)
        real = tf.not_equal(target_out, PAD_ID)  # [batch, tgt_len - 1]
        # [tokens, ...]: the real tokens only
        states, embedded, contexts, labels = (
            tf.boolean_mask(x, real) for x in (states, embedded, contexts, target_out))
        count = tf.shape(labels)[0]
        if use_kernel(self.implementation, cross_entropy.unsupported(self), self.name):
            # The same sum in `loss_chunks` pieces, the cross-entropy with its own gradient
            # (kernels/cross_entropy.py).
            return cross_entropy.summed_loss(
                self.decoder, states, embedded, contexts, labels, label_smoothing,
                training=training, chunks=self.loss_chunks), count
        logits = self.decoder.output_logits(states, embedded, contexts, training=training)
        # -Σ_k q_k log p(k | y_<i, x) for each token, in float32
        losses = keras.losses.categorical_crossentropy(
            tf.one_hot(labels, self.config.target_vocab_size), tf.cast(logits, tf.float32),
            from_logits=True, label_smoothing=label_smoothing)
        return tf.reduce_sum(losses), count

    def get_config(self):
        return {**super().get_config(), **dataclasses.asdict(self.config),
                "implementation": self.implementation, "loop_shards": self.loop_shards,
                "loss_chunks": self.loss_chunks}
