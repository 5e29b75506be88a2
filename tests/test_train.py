"""Training: reproducibility, exact resume (also after `kill -9`), non-finite losses, early
stopping and TensorBoard. Tiny models on a slice of the sample corpus keep this fast."""

import dataclasses
import errno
import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bahdanau_keras import cli, data, train
from bahdanau_keras.text import SubwordTokenizer

REPO = Path(__file__).resolve().parents[1]
# A tiny model with dropout, so that resuming must also restore the dropout random state.
TINY = ["--units", "32", "--embedding-dim", "16", "--vocab-size", "400", "--dropout", "0.2",
        "--batch-size", "32", "--epochs", "2", "--seed", "7"]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    lines = Path(data.SAMPLE_CORPUS).read_text(encoding="utf-8").splitlines()[:300]
    path = tmp_path_factory.mktemp("corpus") / "small.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def run_train(corpus_file, model_dir, *extra, checkpoint_every=1000):
    return cli.main(["train", "--data", corpus_file, "--model-dir", str(model_dir), *TINY,
                     "--checkpoint-every", str(checkpoint_every), *extra])


def latest_state(model_dir):
    """Every variable of the latest checkpoint (weights, Adam moments, counters, RNG)."""
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return path, {name: reader.get_tensor(name)
                  for name in reader.get_variable_to_shape_map()
                  if name.endswith("VARIABLE_VALUE") and not name.startswith("save_counter")}


def assert_same_state(a, b):
    assert sorted(a) == sorted(b)
    different = [name for name in a if not np.array_equal(a[name], b[name])]
    assert not different, f"{len(different)} variables differ, e.g. {different[:3]}"


def history(model_dir):
    with open(os.path.join(model_dir, "history.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reference(corpus_file, tmp_path_factory):
    """An uninterrupted run: its final state, history and batches per epoch."""
    model_dir = tmp_path_factory.mktemp("reference") / "model"
    assert run_train(corpus_file, model_dir, "--quiet") == 0
    path, state = latest_state(model_dir)
    records = history(model_dir)
    return dict(dir=model_dir, path=path, state=state, history=records,
                steps_per_epoch=records[0]["step"])


@pytest.mark.slow
def test_reference_run(reference):
    records = reference["history"]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["step"] == 2 * reference["steps_per_epoch"] > 10
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["dev_loss"]) for r in records)
    assert records[1]["train_loss"] < records[0]["train_loss"]
    state = reference["state"]
    # Saved with the weights: optimizer, step, data position and the dropout RNG state.
    assert state["step/.ATTRIBUTES/VARIABLE_VALUE"] == records[1]["step"]
    assert state["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == records[1]["step"]
    assert any(name.startswith("rng/") for name in state)
    assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f"
               and v.ndim)
    reader = tf.train.load_checkpoint(reference["path"])
    assert "data/.ATTRIBUTES/ITERATOR_STATE" in reader.get_variable_to_shape_map()
    for name in ("config.json", "source.model", "target.model", "history.json"):
        assert (reference["dir"] / name).is_file()
    assert tf.train.latest_checkpoint(str(reference["dir"] / "best"))


@pytest.mark.slow
def test_same_seed_gives_identical_weights_and_resume_at_an_epoch_end(
        corpus_file, reference, tmp_path, capsys):
    model_dir = tmp_path / "again"
    assert run_train(corpus_file, model_dir) == 0
    _, state = latest_state(model_dir)
    assert_same_state(state, reference["state"])
    assert [r["train_loss"] for r in history(model_dir)] == [
        r["train_loss"] for r in reference["history"]]

    # As if killed right after the checkpoint at the end of the first epoch: resume from it.
    per_epoch = reference["steps_per_epoch"]
    checkpoints = model_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.index")) == sorted(
        [f"ckpt-{per_epoch}.index", f"ckpt-{2 * per_epoch}.index"])
    (checkpoints / "checkpoint").write_text(
        f'model_checkpoint_path: "ckpt-{per_epoch}"\n'
        f'all_model_checkpoint_paths: "ckpt-{per_epoch}"\n')
    (checkpoints / f"ckpt-{2 * per_epoch}.index").unlink()
    capsys.readouterr()
    assert run_train(corpus_file, model_dir, "--resume") == 0
    assert f"at step {per_epoch} (epoch 2)" in capsys.readouterr().out
    _, state = latest_state(model_dir)
    assert_same_state(state, reference["state"])
    records = history(model_dir)
    assert [(r["epoch"], r["step"], r["train_loss"], r["dev_loss"]) for r in records] == [
        (r["epoch"], r["step"], r["train_loss"], r["dev_loss"]) for r in reference["history"]]


