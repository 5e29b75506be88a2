"""Tests of the `Translator` and its masked training loss.

Distinct small sizes: source vocabulary 23, target vocabulary 17, embedding 5, encoder units 3
(annotations of 6), decoder units 7, attention units 11, batch 3, source length 6, target
length 9 (`START y_1 ... y_n END` padded with 0).
"""

import dataclasses
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from bahdanau_keras import kernels
from bahdanau_keras.attention import BahdanauAttention
from bahdanau_keras.kernels import bidirectional_gru, cross_entropy, decoder_loop
from bahdanau_keras.model import ModelConfig, Translator
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


@pytest.fixture(scope="module", params=["reference", "fused"])
def model(request):
    """The translator with its readable layers and loss, or with every kernel (the same
    weights: tests/test_kernels_*.py hold each kernel to the reference)."""
    return make_model(implementation=request.param)


def expected_parameters(c):
    """The parameter count from the sizes of `ModelConfig`, term by term of the paper."""
    emb, enc, dec, att = c.embedding_dim, c.encoder_units, c.decoder_units, c.attention_units
    readout = emb * (2 if c.maxout else 1)
    encoder = (c.source_vocab_size * emb  # source embedding
               + 2 * 3 * enc * (emb + enc + 2)  # two GRUs: kernel, recurrent, 2 biases
               + enc * dec + dec)  # W_s and its bias
    attention = dec * att + 2 * enc * att + att + ((1 + att) if c.normalize_attention else 0)
    if c.attention is None:  # RNNencdec: no W_a, U_a, v_a
        attention = 0
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
    dict(maxout=False, tie_embeddings=False, normalize_attention=True), dict(attention=None),
    dict(attention=None, maxout=False, tie_embeddings=False)])
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


@pytest.mark.parametrize("label_smoothing", [1.0, -0.1])
def test_loss_rejects_bad_label_smoothing(model, label_smoothing):
    source, target = make_batch()
    with pytest.raises(ValueError, match=re.escape(
            f"`label_smoothing` must be in [0, 1). Received: {label_smoothing!r}")):
        model.loss_and_count(source, target, label_smoothing=label_smoothing)


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


# -- the implementation: every kernel against the reference -----------------------------------

def loss_and_gradients(model, source, target, label_smoothing=0.1, function=False):
    def run():
        with tf.GradientTape() as tape:
            loss, count = model.loss_and_count(source, target, label_smoothing, training=True)
        gradients = tape.gradient(loss, model.trainable_variables)
        return [loss, count] + [tf.convert_to_tensor(g) for g in gradients]

    return [x.numpy() for x in (tf.function(run)() if function else run())]


@pytest.mark.parametrize("rows, loop_shards, loss_chunks", [
    (None, 2, 2), (None, 1, 1), (None, 2, 64), (1, 2, 3)])
@pytest.mark.parametrize("function", [False, True])
def test_fused_loss_and_gradients_equal_the_reference(rows, loop_shards, loss_chunks,
                                                      function):
    """The loss, the token count and the gradient of every weight with every kernel (the
    fused GRUs, the fused decoder loop in `loop_shards` parts, the loss in `loss_chunks`
    pieces: more pieces than tokens leaves some empty) equal the readable model's: 3
    sentences or 1, a source of one token among them."""
    source, target = (x[:rows] for x in make_batch(seed=4))
    reference = make_model(implementation="reference")
    fused = make_model(implementation="fused", loop_shards=loop_shards,
                       loss_chunks=loss_chunks)
    rng = np.random.default_rng(17)  # every weight random, so that no gradient is tiny
    weights = [0.5 * rng.standard_normal(w.shape).astype(np.float32) for w in reference.weights]
    reference.set_weights(weights)
    fused.set_weights(weights)
    expected = loss_and_gradients(reference, source, target)
    actual = loss_and_gradients(fused, source, target, function=function)
    assert int(actual[1]) == int(expected[1]) > 0
    names = ["loss", "count"] + [v.path for v in reference.trainable_variables]
    for name, x, y in zip(names, actual, expected, strict=True):
        assert np.abs(y).max() > 1e-3, name  # every gradient is far from zero
        # 1e-5 relative to the array's largest element (float32 sums in another order)
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5 * np.abs(y).max(),
                                   err_msg=name)


