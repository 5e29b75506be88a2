"""Export: a SavedModel that takes raw strings and loads without this package, and the
native `.keras` format."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow

NORMAL = ["John loves Mary.", "I see the red car.", "Do you have a cat?"]
BAD = [
    b"",
    b"   ",
    ("I see the red car and the big house. " * 60).encode()[:2000],
    "I love pizza \U0001f355\U0001f389!".encode(),
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430?".encode(),
    "\u6211\u7231\u4f60\u3002".encode(),
    b"\xff\xfe bad \xc3\x28 utf-8 \x80",
]
INPUTS = [s.encode() for s in NORMAL] + BAD
KEYS = ("translation", "score", "attention", "source_tokens", "target_tokens")

# Runs in a fresh interpreter: TensorFlow and tensorflow-text only.
RELOAD = r"""
import json, sys


class Forbid:  # any import of the package fails: it must not be needed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "bahdanau_keras":
            raise ImportError("bahdanau_keras must not be imported")


sys.meta_path.insert(0, Forbid())
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops)

path, inputs = sys.argv[1], [bytes.fromhex(h) for h in json.loads(sys.argv[2])]
loaded = tf.saved_model.load(path)

def plain(outputs):
    result = {}
    for key, value in outputs.items():
        value = value.numpy()
        if value.dtype == object:
            result[key] = [[b.hex() for b in row] if value.ndim > 1 else row.hex()
                           for row in value.tolist()]
        else:
            result[key] = value.tolist()
    return result

def spec(s):
    return [s.dtype.name, None if s.shape.rank is None else s.shape.as_list()]

serving = loaded.signatures["serving_default"]
beam = loaded.signatures["translate_beam"]
texts = tf.constant(inputs, tf.string)
report = {
    "greedy": plain(serving(texts=texts)),
    "beam": plain(loaded.translate_beam(texts, tf.constant(4), tf.constant(0.6),
                                        tf.constant(0.0))),
    "beam_signature": plain(beam(texts=texts, beam_width=tf.constant(3),
                                 alpha=tf.constant(1.0), beta=tf.constant(0.2))),
    "empty": {k: list(v.shape) for k, v in serving(texts=tf.constant([], tf.string)).items()},
    "inputs": {k: spec(v) for k, v in serving.structured_input_signature[1].items()},
    "outputs": {k: spec(v) for k, v in serving.structured_outputs.items()},
    "beam_inputs": {k: spec(v) for k, v in beam.structured_input_signature[1].items()},
    "imported": sorted(m for m in sys.modules if m.startswith("bahdanau")),
}
print(json.dumps(report))
"""


_EXPORTED = {}


def export_tiny(tiny_model_dir, tmp_path_factory):
    """The tiny model exported once per session (test_translate.py uses it too)."""
    from bahdanau_keras.export import export_model_dir

    key = str(tiny_model_dir)
    if key not in _EXPORTED:
        root = tmp_path_factory.mktemp("export")
        path = export_model_dir(key, str(root / "saved"),
                                keras_path=str(root / "translator.keras"))
        _EXPORTED[key] = {"saved": path, "keras": str(root / "translator.keras")}
    return _EXPORTED[key]


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    return export_tiny(tiny_model_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def module(tiny_model_dir):
    from bahdanau_keras.export import TranslatorModule
    from bahdanau_keras.train import load_trained

    # Tokenizers of its own: a `tf.random.set_seed` in another test (training does one) frees
    # the SentencePiece resources of tokenizers created before it.
    trained = load_trained(str(tiny_model_dir))
    return TranslatorModule(trained.translator, trained.source_tokenizer,
                            trained.target_tokenizer)


@pytest.fixture(scope="module")
def reloaded_report(exported):
    """Outputs of the SavedModel in a fresh process that cannot import this package."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", RELOAD, exported["saved"], json.dumps([s.hex() for s in INPUTS])],
        capture_output=True, text=True, env=env, timeout=600, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def from_hex(value):
    if isinstance(value, list):
        return [from_hex(v) for v in value]
    return bytes.fromhex(value)


