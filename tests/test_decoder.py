"""Tests of the `Decoder` against a NumPy implementation of Appendix A.2.2 of arXiv:1409.0473.

    c_i = Σ_j α_ij h_j,  α_ij = softmax_j(v_a^T tanh(W_a s_{i-1} + U_a h_j))
    z_i = σ(W_z E y_{i-1} + U_z s_{i-1} + C_z c_i),  r_i = σ(W_r E y_{i-1} + U_r s_{i-1} + C_r c_i)
    s̃_i = tanh(W E y_{i-1} + U [r_i ∘ s_{i-1}] + C c_i),  s_i = (1 - z_i) ∘ s_{i-1} + z_i ∘ s̃_i
    t̃_i = U_o s_i + V_o E y_{i-1} + C_o c_i,  t_i = maxout(t̃_i),  logits = W_o t_i

Distinct small sizes: vocabulary 19, embedding 5, units 7, attention units 3, context 6,
batch 3, source length 4, target length 8.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bahdanau_keras import kernels
from bahdanau_keras.attention import BahdanauAttention
from bahdanau_keras.decoder import Decoder
from bahdanau_keras.kernels import decoder_loop
from bahdanau_keras.text import PAD_ID, START_ID
from bahdanau_keras.train import seed_everything

VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, CONTEXT_DIM = 19, 5, 7, 3, 6
BATCH, SRC_LEN, TGT_LEN = 3, 4, 8
SOURCE_LENGTHS, TARGET_LENGTHS = [4, 2, 1], [8, 3, 1]


# -- NumPy reference ----------------------------------------------------------------------------

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_attention(attention, state, annotations, mask):
    """α_i and c_i in float64 for a 2-D state `[batch, units]`."""
    w_a = attention.query_dense.kernel.numpy().astype(np.float64)
    u_a = attention.key_dense.kernel.numpy().astype(np.float64)
    v_a = attention.score_vector.numpy().astype(np.float64)
    bias = 0.0
    if attention.normalize:
        v_a = attention.score_scale.numpy() * v_a / np.linalg.norm(v_a)
        bias = attention.score_bias.numpy()
    scores = np.tanh((state @ w_a)[:, None, :] + annotations @ u_a + bias) @ v_a  # [b, s]
    scores = np.where(mask, scores, -np.inf)
    weights = np.zeros_like(scores)
    for b in range(scores.shape[0]):
        if mask[b].any():
            exp = np.exp(scores[b] - scores[b][mask[b]].max())
            weights[b] = exp / exp.sum()
    return np.einsum("bs,bsd->bd", weights, annotations), weights


def numpy_summary(annotations, mask):
    """The encoder's summary `c = [→h_{T_x}; ←h_1]` in float64: the forward half of the
    annotation at each sentence's last real position, the backward half of the first."""
    half = annotations.shape[-1] // 2
    summary = np.zeros((annotations.shape[0], annotations.shape[-1]))
    for b in range(annotations.shape[0]):
        last = max(int(np.flatnonzero(mask[b]).max(initial=0)), 0)  # x_{T_x}
        summary[b, :half] = annotations[b, last, :half]  # →h_{T_x}
        summary[b, half:] = annotations[b, 0, half:]  # ←h_1
    return summary


def numpy_weights(decoder):
    return {w.path.split("/", 1)[1]: w.numpy().astype(np.float64) for w in decoder.weights}


def numpy_output(decoder, state, embedded, context):
    """Deep output from `s_i`, `E y_{i-1}` and `c_i`: logits `[batch, vocab]`."""
    w = numpy_weights(decoder)
    readout = (np.concatenate([state, embedded, context], -1) @ w["readout_dense/kernel"]
               + w["readout_dense/bias"])
    if decoder.maxout:
        # t_i,k = max(t̃_i,2k-1, t̃_i,2k): neighbouring pairs
        readout = np.maximum(readout[:, 0::2], readout[:, 1::2])
    else:
        readout = np.tanh(readout)
    assert readout.shape[-1] == decoder.readout_dim
    if decoder.tie_embeddings:
        return readout @ w["embedding/embeddings"].T + w["output_bias"]
    return readout @ w["output_dense/kernel"] + w["output_dense/bias"]