@pytest.mark.slow
def test_tensorboard_events(reference):
    files = glob.glob(str(reference["dir"] / "logs" / "events.out.tfevents.*"))
    assert files
    dev = []
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "dev/loss":
                    dev.append((event.step, float(tf.make_ndarray(value.tensor))))
    assert [step for step, _ in sorted(dev)] == [r["step"] for r in reference["history"]]
    assert [loss for _, loss in sorted(dev)] == pytest.approx(
        [r["dev_loss"] for r in reference["history"]])


@pytest.mark.slow
def test_stopped_and_resumed_run_reaches_the_same_weights(
        corpus_file, reference, tmp_path, capsys, monkeypatch):
    model_dir = tmp_path / "model"
    assert run_train(corpus_file, model_dir, "--max-steps", "4") == 0
    assert "Stopped: reached --max-steps 4." in capsys.readouterr().out
    assert latest_state(model_dir)[1]["step/.ATTRIBUTES/VARIABLE_VALUE"] == 4

    # Resume in the middle of the first epoch: same step counter, optimizer, data position,
    # all of them from one restore of the checkpoint.
    restored = count_restores(monkeypatch)
    assert run_train(corpus_file, model_dir, "--resume") == 0
    out = capsys.readouterr().out
    assert "Resumed from" in out and "at step 4 (epoch 1)" in out
    assert restored == [str(model_dir / "checkpoints" / "ckpt-4")]
    _, state = latest_state(model_dir)
    assert_same_state(state, reference["state"])
    assert [(r["epoch"], r["step"], r["train_loss"]) for r in history(model_dir)] == [
        (r["epoch"], r["step"], r["train_loss"]) for r in reference["history"]]


