"""`bench serve`, `bench sentences` and `bench unpack` on the tiny model: what they print and
write, not how fast."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bahdanau_keras import bench

REPO = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"


def run_bench(*argv, check=True):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p), TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run([sys.executable, "-m", "bahdanau_keras.bench", *map(str, argv)],
                             capture_output=True, text=True, env=env, timeout=900)
    if check:
        assert process.returncode == 0, process.stderr[-3000:]
    return process


def value(output, name):
    match = re.search(rf"^{name}\s+{NUMBER}", output, re.MULTILINE)
    assert match, f"no `{name}` line in:\n{output}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def saved_model(tiny_model_dir, tmp_path_factory):
    from bahdanau_keras.export import export_model_dir

    return export_model_dir(str(tiny_model_dir), str(tmp_path_factory.mktemp("saved") / "m"))


@pytest.fixture(scope="module")
def sentence_file(tiny_model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("sentences") / "test.txt"
    assert bench.write_sentences(str(tiny_model_dir), str(path), 20) == 20
    return path


def test_decode_flops_count_the_encoder_once_and_every_hypothesis():
    from bahdanau_keras.model import ModelConfig

    config = ModelConfig(source_vocab_size=11, target_vocab_size=13, embedding_dim=3,
                         encoder_units=5, decoder_units=7, attention_units=2)
    source, output = [4, 6], [5, 2]
    encoder = bench.forward_flops(config, source, [0, 0])
    greedy = bench.decode_flops(config, source, output)
    assert greedy == bench.forward_flops(config, source, output)
    assert bench.decode_flops(config, source, output, beam_width=4) == pytest.approx(
        encoder + 4 * (greedy - encoder))
    # By hand for one sentence: E, H, D, A, V, C, R = 3, 5, 7, 2, 13, 10, 3; S = 4, T = 5.
    per_token = 2 * 7 * 2 + 2 * 4 * (2 + 10) + 6 * 7 * (3 + 10 + 7) + 4 * 3 * (7 + 3 + 10) \
        + 2 * 3 * 13
    by_hand = 12 * 5 * (3 + 5) * 4 + 2 * 5 * 7 + 2 * 10 * 2 * 4 + 5 * per_token
    assert bench.decode_flops(config, [4], [5]) == by_hand


@pytest.mark.slow
def test_sentences_are_the_first_of_the_test_split(tiny_model_dir, sentence_file):
    from bahdanau_keras import evaluate
    from bahdanau_keras.train import read_config

    _, train_config, data = read_config(str(tiny_model_dir))
    sources, _ = evaluate.test_split(data["path"], train_config, "test")
    assert sentence_file.read_text(encoding="utf-8").splitlines() == sources[:20]


@pytest.mark.slow
def test_unpack_rebuilds_the_model_directory_weight_for_weight(tiny_trained, saved_model,
                                                               tmp_path):
    from bahdanau_keras.train import load_trained

    unpacked = load_trained(bench.unpack_saved_model(saved_model, str(tmp_path / "dir")))
    original = tiny_trained.translator.weights
    def names(weights):  # without the model's own name (translator_1, translator_2, ...)
        return [w.path.split("/", 1)[1] for w in weights]

    assert names(unpacked.translator.weights) == names(original)
    for restored, weight in zip(unpacked.translator.weights, original):
        np.testing.assert_array_equal(restored.numpy(), weight.numpy())
    assert unpacked.source_tokenizer.model_proto == tiny_trained.source_tokenizer.model_proto
    assert unpacked.target_tokenizer.model_proto == tiny_trained.target_tokenizer.model_proto
    assert unpacked.model_config == tiny_trained.model_config
    with pytest.raises(ValueError, match="already holds a model"):
        bench.unpack_saved_model(saved_model, str(tmp_path / "dir"))


def test_unpack_and_serve_need_an_exported_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"Received a directory without either"):
        bench.unpack_saved_model(str(tmp_path / "empty"), str(tmp_path / "out"))
    (tmp_path / "sentences.txt").write_text("Hello.\n", encoding="utf-8")
    assert bench.main(["serve", "--saved-model", str(tmp_path / "empty"),
                       "--sentences", str(tmp_path / "sentences.txt")]) == 2


@pytest.mark.slow
def test_serve_needs_sentences(saved_model, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    assert bench.main(["serve", "--saved-model", saved_model,
                       "--sentences", str(tmp_path / "empty.txt")]) == 2
    assert "no sentences" in capsys.readouterr().err
    assert bench.main(["serve", "--saved-model", saved_model,
                       "--sentences", str(tmp_path / "missing.txt")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_measures_every_path_and_the_flop_rate(saved_model, tiny_model_dir,
                                                     sentence_file):
    output = run_bench("serve", "--saved-model", saved_model, "--model-dir", tiny_model_dir,
                       "--sentences", sentence_file, "--batch-size", "8", "--beam", "2",
                       "--passes", "1", "--matmul-size", "256", "--workers", "2").stdout
    for search in ("greedy", "beam2"):
        for kind in ("saved_model", "in_memory", "saved_model_workers"):
            for figure in ("sentences_per_s", "with_startup_sentences_per_s",
                           "first_translation_s", "peak_rss_mb"):
                assert value(output, f"{kind}_{search}_{figure}") > 0
            # A fresh process: the first translation comes after the import and the load.
            assert (value(output, f"{kind}_{search}_with_startup_sentences_per_s")
                    < value(output, f"{kind}_{search}_sentences_per_s"))
        for figure in ("saved_model_vs_in_memory", "cli_vs_saved_model",
                       "saved_model_workers_vs_saved_model", "cli_vs_saved_model_workers"):
            assert value(output, f"{figure}_{search}") > 0
        assert value(output, f"cli_{search}_seconds") > 0
        for name in (search, f"{search}_workers"):
            assert value(output, f"{name}_model_gflop_per_s") > 0
            assert value(output, f"{name}_flops_vs_matmul") > 0
    assert "saved_model_workers: the SavedModel with 2 calls at once" in output
    assert value(output, "matmul_256_gflop_per_s") > 0


@pytest.mark.slow
def test_serve_without_a_model_directory_says_what_it_leaves_out(saved_model, sentence_file):
    output = run_bench("serve", "--saved-model", saved_model, "--sentences", sentence_file,
                       "--batch-size", "8", "--beam", "1", "--passes", "1", "--no-cli",
                       "--matmul-size", "128", "--workers", "1").stdout
    assert "the in-memory comparison needs a model directory" in output
    assert value(output, "saved_model_greedy_sentences_per_s") > 0
    assert "in_memory_greedy_sentences_per_s" not in output
    assert "saved_model_workers" not in output
    assert "cli_greedy" not in output and "beam" not in output.split("\n", 1)[1]


def test_worker_summary_takes_the_best_figures():
    from bahdanau_keras.model import ModelConfig

    config = ModelConfig(source_vocab_size=11, target_vocab_size=13, embedding_dim=3,
                         encoder_units=5, decoder_units=7, attention_units=2)
    runs = [
        {"sentences": 2, "import_s": 3.0, "load_s": 1.0, "first_translation_s": 4.5,
         "cold_pass_end_s": 5.0, "steady_pass_s": [0.5, 0.4], "source_lengths": [4, 6],
         "output_lengths": [5, 2], "peak_rss_mb": 100.0},
        {"sentences": 2, "import_s": 2.0, "load_s": 1.5, "first_translation_s": 4.0,
         "cold_pass_end_s": 6.0, "steady_pass_s": [0.8], "source_lengths": [4, 6],
         "output_lengths": [5, 2], "peak_rss_mb": 120.0},
    ]
    figures = bench.summarize_serve_runs(runs, config, beam=2)
    assert figures["pass_s"] == 0.4 and figures["sentences_per_s"] == 5.0
    assert figures["with_startup_sentences_per_s"] == 2 / 5.0
    assert figures["import_s"] == 2.0 and figures["first_translation_s"] == 4.0
    assert figures["peak_rss_mb"] == 120.0 and figures["output_tokens"] == 7
    assert figures["model_flops_per_s"] == pytest.approx(
        bench.decode_flops(config, [4, 6], [5, 2], 2) / 0.4)
