"""LiteRT export: the encoder and decoder-step models, and `LiteTranslator`, the host-side
search over them, held to the SavedModel's translations."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_export import export_tiny

import bahdanau_keras
from bahdanau_keras import litert

pytestmark = pytest.mark.slow

PACKAGE_ROOT = str(Path(bahdanau_keras.__file__).resolve().parents[1])
SHIPPED = Path(PACKAGE_ROOT) / "saved_models" / "en-fr"
ODD_INPUTS = [
    "", "   ", ("I see the red car and the big house. " * 60)[:2000],
    "I love pizza \U0001f355\U0001f389!", "\u6211\u7231\u4f60\u3002",
    b"\xff\xfe bad \xc3\x28 utf-8 \x80",
]
# A meta-path finder that makes the named top-level packages unimportable.
BLOCK = r"""
import sys


class Block:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ImportError(f"{name} is blocked in this test")

"""


def run_python(code, blocked, *args):
    """Run `code` in a fresh interpreter where the `blocked` packages cannot be imported;
    returns the JSON its last output line holds."""
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    block = f"{BLOCK}\nsys.meta_path.insert(0, Block({set(blocked)!r}))\n"
    done = subprocess.run(
        [sys.executable, "-c", block + code, *args],
        capture_output=True, text=True, env=env, timeout=600, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def sample_sentences(count=100):
    """`count` English sentences spread over the sample corpus (short and long ones)."""
    from bahdanau_keras import data

    sources = [source for source, _ in data.read_corpus(data.SAMPLE_CORPUS).pairs]
    return [sources[i] for i in np.linspace(0, len(sources) - 1, count).astype(int)]


def compare(lite, reference, minimum):
    """At least `minimum` identical translations; the differences are printed (pytest
    shows them with `-rA` or on failure)."""
    different = [(i, a, b) for i, (a, b) in enumerate(zip(lite, reference)) if a != b]
    for i, a, b in different:
        print(f"sentence {i}: LiteRT {a!r}, SavedModel {b!r}")
    assert len(lite) == len(reference)
    assert len(lite) - len(different) >= minimum, different


@pytest.fixture(scope="module")
def saved_model(tiny_model_dir, tmp_path_factory):
    from bahdanau_keras.translate import Translation

    return Translation.open(export_tiny(tiny_model_dir, tmp_path_factory)["saved"])


_LITERT = {}


@pytest.fixture(scope="module")
def litert_dirs(tiny_model_dir, tmp_path_factory):
    """The tiny model exported in each weight format (once per session)."""
    from bahdanau_keras.litert_export import WEIGHT_TYPES, export_litert

    key = str(tiny_model_dir)
    if key not in _LITERT:
        root = tmp_path_factory.mktemp("litert")
        _LITERT[key] = {weights: export_litert(key, str(root / weights), weights)
                        for weights in WEIGHT_TYPES}
    return _LITERT[key]


@pytest.fixture(scope="module")
def lite(litert_dirs):
    return litert.LiteTranslator(litert_dirs["float32"])


def test_greedy_translations_are_the_saved_models(lite, saved_model):
    sentences = sample_sentences()
    reference = [r["translation"] for r in saved_model.translate(sentences)]
    compare(lite.translate(sentences), reference, minimum=98)
    # One sentence at a time (as on a phone) or in batches: the same translations.
    assert lite.translate(sentences[:20], batch_size=1) == lite.translate(sentences[:20])


def test_beam_translations_are_the_saved_models(lite, saved_model):
    sentences = sample_sentences()
    reference = [r["translation"] for r in saved_model.translate(sentences, beam_width=4)]
    compare(lite.translate(sentences, beam_width=4), reference, minimum=98)
    # Other penalties and widths are inputs, not constants.
    reference = [r["translation"] for r in saved_model.translate(
        sentences[:30], beam_width=3, alpha=1.0, beta=0.2)]
    compare(lite.translate(sentences[:30], beam_width=3, alpha=1.0, beta=0.2), reference,
            minimum=29)


def test_scores_and_attention_are_the_saved_models(lite, saved_model):
    sentences = sample_sentences(12)
    for beam_width in (1, 4):
        expected = saved_model.translate(sentences, beam_width=beam_width)
        ids = lite.source_ids(sentences)
        for sentence_ids, reference in zip(ids, expected):
            source = np.asarray([sentence_ids], np.int32)
            if beam_width == 1:
                result = lite.greedy_search(source)
            else:
                result = lite.beam_search(source, beam_width)
            length = int(result["lengths"][0])
            assert length == len(reference["target_tokens"])
            np.testing.assert_allclose(result["scores"][0], reference["score"], rtol=1e-4,
                                       atol=1e-4)
            np.testing.assert_allclose(result["attention"][0, :length],
                                       reference["attention"], atol=1e-5)


def test_odd_inputs_are_the_saved_models(lite, saved_model):
    # Empty, blank, cut at 128 subwords, unseen characters, invalid UTF-8.
    for beam_width in (1, 4):
        reference = [r["translation"] for r in saved_model.translate(
            [s if isinstance(s, str) else s.decode("utf-8", "replace") for s in ODD_INPUTS],
            beam_width=beam_width)]
        assert lite.translate(ODD_INPUTS, beam_width=beam_width) == reference
    assert reference[:2] == ["", ""]
    assert len(lite.source_ids([ODD_INPUTS[2]])[0]) == 128
    assert lite.translate([]) == []


def test_step_by_step_is_the_keras_model(lite, tiny_trained):
    """The LiteRT graphs are the model's equations: teacher-forced steps give the Keras
    `Translator`'s log-probabilities and attention."""
    import tensorflow as tf

    source = np.asarray([[5, 9, 14, 2, 0, 0], [7, 8, 11, 12, 13, 2]], np.int32)
    target_in = np.asarray([[1, 4, 6, 10], [1, 15, 5, 0]], np.int32)
    logits, attention = tiny_trained.translator((tf.constant(source), tf.constant(target_in)))
    expected = tf.nn.log_softmax(logits).numpy()
    encoded = lite.encode(source)
    state = encoded["initial_state"]
    for i in range(target_in.shape[1]):
        log_probs, state, weights = lite.step(target_in[:, i], state, encoded)
        np.testing.assert_allclose(log_probs, expected[:, i], atol=2e-5)
        np.testing.assert_allclose(weights, attention.numpy()[:, i], atol=1e-6)
    assert np.all(weights[0, 4:] == 0)


