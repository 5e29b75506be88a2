"""Tests of the `Decoder` against a NumPy implementation of Appendix A.2.2 of arXiv:1409.0473.

    c_i = Σ_j α_ij h_j,  α_ij = softmax_j(v_a^T tanh(W_a s_{i-1} + U_a h_j))
    z_i = σ(W_z E y_{i-1} + U_z s_{i-1} + C_z c_i),  r_i = σ(W_r E y_{i-1} + U_r s_{i-1} + C_r c_i)
    s̃_i = tanh(W E y_{i-1} + U [r_i ∘ s_{i-1}] + C c_i),  s_i = (1 - z_i) ∘ s_{i-1} + z_i ∘ s̃_i
    t̃_i = U_o s_i + V_o E y_{i-1} + C_o c_i,  t_i = maxout(t̃_i),  logits = W_o t_i

Distinct small sizes: vocabulary 19, embedding 5, units 7, attention units 3, context 6,
batch 3, source length 4, target length 8.
"""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bahdanau_keras.attention import BahdanauAttention
from bahdanau_keras.decoder import Decoder
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
    """A built decoder whose weights are all random (biases included)."""
    kwargs = {"maxout": True, "tie_embeddings": True, **kwargs}
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

def test_teacher_forcing_equals_repeated_steps(decoder):
    target, annotations, mask, state = make_inputs(seed=5)
    logits, weights = decoder(target, annotations, mask, state)
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


def test_source_padding_invariance(decoder):
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


# -- the loop is one in-graph while loop --------------------------------------------------------

def trace_call(decoder, tgt_len):
    call = tf.function(decoder.call)
    return call.get_concrete_function(
        tf.TensorSpec([BATCH, tgt_len], tf.int32), tf.TensorSpec([BATCH, SRC_LEN, CONTEXT_DIM]),
        tf.TensorSpec([BATCH, SRC_LEN], tf.bool), tf.TensorSpec([BATCH, UNITS]))


@contextlib.contextmanager
def loop_variant(decoder, hoist=True, fused=True):
    """The decoder's training loop with the kernels' gradients after the loop (`hoist`) and
    with its hand-written backward loop (`fused`), or TensorFlow's step-by-step gradient."""
    decoder.hoist_weight_gradients, decoder.fused_loop = hoist, fused
    try:
        yield decoder
    finally:
        decoder.hoist_weight_gradients = Decoder.hoist_weight_gradients
        decoder.fused_loop = Decoder.fused_loop


