"""Additive (Bahdanau) attention, exact to Bahdanau, Cho and Bengio (2014), arXiv:1409.0473.

Section 3.1 and Appendix A.1.2 of the paper define, for decoder step `i` and source position `j`:

    e_ij  = v_a^T tanh(W_a s_{i-1} + U_a h_j)      (alignment model, A.1.2)
    α_ij  = exp(e_ij) / Σ_k exp(e_ik)              (eq. 6)
    c_i   = Σ_j α_ij h_j                           (eq. 5)

The layer is written with `keras.ops` only, so it runs, and its `.keras` files load, under every
Keras 3 backend (TensorFlow, JAX, PyTorch); importing this module does not import TensorFlow.
"""

import warnings

import keras
import numpy as np
from keras import ops

# The score given to masked positions before the softmax: the lowest finite float32, so that a
# row with every position masked stays finite (and is then zeroed by the mask).
_MASKED_SCORE = float(np.finfo(np.float32).min)


def _softmax(scores):
    """`keras.ops.softmax` over the last axis, without its warning for an axis of size 1: a
    one-token source (an empty sentence and its end token) rightly gives the weight 1."""
    if scores.shape[-1] != 1:
        return ops.softmax(scores, axis=-1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using a softmax over axis",
                                category=UserWarning)
        return ops.softmax(scores, axis=-1)