def numpy_step(decoder, previous_tokens, state, annotations, mask):
    """One decoder step: `(logits, s_i, α_i, c_i)`."""
    w = numpy_weights(decoder)
    u = UNITS
    embedded = w["embedding/embeddings"][previous_tokens]  # E y_{i-1}
    if decoder.attention is None:  # RNNencdec: c_i = c, no α
        context, weights = numpy_summary(annotations, mask), np.zeros(mask.shape)
    else:
        context, weights = numpy_attention(decoder.attention, state, annotations, mask)
    # Columns of input_kernel / context_kernel / recurrent_kernel: [z | r | candidate].
    kernel, bias = w["input_kernel"], w["input_bias"]
    c_kernel, recurrent = w["context_kernel"], w["recurrent_kernel"]
    w_z, w_r, w_h = kernel[:, :u], kernel[:, u:2 * u], kernel[:, 2 * u:]
    b_z, b_r, b_h = bias[:u], bias[u:2 * u], bias[2 * u:]
    c_z, c_r, c_h = c_kernel[:, :u], c_kernel[:, u:2 * u], c_kernel[:, 2 * u:]
    u_z, u_r, u_h = recurrent[:, :u], recurrent[:, u:2 * u], recurrent[:, 2 * u:]
    z = sigmoid(embedded @ w_z + b_z + state @ u_z + context @ c_z)
    r = sigmoid(embedded @ w_r + b_r + state @ u_r + context @ c_r)
    candidate = np.tanh(embedded @ w_h + b_h + (r * state) @ u_h + context @ c_h)
    new_state = (1.0 - z) * state + z * candidate
    return numpy_output(decoder, new_state, embedded, context), new_state, weights, context


# -- inputs -------------------------------------------------------------------------------------

def lengths_mask(lengths, length):
    return np.arange(length)[None, :] < np.asarray(lengths)[:, None]


def make_inputs(seed=0, source_lengths=SOURCE_LENGTHS, target_lengths=TARGET_LENGTHS,
                src_len=SRC_LEN, tgt_len=TGT_LEN):
    rng = np.random.default_rng(seed)
    batch = len(source_lengths)
    target = rng.integers(3, VOCAB, size=(batch, tgt_len)).astype(np.int32)
    target[:, 0] = START_ID
    target[~lengths_mask(target_lengths, tgt_len)] = PAD_ID
    annotations = rng.standard_normal((batch, src_len, CONTEXT_DIM)).astype(np.float32)
    mask = lengths_mask(source_lengths, src_len)
    state = np.tanh(rng.standard_normal((batch, UNITS))).astype(np.float32)
    return target, annotations, mask, state


def make_decoder(seed=0, **kwargs):
    """A built decoder whose weights are all random (biases included); the reference
    implementation unless `implementation` says otherwise (`tests/test_kernels_decoder_loop.py`
    holds the fused loop to it)."""
    kwargs = {"maxout": True, "tie_embeddings": True, "implementation": "reference", **kwargs}
    decoder = Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, **kwargs)
    decoder.build((None, None), (None, None, CONTEXT_DIM))
    rng = np.random.default_rng(seed)
    decoder.set_weights(
        [0.5 * rng.standard_normal(w.shape).astype(np.float32) for w in decoder.weights])
    return decoder


OUTPUT_VARIANTS = {
    "maxout-tied": dict(maxout=True, tie_embeddings=True),
    "maxout-untied": dict(maxout=True, tie_embeddings=False, readout_dim=4),
    "tanh-tied": dict(maxout=False, tie_embeddings=True),
    "tanh-untied": dict(maxout=False, tie_embeddings=False, readout_dim=4),
    "normalized-attention": dict(normalize_attention=True),
}


@pytest.fixture(scope="module", params=list(OUTPUT_VARIANTS))
def decoder(request):
    return make_decoder(**OUTPUT_VARIANTS[request.param])


@pytest.fixture(scope="module")
def plain_decoder():
    return make_decoder(seed=1)


# -- weights ------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", list(OUTPUT_VARIANTS))
def test_weight_names_and_shapes(variant):
    kwargs = OUTPUT_VARIANTS[variant]
    decoder = Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, name="decoder", **kwargs)
    decoder.build((None, None), (None, None, CONTEXT_DIM))
    readout = kwargs.get("readout_dim", EMBEDDING_DIM)
    expected = {
        "decoder/embedding/embeddings": (VOCAB, EMBEDDING_DIM),
        "decoder/attention/query_dense/kernel": (UNITS, ATTENTION_UNITS),
        "decoder/attention/key_dense/kernel": (CONTEXT_DIM, ATTENTION_UNITS),
        "decoder/attention/score_vector": (ATTENTION_UNITS,),
        "decoder/input_kernel": (EMBEDDING_DIM, 3 * UNITS),
        "decoder/input_bias": (3 * UNITS,),
        "decoder/context_kernel": (CONTEXT_DIM, 3 * UNITS),
        "decoder/recurrent_kernel": (UNITS, 3 * UNITS),
        "decoder/readout_dense/kernel": (
            UNITS + EMBEDDING_DIM + CONTEXT_DIM, readout * (2 if kwargs.get("maxout", True)
                                                            else 1)),
        "decoder/readout_dense/bias": (readout * (2 if kwargs.get("maxout", True) else 1),),
    }
    if kwargs.get("tie_embeddings", True):
        expected["decoder/output_bias"] = (VOCAB,)
    else:
        expected["decoder/output_dense/kernel"] = (readout, VOCAB)
        expected["decoder/output_dense/bias"] = (VOCAB,)
    if kwargs.get("normalize_attention"):
        expected["decoder/attention/score_scale"] = ()
        expected["decoder/attention/score_bias"] = (ATTENTION_UNITS,)
    assert {w.path: tuple(w.shape) for w in decoder.weights} == expected
    assert decoder.count_params() == sum(int(np.prod(s)) for s in expected.values())