def test_without_real_target_tokens_both_give_nothing_to_learn():
    source, target = make_batch(seed=5)
    empty_target = np.zeros_like(target)
    empty_target[:, 0] = START_ID  # only START, then padding
    for implementation in ("reference", "fused"):
        model = make_model(seed=18, implementation=implementation)
        for function in (False, True):
            loss, count, *gradients = loss_and_gradients(model, source, empty_target,
                                                         function=function)
            assert int(count) == 0 and float(loss) == 0.0
            assert not any(np.any(g) for g in gradients)


def spy_on_the_kernels(monkeypatch):
    """The names of the kernels called (each still runs)."""
    calls = []

    def spy(module, name):
        original = getattr(module, name)

        def counting(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)

    spy(bidirectional_gru, "bidirectional_gru")
    spy(decoder_loop, "time_loop")
    spy(cross_entropy, "summed_loss")
    return calls


@pytest.mark.parametrize("implementation, gpu, runs", [
    ("auto", False, True), ("auto", True, False), ("fused", True, True),
    ("reference", False, False)])
def test_one_implementation_chooses_every_kernel(monkeypatch, implementation, gpu, runs):
    monkeypatch.setattr(kernels, "gpu_present", lambda: gpu)
    calls = spy_on_the_kernels(monkeypatch)
    model = make_model(implementation=implementation)
    source, target = make_batch(seed=6)
    model.loss_and_count(source, target)
    assert calls == (["bidirectional_gru", "time_loop", "summed_loss"] if runs else [])


def test_under_bfloat16_auto_is_the_reference_and_fused_raises(monkeypatch):
    monkeypatch.setattr(kernels, "gpu_present", lambda: False)
    calls = spy_on_the_kernels(monkeypatch)
    source, target = make_batch(seed=7)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        auto = make_model(seed=8)
        fused = make_model(seed=8, implementation="fused")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    auto.loss_and_count(source, target)
    assert calls == []
    with pytest.raises(ValueError, match="implementation='fused'.*float32 only.*bfloat16"):
        fused.loss_and_count(source, target)


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
                       normalize_attention=True, implementation="fused", loop_shards=3,
                       loss_chunks=1)
    config = model.get_config()
    assert {k: config[k] for k in SIZES} == SIZES
    assert config["maxout"] is False and config["tie_embeddings"] is False
    assert config["normalize_attention"] is True and config["dropout"] == 0.2
    assert (config["implementation"], config["loop_shards"], config["loss_chunks"]) == (
        "fused", 3, 1)
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


def test_from_model_config_passes_the_other_options_on():
    config = ModelConfig(**SIZES)
    model = Translator.from_model_config(config, implementation="reference", loop_shards=1,
                                         loss_chunks=3, name="speed")
    assert model.config == config and model.name == "speed"
    assert (model.implementation, model.loop_shards, model.loss_chunks) == ("reference", 1, 3)
    assert model.encoder.implementation == model.decoder.implementation == "reference"
    assert model.decoder.loop_shards == 1
    defaults = Translator.from_model_config(config)
    assert (defaults.implementation, defaults.loop_shards, defaults.loss_chunks) == (
        "auto", 2, 2)
    # The speed options are not the model's shape: ModelConfig has none of them.
    assert not {"implementation", "loop_shards", "loss_chunks"} & {
        field.name for field in dataclasses.fields(ModelConfig)}


@pytest.mark.parametrize("field, value", [
    ("implementation", "cuda"), ("implementation", None), ("loop_shards", 0),
    ("loop_shards", 2.0), ("loss_chunks", -1), ("loss_chunks", True)])