def check_same(in_memory, reloaded):
    assert from_hex(reloaded["translation"]) == in_memory["translation"].numpy().tolist()
    assert from_hex(reloaded["source_tokens"]) == in_memory["source_tokens"].numpy().tolist()
    assert from_hex(reloaded["target_tokens"]) == in_memory["target_tokens"].numpy().tolist()
    np.testing.assert_allclose(reloaded["score"], in_memory["score"].numpy(), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(reloaded["attention"], in_memory["attention"].numpy(),
                               atol=1e-6)


def test_reloaded_in_a_fresh_process_gives_the_in_memory_outputs(module, reloaded_report):
    assert reloaded_report["imported"] == []
    texts = tf.constant(INPUTS, tf.string)
    check_same(module.translate(texts), reloaded_report["greedy"])
    beam = module.translate_beam(texts, tf.constant(4), tf.constant(0.6), tf.constant(0.0))
    check_same(beam, reloaded_report["beam"])
    assert (from_hex(reloaded_report["beam"]["nbest_translations"])
            == beam["nbest_translations"].numpy().tolist())
    np.testing.assert_allclose(reloaded_report["beam"]["nbest_scores"],
                               beam["nbest_scores"].numpy(), rtol=1e-5, atol=1e-5)
    # The beam options are inputs of the exported function, not constants baked into it.
    other = module.translate_beam(texts, tf.constant(3), tf.constant(1.0), tf.constant(0.2))
    check_same(other, reloaded_report["beam_signature"])
    assert np.shape(reloaded_report["beam_signature"]["nbest_scores"]) == (len(INPUTS), 3)


def test_the_model_translates_normal_sentences(reloaded_report):
    translations = from_hex(reloaded_report["greedy"]["translation"])[: len(NORMAL)]
    assert all(t.strip() for t in translations), translations
    assert all(s < 0 for s in reloaded_report["greedy"]["score"][: len(NORMAL)])


def test_serving_signature(reloaded_report):
    assert reloaded_report["inputs"] == {"texts": ["string", [None]]}
    outputs = reloaded_report["outputs"]
    assert set(outputs) == set(KEYS)
    assert outputs["translation"] == ["string", [None]]
    assert outputs["score"] == ["float32", [None]]
    assert outputs["attention"] == ["float32", [None, None, None]]
    assert outputs["source_tokens"] == ["string", [None, None]]
    assert outputs["target_tokens"] == ["string", [None, None]]
    assert reloaded_report["beam_inputs"] == {
        "texts": ["string", [None]], "beam_width": ["int32", []], "alpha": ["float32", []],
        "beta": ["float32", []]}


def test_bad_input_gives_one_output_per_input(module, reloaded_report):
    count = len(INPUTS)
    for name in ("greedy", "beam"):
        report = reloaded_report[name]
        for key in KEYS:
            assert len(report[key]) == count, (name, key)
        translations = from_hex(report["translation"])
        first_bad = len(NORMAL)
        assert translations[first_bad] == b"" and translations[first_bad + 1] == b""
        assert all(np.isfinite(report["score"]))
        # The long sentence is cut to the module's source limit, not dropped.
        source_tokens = [t for t in from_hex(report["source_tokens"])[first_bad + 2] if t]
        assert len(source_tokens) == module.max_source_length
        assert translations[first_bad + 2]
        # Invalid UTF-8 and unseen scripts are read as text (byte fallback), not failures.
        for i in range(first_bad + 3, count):
            assert len([t for t in from_hex(report["source_tokens"])[i] if t]) > 1
        for i, tokens in enumerate(from_hex(report["target_tokens"])):
            real = [t for t in tokens if t]
            attention = np.asarray(report["attention"][i])
            source_length = len([t for t in from_hex(report["source_tokens"])[i] if t])
            np.testing.assert_allclose(
                attention[: len(real), :source_length].sum(axis=1), 1.0, atol=1e-5)
            assert np.all(attention[:, source_length:] == 0)
    assert reloaded_report["empty"]["translation"] == [0]
    assert reloaded_report["empty"]["score"] == [0]
    assert reloaded_report["empty"]["attention"][0] == 0
    # In memory as well, and through the beam and sampling functions.
    empty = tf.constant([], tf.string)
    assert module.translate_beam(empty, 2, 0.6, 0.0)["translation"].shape == (0,)
    sampled = module.translate_sample(tf.constant(INPUTS), 1.0, tf.constant([1, 2], tf.int64))
    assert sampled["translation"].shape == (count,)


def test_nbest_of_nothing_is_nothing(module):
    out = module.translate_beam(tf.constant(["", "John loves Mary."]), 3, 0.6, 0.0)
    assert out["nbest_translations"].numpy()[0].tolist() == [b""] * 3
    assert all(out["nbest_translations"].numpy()[1])
    scores = out["nbest_scores"].numpy()[1]
    assert np.all(np.diff(scores) <= 0)


def test_assets_carry_the_configuration(exported, tiny_model_dir):
    with open(os.path.join(exported["saved"], "assets", "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    with open(os.path.join(tiny_model_dir, "config.json"), encoding="utf-8") as f:
        assert config == json.load(f)


def test_keras_native_format_round_trip(exported, tiny_trained):
    import keras

    from bahdanau_keras.model import Translator

    reloaded = keras.models.load_model(exported["keras"])
    assert isinstance(reloaded, Translator)
    assert reloaded.config == tiny_trained.translator.config
    original = {w.path.split("/", 1)[1]: w.numpy() for w in tiny_trained.translator.weights}
    restored = {w.path.split("/", 1)[1]: w.numpy() for w in reloaded.weights}
    assert original.keys() == restored.keys()
    for name, value in original.items():
        np.testing.assert_array_equal(value, restored[name], err_msg=name)
    source = tf.constant([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0]])
    target = tf.constant([[1, 11, 12, 13], [1, 14, 0, 0]])
    expected_logits, expected_attention = tiny_trained.translator((source, target))
    logits, attention = reloaded((source, target))
    np.testing.assert_array_equal(logits.numpy(), expected_logits.numpy())
    np.testing.assert_array_equal(attention.numpy(), expected_attention.numpy())


def test_cli_export_passes_the_keras_path(monkeypatch, tmp_path):
    from bahdanau_keras import cli, export

    calls = []
    monkeypatch.setattr(export, "export_model_dir",
                        lambda *args, **kwargs: calls.append((args, kwargs)) or args[1])
    assert cli.main(["export", "--model-dir", "m", "--output", str(tmp_path / "out"),
                     "--keras", str(tmp_path / "t.keras")]) == 0
    assert calls == [(("m", str(tmp_path / "out")), {"keras_path": str(tmp_path / "t.keras")})]