def test_builds_on_first_call_without_explicit_build():
    decoder = Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS)
    target, annotations, mask, state = make_inputs()
    logits, weights = decoder(target, annotations, mask, state)
    assert tuple(logits.shape) == (BATCH, TGT_LEN, VOCAB)
    assert tuple(weights.shape) == (BATCH, TGT_LEN, SRC_LEN)
    assert tuple(decoder.context_kernel.shape) == (CONTEXT_DIM, 3 * UNITS)


def test_tie_embeddings_needs_readout_equal_to_embedding():
    with pytest.raises(ValueError, match="readout_dim=4"):
        Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, readout_dim=4,
                tie_embeddings=True)


# -- one step against NumPy ---------------------------------------------------------------------

def test_cell_matches_numpy(decoder):
    target, annotations, mask, state = make_inputs(seed=2)
    keys = decoder.attention.project_keys(annotations)
    embedded = decoder.embed(target[:, 3])
    new_state, context, weights = decoder.cell(
        decoder.project_inputs(embedded), tf.constant(state), keys, annotations, mask)
    _, expected_state, expected_weights, expected_context = numpy_step(
        decoder, target[:, 3], state.astype(np.float64), annotations.astype(np.float64), mask)
    np.testing.assert_allclose(weights.numpy(), expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context.numpy(), expected_context, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(new_state.numpy(), expected_state, rtol=1e-5, atol=1e-5)


def test_step_matches_numpy(decoder):
    target, annotations, mask, state = make_inputs(seed=3)
    keys = decoder.attention.project_keys(annotations)
    previous = target[:, 2]
    logits, new_state, weights = decoder.step(previous, state, keys, annotations, mask)
    assert tuple(logits.shape) == (BATCH, VOCAB)
    assert tuple(new_state.shape) == (BATCH, UNITS)
    assert tuple(weights.shape) == (BATCH, SRC_LEN)
    expected_logits, expected_state, expected_weights, _ = numpy_step(
        decoder, previous, state.astype(np.float64), annotations.astype(np.float64), mask)
    np.testing.assert_allclose(new_state.numpy(), expected_state, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights.numpy(), expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits.numpy(), expected_logits, rtol=1e-5, atol=1e-4)


def test_attention_reads_the_previous_state(plain_decoder):
    """α_i comes from s_{i-1}: the first step's weights are the attention of s_0 itself."""
    target, annotations, mask, state = make_inputs(seed=4)
    _, weights = plain_decoder(target, annotations, mask, state)
    _, expected = numpy_attention(plain_decoder.attention, state.astype(np.float64),
                                  annotations.astype(np.float64), mask)
    np.testing.assert_allclose(weights.numpy()[:, 0], expected, rtol=1e-5, atol=1e-6)


# -- teacher forcing ----------------------------------------------------------------------------

@pytest.mark.parametrize("implementation", ["reference", "fused"])
def test_teacher_forcing_equals_repeated_steps(decoder, implementation):
    """Teacher forcing (the reference loop, or the fused kernel) equals `step` repeated, and
    the NumPy steps."""
    target, annotations, mask, state = make_inputs(seed=5)
    logits, weights = twin(decoder, implementation=implementation)(
        target, annotations, mask, state)
    assert tuple(logits.shape) == (BATCH, TGT_LEN, VOCAB)
    assert tuple(weights.shape) == (BATCH, TGT_LEN, SRC_LEN)
    keys = decoder.attention.project_keys(annotations)
    step_state = tf.constant(state)
    numpy_state = state.astype(np.float64)
    for i in range(TGT_LEN):
        step_logits, step_state, step_weights = decoder.step(
            target[:, i], step_state, keys, annotations, mask)
        np.testing.assert_allclose(logits.numpy()[:, i], step_logits.numpy(), atol=1e-5)
        np.testing.assert_allclose(weights.numpy()[:, i], step_weights.numpy(), atol=1e-6)
        expected_logits, numpy_state, _, _ = numpy_step(
            decoder, target[:, i], numpy_state, annotations.astype(np.float64), mask)
        np.testing.assert_allclose(logits.numpy()[:, i], expected_logits, rtol=1e-4, atol=1e-4)


def test_teacher_forcing_outputs(plain_decoder):
    """`teacher_forcing` gives the states, embeddings and contexts that `output_logits` reads."""
    target, annotations, mask, state = make_inputs(seed=6)
    states, embedded, contexts, weights = plain_decoder.teacher_forcing(
        target, annotations, mask, state)
    assert tuple(states.shape) == (BATCH, TGT_LEN, UNITS)
    assert tuple(embedded.shape) == (BATCH, TGT_LEN, EMBEDDING_DIM)
    assert tuple(contexts.shape) == (BATCH, TGT_LEN, CONTEXT_DIM)
    np.testing.assert_allclose(
        contexts.numpy(), np.einsum("bts,bsd->btd", weights.numpy(), annotations), atol=1e-5)
    logits, _ = plain_decoder(target, annotations, mask, state)
    np.testing.assert_allclose(
        plain_decoder.output_logits(states, embedded, contexts).numpy(), logits.numpy(),
        atol=1e-6)
    # output_logits works on any leading shape (e.g. the real tokens gathered after the loop).
    flat = plain_decoder.output_logits(
        tf.reshape(states, [-1, UNITS]), tf.reshape(embedded, [-1, EMBEDDING_DIM]),
        tf.reshape(contexts, [-1, CONTEXT_DIM]))
    np.testing.assert_allclose(flat.numpy(), logits.numpy().reshape(-1, VOCAB), atol=1e-6)


def test_missing_initial_state_means_zeros(plain_decoder):
    target, annotations, mask, _ = make_inputs(seed=7)
    default = plain_decoder(target, annotations, mask)
    zeros = plain_decoder(target, annotations, mask, np.zeros((BATCH, UNITS), np.float32))
    for x, y in zip(default, zeros):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-7)


