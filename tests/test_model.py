"""Tests of the `Translator` and its masked training loss.

Distinct small sizes: source vocabulary 23, target vocabulary 17, embedding 5, encoder units 3
(annotations of 6), decoder units 7, attention units 11, batch 3, source length 6, target
length 9 (`START y_1 ... y_n END` padded with 0).
"""

import dataclasses
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from bahdanau_keras.model import ModelConfig, Translator, softmax_cross_entropy
from bahdanau_keras.text import END_ID, PAD_ID, START_ID
from bahdanau_keras.train import seed_everything

SIZES = dict(source_vocab_size=23, target_vocab_size=17, embedding_dim=5, encoder_units=3,
             decoder_units=7, attention_units=11)
SOURCE_LENGTHS, TARGET_LENGTHS = [6, 3, 1], [9, 4, 3]  # target lengths count START and END
BATCH, SRC_LEN, TGT_LEN = 3, 6, 9


def make_batch(seed=0, source_lengths=SOURCE_LENGTHS, target_lengths=TARGET_LENGTHS,
               src_len=SRC_LEN, tgt_len=TGT_LEN):
    rng = np.random.default_rng(seed)
    batch = len(source_lengths)
    source = rng.integers(4, SIZES["source_vocab_size"], (batch, src_len)).astype(np.int32)
    source[np.arange(src_len)[None, :] >= np.asarray(source_lengths)[:, None]] = PAD_ID
    target = rng.integers(4, SIZES["target_vocab_size"], (batch, tgt_len)).astype(np.int32)
    target[:, 0] = START_ID
    for b, length in enumerate(target_lengths):
        target[b, length - 1] = END_ID
        target[b, length:] = PAD_ID
    return source, target


def make_model(seed=0, **kwargs):
    seed_everything(seed)
    return Translator(**{**SIZES, **kwargs})


@pytest.fixture(scope="module")
def model():
    return make_model()


def expected_parameters(c):
    """The parameter count from the sizes of `ModelConfig`, term by term of the paper."""
    emb, enc, dec, att = c.embedding_dim, c.encoder_units, c.decoder_units, c.attention_units
    readout = emb * (2 if c.maxout else 1)
    encoder = (c.source_vocab_size * emb  # source embedding
               + 2 * 3 * enc * (emb + enc + 2)  # two GRUs: kernel, recurrent, 2 biases
               + enc * dec + dec)  # W_s and its bias
    attention = dec * att + 2 * enc * att + att + ((1 + att) if c.normalize_attention else 0)
    decoder = (c.target_vocab_size * emb  # target embedding
               + attention
               + 3 * dec * (emb + 1 + 2 * enc + dec)  # [W; C; U] of z, r, s̃ and the bias
               + (dec + emb + 2 * enc + 1) * readout  # deep output U_o, V_o, C_o
               + (c.target_vocab_size if c.tie_embeddings
                  else (emb + 1) * c.target_vocab_size))  # W_o
    return encoder + decoder


def numpy_loss(logits, target, label_smoothing=0.0):
    """Summed masked cross-entropy of `target[:, 1:]` under `logits`, in float64."""
    logits = np.asarray(logits, np.float64)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    labels = target[:, 1:]
    real = labels != PAD_ID
    nll = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    # Label smoothing: cross-entropy with (1 - ε) one_hot + ε / vocab.
    loss = (1.0 - label_smoothing) * nll - label_smoothing * log_probs.mean(-1)
    return loss[real].sum(), int(real.sum())


# -- shapes and parameters ----------------------------------------------------------------------

def test_output_shapes(model):
    source, target = make_batch()
    logits, weights = model((source, target[:, :-1]))
    assert tuple(logits.shape) == (BATCH, TGT_LEN - 1, SIZES["target_vocab_size"])
    assert tuple(weights.shape) == (BATCH, TGT_LEN - 1, SRC_LEN)
    weights = weights.numpy()
    source_mask = source != PAD_ID
    assert np.all(weights[np.broadcast_to(~source_mask[:, None], weights.shape)] == 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(logits.numpy()))