def test_speed_options_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=re.escape(f"Received: {field}={value!r}")):
        Translator(**SIZES, **{field: value})


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
    ("dropout", None), ("maxout", "no"), ("tie_embeddings", 1), ("normalize_attention", None),
    ("attention", "luong"), ("attention", "none"), ("attention", False)])
def test_model_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError) as info:
        ModelConfig(**{**SIZES, field: value})
    message = str(info.value)
    assert field in message and repr(value) in message
    # Translator validates through the same ModelConfig.
    with pytest.raises(ValueError, match=field):
        Translator(**{**SIZES, field: value})


# -- without attention: RNNencdec, the paper's baseline ---------------------------------------

@pytest.mark.parametrize("implementation", ["reference", "auto"])
def test_without_attention_the_context_is_the_encoders_final_states(implementation,
                                                                    monkeypatch):
    """The decoder's one context is `[→h_{T_x}; ←h_1]`: the final states of the encoder's two
    GRUs (Keras' own `Bidirectional(GRU)` states, each sentence at its real length), with the
    readable encoder or its kernel (`"auto"` without a GPU)."""
    monkeypatch.setattr(kernels, "gpu_present", lambda: False)
    calls = spy_on_the_kernels(monkeypatch)
    model = make_model(seed=30, attention=None, implementation=implementation)
    source, target = make_batch(seed=31)
    annotations, mask, _ = model.encoder(source)
    embedded = model.encoder.embedding(source)
    _, forward_state, backward_state = model.encoder.bidirectional_gru(
        embedded, mask=tf.not_equal(source, PAD_ID))
    expected = np.concatenate([forward_state.numpy(), backward_state.numpy()], axis=-1)
    summary = model.decoder.project_keys(annotations, mask).numpy()
    np.testing.assert_allclose(summary, expected, atol=1e-6)
    _, _, contexts, _ = model.decoder.teacher_forcing(
        target[:, :-1], annotations, mask, model.encoder(source)[2])
    np.testing.assert_allclose(
        contexts.numpy(), np.broadcast_to(expected[:, None], contexts.shape), atol=1e-6)
    assert calls == ([] if implementation == "reference" else ["bidirectional_gru"] * 2)


def test_without_attention_outputs_loss_and_kernels(monkeypatch):
    """Zero attention weights; the loss is the masked cross-entropy; "auto" runs the encoder
    and loss kernels but the reference decoder loop, and "fused" refuses the decoder."""
    monkeypatch.setattr(kernels, "gpu_present", lambda: False)
    calls = spy_on_the_kernels(monkeypatch)
    model = make_model(seed=32, attention=None)
    assert model.decoder.attention is None
    source, target = make_batch(seed=33)
    logits, weights = model((source, target[:, :-1]))
    np.testing.assert_array_equal(weights.numpy(), np.zeros((BATCH, TGT_LEN - 1, SRC_LEN)))
    assert np.all(np.isfinite(logits.numpy()))
    calls.clear()
    loss, count = model.loss_and_count(source, target)
    assert calls == ["bidirectional_gru", "summed_loss"]
    expected_loss, expected_count = numpy_loss(logits.numpy(), target)
    assert int(count) == expected_count
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot run layer 'decoder'.*has no attention"):
        make_model(seed=32, attention=None, implementation="fused").loss_and_count(
            source, target)


def test_without_attention_config_round_trip(tmp_path):
    model = make_model(seed=34, attention=None)
    config = model.get_config()
    assert config["attention"] is None and model.config.attention is None
    clone = Translator.from_config(config)
    assert clone.get_config() == config and clone.decoder.attention is None
    model_config = ModelConfig(**SIZES, attention=None)
    assert ModelConfig(**json.loads(json.dumps(dataclasses.asdict(model_config)))) == (
        model_config)
    path = tmp_path / "encdec.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == config
    source, target = make_batch(seed=35)
    for x, y in zip(model((source, target[:, :-1])), loaded((source, target[:, :-1]))):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_a_configuration_without_the_attention_field_is_the_attention_model():
    """Models and `config.json` files written before `attention` existed load unchanged."""
    model = make_model(seed=36)
    config = model.get_config()
    del config["attention"]
    old = Translator.from_config(config)
    assert old.config.attention == "bahdanau"
    assert isinstance(old.decoder.attention, BahdanauAttention)
    assert [w.path for w in old.weights] == [w.path for w in model.weights]
    fields = dataclasses.asdict(ModelConfig(**SIZES))
    del fields["attention"]
    assert ModelConfig(**fields).attention == "bahdanau"