def test_target_padding_invariance(plain_decoder):
    target, annotations, mask, state = make_inputs(seed=8)
    logits, weights = plain_decoder(target, annotations, mask, state)
    padded = np.pad(target, [(0, 0), (0, 5)])
    padded_logits, padded_weights = plain_decoder(padded, annotations, mask, state)
    np.testing.assert_allclose(padded_logits.numpy()[:, :TGT_LEN], logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(padded_weights.numpy()[:, :TGT_LEN], weights.numpy(), atol=1e-6)
    # Output i reads y_{i-1} = target_in[:, i] and earlier inputs only: changing input 5
    # leaves outputs 0..4 alone and changes output 5 (the deep output reads E y_{i-1}) and 6.
    changed = target.copy()
    changed[0, 5] = 3 + (changed[0, 5] - 2) % (VOCAB - 3)
    changed_logits, _ = plain_decoder(changed, annotations, mask, state)
    np.testing.assert_allclose(changed_logits.numpy()[0, :5], logits.numpy()[0, :5], atol=1e-6)
    assert not np.allclose(changed_logits.numpy()[0, 5], logits.numpy()[0, 5], atol=1e-4)
    assert not np.allclose(changed_logits.numpy()[0, 6], logits.numpy()[0, 6], atol=1e-4)


@pytest.mark.parametrize("implementation", ["reference", "fused"])
def test_source_padding_invariance(decoder, implementation):
    decoder = twin(decoder, implementation=implementation)
    target, annotations, mask, state = make_inputs(seed=9)
    logits, weights = decoder(target, annotations, mask, state)
    extra = 3
    rng = np.random.default_rng(10)
    padded_annotations = np.concatenate(
        [annotations, 50 * rng.standard_normal((BATCH, extra, CONTEXT_DIM)).astype(np.float32)],
        axis=1)
    padded_mask = np.pad(mask, [(0, 0), (0, extra)])
    padded_logits, padded_weights = decoder(target, padded_annotations, padded_mask, state)
    np.testing.assert_allclose(padded_logits.numpy(), logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(padded_weights.numpy()[..., :SRC_LEN], weights.numpy(), atol=1e-6)
    assert np.all(padded_weights.numpy()[..., SRC_LEN:] == 0.0)


_DECODERS = []


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(src_len=st.integers(1, 5), tgt_len=st.integers(1, 5), extra_src=st.integers(1, 4),
       extra_tgt=st.integers(1, 4), seed=st.integers(0, 1000))
def test_property_padding_invariance(src_len, tgt_len, extra_src, extra_tgt, seed):
    if not _DECODERS:
        _DECODERS.append(make_decoder(seed=11))
    decoder = _DECODERS[0]
    target, annotations, mask, state = make_inputs(
        seed, [src_len], [tgt_len], src_len=src_len, tgt_len=tgt_len)
    logits, weights = decoder(target, annotations, mask, state)
    rng = np.random.default_rng(seed)
    padded_annotations = np.concatenate(
        [annotations, rng.standard_normal((1, extra_src, CONTEXT_DIM)).astype(np.float32)], 1)
    padded_logits, padded_weights = decoder(
        np.pad(target, [(0, 0), (0, extra_tgt)]), padded_annotations,
        np.pad(mask, [(0, 0), (0, extra_src)]), state)
    np.testing.assert_allclose(padded_logits.numpy()[:, :tgt_len], logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        padded_weights.numpy()[:, :tgt_len, :src_len], weights.numpy(), atol=1e-6)
    assert np.all(padded_weights.numpy()[..., src_len:] == 0.0)


# -- another attention layer, a subclass's own cell ---------------------------------------------

class DotAttention(keras.layers.Layer):
    """A minimal non-Bahdanau attention (`e_ij = s_{i-1}^T W h_j`) that reads a variable at
    every step: the decoder then calls the layer inside its loop."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, query_shape, values_shape, mask_shape=None, keys_shape=None):
        self.kernel = self.add_weight(shape=(values_shape[-1], query_shape[-1]),
                                      initializer="glorot_uniform", name="kernel")
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def project_keys(self, values):
        return tf.matmul(values, self.kernel)

    def call(self, query, values, mask=None, keys=None):
        scores = self.scale * tf.einsum("bq,bsq->bs", query, keys)
        weights = BahdanauAttention.masked_softmax(scores, mask)
        return tf.einsum("bs,bsd->bd", weights, values), weights


def make_dot_decoder(seed=32, **kwargs):
    """A built decoder whose attention layer is `DotAttention`, all weights random."""
    decoder = Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, **kwargs)
    decoder.attention = DotAttention(name="attention")
    decoder.build((None, None), (None, None, CONTEXT_DIM))
    rng = np.random.default_rng(seed)
    decoder.set_weights(
        [0.5 * rng.standard_normal(w.shape).astype(np.float32) for w in decoder.weights])
    return decoder


def test_another_attention_layer_is_called_at_every_step():
    """With another attention layer, the loop calls it from s_{i-1}: teacher forcing equals
    the steps, and the layer's weights get gradients."""
    decoder = make_dot_decoder()
    target, annotations, mask, state = make_inputs(seed=39)
    annotations = tf.constant(annotations)
    with tf.GradientTape() as tape:
        states, _, contexts, weights = decoder.teacher_forcing(target, annotations, mask, state)
        loss = tf.reduce_sum(states) + tf.reduce_sum(contexts ** 2)
    keys = decoder.attention.project_keys(annotations)
    step_state = tf.constant(state)
    for i in range(TGT_LEN):
        step_state, step_context, step_weights = decoder.cell(
            decoder.project_inputs(decoder.embed(target[:, i])), step_state, keys,
            annotations, mask)
        np.testing.assert_allclose(states.numpy()[:, i], step_state.numpy(), atol=1e-5)
        np.testing.assert_allclose(weights.numpy()[:, i], step_weights.numpy(), atol=1e-6)
    gradients = tape.gradient(loss, [decoder.attention.kernel, decoder.attention.scale])
    assert all(np.abs(tf.convert_to_tensor(g).numpy()).max() > 1e-4 for g in gradients)


def test_a_subclass_with_its_own_cell_runs_it_with_the_reference_loop():
    """A subclass that changes `cell` (and says `implementation="reference"`, since the fused
    kernel holds its own copy of the equations) trains with its own step."""
    class ScaledDecoder(Decoder):
        def cell(self, *args, **kwargs):
            new_state, *rest = super().cell(*args, **kwargs)
            return (0.5 * new_state, *rest)

    decoder = ScaledDecoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS,
                            implementation="reference")
    decoder.build((None, None), (None, None, CONTEXT_DIM))
    target, annotations, mask, state = make_inputs(seed=38)
    states = decoder.teacher_forcing(target, annotations, mask, state)[0].numpy()
    step = decoder.cell(decoder.project_inputs(decoder.embed(target[:, 0])), state,
                        decoder.attention.project_keys(annotations), annotations, mask)[0]
    np.testing.assert_allclose(states[:, 0], step.numpy(), atol=1e-6)
    plain = Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, implementation="reference")
    plain.build((None, None), (None, None, CONTEXT_DIM))
    plain.set_weights(decoder.get_weights())
    plain_states = plain.teacher_forcing(target, annotations, mask, state)[0].numpy()
    np.testing.assert_allclose(states[:, 0], 0.5 * plain_states[:, 0], atol=1e-6)