def test_weights_are_created_in_the_constructor():
    model = Translator(**SIZES, name="translator")
    assert model.built
    shapes = {w.path: tuple(w.shape) for w in model.weights}
    assert shapes["translator/decoder/context_kernel"] == (6, 21)
    assert shapes["translator/decoder/attention/key_dense/kernel"] == (6, 11)
    assert shapes["translator/encoder/initial_state_dense/kernel"] == (3, 7)
    assert shapes["translator/encoder/bidirectional_gru/backward_gru/gru_cell/kernel"] == (5, 9)
    assert len(shapes) == len(model.weights) == 20


@pytest.mark.parametrize("options", [
    {}, dict(maxout=False), dict(tie_embeddings=False), dict(normalize_attention=True),
    dict(maxout=False, tie_embeddings=False, normalize_attention=True)])
def test_parameter_count_matches_model_config(options):
    config = ModelConfig(**SIZES, **options)
    model = Translator.from_model_config(config)
    assert model.count_params() == expected_parameters(config)
    assert len(model.non_trainable_weights) == 0


def test_parameter_count_of_the_paper_sized_defaults():
    config = ModelConfig(source_vocab_size=8000, target_vocab_size=8000)
    model = Translator.from_model_config(config)
    assert model.count_params() == expected_parameters(config)


# -- the loss -----------------------------------------------------------------------------------

@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_loss_and_count_equals_masked_cross_entropy(model, label_smoothing):
    source, target = make_batch(seed=1)
    loss, count = model.loss_and_count(source, target, label_smoothing=label_smoothing)
    logits, _ = model((source, target[:, :-1]))
    expected_loss, expected_count = numpy_loss(logits.numpy(), target, label_smoothing)
    assert int(count) == expected_count == sum(TARGET_LENGTHS) - BATCH
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-5)
    # The same as Keras' categorical cross-entropy over the real tokens.
    real = target[:, 1:] != PAD_ID
    keras_loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=label_smoothing, reduction="sum")(
        keras.ops.one_hot(target[:, 1:], SIZES["target_vocab_size"]), logits,
        sample_weight=real.astype(np.float32))
    np.testing.assert_allclose(float(loss), float(keras_loss), rtol=1e-5)