def test_model_variants_convert_to_their_equations():
    """Weight-normalised attention, a tanh readout and an untied output layer: the converted
    models give the Keras model's log-probabilities."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from bahdanau_keras import litert_export
    from bahdanau_keras.model import Translator

    translator = Translator(source_vocab_size=37, target_vocab_size=41, embedding_dim=8,
                            encoder_units=5, decoder_units=7, attention_units=6, maxout=False,
                            tie_embeddings=False, normalize_attention=True)
    rng = np.random.default_rng(3)
    attention = translator.decoder.attention
    attention.score_bias.assign(rng.normal(size=attention.score_bias.shape))
    attention.score_scale.assign(1.7)
    translator.decoder.output_dense.bias.assign(rng.normal(size=[41]))
    encoder = Interpreter(model_content=litert_export.convert(
        litert_export.encoder_function(translator), translator))
    step = Interpreter(model_content=litert_export.convert(
        litert_export.decoder_step_function(translator), translator))
    source = np.asarray([[5, 9, 14, 2, 0], [7, 8, 11, 12, 2]], np.int32)
    target_in = np.asarray([[1, 4, 6], [1, 15, 5]], np.int32)
    logits, expected_attention = translator((tf.constant(source), tf.constant(target_in)))
    expected = tf.nn.log_softmax(logits).numpy()
    encoded = encoder.get_signature_runner()(source_ids=source)
    state = encoded["initial_state"]
    for i in range(target_in.shape[1]):
        outputs = step.get_signature_runner()(
            previous_tokens=target_in[:, i], state=state, keys=encoded["keys"],
            annotations=encoded["annotations"], source_mask=(source != 0).astype(np.float32))
        state = outputs["state"]
        np.testing.assert_allclose(outputs["log_probs"], expected[:, i], atol=1e-5)
        np.testing.assert_allclose(outputs["attention"], expected_attention.numpy()[:, i],
                                   atol=1e-6)


def test_models_use_builtin_operations_only(litert_dirs):
    """No Flex (TensorFlow) and no custom operation: an app needs no TensorFlow delegate."""
    from ai_edge_litert import schema_py_generated as schema

    for path in litert_dirs.values():
        for name in ("encoder.tflite", "decoder_step.tflite"):
            with open(os.path.join(path, name), "rb") as f:
                model = schema.ModelT.InitFromPackedBuf(bytearray(f.read()), 0)
            codes = [max(code.builtinCode, code.deprecatedBuiltinCode)
                     for code in model.operatorCodes]
            assert schema.BuiltinOperator.CUSTOM not in codes, (path, name)
            assert not any(code.customCode for code in model.operatorCodes), (path, name)


def test_metadata(litert_dirs, tiny_trained):
    from bahdanau_keras.export import TranslatorModule

    sizes = {}
    for weights, path in litert_dirs.items():
        with open(os.path.join(path, litert.METADATA_FILE), encoding="utf-8") as f:
            metadata = json.load(f)
        assert metadata["format"] == litert.FORMAT and metadata["weights"] == weights
        for entry in metadata["files"].values():
            assert os.path.getsize(os.path.join(path, entry["path"])) == entry["bytes"]
        assert metadata["special_ids"] == {"pad": 0, "start": 1, "end": 2, "unknown": 3}
        assert metadata["normalization"] == litert.NORMALIZATION
        module = TranslatorModule(tiny_trained.translator, tiny_trained.source_tokenizer,
                                  tiny_trained.target_tokenizer)
        assert metadata["search"] == {
            "max_source_length": module.max_source_length,
            "max_length_a": module.max_length_a, "max_length_b": module.max_length_b,
            "max_length": 256, "forbidden_ids": [0, 1]}
        assert metadata["sizes"]["target_vocab_size"] == tiny_trained.target_tokenizer.vocab_size
        with open(os.path.join(path, "source.model"), "rb") as f:
            assert f.read() == tiny_trained.source_tokenizer.model_proto
        sizes[weights] = sum(metadata["files"][name]["bytes"]
                             for name in ("encoder", "decoder_step"))
    assert sizes["float16"] < 0.6 * sizes["float32"]
    assert sizes["int8"] < 0.5 * sizes["float32"]


def test_smaller_weights_translate_like_float32(litert_dirs, lite):
    sentences = sample_sentences(50)
    float32 = lite.translate(sentences)
    for weights in ("float16", "int8"):
        translations = litert.LiteTranslator(litert_dirs[weights]).translate(sentences)
        assert all(translations), weights
        same = sum(a == b for a, b in zip(translations, float32))
        print(f"{weights}: {same} of {len(sentences)} translations as float32's")
        assert same >= (48 if weights == "float16" else 35), (weights, same)


def test_translator_works_where_tensorflow_cannot_be_imported(litert_dirs, lite):
    code = r"""