# -- the implementation: one dispatch point ----------------------------------------------------

def spy_on_the_kernel(monkeypatch):
    """Calls of `kernels.decoder_loop.time_loop` (which still runs), one entry each."""
    calls = []
    original = decoder_loop.time_loop

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(decoder_loop, "time_loop", spy)
    return calls


def twin(decoder, **config):
    """A decoder of `decoder`'s configuration changed by `config`, with its weights."""
    other = Decoder.from_config({**decoder.get_config(), **config})
    other.build((None, None), (None, None, CONTEXT_DIM))
    other.set_weights(decoder.get_weights())
    return other


@pytest.mark.parametrize("gpu", [False, True])
def test_auto_runs_the_fused_loop_in_float32_without_a_gpu(plain_decoder, monkeypatch, gpu):
    """`implementation="auto"` takes the kernel in float32 with BahdanauAttention on a machine
    without a GPU (where it was measured), the reference with one; `"reference"` never."""
    monkeypatch.setattr(kernels, "gpu_present", lambda: gpu)
    calls = spy_on_the_kernel(monkeypatch)
    target, annotations, mask, state = make_inputs(seed=40)
    auto = twin(plain_decoder, implementation="auto")
    assert auto.implementation == "auto"
    logits, weights = auto(target, annotations, mask, state)
    assert len(calls) == (0 if gpu else 1)
    reference_logits, reference_weights = plain_decoder(target, annotations, mask, state)
    assert len(calls) == (0 if gpu else 1)  # plain_decoder is "reference"
    np.testing.assert_allclose(logits.numpy(), reference_logits.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights.numpy(), reference_weights.numpy(), atol=1e-6)
    twin(plain_decoder, implementation="fused")(target, annotations, mask, state)
    assert len(calls) == (1 if gpu else 2)  # "fused" runs the kernel, GPU or not