def test_without_attention_greedy_decoding_follows_teacher_forcing():
    """Greedy search picks, at every step, the best token of the teacher-forced logits of
    what it chose so far; its attention output is zeros; beam search with a coverage penalty
    stays finite."""
    from bahdanau_keras.decode import beam_search_decode, greedy_decode

    model = make_model(seed=37, attention=None)
    rng = np.random.default_rng(38)
    weights = [0.8 * rng.standard_normal(w.shape).astype(np.float32) for w in model.weights]
    model.set_weights(weights)
    source, _ = make_batch(seed=39)
    for b, length in enumerate(SOURCE_LENGTHS):
        source[b, length - 1] = END_ID
    result = greedy_decode(model, tf.constant(source), max_length_b=4)
    tokens, lengths = result["tokens"].numpy(), result["lengths"].numpy()
    np.testing.assert_array_equal(result["attention"].numpy(), 0.0)
    target_in = np.concatenate([np.full((BATCH, 1), START_ID, np.int32), tokens[:, :-1]], 1)
    logits, _ = model((source, target_in))
    logits = logits.numpy()
    logits[..., [PAD_ID, START_ID]] = -np.inf  # never chosen
    for b in range(BATCH):  # the last token is END_ID (chosen, or forced at the limit)
        assert tokens[b, lengths[b] - 1] == END_ID
        chosen = slice(0, lengths[b] - 1)
        np.testing.assert_array_equal(logits[b, chosen].argmax(-1), tokens[b, chosen])
    beam = beam_search_decode(model, tf.constant(source), beam_width=3, alpha=0.6, beta=0.2,
                              max_length_b=4)
    assert np.all(np.isfinite(beam["scores"].numpy()))
    np.testing.assert_array_equal(beam["attention"].numpy(), 0.0)


@pytest.mark.slow
def test_without_attention_trains_exports_and_translates(tmp_path):
    """`train.train` with `attention=None` writes it to `config.json`; the model directory
    and its SavedModel translate alike, with zero attention."""
    from bahdanau_keras import data, train
    from bahdanau_keras.export import export_model_dir
    from bahdanau_keras.translate import Translation

    model_dir = tmp_path / "encdec"
    sizes = dict(embedding_dim=16, encoder_units=16, decoder_units=32, attention_units=32,
                 attention=None)
    train.train(str(model_dir), data.read_corpus(data.SAMPLE_CORPUS), sizes,
                train.TrainConfig(epochs=1, vocab_size=300, seed=0), verbose=0)
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["model"]["attention"] is None
    assert train.load_trained(str(model_dir)).translator.decoder.attention is None
    sentences = ["John loves Mary.", "I see the red car."]
    in_memory = Translation.open(str(model_dir)).translate(sentences)
    exported = export_model_dir(str(model_dir), str(tmp_path / "exported"))
    reloaded = Translation.open(exported)
    for beam in (1, 2):
        for x, y in zip(Translation.open(str(model_dir)).translate(sentences, beam_width=beam),
                        reloaded.translate(sentences, beam_width=beam)):
            assert x["translation"] == y["translation"]
            assert np.all(np.asarray(y["attention"]) == 0.0)
    assert [r["translation"] for r in in_memory] == [
        r["translation"] for r in reloaded.translate(sentences)]


def test_without_attention_litert_export_refuses_clearly():
    from bahdanau_keras import litert_export

    with pytest.raises(ValueError, match="without attention cannot be exported to LiteRT.*"
                                         "Received: attention=None"):
        litert_export.encoder_function(make_model(seed=40, attention=None))