import json, sys
from bahdanau_keras.litert import LiteTranslator

translator = LiteTranslator(sys.argv[1])
sentences = json.loads(sys.argv[2])
print(json.dumps({"greedy": translator.translate(sentences),
                  "beam": translator.translate(sentences, beam_width=4),
                  "modules": sorted(m for m in sys.modules
                                    if m.split(".")[0] in ("tensorflow", "keras"))}))
"""
    sentences = sample_sentences(10)
    report = run_python(code, {"tensorflow", "keras", "tensorflow_text"},
                        litert_dirs["float32"], json.dumps(sentences))
    assert report["modules"] == []
    assert report["greedy"] == lite.translate(sentences)
    assert report["beam"] == lite.translate(sentences, beam_width=4)


def test_tflite_files_load_without_tensorflow_or_this_package(litert_dirs, lite):
    code = r"""
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter

path, source = sys.argv[1], np.asarray(json.loads(sys.argv[2]), np.int32)
report = {}
encoder = Interpreter(model_path=path + "/encoder.tflite")
step = Interpreter(model_path=path + "/decoder_step.tflite")
report["signatures"] = {"encoder": encoder.get_signature_list(),
                        "decoder_step": step.get_signature_list()}
report["shapes"] = {name: detail["shape_signature"].tolist() for name, detail in
                    step.get_signature_runner().get_input_details().items()}