def test_auto_runs_the_reference_where_the_kernel_does_not_apply(monkeypatch):
    """Another attention layer, or a bfloat16 computation: "auto" runs the reference, and
    "fused" raises a ValueError that says why."""
    monkeypatch.setattr(kernels, "gpu_present", lambda: False)
    calls = spy_on_the_kernel(monkeypatch)
    target, annotations, mask, state = make_inputs(seed=41)
    make_dot_decoder()(target, annotations, mask, state)
    assert not calls
    with pytest.raises(ValueError, match="implementation='fused'.*attention layer is a "
                                         "DotAttention"):
        make_dot_decoder(implementation="fused")(target, annotations, mask, state)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = make_decoder(seed=42, implementation="auto")
        fused = make_decoder(seed=42, implementation="fused")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    mixed(target, annotations, mask, state)
    assert not calls
    with pytest.raises(ValueError, match="implementation='fused'.*float32 only.*bfloat16"):
        fused(target, annotations, mask, state)


@pytest.mark.parametrize("implementation", ["Fused", "cudnn", None, True, ""])
def test_implementation_must_be_one_of_three(implementation):
    with pytest.raises(ValueError, match=re.escape(
            "`implementation` must be one of ('auto', 'reference', 'fused'). Received: "
            f"implementation={implementation!r}")):
        Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, implementation=implementation)


@pytest.mark.parametrize("shards", [0, -1, 1.5, True, "2"])
def test_loop_shards_must_be_a_positive_integer(shards):
    with pytest.raises(ValueError, match=re.escape(
            f"`loop_shards` must be a positive integer. Received: loop_shards={shards!r}")):
        Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, loop_shards=shards)


# -- output layer -------------------------------------------------------------------------------

def test_maxout_takes_the_max_of_neighbouring_pairs():
    decoder = make_decoder(seed=13, maxout=True, tie_embeddings=False, readout_dim=4)
    rng = np.random.default_rng(14)
    states = rng.standard_normal((2, UNITS)).astype(np.float32)
    embedded = rng.standard_normal((2, EMBEDDING_DIM)).astype(np.float32)
    contexts = rng.standard_normal((2, CONTEXT_DIM)).astype(np.float32)
    logits = decoder.output_logits(states, embedded, contexts).numpy()
    np.testing.assert_allclose(
        logits, numpy_output(decoder, states, embedded, contexts), rtol=1e-5, atol=1e-5)
    # A max over pairs (0,1),(2,3)... differs from a max over halves (0,4),(1,5)...
    w = numpy_weights(decoder)
    readout = np.concatenate([states, embedded, contexts], -1) @ w["readout_dense/kernel"] + \
        w["readout_dense/bias"]
    halves = np.maximum(readout[:, :4], readout[:, 4:])
    wrong = halves @ w["output_dense/kernel"] + w["output_dense/bias"]
    assert not np.allclose(logits, wrong, atol=1e-3)


def test_tied_output_uses_the_embedding_matrix():
    decoder = make_decoder(seed=15)
    rng = np.random.default_rng(16)
    inputs = [rng.standard_normal((2, n)).astype(np.float32)
              for n in (UNITS, EMBEDDING_DIM, CONTEXT_DIM)]
    before = decoder.output_logits(*inputs).numpy()
    decoder.embedding.embeddings.assign(decoder.embedding.embeddings * 2.0)
    after = decoder.output_logits(*inputs).numpy()
    bias = decoder.output_bias.numpy()
    np.testing.assert_allclose(after - bias, 2.0 * (before - bias), rtol=1e-5, atol=1e-5)


# -- mixed precision ----------------------------------------------------------------------------

def test_mixed_bfloat16_gives_finite_logits():
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        decoder = make_decoder(seed=17)
        target, annotations, mask, state = make_inputs(seed=18)
        mask[1] = False  # a fully masked source
        logits, weights = decoder(target, annotations, mask, state)
        keys = decoder.attention.project_keys(tf.cast(annotations, "bfloat16"))
        step_logits, _, _ = decoder.step(target[:, 0], state, keys,
                                         tf.cast(annotations, "bfloat16"), mask)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    assert logits.dtype == "bfloat16" and step_logits.dtype == "bfloat16"
    logits = tf.cast(logits, tf.float32).numpy()
    assert np.all(np.isfinite(logits))
    np.testing.assert_array_equal(tf.cast(weights, tf.float32).numpy()[1], 0.0)
    np.testing.assert_allclose(
        tf.cast(step_logits, tf.float32).numpy(), logits[:, 0], atol=0.1)