@pytest.mark.slow
def test_kill_9_in_the_middle_of_training_then_resume(corpus_file, reference, tmp_path, capsys):
    model_dir = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
        "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [sys.executable, "-m", "bahdanau_keras", "train", "--data", corpus_file,
            "--model-dir", str(model_dir), *TINY, "--checkpoint-every", "1", "--quiet"]
    process = subprocess.Popen(args, env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    state_file = model_dir / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 240
    try:
        # Kill once a few steps are checkpointed: a checkpoint is being written every step.
        while time.monotonic() < deadline and process.poll() is None:
            if state_file.exists() and "ckpt-3" in state_file.read_text() + "".join(
                    os.listdir(state_file.parent)):
                break
            time.sleep(0.02)
        assert process.poll() is None, (
            "training ended before it could be killed: "
            + process.stderr.read().decode(errors="replace")[-2000:])
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()

    # Nothing is corrupt: every file reads, the latest checkpoint restores.
    with open(model_dir / "config.json", encoding="utf-8") as f:
        assert json.load(f)["train"]["seed"] == 7
    SubwordTokenizer.load(str(model_dir / "source.model"))
    SubwordTokenizer.load(str(model_dir / "target.model"))
    if (model_dir / "history.json").exists():
        history(model_dir)
    killed_at = latest_state(model_dir)[1]["step/.ATTRIBUTES/VARIABLE_VALUE"]
    # The kill may come in the middle of writing a checkpoint: the one before stays valid.
    assert 2 <= killed_at < reference["history"][-1]["step"]
    train.load_trained(str(model_dir), which="latest")

    assert run_train(corpus_file, model_dir, "--resume") == 0
    assert "Resumed from" in capsys.readouterr().out
    _, state = latest_state(model_dir)
    assert_same_state(state, reference["state"])


def nan_step(monkeypatch, after, spoil):
    """Make the train step spoil the loss or the weights from step `after` on."""
    real = train.make_train_step

    def make(translator, optimizer, *args, **kwargs):
        step = real(translator, optimizer, *args, **kwargs)
        calls = [0]

        def patched(source, target):
            calls[0] += 1
            loss_sum, count = step(source, target)
            if calls[0] >= after:
                if spoil == "loss":
                    return tf.constant(float("nan")), count
                weight = translator.trainable_variables[0]
                weight.assign(tf.fill(weight.shape, float("inf")))
            return loss_sum, count

        return patched

    monkeypatch.setattr(train, "make_train_step", make)


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_clear_error(corpus_file, tmp_path, monkeypatch, capsys):
    nan_step(monkeypatch, after=5, spoil="loss")
    model_dir = tmp_path / "model"
    assert run_train(corpus_file, model_dir, "--quiet", checkpoint_every=2) == 2
    err = capsys.readouterr().err
    assert "the loss became nan at step 5" in err and "--learning-rate" in err
    assert "Traceback" not in err
    path, state = latest_state(model_dir)
    assert path.endswith("ckpt-4")  # the last good checkpoint is kept
    assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f" and v.ndim)
    train.load_trained(str(model_dir), which="latest")


@pytest.mark.slow
def test_non_finite_weights_are_never_checkpointed(corpus_file, tmp_path, monkeypatch):
    nan_step(monkeypatch, after=4, spoil="weights")
    corpus = data.read_corpus(corpus_file)
    config = train.TrainConfig(epochs=2, batch_size=32, vocab_size=400, checkpoint_every=1)
    model = dict(embedding_dim=16, encoder_units=16, decoder_units=32, attention_units=32)
    with pytest.raises(train.TrainingError, match="non-finite at step 4"):
        train.train(str(tmp_path / "model"), corpus, model, config, verbose=0)
    path, state = latest_state(tmp_path / "model")
    assert path.endswith("ckpt-3")
    assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f" and v.ndim)


@pytest.mark.slow
def test_early_stopping_with_patience(corpus_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "dev_loss", lambda *args: 1.0)  # never improves after epoch 1
    model_dir = tmp_path / "model"
    assert run_train(corpus_file, model_dir, "--epochs", "10", "--patience", "1") == 0
    assert "Stopped: dev loss has not improved for 1 epochs." in capsys.readouterr().out
    records = history(model_dir)
    assert [r["epoch"] for r in records] == [1, 2]
    _, state = latest_state(model_dir)
    assert state["bad_epochs/.ATTRIBUTES/VARIABLE_VALUE"] == 1
    assert state["epoch/.ATTRIBUTES/VARIABLE_VALUE"] == 2


@pytest.mark.slow
def test_resume_refuses_another_corpus(corpus_file, reference, tmp_path):
    other = tmp_path / "other.tsv"
    other.write_text("Hi.\tSalut.\nGo.\tVa.\n", encoding="utf-8")
    corpus = data.read_corpus(str(other))
    with pytest.raises(train.TrainingError, match="not the corpus"):
        train.train(str(reference["dir"]), corpus, resume=True, verbose=0)


@pytest.mark.slow
def test_checkpoint_write_that_fails_keeps_the_previous_one(
        corpus_file, reference, tmp_path, monkeypatch, capsys):
    """A full disk while writing a checkpoint: one line naming the checkpoint that is still
    good, nothing of the failed write left behind, and --resume from the good one is exact."""
    real_save = tf.train.CheckpointManager.save

    def save_on_a_full_disk(manager, checkpoint_number=None, **kwargs):
        if not manager.directory.endswith("checkpoints") or checkpoint_number < 6:
            return real_save(manager, checkpoint_number=checkpoint_number, **kwargs)
        # What an interrupted write leaves: a temporary shard and a short data file.
        prefix = os.path.join(manager.directory, f"ckpt-{checkpoint_number}")
        os.makedirs(prefix + "_temp")
        Path(prefix + "_temp", "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 64)
        Path(prefix + ".data-00000-of-00001").write_bytes(b"\0" * 10)
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{prefix}_temp/part-00000-of-00001.data-00000-of-00001.tempstate1; "
                        "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save_on_a_full_disk)
    model_dir = tmp_path / "model"
    assert run_train(corpus_file, model_dir, "--quiet", checkpoint_every=2) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("bahdanau-keras")]
    assert len(lines) == 1 and "Traceback" not in err, err
    good = str(model_dir / "checkpoints" / "ckpt-4")
    assert "ckpt-6" in lines[0] and "No space left on device" in lines[0]
    assert f"the last good checkpoint is {good}" in lines[0] and "--resume" in lines[0]
    assert sorted(p.name for p in (model_dir / "checkpoints").iterdir()) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
        "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    assert latest_state(model_dir)[0] == good
    train.load_trained(str(model_dir), which="latest")

    # Space again: the run resumes from ckpt-4 and ends as the uninterrupted one.
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    assert run_train(corpus_file, model_dir, "--resume") == 0
    assert "at step 4 (epoch 1)" in capsys.readouterr().out
    assert_same_state(latest_state(model_dir)[1], reference["state"])


@pytest.mark.slow
def test_history_write_that_fails_names_the_good_checkpoint(
        corpus_file, reference, tmp_path, monkeypatch, capsys):
    real_replace = os.replace

    def replace(source, destination):
        if os.fspath(destination).endswith("history.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    model_dir = tmp_path / "model"
    assert run_train(corpus_file, model_dir, "--quiet", checkpoint_every=4) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("bahdanau-keras")]
    last = 4 * ((reference["steps_per_epoch"] - 1) // 4)  # the last before the epoch ends
    assert lines == [
        f"bahdanau-keras: error: {model_dir / 'history.json'}: cannot write ([Errno 28] No "
        f"space left on device); the last good checkpoint is "
        f"{model_dir / 'checkpoints' / f'ckpt-{last}'} (free some space, then --resume)"], err
    assert not (model_dir / "history.json").exists()
    assert not list(model_dir.glob("*.partial"))


def count_restores(monkeypatch):
    """The paths that `tf.train.Checkpoint.restore` is called with from now on."""
    restored = []
    real_restore = tf.train.Checkpoint.restore

    def restore(checkpoint, path, *args, **kwargs):
        restored.append(path)
        return real_restore(checkpoint, path, *args, **kwargs)

    monkeypatch.setattr(tf.train.Checkpoint, "restore", restore)
    return restored


@pytest.mark.slow
def test_resuming_a_finished_run_restores_once_and_trains_no_more(
        corpus_file, reference, tmp_path, monkeypatch):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(reference["dir"], model_dir)
    restored = count_restores(monkeypatch)
    corpus = data.read_corpus(corpus_file)
    history = train.train(str(model_dir), corpus, resume=True, verbose=0)
    assert restored == [str(model_dir / "checkpoints" / os.path.basename(reference["path"]))]
    assert history == reference["history"]


@pytest.mark.slow
def test_resume_refuses_a_fixed_option_with_another_value(corpus_file, reference):
    corpus = data.read_corpus(corpus_file)
    saved = train.read_config(str(reference["dir"]))[1]
    with pytest.raises(train.TrainingError, match=r"`batch_size` cannot change on resume: "
                                                  r"the model has 32, received 64"):
        train.train(str(reference["dir"]), corpus, None,
                    dataclasses.replace(saved, batch_size=64), resume=True, verbose=0)
    with pytest.raises(train.TrainingError, match=r"`decoder_units` cannot change on resume"):
        train.train(str(reference["dir"]), corpus, {"decoder_units": 64}, resume=True,
                    verbose=0)
    assert train.read_config(str(reference["dir"]))[1] == saved  # nothing was written


MIXED_PRECISION_RESUME = """
import sys

from bahdanau_keras import cli, train

# float16 with loss scaling, as on a GPU (this CPU would take bfloat16, without it).
train.mixed_precision_policy = lambda: "mixed_float16"
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_mixed_precision_may_change_on_resume(corpus_file, tmp_path):
    """float32 -> float16 with loss scaling -> float32 again, each resumed from the other's
    checkpoint (in other processes: the dtype policy is global)."""
    model_dir = tmp_path / "model"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    for extra in (["--max-steps", "3"], ["--resume", "--mixed-precision", "--max-steps", "6"],
                  ["--resume", "--no-mixed-precision", "--max-steps", "8"]):
        process = subprocess.run(
            [sys.executable, "-c", MIXED_PRECISION_RESUME, "train", "--data", corpus_file,
             "--model-dir", str(model_dir), *TINY, "--quiet", *extra],
            capture_output=True, text=True, env=env, timeout=300)
        assert process.returncode == 0, process.stderr[-3000:]
        path, state = latest_state(model_dir)
        assert state["step/.ATTRIBUTES/VARIABLE_VALUE"] == int(extra[-1])
        assert all(np.isfinite(v).all() for v in state.values()
                   if v.dtype.kind == "f" and v.ndim)
        if "--mixed-precision" in extra:
            assert state["loss_scale/dynamic_scale/.ATTRIBUTES/VARIABLE_VALUE"] > 0
            assert train.read_config(str(model_dir))[1].mixed_precision
    assert not train.read_config(str(model_dir))[1].mixed_precision


def test_train_config_validation():
    for bad in (dict(epochs=0), dict(batch_size=-1), dict(patience=-1),
                dict(learning_rate=0.0), dict(label_smoothing=1.0), dict(loss_chunks=0),
                dict(loop_shards=0), dict(implementation="fast"), dict(jit_compile=1),
                dict(source_column=3), dict(intra_op_threads=-1), dict(epochs=2.0),
                dict(dev_fraction=0.6, test_fraction=0.5)):
        with pytest.raises(ValueError):
            train.TrainConfig(**bad)


def threads_in_fresh_process(code, **env):
    """Run `code` (which prints a result) in a new interpreter, where TensorFlow has not
    started; returns the last line printed and the standard error."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
    environment.update(env, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=environment, timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    return process.stdout.strip().splitlines()[-1], process.stderr


CONFIGURE = ("import json\nimport tensorflow as tf\nfrom bahdanau_keras import train\n"
             "print(json.dumps([train.configure_threads({args}), train.default_threads(), "
             "[tf.config.threading.get_intra_op_parallelism_threads(), "
             "tf.config.threading.get_inter_op_parallelism_threads()]]))")


def configure_in_fresh_process(args="", **env):
    """`(returned, default_threads(), in effect)` of `configure_threads(args)` run first thing
    in a new interpreter."""
    line, _ = threads_in_fresh_process(CONFIGURE.format(args=args), **env)
    return [tuple(sizes) for sizes in json.loads(line)]


@pytest.mark.slow
def test_configure_threads_uses_the_cpu_default_before_tensorflow_starts():
    returned, default, in_effect = configure_in_fresh_process()
    cores = len(os.sched_getaffinity(0))
    assert default == (max(1, cores // 2), 2)
    assert returned == default == in_effect


@pytest.mark.slow
def test_configure_threads_explicit_sizes_and_environment_variables():
    returned, _, in_effect = configure_in_fresh_process("3, 1")
    assert returned == in_effect == (3, 1)
    # The environment variables chosen by the user win over the default (TensorFlow reads them
    # itself; its API then reports 0, "its default")...
    returned, _, in_effect = configure_in_fresh_process(
        TF_NUM_INTRAOP_THREADS="3", TF_NUM_INTEROP_THREADS="1")
    assert returned == in_effect == (0, 0)
    # ...but not over sizes given explicitly; one size given takes the default for the other.
    returned, default, in_effect = configure_in_fresh_process("1, 0", TF_NUM_INTRAOP_THREADS="3")
    assert returned == in_effect == (1, default[1])


def test_configure_threads_after_tensorflow_started_warns_and_keeps_the_pools(caplog):
    tf.constant(1.0) + 1.0  # TensorFlow has started in this process
    current = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    wanted = (current[0] + 1, current[1] + 1)
    with caplog.at_level("WARNING", logger="bahdanau_keras"):
        assert train.configure_threads(*wanted) == current
    assert "already started" in caplog.text and str(wanted) in caplog.text


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_configure_threads_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match=f"`intra_op` must be an integer >= 0. Received: "
                                         f"{bad!r}"):
        train.configure_threads(bad, 0)


@pytest.mark.slow
def test_resume_a_finished_run_with_more_epochs(corpus_file, reference, tmp_path, capsys):
    import shutil

    model_dir = tmp_path / "more"
    shutil.copytree(reference["dir"], model_dir)
    capsys.readouterr()
    assert run_train(corpus_file, model_dir, "--resume", "--epochs", "3") == 0
    assert "at step" in capsys.readouterr().out
    records = history(model_dir)
    per_epoch = reference["steps_per_epoch"]
    # The third epoch really trained: a full epoch of steps and a new history record.
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[2]["step"] == 3 * per_epoch
    assert records[2]["tokens_per_s"] > 0
    _, state = latest_state(model_dir)
    assert state["step/.ATTRIBUTES/VARIABLE_VALUE"] == 3 * per_epoch
    # What a later --resume goes on with: this run's options, which it wrote.
    assert train.read_config(str(model_dir))[1].epochs == 3
    # How the step runs may change on resume too (the same loss): the loss chunks, loop
    # shards and implementation given are taken, the rest are the model's.
    _, resumed, _ = train.resume_configs(
        train.ModelDir(model_dir), {"loss_chunks": 3, "loop_shards": 1,
                                    "implementation": "reference"})
    assert (resumed.loss_chunks, resumed.loop_shards, resumed.implementation) == (
        3, 1, "reference")
    assert resumed.epochs == 3 and resumed.vocab_size == 400