encoded = encoder.get_signature_runner()(source_ids=source)
outputs = step.get_signature_runner()(
    previous_tokens=np.full([len(source)], 1, np.int32), state=encoded["initial_state"],
    keys=encoded["keys"], annotations=encoded["annotations"],
    source_mask=(source != 0).astype(np.float32))
report["outputs"] = {k: v.tolist() for k, v in {**encoded, **outputs}.items()}
report["modules"] = sorted(m for m in sys.modules
                           if m.split(".")[0] in ("tensorflow", "bahdanau_keras"))
print(json.dumps(report))
"""
    source = [[5, 9, 14, 2, 0], [7, 8, 11, 12, 2]]
    report = run_python(code, {"tensorflow", "bahdanau_keras"}, litert_dirs["float32"],
                        json.dumps(source))
    assert report["modules"] == []
    assert report["signatures"]["encoder"]["serving_default"] == {
        "inputs": ["source_ids"], "outputs": ["annotations", "initial_state", "keys"]}
    assert report["signatures"]["decoder_step"]["serving_default"] == {
        "inputs": ["annotations", "keys", "previous_tokens", "source_mask", "state"],
        "outputs": ["attention", "log_probs", "state"]}
    sizes = lite.metadata["sizes"]
    # batch and src_len are dynamic.
    assert report["shapes"] == {
        "previous_tokens": [-1], "state": [-1, sizes["units"]],
        "keys": [-1, -1, sizes["attention_units"]],
        "annotations": [-1, -1, sizes["context_dim"]], "source_mask": [-1, -1]}
    encoded = lite.encode(source)
    log_probs, state, attention = lite.step([1, 1], encoded["initial_state"], encoded)
    expected = {**encoded, "log_probs": log_probs, "state": state, "attention": attention}
    for name, value in report["outputs"].items():
        np.testing.assert_allclose(value, expected[name], atol=1e-6, err_msg=name)


def test_normalize_is_the_graphs(fra_eng_zip):
    from bahdanau_keras import data
    from bahdanau_keras.text import normalize_python

    corpus = data.read_corpus(str(fra_eng_zip), skip_bad_lines=True)
    sentences = [text for pair in corpus.pairs[::97] for text in pair] + [
        "  Je t\u2019aime\u202f!  ", "\u201cQuoted\u201d \u2018single\u2019 `back` \u00b4acute",
        "zero\u200bwidth\u2060joiner\ufeff", "tab\tnew\nline\r\x0bvt\x85nel\u2028ls",
        "\u2581piece\u2581\u2581mark", "\uff26\uff55\uff4c\uff4c\u3000width \ufb01 \u2460",
        "e\u0301 \u00e9 \u212b", "\U0001f355 \u6211\u7231\u4f60\u3002", "", " \t\n ",
    ]
    assert [litert.normalize(s) for s in sentences] == normalize_python(sentences)
    invalid = b"\xff\xfe bad \xc3\x28 utf-8 \x80"
    assert litert.normalize(invalid) == normalize_python([invalid])[0]


def test_top_k_is_tensorflows():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for k in (1, 3, 7, 9, 11, 12):
        # Few distinct values: many ties, which top_k breaks by the lower index.
        values = rng.integers(0, 4, size=(6, 12)).astype(np.float32)
        values[0, :] = -np.inf
        values[1, 2:] = -np.inf
        expected = tf.math.top_k(values, k=k)
        top_values, indices = litert.top_k(values, k)
        np.testing.assert_array_equal(indices, expected.indices.numpy())
        np.testing.assert_array_equal(top_values, expected.values.numpy())


def test_errors_say_what_was_received(tmp_path, litert_dirs, lite):
    from bahdanau_keras.litert_export import export_litert
    from bahdanau_keras.train import TrainingError

    with pytest.raises(FileNotFoundError, match="litert.json"):
        litert.LiteTranslator(str(tmp_path))
    with pytest.raises(ValueError, match="weight_type='int4'"):
        export_litert(litert_dirs["float32"], str(tmp_path / "out"), "int4")
    with pytest.raises(TrainingError, match="neither a model directory"):
        export_litert(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="Received: 0"):
        lite.translate(["Hello."], beam_width=0)
    with pytest.raises(ValueError, match="not one string"):
        lite.translate("Hello.")
    with pytest.raises(ValueError, match=r"Received: shape \(3,\)"):
        lite.encode([5, 6, 2])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / litert.METADATA_FILE).write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ValueError, match="format='other'"):
        litert.LiteTranslator(str(broken))


def test_public_names_are_lazy():
    code = r"""