# -- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("variant, implementation, loop_shards", [
    ("maxout-untied", "fused", 3), ("normalized-attention", "reference", 1),
    ("normalized-attention", "auto", 2)])
def test_config_round_trip(variant, implementation, loop_shards):
    decoder = make_decoder(seed=19, dropout=0.25, implementation=implementation,
                           loop_shards=loop_shards, **OUTPUT_VARIANTS[variant])
    config = decoder.get_config()
    for key, value in OUTPUT_VARIANTS[variant].items():
        assert config[key] == value
    assert config["dropout"] == 0.25 and config["vocab_size"] == VOCAB
    assert config["implementation"] == implementation and config["loop_shards"] == loop_shards
    clone = Decoder.from_config(config)
    assert clone.get_config() == config
    clone.build((None, None), (None, None, CONTEXT_DIM))
    assert [(w.path, tuple(w.shape)) for w in clone.weights] == [
        (w.path, tuple(w.shape)) for w in decoder.weights]
    clone.set_weights(decoder.get_weights())
    inputs = make_inputs(seed=20)
    for x, y in zip(decoder(*inputs), clone(*inputs)):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    serialized = keras.saving.serialize_keras_object(decoder)
    assert serialized["registered_name"] == "bahdanau_keras>Decoder"
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config


def test_dropout_only_in_training():
    decoder = make_decoder(seed=21, dropout=0.5)
    inputs = make_inputs(seed=22)
    first = decoder(*inputs)[0].numpy()
    np.testing.assert_array_equal(decoder(*inputs, training=False)[0].numpy(), first)
    seed_everything(1)
    trained = decoder(*inputs, training=True)[0].numpy()
    assert not np.allclose(trained, first) and np.all(np.isfinite(trained))


# -- without attention: RNNencdec, the paper's baseline ---------------------------------------

@pytest.fixture(scope="module")
def encdec_decoder():
    return make_decoder(seed=50, attention=None)


def test_without_attention_there_are_no_attention_weights():
    decoder = Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, attention=None,
                      name="decoder")
    decoder.build((None, None), (None, None, CONTEXT_DIM))
    assert decoder.attention is None and decoder.attention_type is None
    paths = {w.path for w in decoder.weights}
    assert not [p for p in paths if "attention" in p]
    # The same weights as the attention decoder's, less W_a, U_a and v_a.
    attention = make_decoder(seed=51, name="decoder")
    assert decoder.count_params() == attention.count_params() - attention.attention.count_params()
    assert paths == {w.path for w in attention.weights if "/attention/" not in w.path}