@pytest.mark.parametrize("fused", [True, False])
def test_teacher_forcing_is_one_while_loop(plain_decoder, monkeypatch, fused):
    step_traces = []
    # The fused loop's step is inside `_fused_loop`; the other one calls `_cell`.
    name = "_fused_loop" if fused else "_cell"
    original = getattr(plain_decoder, name)

    def counting(*args, **kwargs):
        step_traces.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(plain_decoder, name, counting)
    with loop_variant(plain_decoder, fused=fused):
        short, long = trace_call(plain_decoder, 2), trace_call(plain_decoder, 11)
    # The step is traced once per graph, whatever the target length: no Python loop over time.
    assert len(step_traces) == 2
    short_ops, long_ops = short.graph.get_operations(), long.graph.get_operations()
    assert len(long_ops) == len(short_ops)
    loops = [op for op in long_ops if op.type in ("While", "StatelessWhile")]
    assert len(loops) == 1
    # The loop's results are what `call` computes eagerly.
    target, annotations, mask, state = make_inputs(seed=12, tgt_len=11)
    for x, y in zip(long(*map(tf.constant, (target, annotations, mask, state))),
                    plain_decoder(target, annotations, mask, state)):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_step_invariant_work_is_outside_the_loop(plain_decoder, fused):
    """The loop body reads no weight (the fused loop) or only v_a: W_a, C and U are read (and
    split) once before the loop, and the key projection U_a h, the embedding, the input
    projection, the deep output and the vocabulary projection run outside it."""
    with loop_variant(plain_decoder, fused=fused):
        graph = trace_call(plain_decoder, 6).graph
    (loop,) = [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
    body = graph._functions[loop.get_attr("body").name].graph
    read_shapes = sorted(tuple(op.outputs[0].shape) for op in body.get_operations()
                         if op.type == "ReadVariableOp")
    attention = plain_decoder.attention
    assert read_shapes == ([] if fused else [tuple(attention.score_vector.shape)])
    outer_reads = {tuple(op.outputs[0].shape) for op in graph.get_operations()
                   if op.type == "ReadVariableOp"}
    assert tuple(attention.query_dense.kernel.shape) in outer_reads
    assert tuple(plain_decoder.context_kernel.shape) in outer_reads
    assert tuple(plain_decoder.recurrent_kernel.shape) in outer_reads
    body_types = {op.type for op in body.get_operations()}
    assert not body_types & {"GatherV2", "ResourceGather", "Max"}
    # The one batched product is the context, Σ_j α_ij h_j: [batch, 1, src] x [batch, src, C].
    batched = [tuple(op.outputs[0].shape) for op in body.get_operations()
               if op.type == "BatchMatMulV2"]
    assert batched == [(BATCH, 1, CONTEXT_DIM)]
    # Nothing in the body has a vocabulary-sized axis.
    assert not [op for op in body.get_operations()
                for out in op.outputs if VOCAB in tuple(out.shape)]


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


def loop_gradients(decoder, function, hoist=True, fused=True, seed=30, shards=1, rows=None,
                   empty_source=False):
    """The logits and attention weights, and the gradients of a loss that reads both, with
    respect to every trainable weight, the annotations and the initial state (the first
    `rows` sentences of the batch; with `empty_source`, the second sentence's source is all
    padding)."""
    target, annotations, mask, state = (x[:rows] for x in make_inputs(seed=seed))
    if empty_source:
        mask = mask.copy()
        mask[1] = False
    annotations, state = tf.constant(annotations), tf.constant(state)
    rng = np.random.default_rng(seed + 1)
    logit_weights = tf.constant(rng.standard_normal((BATCH, TGT_LEN, VOCAB))[:rows], tf.float32)
    attention_weights = tf.constant(
        rng.standard_normal((BATCH, TGT_LEN, SRC_LEN))[:rows], tf.float32)

    def run():
        with tf.GradientTape() as tape:
            tape.watch([annotations, state])
            states, embedded, contexts, weights = decoder.teacher_forcing(
                target, annotations, mask, state, loop_shards=shards)
            logits = decoder.output_logits(states, embedded, contexts)
            loss = (tf.reduce_sum(logits * logit_weights)
                    + 10.0 * tf.reduce_sum(weights * attention_weights))
        return [logits, weights] + tape.gradient(
            loss, decoder.trainable_variables + [annotations, state])

    with loop_variant(decoder, hoist, fused):
        return [g.numpy() for g in (tf.function(run)() if function else run())]


@pytest.mark.parametrize("attention, fused", [
    ("bahdanau", True), ("bahdanau", False), ("normalized", True), ("normalized", False),
    ("dot", None)])
def test_hoisted_weight_gradients_equal_step_by_step_gradients(attention, fused):
    """The loop's own gradient (kernels' gradients summed after the loop in one product each;
    `fused`: the backward loop written out) equals TensorFlow differentiating every step,
    for every weight and both inputs, eagerly and in a tf.function; also when the attention
    is another layer read inside the loop (never fused)."""
    decoder = make_decoder(seed=31, normalize_attention=attention == "normalized")
    if attention == "dot":
        decoder = Decoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS)
        decoder.attention = DotAttention(name="attention")
        decoder.build((None, None), (None, None, CONTEXT_DIM))
        rng = np.random.default_rng(32)
        decoder.set_weights(
            [0.5 * rng.standard_normal(w.shape).astype(np.float32) for w in decoder.weights])
        assert decoder.loop_kernels()[3] is None
    reference = loop_gradients(decoder, function=False, hoist=False)
    names = (["logits", "attention weights"] + [v.path for v in decoder.trainable_variables]
             + ["annotations", "initial_state"])
    for function in (False, True):
        hoisted = loop_gradients(decoder, function=function, fused=fused)
        for name, x, y in zip(names, hoisted, reference, strict=True):
            assert np.abs(y).max() > 1e-3, name  # every gradient is far from zero
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * np.abs(y).max(),
                                       err_msg=name)