@pytest.mark.parametrize("function", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_values_and_gradients(label_smoothing, function):
    """Against a float64 NumPy reference: `-Σ_k q_k log softmax(x)_k` with
    `q = (1 - ε) one_hot + ε / vocab`, whose gradient is `(softmax(x) - q) dy`."""
    rng = np.random.default_rng(20)
    logits = 4.0 * rng.standard_normal((6, 11)).astype(np.float32)
    logits[2] += 50.0  # large logits stay finite
    labels = rng.integers(0, 11, size=6).astype(np.int32)
    upstream = rng.standard_normal(6).astype(np.float32)

    def run(logits, labels, upstream):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            nll = softmax_cross_entropy(logits, labels, label_smoothing)
            weighted = tf.reduce_sum(nll * upstream)
        return nll, tape.gradient(weighted, logits)

    nll, gradient = (tf.function(run) if function else run)(
        tf.constant(logits), labels, upstream)
    x = logits.astype(np.float64)
    log_softmax = x - x.max(-1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
    q = (1 - label_smoothing) * np.eye(11)[labels] + label_smoothing / 11
    np.testing.assert_allclose(nll.numpy(), -(q * log_softmax).sum(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gradient.numpy(), (np.exp(log_softmax) - q) * upstream[:, None],
                               rtol=1e-5, atol=1e-6)
    # No tokens: an empty loss and gradient.
    empty_nll, empty_gradient = run(tf.zeros([0, 11]), np.zeros([0], np.int32), np.zeros([0]))
    assert empty_nll.shape == (0,) and empty_gradient.shape == (0, 11)


def test_softmax_cross_entropy_rejects_bad_smoothing():
    with pytest.raises(ValueError, match=r"label_smoothing.*Received: 1.0"):
        softmax_cross_entropy(tf.zeros([2, 3]), [0, 1], 1.0)


@pytest.mark.parametrize("chunks, shards", [(2, 1), (3, 1), (64, 1), (1, 2), (2, 2), (1, 5)])
def test_loss_in_chunks_equals_the_loss_in_one_piece(model, chunks, shards):
    # 64 chunks > the real tokens: some pieces are empty and add nothing; the same for
    # 5 loop shards of a batch of 3 sentences.
    source, target = make_batch(seed=4)
    variables = model.trainable_variables

    def loss_and_gradients(pieces, shards=1):
        with tf.GradientTape() as tape:
            loss, count = model.loss_and_count(source, target, label_smoothing=0.1,
                                               chunks=pieces, loop_shards=shards)
        return loss, count, tape.gradient(loss, variables)

    loss, count, gradients = loss_and_gradients(1)
    chunked_loss, chunked_count, chunked_gradients = loss_and_gradients(chunks, shards)
    assert int(chunked_count) == int(count)
    np.testing.assert_allclose(float(chunked_loss), float(loss), rtol=1e-5)
    for variable, expected, got in zip(variables, gradients, chunked_gradients):
        np.testing.assert_allclose(tf.convert_to_tensor(got).numpy(),
                                   tf.convert_to_tensor(expected).numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=variable.path)


def test_loss_in_chunks_in_a_tf_function_and_without_real_tokens(model):
    source, target = make_batch(seed=5)
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec])
    def chunked(s, t):
        with tf.GradientTape() as tape:
            loss, count = model.loss_and_count(s, t, chunks=3, loop_shards=2)
        return loss, count, tape.gradient(loss, model.trainable_variables)

    loss, count = model.loss_and_count(source, target)
    chunked_loss, chunked_count, _ = chunked(source, target)
    assert int(chunked_count) == int(count)
    np.testing.assert_allclose(float(chunked_loss), float(loss), rtol=1e-5)
    # A batch with no real target token (only START, then padding): nothing to learn.
    empty_target = np.zeros_like(target)
    empty_target[:, 0] = START_ID
    empty_loss, empty_count, gradients = chunked(source, empty_target)
    assert int(empty_count) == 0 and float(empty_loss) == 0.0
    for gradient in gradients:
        assert gradient is not None
        assert not np.any(tf.convert_to_tensor(gradient).numpy())


@pytest.mark.parametrize("chunks", [0, -1, 1.5, True])
def test_loss_rejects_a_bad_number_of_chunks(model, chunks):
    source, target = make_batch(seed=4)
    with pytest.raises(ValueError, match=f"`chunks` must be a positive integer. Received: "
                                         f"{re.escape(repr(chunks))}"):
        model.loss_and_count(source, target, chunks=chunks)


def test_loss_ignores_padding(model):
    source, target = make_batch(seed=2)
    loss, count = model.loss_and_count(source, target)
    padded_loss, padded_count = model.loss_and_count(
        np.pad(source, [(0, 0), (0, 4)]), np.pad(target, [(0, 0), (0, 3)]))
    assert int(padded_count) == int(count)
    np.testing.assert_allclose(float(padded_loss), float(loss), rtol=1e-5)
    # Each sentence's loss alone adds up to the batch's loss.
    parts = [model.loss_and_count(source[b:b + 1], target[b:b + 1]) for b in range(BATCH)]
    np.testing.assert_allclose(sum(float(p[0]) for p in parts), float(loss), rtol=1e-5)
    assert sum(int(p[1]) for p in parts) == int(count)


def test_sentence_translates_the_same_alone_or_in_a_batch(model):
    source, target = make_batch(seed=3)
    logits, weights = model((source, target[:, :-1]))
    alone_logits, alone_weights = model((source[1:2, :3], target[1:2, :3]))
    np.testing.assert_allclose(alone_logits.numpy()[0], logits.numpy()[1, :3], atol=1e-5)
    np.testing.assert_allclose(alone_weights.numpy()[0], weights.numpy()[1, :3, :3], atol=1e-6)


def test_loss_in_a_tf_function_with_unknown_shapes(model):
    source, target = make_batch(seed=4)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
    def loss_fn(s, t):
        return model.loss_and_count(s, t, label_smoothing=0.1)

    loss, count = loss_fn(source, target)
    eager_loss, eager_count = model.loss_and_count(source, target, label_smoothing=0.1)
    np.testing.assert_allclose(float(loss), float(eager_loss), rtol=1e-5)
    assert int(count) == int(eager_count)


# -- training -----------------------------------------------------------------------------------

def test_gradients_are_finite_and_reach_every_weight(model):
    source, target = make_batch(seed=5)
    with tf.GradientTape() as tape:
        loss, count = model.loss_and_count(source, target, label_smoothing=0.1, training=True)
        loss = loss / tf.cast(count, loss.dtype)
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == len(model.trainable_variables) == 20
    for variable, grad in zip(model.trainable_variables, grads):
        assert grad is not None, variable.path
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.all(np.isfinite(grad)), variable.path
        assert np.any(grad != 0.0), variable.path


def test_a_few_adam_steps_decrease_the_loss():
    model = make_model(seed=6, dropout=0.1)
    source, target = make_batch(seed=7)
    optimizer = keras.optimizers.Adam(learning_rate=0.05, global_clipnorm=1.0)

    def train_step():
        with tf.GradientTape() as tape:
            loss, count = model.loss_and_count(source, target, training=True)
            loss = loss / tf.cast(count, loss.dtype)
        optimizer.apply_gradients(
            zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    def eval_loss():
        loss, count = model.loss_and_count(source, target)
        return float(loss) / int(count)

    before = eval_loss()
    losses = [float(train_step()) for _ in range(10)]
    after = eval_loss()
    assert np.all(np.isfinite(losses))
    assert after < 0.75 * before, (before, after)
    assert int(optimizer.iterations) == 10


def test_mixed_bfloat16_loss_and_gradients_are_finite():
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = make_model(seed=8)
        source, target = make_batch(seed=9)
        with tf.GradientTape() as tape:
            loss, count = model.loss_and_count(source, target, label_smoothing=0.1)
        grads = tape.gradient(loss, model.trainable_variables)
        logits, _ = model((source, target[:, :-1]))
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    assert logits.dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in model.weights)
    for grad in grads:
        assert np.all(np.isfinite(tf.cast(tf.convert_to_tensor(grad), tf.float32).numpy()))
    expected_loss, _ = numpy_loss(tf.cast(logits, tf.float32).numpy(), target)
    np.testing.assert_allclose(float(loss), expected_loss, rtol=2e-2)


# -- configuration and saving -------------------------------------------------------------------

def test_config_round_trip():
    model = make_model(seed=10, maxout=False, tie_embeddings=False, dropout=0.2,
                       normalize_attention=True)
    config = model.get_config()
    assert {k: config[k] for k in SIZES} == SIZES
    assert config["maxout"] is False and config["tie_embeddings"] is False
    assert config["normalize_attention"] is True and config["dropout"] == 0.2
    clone = Translator.from_config(config)
    assert clone.get_config() == config
    assert clone.config == model.config
    assert [(w.path, tuple(w.shape)) for w in clone.weights] == [
        (w.path, tuple(w.shape)) for w in model.weights]
    clone.set_weights(model.get_weights())
    source, target = make_batch(seed=11)
    for x, y in zip(model((source, target)), clone((source, target))):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_model_config_round_trips_through_asdict():
    config = ModelConfig(**SIZES, maxout=False, dropout=0.3)
    assert ModelConfig(**dataclasses.asdict(config)) == config
    assert Translator.from_model_config(config).config == config


def test_keras_file_round_trip(tmp_path):
    model = make_model(seed=12, normalize_attention=True)
    rng = np.random.default_rng(13)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in model.weights])
    path = tmp_path / "translator.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is Translator
    assert loaded.get_config() == model.get_config()
    for saved, restored in zip(model.weights, loaded.weights):
        assert saved.path == restored.path
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())
    source, target = make_batch(seed=14)
    for x, y in zip(model((source, target[:, :-1])), loaded((source, target[:, :-1]))):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    np.testing.assert_array_equal(float(model.loss_and_count(source, target)[0]),
                                  float(loaded.loss_and_count(source, target)[0]))


def test_two_models_from_one_seed_are_identical():
    first, second = make_model(seed=15), make_model(seed=15)
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    different = make_model(seed=16)
    assert not np.array_equal(first.weights[0].numpy(), different.weights[0].numpy())


@pytest.mark.parametrize("field, value", [
    ("source_vocab_size", 0), ("target_vocab_size", -5), ("embedding_dim", 2.5),
    ("encoder_units", "8"), ("decoder_units", True), ("attention_units", None),
    ("dropout", 1.0), ("dropout", -0.1), ("dropout", float("nan")), ("dropout", "0.1"),
    ("dropout", None), ("maxout", "no"), ("tie_embeddings", 1), ("normalize_attention", None)])
def test_model_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError) as info:
        ModelConfig(**{**SIZES, field: value})
    message = str(info.value)
    assert field in message and repr(value) in message
    # Translator validates through the same ModelConfig.
    with pytest.raises(ValueError, match=field):
        Translator(**{**SIZES, field: value})
