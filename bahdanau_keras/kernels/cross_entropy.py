"""The output layer and the cross-entropy over the real target tokens, in pieces, with the
cross-entropy's own gradient.

The reference is `Translator.loss_and_count`'s readable path: `Decoder.output_logits` over
the real tokens, then Keras' categorical cross-entropy of the (smoothed) labels, summed.
`summed_loss` here computes the same sum and gradients (`tests/test_kernels_cross_entropy.py`),
faster on the 2-core CPU of `docs/benchmarks.md`:

- `chunks` splits the real tokens into that many independent pieces for the output layer and
  the loss (the sum is the same): TensorFlow's executor runs independent pieces on different
  cores at once, which one large vocabulary product with one thread per operation cannot
  (`train.default_threads`): about 5,400 → 6,300 target tokens/s with 2 pieces. The pieces'
  sizes are known only when the graph runs: an XLA-compiled step (`jit_compile`) needs
  `chunks=1`.
- `softmax_cross_entropy` keeps `exp(logits - max)` and its sum from the forward pass, and its
  gradient `(softmax - labels) dy` is one product with the label entries subtracted in place,
  without a one-hot tensor: 1.9 ms forward and backward for 228 x 8,000 logits against 3.9
  (`log_softmax` and a gather) and 6.4 (`tf.nn.sparse_softmax_cross_entropy_with_logits`).
"""

import tensorflow as tf

from bahdanau_keras.kernels import float32_only


def unsupported(translator):
    """Why `summed_loss` cannot compute `translator`'s loss (a phrase), or `None` where it can:
    it runs the output layer in float32 only."""
    return float32_only(translator, "chunked loss")


def _check_label_smoothing(label_smoothing):
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1). Received: {label_smoothing!r}")


def softmax_cross_entropy(logits, labels, label_smoothing=0.0):
    """Cross-entropy of `softmax(logits)` with int labels, with its own gradient.

    With label smoothing `ε` the labels are `q = (1 - ε) one_hot + ε / vocab`, and the loss is
    `-Σ_k q_k log p_k = (1 - ε) (-log p_label) + ε mean_k(-log p_k)`. The same values and
    gradients as `tf.nn.softmax_cross_entropy_with_logits` on `q`.

    Args:
        logits: float `[tokens, vocab]`.
        labels: int `[tokens]`.
        label_smoothing: float in `[0, 1)`.

    Returns:
        `[tokens]`, the loss of each token.
    """
    _check_label_smoothing(label_smoothing)
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


def summed_loss(decoder, states, embedded, contexts, labels, label_smoothing=0.0,
                training=None, chunks=1):
    """The summed cross-entropy of `decoder.output_logits(states, embedded, contexts)` with
    `labels`, over the tokens in `chunks` independent pieces.

    Args:
        decoder: The `Decoder` whose output layer runs.
        states, embedded, contexts: `[tokens, units]`, `[tokens, embedding_dim]`,
            `[tokens, context_dim]`, gathered at the real target tokens.
        labels: int `[tokens]`.
        label_smoothing: float in `[0, 1)`.
        training: Python bool (dropout in the output layer).
        chunks: Positive int; some pieces are empty when there are fewer tokens.

    Returns:
        float32 scalar, the summed loss.
    """
    if not isinstance(chunks, int) or isinstance(chunks, bool) or chunks < 1:
        raise ValueError(f"`chunks` must be a positive integer. Received: chunks={chunks!r}")
    _check_label_smoothing(label_smoothing)
    pieces = [(states, embedded, contexts, labels)]
    if chunks > 1:
        count = tf.shape(labels)[0]
        # count // chunks or one more each (the first count % chunks pieces); some may be 0.
        sizes = [count // chunks + tf.cast(i < count % chunks, tf.int32) for i in range(chunks)]
        pieces = zip(*(tf.split(x, sizes) for x in pieces[0]))
    total = tf.constant(0.0)
    for piece_states, piece_embedded, piece_contexts, piece_labels in pieces:
        logits = decoder.output_logits(piece_states, piece_embedded, piece_contexts,
                                       training=training)
        total += tf.reduce_sum(softmax_cross_entropy(
            tf.cast(logits, tf.float32), piece_labels, label_smoothing))
    return total
