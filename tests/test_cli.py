"""The command line: every error path gives one line on stderr, exit code 2 and no
traceback; `translate` reads arguments, stdin or a file and writes text or JSON."""

import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bahdanau_keras import cli, data

REPO = Path(__file__).resolve().parents[1]
TINY = ["--units", "32", "--embedding-dim", "16", "--vocab-size", "400", "--batch-size", "32",
        "--epochs", "1", "--checkpoint-every", "1000"]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, *fragments):
    """Exit code 2 and one line of error on stderr (after warnings, if any), no traceback."""
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines()
             if line.strip() and not line.startswith(("WARNING: ", "normalizer.cc"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("bahdanau-keras")
    assert err.rstrip().splitlines()[-1] == lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def sample_lines():
    return Path(data.SAMPLE_CORPUS).read_text(encoding="utf-8").splitlines()


@pytest.fixture
def corpus(tmp_path, sample_lines):
    path = tmp_path / "corpus.tsv"
    path.write_text("\n".join(sample_lines[:200]) + "\n", encoding="utf-8")
    return path


# -- option values ------------------------------------------------------------------------


@pytest.mark.parametrize("argv, fragments", [
    (["train", "--model-dir", "{d}", "--epochs", "-1"], ["--epochs", "'-1'"]),
    (["train", "--model-dir", "{d}", "--batch-size", "0"], ["--batch-size", "'0'"]),
    (["train", "--model-dir", "{d}", "--epochs", "many"], ["--epochs", "'many'"]),
    (["train", "--model-dir", "{d}", "--dropout", "1.5"], ["--dropout"]),
    (["train", "--model-dir", "{d}", "--learning-rate", "-0.1"], ["--learning-rate"]),
    (["train", "--model-dir", "{d}", "--source-column", "first"], ["--source-column"]),
    (["train", "--model-dir", "{d}", "--loss-chunks", "0"], ["--loss-chunks", "'0'"]),
    (["train", "--model-dir", "{d}", "--loop-shards", "0"], ["--loop-shards", "'0'"]),
    (["train", "--model-dir", "{d}", "--intra-op-threads", "-2"], ["--intra-op-threads"]),
    (["train", "--model-dir", "{d}", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["train", "--epochs", "3"], ["--model-dir"]),  # required option missing
    (["translate", "--beam", "0", "Hi."], ["--beam"]),
    (["frobnicate"], ["invalid choice"]),
    ([], ["command"]),
])
def test_bad_options(capsys, tmp_path, argv, fragments):
    model_dir = tmp_path / "model"
    code, out, err = run(capsys, *[a.replace("{d}", str(model_dir)) for a in argv])
    assert_usage_error(code, err, *fragments)
    assert out == ""
    assert not model_dir.exists()


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    assert "--skip-bad-lines" in capsys.readouterr().out


# -- corpus errors ---------------------------------------------------------------------------


def test_missing_corpus(capsys, tmp_path):
    missing = tmp_path / "missing.tsv"
    code, _, err = run(capsys, "train", "--data", missing, "--model-dir", tmp_path / "m")
    assert_usage_error(code, err, str(missing), "no such file")
    assert not (tmp_path / "m").exists()


def test_empty_corpus(capsys, tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"\xef\xbb\xbf\r\n\r\n")
    code, _, err = run(capsys, "train", "--data", empty, "--model-dir", tmp_path / "m")
    assert_usage_error(code, err, str(empty), "no sentence pairs")


@pytest.mark.parametrize("line, reason", [
    (b"no tab on this line", "no tab"),
    (b"Hello.\t", "empty target"),
    (b"Caf\xe9.\tCaf\xc3\xa9.", "invalid UTF-8"),
])
def test_malformed_corpus_line(capsys, tmp_path, line, reason):
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"Hi.\tSalut.\nGo.\tVa.\n" + line + b"\nRun.\tCours.\n")
    code, _, err = run(capsys, "train", "--data", path, "--model-dir", tmp_path / "m")
    assert_usage_error(code, err, f"{path}, line 3", reason, "--skip-bad-lines")


def test_unknown_language_column(capsys, corpus, tmp_path):
    code, _, err = run(capsys, "train", "--data", corpus, "--model-dir", tmp_path / "m",
                       "--source-column", "3")
    assert_usage_error(code, err, "--source-column", "'3'", "1 or 2")
    code, _, err = run(capsys, "train", "--data", corpus, "--model-dir", tmp_path / "m",
                       "--source-column", "2", "--target-column", "2")
    assert_usage_error(code, err, "same column")


def test_corpus_is_a_directory(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--data", tmp_path, "--model-dir", tmp_path / "m")
    assert_usage_error(code, err, "is a directory")


def test_resume_without_a_model(capsys, corpus, tmp_path):
    code, _, err = run(capsys, "train", "--data", corpus, "--model-dir", tmp_path / "none",
                       "--resume", *TINY)
    assert_usage_error(code, err, "nothing to resume")


def test_model_dir_is_a_file(capsys, corpus, tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    code, _, err = run(capsys, "train", "--data", corpus, "--model-dir", path, *TINY)
    assert_usage_error(code, err, str(path))


# -- a small training run and what can go wrong around it --------------------------------------


@pytest.fixture(scope="module")
def skipped_model(tmp_path_factory, sample_lines):
    """Trained with --skip-bad-lines on a corpus with three malformed lines."""
    root = tmp_path_factory.mktemp("skipped")
    path = root / "messy.tsv"
    lines = [line.encode("utf-8") for line in sample_lines[:150]]
    lines[10:10] = [b"no tab"]
    lines[50:50] = [b"\tVide."]
    lines[90:90] = [b"Caf\xe9.\tCaf\xc3\xa9."]
    path.write_bytes(b"\n".join(lines) + b"\n")
    model_dir = root / "model"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["train", "--data", str(path), "--model-dir", str(model_dir),
                         "--skip-bad-lines", "--quiet", *TINY])
    return dict(root=root, path=path, model_dir=model_dir, code=code, out=out.getvalue(),
                err=err.getvalue())


@pytest.mark.slow
def test_skip_bad_lines_trains_and_warns(capsys, skipped_model):
    root, path, model_dir = (skipped_model[k] for k in ("root", "path", "model_dir"))
    code, out, err = (skipped_model[k] for k in ("code", "out", "err"))
    assert code == 0, err
    assert "Traceback" not in err
    assert "skipped 3 malformed lines (first: line 11, no tab" in err
    assert "150 pairs" in out
    with open(model_dir / "config.json", encoding="utf-8") as f:
        assert json.load(f)["data"]["pairs"] == 150
    assert (model_dir / "history.json").exists()

    # Without --skip-bad-lines the same corpus stops at its first bad line.
    code, _, err = run(capsys, "train", "--data", path, "--model-dir", root / "other", *TINY)
    assert_usage_error(code, err, f"{path}, line 11")

    # The directory now holds a model: training into it again needs --resume.
    before = sorted(os.listdir(model_dir))
    code, _, err = run(capsys, "train", "--data", path, "--model-dir", model_dir,
                       "--skip-bad-lines", *TINY)
    assert_usage_error(code, err, "already holds a model", "--resume")
    assert sorted(os.listdir(model_dir)) == before

    # Resuming on another corpus is refused.
    other = root / "other.tsv"
    other.write_text("Hi.\tSalut.\n", encoding="utf-8")
    code, _, err = run(capsys, "train", "--data", other, "--model-dir", model_dir, "--resume",
                       *TINY)
    assert_usage_error(code, err, "not the corpus")


@pytest.mark.slow
def test_resume_keeps_the_models_corpus_and_options(capsys, monkeypatch, skipped_model):
    """Without --data, --epochs, --patience or --checkpoint-every, --resume goes on with the
    model's own; given, they change the run's length and limits."""
    from bahdanau_keras import train

    assert skipped_model["code"] == 0
    calls = []
    monkeypatch.setattr(train, "train", lambda *args, **kwargs: calls.append((args, kwargs)))
    model_dir = skipped_model["model_dir"]
    code, out, err = run(capsys, "train", "--model-dir", model_dir, "--resume",
                         "--skip-bad-lines", "--quiet")
    assert code == 0, err
    (_, corpus, _, config), kwargs = calls[-1]
    assert kwargs["resume"] is True
    assert corpus.path == str(skipped_model["path"]) and len(corpus.pairs) == 150
    assert (config.epochs, config.patience, config.checkpoint_every) == (1, 3, 1000)
    assert (config.source_column, config.target_column) == (1, 2)
    code, _, err = run(capsys, "train", "--model-dir", model_dir, "--resume", "--quiet",
                       "--skip-bad-lines", "--epochs", "4", "--patience", "0",
                       "--checkpoint-every", "7")
    assert code == 0, err
    config = calls[-1][0][3]
    assert (config.epochs, config.patience, config.checkpoint_every) == (4, 0, 7)


@pytest.mark.slow
def test_resume_takes_the_options_that_may_change(capsys, monkeypatch, skipped_model):
    """The learning rate, the run's limits and how the step runs may change on --resume; the
    limits of one run (--max-steps, --time-limit) do not carry over to the next."""
    from bahdanau_keras import train

    assert skipped_model["code"] == 0
    calls = []
    monkeypatch.setattr(train, "train", lambda *args, **kwargs: calls.append((args, kwargs)))
    code, _, err = run(capsys, "train", "--model-dir", skipped_model["model_dir"], "--resume",
                       "--quiet", "--skip-bad-lines", "--learning-rate", "0.0003",
                       "--max-steps", "9", "--time-limit", "1.5", "--implementation",
                       "reference", "--loss-chunks", "1", "--loop-shards", "3",
                       "--mixed-precision", "--jit-compile", "--inter-op-threads", "1", *TINY)
    assert code == 0, err
    config = calls[-1][0][3]
    assert (config.learning_rate, config.max_steps, config.time_limit) == (3e-4, 9, 1.5)
    assert (config.implementation, config.loss_chunks, config.loop_shards) == (
        "reference", 1, 3)
    assert config.mixed_precision and config.jit_compile and config.inter_op_threads == 1
    assert (config.vocab_size, config.batch_size, config.seed) == (400, 32, 0)  # the model's
    assert calls[-1][0][2] == {"decoder_units": 32, "attention_units": 32,
                               "encoder_units": 16, "embedding_dim": 16}  # as the model's

    # The model directory keeps the last run's options (`train` writes them): a limit of one
    # run is reset when not given, the rest is kept.
    from bahdanau_keras import config as config_lib

    saved = train.read_config(str(skipped_model["model_dir"]))[1]
    again = config_lib.resumed(dataclasses.replace(saved, max_steps=9, learning_rate=3e-4), {})
    assert (again.max_steps, again.learning_rate) == (0, 3e-4)


@pytest.mark.parametrize("option, value, fragments", [
    ("--vocab-size", "500", ["--vocab-size 500", "the model's 400"]),
    ("--batch-size", "64", ["--batch-size 64", "the model's 32"]),
    ("--seed", "3", ["--seed 3", "the model's 0"]),
    ("--label-smoothing", "0.1", ["--label-smoothing 0.1", "the model's 0.0"]),
    ("--target-column", "1", ["--target-column 1", "the model's 2"]),
    ("--units", "64", ["--units 64", "the model's 32 (decoder_units)"]),
    ("--embedding-dim", "8", ["--embedding-dim 8", "the model's 16"]),
    ("--dropout", "0.3", ["--dropout 0.3", "the model's 0.0"]),
    ("--attention", "none", ["--attention none", "the model's bahdanau (attention)"]),
])
@pytest.mark.slow
def test_resume_refuses_a_fixed_option_with_another_value(
        capsys, monkeypatch, skipped_model, option, value, fragments):
    from bahdanau_keras import train

    calls = []
    monkeypatch.setattr(train, "train", lambda *args, **kwargs: calls.append((args, kwargs)))
    before = (skipped_model["model_dir"] / "config.json").read_bytes()
    code, out, err = run(capsys, "train", "--model-dir", skipped_model["model_dir"],
                         "--resume", "--skip-bad-lines", option, value)
    assert_usage_error(code, err, *fragments, "cannot change on --resume")
    assert out == "" and not calls
    assert (skipped_model["model_dir"] / "config.json").read_bytes() == before


@pytest.mark.slow
def test_resume_on_a_corpus_that_is_gone(capsys, skipped_model, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(skipped_model["model_dir"], model_dir)
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["data"]["path"] = str(tmp_path / "gone.zip") + ":fra.txt"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    code, _, err = run(capsys, "train", "--model-dir", model_dir, "--resume")
    assert_usage_error(code, err, "gone.zip", "--data")


@pytest.mark.slow
def test_resume_from_a_corrupt_checkpoint(capsys, skipped_model, tmp_path):
    assert skipped_model["code"] == 0
    model_dir = tmp_path / "model"
    shutil.copytree(skipped_model["model_dir"], model_dir)
    for data_file in (model_dir / "checkpoints").glob("*.data-*"):
        data_file.write_bytes(data_file.read_bytes()[:100])
    # With no --data, --resume goes on with the model's own corpus (and it is the same).
    code, _, err = run(capsys, "train", "--model-dir", model_dir, "--resume",
                       "--skip-bad-lines", *TINY)
    assert_usage_error(code, err, "checkpoint", "ckpt-")
    # An unreadable checkpoint list does not make --resume start again from scratch.
    (model_dir / "checkpoints" / "checkpoint").write_text("garbage {{{")
    code, _, err = run(capsys, "train", "--model-dir", model_dir, "--resume",
                       "--skip-bad-lines", *TINY)
    assert_usage_error(code, err, "checkpoint", "ckpt-")
    assert "checkpoint list is missing or unreadable" in err


# -- the options' defaults are the configuration's ---------------------------------------------


def captured_train(capsys, monkeypatch, *argv):
    """`(model_config_overrides, train_config)` that `train` receives for `argv`."""
    from bahdanau_keras import train

    calls = []
    monkeypatch.setattr(train, "train", lambda *args, **kwargs: calls.append(args))
    code, _, err = run(capsys, "train", "--quiet", *argv)
    assert code == 0, err
    (_, _, overrides, config), = calls
    return overrides, config


def test_train_defaults_are_the_dataclass_defaults(capsys, monkeypatch, corpus, tmp_path):
    from bahdanau_keras.config import TrainConfig

    overrides, config = captured_train(capsys, monkeypatch, "--data", corpus, "--model-dir",
                                       tmp_path / "m")
    assert config == TrainConfig()
    assert overrides == {}  # ModelConfig's own defaults
    # Every field has its option, and every option given reaches its field.
    values = {"source_column": 2, "target_column": 1, "dev_fraction": 0.1,
              "test_fraction": 0.2, "vocab_size": 300, "max_length": 20, "seed": -4,
              "batch_size": 8, "label_smoothing": 0.1, "clipnorm": 5.0, "epochs": 4,
              "patience": 0, "checkpoint_every": 7, "learning_rate": 0.01, "max_steps": 3,
              "time_limit": 0.5, "implementation": "fused", "loss_chunks": 3, "loop_shards": 1,
              "mixed_precision": True, "jit_compile": True, "intra_op_threads": 1,
              "inter_op_threads": 1}
    assert sorted(values) == sorted(f.name for f in dataclasses.fields(TrainConfig))
    argv = []
    for name, value in values.items():
        option = "--" + name.replace("_", "-")
        argv += [option] if value is True else [option, str(value)]
    overrides, config = captured_train(capsys, monkeypatch, "--data", corpus, "--model-dir",
                                       tmp_path / "m", *argv, "--units", "10",
                                       "--embedding-dim", "6", "--dropout", "0.5")
    assert config == TrainConfig(**values)
    assert overrides == {"decoder_units": 10, "attention_units": 10, "encoder_units": 5,
                         "embedding_dim": 6, "dropout": 0.5}


def test_attention_option(capsys, monkeypatch, corpus, tmp_path):
    """--attention none is ModelConfig(attention=None) (RNNencdec); other values are refused."""
    for value, expected in (("none", None), ("bahdanau", "bahdanau")):
        overrides, _ = captured_train(capsys, monkeypatch, "--data", corpus, "--model-dir",
                                      tmp_path / "m", "--attention", value)
        assert overrides == {"attention": expected}
    code, _, err = run(capsys, "train", "--data", corpus, "--model-dir", tmp_path / "m",
                       "--attention", "luong")
    assert_usage_error(code, err, "--attention", "invalid choice: 'luong'", "'none'")
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "(default: bahdanau)" in " ".join(capsys.readouterr().out.split())


def test_sample_corpus_defaults(capsys, monkeypatch, tmp_path):
    from bahdanau_keras import config

    overrides, train_config = captured_train(capsys, monkeypatch, "--model-dir", tmp_path / "m")
    assert overrides == config.SAMPLE_CORPUS_MODEL
    assert train_config == config.TrainConfig(**config.SAMPLE_CORPUS_TRAINING)
    overrides, train_config = captured_train(capsys, monkeypatch, "--model-dir", tmp_path / "m",
                                             "--units", "48", "--epochs", "2")
    assert overrides == {**config.SAMPLE_CORPUS_MODEL, "decoder_units": 48,
                         "attention_units": 48, "encoder_units": 24}
    assert (train_config.epochs, train_config.vocab_size) == (
        2, config.SAMPLE_CORPUS_TRAINING["vocab_size"])


def test_help_shows_the_dataclass_defaults(capsys):
    from bahdanau_keras.config import TrainConfig
    from bahdanau_keras.model import ModelConfig

    def squashed(text):  # argparse wraps lines, also inside hyphenated words
        return "".join(text.split())

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = squashed(capsys.readouterr().out)
    for field in dataclasses.fields(TrainConfig):
        default = field.default
        if isinstance(default, bool):
            default = "on" if default else "off"
        assert squashed(f"{field.metadata['help']} (default: {default}") in text, field.name
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    assert squashed(f"readout in training (default: {defaults['dropout']})") in text
    assert squashed(f"embedding size (default: {defaults['embedding_dim']}; 64 on") in text
    assert squashed(f"have half each) (default: {defaults['decoder_units']}; 128 on") in text


# -- translate ---------------------------------------------------------------------------------


def test_translate_missing_model_dir(capsys, tmp_path):
    code, out, err = run(capsys, "translate", "--model-dir", tmp_path / "none", "Hi.")
    assert_usage_error(code, err, "no such model directory")
    assert out == ""


def test_translate_not_a_model_dir(capsys, tmp_path):
    code, _, err = run(capsys, "translate", "--model-dir", tmp_path, "Hi.")
    assert_usage_error(code, err, "neither a model directory")


@pytest.mark.parametrize("content", ["{not json", "[]", '{"model": {"units": 3}}',
                                     '{"model": {}, "train": {}}'])
def test_translate_garbage_config(capsys, tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    code, _, err = run(capsys, "translate", "--model-dir", tmp_path, "Hi.")
    assert_usage_error(code, err, "config.json", "corrupt model configuration")


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(tiny_model_dir, path)
    return path


@pytest.mark.slow
def test_translate_truncated_checkpoint(capsys, model_copy):
    for data_file in (model_copy / "best").glob("*.data-*"):
        data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    code, out, err = run(capsys, "translate", "--model-dir", model_copy, "Hi.")
    assert_usage_error(code, err, "corrupt")
    assert out == ""


@pytest.mark.slow
def test_translate_truncated_index_and_vocabulary(capsys, model_copy):
    for index in (model_copy / "best").glob("*.index"):
        index.write_bytes(index.read_bytes()[:20])
    code, _, err = run(capsys, "translate", "--model-dir", model_copy, "Hi.")
    assert_usage_error(code, err, "corrupt")
    (model_copy / "source.model").write_bytes(b"\x00garbage")
    code, _, err = run(capsys, "translate", "--model-dir", model_copy, "Hi.")
    assert_usage_error(code, err, "cannot read the vocabularies")


@pytest.mark.slow
def test_translate_without_weights(capsys, model_copy):
    shutil.rmtree(model_copy / "best")
    shutil.rmtree(model_copy / "checkpoints")
    code, _, err = run(capsys, "translate", "--model-dir", model_copy, "Hi.")
    assert_usage_error(code, err, "no trained weights")


@pytest.mark.slow
def test_translate_input_errors(capsys, tiny_model_dir, tmp_path):
    missing = tmp_path / "missing.txt"
    code, out, err = run(capsys, "translate", "--model-dir", tiny_model_dir, "--input", missing)
    assert_usage_error(code, err, str(missing), "no such file")
    assert out == ""
    code, _, err = run(capsys, "translate", "--model-dir", tiny_model_dir, "--input", missing,
                       "Hi.")
    assert_usage_error(code, err, "not both")


@pytest.mark.slow
def test_translate_stdin(capsys, monkeypatch, tiny_model_dir):
    stdin = io.TextIOWrapper(io.BytesIO(
        "Thank you.\nGood night.\nSee you tomorrow.\n".encode("utf-8")), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, err = run(capsys, "translate", "--model-dir", tiny_model_dir)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.strip() for line in lines)
    assert "Traceback" not in err


@pytest.mark.slow
def test_translate_input_file_and_json(capsys, tiny_model_dir, tmp_path):
    sentences = ["Thank you.", "How are you?", "I see the red car.", "Caf\u00e9 \U0001F600 !"]
    path = tmp_path / "in.txt"
    path.write_bytes(("\r\n".join(sentences) + "\r\n").encode("utf-8") + b"bad \xff byte\n")
    code, out, err = run(capsys, "translate", "--model-dir", tiny_model_dir, "--input", path,
                         "--json")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["source"] for r in records] == sentences + ["bad \ufffd byte"]
    for r in records:
        assert isinstance(r["translation"], str) and r["translation"]
        assert math.isfinite(r["score"])
        assert len(r["attention"]) == len(r["target_tokens"])
        assert all(len(row) == len(r["source_tokens"]) for row in r["attention"])
        assert all(abs(sum(row) - 1) < 1e-3 for row in r["attention"])
    # The plain output is the same translations, one a line.
    code, out, _ = run(capsys, "translate", "--model-dir", tiny_model_dir, *sentences)
    assert code == 0
    assert out.splitlines() == [r["translation"] for r in records[:4]]


# -- through a real process: no traceback ------------------------------------------------------


def run_process(*argv):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    return subprocess.run([sys.executable, "-m", "bahdanau_keras", *map(str, argv)],
                          capture_output=True, text=True, env=env, timeout=300,
                          stdin=subprocess.DEVNULL)


def assert_process_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("bahdanau-keras")]
    assert len(ours) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == ours[0]
    for fragment in fragments:
        assert fragment in ours[0]


def test_process_bad_option(tmp_path):
    assert_process_error(run_process("train", "--model-dir", tmp_path, "--epochs", "-1"),
                         "--epochs")


@pytest.mark.slow
def test_process_malformed_corpus(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"Hi.\tSalut.\nCaf\xe9.\tCaf\xc3\xa9.\n")
    assert_process_error(run_process("train", "--data", path, "--model-dir", tmp_path / "m"),
                         f"{path}, line 2", "invalid UTF-8")


@pytest.mark.slow
def test_process_corrupt_model(model_copy):
    for data_file in (model_copy / "best").glob("*.data-*"):
        data_file.write_bytes(b"")
    assert_process_error(run_process("translate", "--model-dir", model_copy, "Hi."), "corrupt")