import json, sys
import bahdanau_keras
from bahdanau_keras import LiteTranslator
print(json.dumps({"name": LiteTranslator.__name__,
                  "tensorflow": "tensorflow" in sys.modules}))
"""
    report = run_python(code, {"tensorflow"})
    assert report == {"name": "LiteTranslator", "tensorflow": False}
    assert "export_litert" in bahdanau_keras.__all__


@pytest.mark.corpus
def test_shipped_model_converts_and_translates_as_its_saved_model(fra_eng_zip, tmp_path):
    """The shipped SavedModel itself (its variables and the SentencePiece models in its
    graph) converts; on 100 test-split sentences LiteRT gives its translations."""
    from bahdanau_keras.evaluate import test_split
    from bahdanau_keras.litert_export import export_litert
    from bahdanau_keras.train import TrainConfig
    from bahdanau_keras.translate import Translation

    if not (SHIPPED / "saved_model.pb").exists():
        pytest.skip(f"{SHIPPED} not found")
    with open(SHIPPED / "assets" / "config.json", encoding="utf-8") as f:
        train_config = TrainConfig(**json.load(f)["train"])
    sources, _ = test_split(str(fra_eng_zip), train_config)
    sentences = [sources[i] for i in np.linspace(0, len(sources) - 1, 100).astype(int)]
    lite = litert.LiteTranslator(export_litert(str(SHIPPED), str(tmp_path / "en-fr")))
    saved = Translation.open(str(SHIPPED))
    for beam_width in (1, 4):
        reference = [r["translation"] for r in saved.translate(sentences, beam_width=beam_width)]
        compare(lite.translate(sentences, beam_width=beam_width), reference, minimum=98)


def test_cli_export_litert_writes_a_translator(tiny_model_dir, lite, tmp_path, capsys):
    """`bahdanau-keras export --format litert` writes what `export_litert` writes."""
    from bahdanau_keras import cli

    output = tmp_path / "cli-litert"
    assert cli.main(["export", "--format", "litert", "--weights", "float32",
                     "--model-dir", str(tiny_model_dir), "--output", str(output)]) == 0
    assert "LiteRT models written to" in capsys.readouterr().out
    assert sorted(p.name for p in output.iterdir()) == sorted(
        p.name for p in Path(lite.path).iterdir())
    sentences = sample_sentences(5)
    assert litert.LiteTranslator(str(output)).translate(sentences) == lite.translate(sentences)


def test_cli_export_litert_refuses_a_keras_path(tiny_model_dir, tmp_path, capsys):
    from bahdanau_keras import cli

    assert cli.main(["export", "--format", "litert", "--model-dir", str(tiny_model_dir),
                     "--output", str(tmp_path / "out"), "--keras", str(tmp_path / "m.keras")]) == 2
    assert "--format savedmodel" in capsys.readouterr().err