def test_without_attention_the_context_is_the_summary_at_every_step(encdec_decoder):
    """Every step's context is `[→h_{T_x}; ←h_1]` of its own sentence (the forward half at
    the last REAL position, whatever the padding holds), the states and logits are those of
    the NumPy steps with that context, and the attention weights are zeros."""
    target, annotations, mask, state = make_inputs(seed=52)
    annotations[~mask] = 100.0  # padding the summary must not read
    states, embedded, contexts, weights = encdec_decoder.teacher_forcing(
        target, annotations, mask, state)
    summary = numpy_summary(annotations.astype(np.float64), mask)
    assert not np.any(np.abs(summary) >= 100.0)
    assert summary[2, 0] == annotations[2, 0, 0] and summary[0, 0] == annotations[0, 3, 0]
    contexts = contexts.numpy()
    for i in range(TGT_LEN):
        np.testing.assert_array_equal(contexts[:, i], contexts[:, 0])  # the same at every step
    np.testing.assert_allclose(contexts[:, 0], summary, rtol=0, atol=0)
    np.testing.assert_array_equal(weights.numpy(), np.zeros((BATCH, TGT_LEN, SRC_LEN)))
    logits, _ = encdec_decoder(target, annotations, mask, state)
    numpy_state = state.astype(np.float64)
    for i in range(TGT_LEN):
        expected_logits, numpy_state, _, expected_context = numpy_step(
            encdec_decoder, target[:, i], numpy_state, annotations.astype(np.float64), mask)
        np.testing.assert_allclose(states.numpy()[:, i], numpy_state, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(logits.numpy()[:, i], expected_logits, rtol=1e-4, atol=1e-4)


def test_without_attention_the_summary_follows_the_mask(encdec_decoder):
    """Padding the source (with any values) changes nothing; without a mask every position
    is real, so the forward half is read at the last one."""
    target, annotations, mask, state = make_inputs(seed=53)
    logits, _ = encdec_decoder(target, annotations, mask, state)
    rng = np.random.default_rng(54)
    padded = np.concatenate(
        [annotations, 50 * rng.standard_normal((BATCH, 3, CONTEXT_DIM)).astype(np.float32)], 1)
    padded_logits, padded_weights = encdec_decoder(
        target, padded, np.pad(mask, [(0, 0), (0, 3)]), state)
    np.testing.assert_allclose(padded_logits.numpy(), logits.numpy(), atol=1e-5)
    assert tuple(padded_weights.shape) == (BATCH, TGT_LEN, SRC_LEN + 3)
    full = np.ones_like(mask)
    np.testing.assert_array_equal(
        Decoder.source_summary(tf.constant(padded)).numpy(),
        numpy_summary(padded, np.ones((BATCH, SRC_LEN + 3), bool)))
    np.testing.assert_array_equal(
        Decoder.source_summary(tf.constant(annotations), full).numpy(),
        Decoder.source_summary(tf.constant(annotations)).numpy())
    np.testing.assert_array_equal(  # one sentence of each length alone: its own last position
        encdec_decoder.project_keys(tf.constant(annotations), mask).numpy(),
        numpy_summary(annotations, mask))


def test_without_attention_step_equals_teacher_forcing(encdec_decoder):
    target, annotations, mask, state = make_inputs(seed=55)
    logits, weights = encdec_decoder(target, annotations, mask, state)
    keys = encdec_decoder.project_keys(annotations, mask)  # c: [batch, context_dim]
    assert tuple(keys.shape) == (BATCH, CONTEXT_DIM)
    step_state = tf.constant(state)
    for i in range(TGT_LEN):
        step_logits, step_state, step_weights = encdec_decoder.step(
            target[:, i], step_state, keys, annotations, mask)
        np.testing.assert_allclose(logits.numpy()[:, i], step_logits.numpy(), atol=1e-5)
        np.testing.assert_array_equal(step_weights.numpy(), np.zeros((BATCH, SRC_LEN)))


def test_without_attention_gradients_reach_the_annotations_through_the_summary(
        encdec_decoder):
    target, annotations, mask, state = make_inputs(seed=56)
    annotations = tf.constant(annotations)
    with tf.GradientTape() as tape:
        tape.watch(annotations)
        logits, _ = encdec_decoder(target, annotations, mask, state, training=True)
        loss = tf.reduce_sum(logits ** 2)
    gradient = tape.gradient(loss, annotations).numpy()
    half = CONTEXT_DIM // 2
    read = np.zeros(gradient.shape, bool)  # the forward half at T_x, the backward half at 1
    for b, length in enumerate(SOURCE_LENGTHS):
        read[b, length - 1, :half] = read[b, 0, half:] = True
    assert np.all(np.abs(gradient[read]) > 0) and np.all(gradient[~read] == 0)


def test_without_attention_auto_runs_the_reference_and_fused_raises(encdec_decoder,
                                                                    monkeypatch):
    monkeypatch.setattr(kernels, "gpu_present", lambda: False)
    assert "no attention (attention=None)" in decoder_loop.unsupported(encdec_decoder)
    calls = spy_on_the_kernel(monkeypatch)
    inputs = make_inputs(seed=57)
    auto = twin(encdec_decoder, implementation="auto")
    for x, y in zip(auto(*inputs), encdec_decoder(*inputs)):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert not calls
    with pytest.raises(ValueError, match=re.escape(
            "`implementation='fused'` cannot run layer") + ".*has no attention"):
        twin(encdec_decoder, implementation="fused")(*inputs)


def test_without_attention_config_round_trip(encdec_decoder):
    config = encdec_decoder.get_config()
    assert config["attention"] is None
    clone = twin(encdec_decoder)
    assert clone.attention is None and clone.get_config() == config
    inputs = make_inputs(seed=58)
    for x, y in zip(encdec_decoder(*inputs), clone(*inputs)):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    serialized = keras.saving.serialize_keras_object(encdec_decoder)
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config
    # A configuration written before the option existed is the attention decoder's.
    old = {key: value for key, value in make_decoder(seed=59).get_config().items()
           if key != "attention"}
    assert Decoder.from_config(old).attention_type == "bahdanau"
    assert isinstance(Decoder.from_config(old).attention, BahdanauAttention)


def test_without_attention_needs_annotations_with_two_halves():
    decoder = Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, attention=None)
    with pytest.raises(ValueError, match=re.escape(
            "must have an even number of features (a forward half, then a backward half). "
            "Received: 5")):
        decoder.build((None, None), (None, None, 5))


@pytest.mark.parametrize("attention", ["luong", "Bahdanau", "none", "", 0, False])
def test_attention_must_be_bahdanau_or_none(attention):
    with pytest.raises(ValueError, match=re.escape(
            f"`attention` must be 'bahdanau' (Bahdanau attention) or None (no attention: the "
            f"encoder's summary is the context of every step). Received: "
            f"attention={attention!r}")):
        Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS, attention=attention)