def test_fused_gradient_can_be_taken_twice_eagerly(plain_decoder):
    """A persistent tape may ask for the fused loop's gradient more than once."""
    target, annotations, mask, state = make_inputs(seed=37)
    annotations = tf.constant(annotations)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(annotations)
        states, _, contexts, _ = plain_decoder.teacher_forcing(
            target, annotations, mask, state, loop_shards=2)
        loss = tf.reduce_sum(states) + tf.reduce_sum(contexts ** 2)
    first = tape.gradient(loss, annotations).numpy()
    second = tape.gradient(loss, annotations).numpy()
    assert np.abs(first).max() > 1e-3
    np.testing.assert_array_equal(first, second)


def test_a_decoder_with_its_own_step_is_not_fused(monkeypatch):
    """A subclass that overrides `_cell` trains with its own step, not the fused loop's
    copy of the equations."""
    class ScaledDecoder(Decoder):
        def _cell(self, *args, **kwargs):
            new_state, *rest = super()._cell(*args, **kwargs)
            return (0.5 * new_state, *rest)

    decoder = ScaledDecoder(VOCAB, EMBEDDING_DIM, UNITS, ATTENTION_UNITS)
    decoder.build((None, None), (None, None, CONTEXT_DIM))
    monkeypatch.setattr(decoder, "_fused_loop", None)  # would fail if it were called
    target, annotations, mask, state = make_inputs(seed=38)
    states = decoder.teacher_forcing(target, annotations, mask, state)[0].numpy()
    step = decoder.cell(decoder.project_inputs(decoder.embed(target[:, :1]))[:, 0], state,
                        decoder.attention.project_keys(annotations), annotations, mask)[0]
    np.testing.assert_allclose(states[:, 0], step.numpy(), atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_loop_gradients_with_an_all_padding_source(fused):
    """A sentence whose source is all padding attends to nothing (α = 0, c = 0): the same
    outputs and gradients as TensorFlow's step-by-step gradient, all finite."""
    decoder = make_decoder(seed=36)
    reference = loop_gradients(decoder, function=False, hoist=False, empty_source=True)
    assert not np.any(reference[1][1])  # no attention for that sentence
    for function in (False, True):
        result = loop_gradients(decoder, function=function, fused=fused, shards=2,
                                empty_source=True)
        for x, y in zip(result, reference, strict=True):
            assert np.all(np.isfinite(x))
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * np.abs(y).max())


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shards, rows", [(2, None), (3, None), (4, None), (2, 1)])
def test_loop_in_parts_gives_the_same_results_and_gradients(shards, rows, fused):
    """The batch split into `shards` parts inside the loop (3 sentences in 2, 3 or 4 parts,
    some empty; 1 sentence in 2) gives the outputs and gradients of the whole batch."""
    decoder = make_decoder(seed=34)
    reference = loop_gradients(decoder, function=False, hoist=False, rows=rows)
    for function in (False, True):
        parts = loop_gradients(decoder, function=function, fused=fused, shards=shards,
                               rows=rows)
        for x, y in zip(parts, reference, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * np.abs(y).max())


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("tgt_len", [0, TGT_LEN])
def test_loop_gradient_with_and_without_steps(plain_decoder, tgt_len, fused):
    """A target with no step (only START) has zero gradients, as TensorFlow's step-by-step
    gradient; with steps, the two agree (eagerly and in a tf.function)."""
    target, annotations, mask, state = make_inputs(seed=35)
    annotations, state = tf.constant(annotations), tf.constant(state)
    sources = plain_decoder.trainable_variables + [annotations, state]

    def gradients():
        with tf.GradientTape() as tape:
            tape.watch([annotations, state])
            states, _, contexts, _ = plain_decoder.teacher_forcing(
                target[:, :tgt_len], annotations, mask, state, loop_shards=2)
            loss = tf.reduce_sum(states) + tf.reduce_sum(contexts ** 2)
        return [tf.zeros(s.shape) if g is None else tf.convert_to_tensor(g)
                for s, g in zip(sources, tape.gradient(loss, sources))]

    with loop_variant(plain_decoder, hoist=False):
        reference = [g.numpy() for g in gradients()]
    for function in (False, True):
        with loop_variant(plain_decoder, fused=fused):
            hoisted = tf.function(gradients)() if function else gradients()
        for x, y in zip(hoisted, reference, strict=True):
            np.testing.assert_allclose(x.numpy(), y, rtol=1e-4,
                                       atol=1e-5 * max(np.abs(y).max(), 1))
    if tgt_len == 0:
        assert not any(np.any(g) for g in reference)
    else:
        assert np.abs(reference[-1]).max() > 1e-3