@keras.saving.register_keras_serializable(package="bahdanau_keras")
class BahdanauAttention(keras.layers.Layer):
    """Additive attention layer, as in Bahdanau et al. (2014).

    The calculation follows the steps:

    1. Project the values (the encoder annotations `h_j`) into keys, `U_a h_j`, with shape
       `[batch, src_len, units]`. This does not depend on the decoder step, so it can be
       computed once per source batch with `project_keys` and passed in as `keys`.
    2. Project the query (the previous decoder state `s_{i-1}`), `W_a s_{i-1}`, and compute
       the scores `e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)`.
    3. Mask padded source positions and normalise with a softmax over `src_len`; masked
       positions get exactly zero weight, and a row with every position masked gives zeros.
       The softmax is computed in float32, also under a mixed-precision policy.
    4. The context is the weighted sum of the values, `c_i = Σ_j α_ij h_j`.

    The layer keeps no state between calls: nothing computed in one call is reused by the next
    unless the caller passes it in. It uses `keras.ops` only and works with every Keras
    backend.

    Args:
        units: Size of the alignment space (the rows of `W_a` and `U_a`), independent of the
            query and value sizes.
        normalize: If `True`, use the weight-normalised variant of Salimans and Kingma (2016)
            that `tfa.seq2seq.BahdanauAttention(normalize=True)` offered:
            `v_a` is replaced by `g v_a / ||v_a||` with a learned scalar `g`, and a bias `b` is
            added inside the `tanh`.
        kernel_initializer: Initializer for `W_a`, `U_a` and `v_a`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        query: The decoder state(s). `[batch, query_dim]` for one step or
            `[batch, tgt_len, query_dim]` for every step at once.
        values: The encoder annotations `h`, `[batch, src_len, value_dim]`.
        mask: Optional boolean `[batch, src_len]`, `True` at real (non-padding) positions.
            Numbers are accepted (non-zero means real).
        keys: Optional precomputed `project_keys(values)`, `[batch, src_len, units]`.

    Returns:
        A tuple `(context, attention_weights)` in the layer's compute dtype: for a 2-D query,
        `[batch, value_dim]` and `[batch, src_len]`; for a 3-D query,
        `[batch, tgt_len, value_dim]` and `[batch, tgt_len, src_len]`.

    Example:

    >>> layer = BahdanauAttention(units=7)
    >>> query = keras.random.normal((3, 5))
    >>> values = keras.random.normal((3, 11, 4))
    >>> context, weights = layer(query, values)
    >>> tuple(context.shape), tuple(weights.shape)
    ((3, 4), (3, 11))
    """

    def __init__(self, units, normalize=False, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"`units` must be a positive integer. Received: units={units!r}")
        self.units = units
        self.normalize = bool(normalize)
        # The mask is taken as an argument; the outputs carry none.
        self.supports_masking = True
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # W_a and U_a carry no bias in the paper.
        self.query_dense = keras.layers.Dense(
            units, use_bias=False, kernel_initializer=self.kernel_initializer,
            name="query_dense", dtype=self.dtype_policy)
        self.key_dense = keras.layers.Dense(
            units, use_bias=False, kernel_initializer=self.kernel_initializer,
            name="key_dense", dtype=self.dtype_policy)

    def build(self, query_shape, values_shape, mask_shape=None, keys_shape=None):
        if len(query_shape) not in (2, 3):
            raise ValueError(
                "`query` must have shape `[batch, query_dim]` or `[batch, tgt_len, query_dim]`. "
                f"Received: query.shape={tuple(query_shape)}")
        if len(values_shape) != 3:
            raise ValueError("`values` must have shape `[batch, src_len, value_dim]`. "
                             f"Received: values.shape={tuple(values_shape)}")
        query_dim, value_dim = query_shape[-1], values_shape[-1]
        self.query_dense.build((None, query_dim))
        self.key_dense.build((None, value_dim))
        # v_a: [units]
        self.score_vector = self.add_weight(
            name="score_vector", shape=(self.units,), initializer=self.kernel_initializer)
        if self.normalize:
            self.score_scale = self.add_weight(
                name="score_scale", shape=(),
                initializer=keras.initializers.Constant((1.0 / self.units) ** 0.5))
            self.score_bias = self.add_weight(
                name="score_bias", shape=(self.units,), initializer="zeros")

    def project_keys(self, values):
        """`U_a h_j` for every source position: `[batch, src_len, units]`."""
        return self.key_dense(values)

    def project_query(self, query):
        """`W_a s_{i-1}`: `[..., units]`."""
        return self.query_dense(query)

    def score(self, projected_query, keys):
        """`e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)` from already projected query and keys.

        `projected_query` is `[batch, units]` (gives `[batch, src_len]`) or
        `[batch, tgt_len, units]` (gives `[batch, tgt_len, src_len]`).
        """
        if len(projected_query.shape) == 3:
            # [batch, tgt_len, 1, units] + [batch, 1, src_len, units]
            features = ops.add(ops.expand_dims(projected_query, 2), ops.expand_dims(keys, 1))
        else:
            # [batch, 1, units] + [batch, src_len, units]
            features = ops.add(ops.expand_dims(projected_query, 1), keys)
        score_vector, score_bias = self.score_weights()
        if score_bias is not None:
            features = ops.add(features, ops.cast(score_bias, features.dtype))  # + b
        # v_a^T tanh(...): [batch, (tgt_len,) src_len], as one [N, units] x [units, 1] product
        # (in the decoder's loop, fewer operations per step, forward and backward, than a
        # broadcast product and a sum: +1.8% training speed in an interleaved comparison).
        flat = ops.reshape(ops.tanh(features), (-1, self.units))  # [N, units]
        score_column = ops.expand_dims(ops.cast(score_vector, features.dtype), 1)  # [units, 1]
        scores = ops.matmul(flat, score_column)  # [N, 1]
        return ops.reshape(scores, ops.shape(features)[:-1])

    def score_weights(self):
        """`(v_a, b)`: the score vector (`g v_a / ||v_a||` when `normalize`) and the bias
        inside the `tanh` (`None` unless `normalize`), as tensors of the backend."""
        score_vector = ops.convert_to_tensor(self.score_vector)
        if not self.normalize:
            return score_vector, None
        # g v_a / ||v_a||
        norm_inverse = ops.rsqrt(ops.sum(ops.square(score_vector)))
        score_vector = ops.multiply(ops.multiply(self.score_scale, score_vector), norm_inverse)
        return score_vector, ops.convert_to_tensor(self.score_bias)

    @staticmethod
    def masked_softmax(scores, mask=None):
        """α_ij = softmax_j(e_ij) over unmasked `j`; exactly 0 at masked `j`, all-zero rows if
        every `j` is masked. Computed in float32 and returned in the scores' dtype.

        `scores` is `[batch, src_len]` or `[batch, tgt_len, src_len]`; `mask` is
        `[batch, src_len]` (or the scores' shape), boolean or numbers (non-zero is real)."""
        dtype = keras.backend.standardize_dtype(scores.dtype)
        scores32 = ops.cast(scores, "float32")
        if mask is None:
            return ops.cast(_softmax(scores32), dtype)  # eq. 6
        mask = ops.cast(mask, "bool")
        if len(scores.shape) == 3 and len(mask.shape) == 2:
            mask = ops.expand_dims(mask, 1)  # [batch, 1, src_len]
        scores32 = ops.where(mask, scores32, _MASKED_SCORE)
        # eq. 6 over the unmasked j; the product makes masked weights exactly 0 (and a row
        # with every j masked, uniform before it, all zeros)
        weights = ops.multiply(_softmax(scores32), ops.cast(mask, "float32"))
        return ops.cast(weights, dtype)

    def call(self, query, values, mask=None, keys=None):
        if keys is None:
            keys = self.project_keys(values)  # U_a h_j: [batch, src_len, units]
        projected_query = self.project_query(query)  # W_a s_{i-1}: [batch, (tgt_len,) units]
        return self.attend(projected_query, values, mask, keys)

    def attend(self, projected_query, values, mask, keys):
        """The scores of step 2, then steps 3 and 4, from an already projected query
        `W_a s_{i-1}` and keys `U_a h_j`:
        `(context, attention_weights)` as `call` returns them. A caller that computes
        `W_a s_{i-1}` itself (the decoder's training loop does) uses this."""
        scores = self.score(projected_query, keys)  # e_ij
        weights = self.masked_softmax(scores, mask)  # α_ij
        values = ops.cast(values, weights.dtype)
        # c_i = Σ_j α_ij h_j
        if len(weights.shape) == 3:
            context = ops.matmul(weights, values)  # [batch, tgt_len, value_dim]
        else:
            # [batch, 1, src_len] x [batch, src_len, value_dim]: [batch, value_dim]
            context = ops.squeeze(ops.matmul(ops.expand_dims(weights, 1), values), 1)
        return context, weights

    def compute_mask(self, query, values, mask=None, keys=None):
        return None

    def compute_output_shape(self, query_shape, values_shape, mask_shape=None, keys_shape=None):
        value_dim, src_len = values_shape[-1], values_shape[1]
        return (tuple(query_shape[:-1]) + (value_dim,), tuple(query_shape[:-1]) + (src_len,))

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "normalize": self.normalize,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