def test_loop_shards_must_be_a_positive_integer(plain_decoder):
    target, annotations, mask, state = make_inputs()
    for shards in (0, 1.5, True):
        with pytest.raises(ValueError, match=f"`shards` must be a positive integer. "
                                              f"Received: {shards!r}"):
            plain_decoder.teacher_forcing(target, annotations, mask, state, loop_shards=shards)


def loop_products(decoder):
    """Output shapes of the matrix products that the while loops of a training step's graph
    compute (the forward loop and its gradient). Products whose result does not reach the
    loop body's outputs are left out: the runtime prunes them."""
    target, annotations, mask, state = make_inputs(seed=33)

    @tf.function
    def gradients(target, annotations, mask, state):
        with tf.GradientTape() as tape:
            logits, _ = decoder(target, annotations, mask, state)
            loss = tf.reduce_sum(logits)
        return tape.gradient(loss, decoder.trainable_variables)

    graph = gradients.get_concrete_function(target, annotations, mask, state).graph
    # Every function the graph calls (the loops and their gradients may sit in functions).
    functions = {name: f.graph for name, f in graph._functions.items()}
    bodies = {op.get_attr("body").name for g in [graph, *functions.values()]
              for op in g.get_operations() if op.type in ("While", "StatelessWhile")}
    assert len(bodies) == 2  # the forward loop and its gradient
    shapes = set()
    for name in bodies:
        body = functions[name]
        live, stack = set(), [t.op for t in body.outputs]
        while stack:
            op = stack.pop()
            if op.name not in live:
                live.add(op.name)
                stack.extend([t.op for t in op.inputs] + list(op.control_inputs))
        shapes |= {tuple(op.outputs[0].shape) for op in body.get_operations()
                   if op.type == "MatMul" and op.name in live}
    return shapes


@pytest.mark.parametrize("fused", [True, False])
def test_kernels_are_not_differentiated_inside_the_loop(plain_decoder, fused):
    """No product in the loops has a kernel's shape: the gradients of C, [U_z; U_r], U and
    W_a are computed after the loop. Differentiated step by step, they are in the loop."""
    kernel_shapes = {(CONTEXT_DIM, 3 * UNITS), (UNITS, 2 * UNITS), (UNITS, UNITS),
                     (UNITS, ATTENTION_UNITS), (UNITS, ATTENTION_UNITS + 2 * UNITS)}
    with loop_variant(plain_decoder, fused=fused):
        products = loop_products(plain_decoder)
    assert (BATCH, 3 * UNITS) in products  # C c_i
    assert not products & kernel_shapes
    with loop_variant(plain_decoder, hoist=False):
        assert kernel_shapes - {(UNITS, ATTENTION_UNITS + 2 * UNITS)} <= loop_products(
            plain_decoder)


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

@pytest.mark.parametrize("variant", ["maxout-untied", "normalized-attention"])
def test_config_round_trip(variant):
    decoder = make_decoder(seed=19, dropout=0.25, **OUTPUT_VARIANTS[variant])
    config = decoder.get_config()
    for key, value in OUTPUT_VARIANTS[variant].items():
        assert config[key] == value
    assert config["dropout"] == 0.25 and config["vocab_size"] == VOCAB
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
