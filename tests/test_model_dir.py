"""The model directory: its files, atomic writes, and writes that fail (a full disk)."""

import errno
import json
import os

import pytest
import tensorflow as tf

from bahdanau_keras import model_dir as model_dir_lib
from bahdanau_keras.config import TrainConfig
from bahdanau_keras.model import ModelConfig
from bahdanau_keras.model_dir import ModelDir, TrainingError, latest_checkpoint

NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # "No space left on device"


def test_config_round_trip_and_errors(tmp_path):
    directory = ModelDir(tmp_path / "model")
    with pytest.raises(TrainingError, match="no such model directory"):
        directory.read_config()
    os.makedirs(directory.path)
    assert not directory.exists()
    with pytest.raises(TrainingError, match=r"not a model directory \(no config.json\)"):
        directory.read_config()
    with pytest.raises(TrainingError, match="nothing to resume"):
        directory.check_resumable()
    directory.check_new()
    model_config, train_config = ModelConfig(40, 50, dropout=0.25), TrainConfig(epochs=3)
    data = {"path": "corpus.tsv", "pairs": 12}
    directory.write_config(model_config, train_config, data)
    assert directory.exists()
    assert directory.read_config() == (model_config, train_config, data)
    assert os.listdir(directory.path) == ["config.json"]  # no partial file left
    with pytest.raises(TrainingError, match="already holds a model"):
        directory.check_new()
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["train"]["vocab_size"] = 0
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(TrainingError, match="corrupt model configuration.*vocab_size"):
        directory.read_config()


def test_a_file_is_not_a_model_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainingError, match="not a directory"):
        ModelDir(tmp_path / "file").check_new()


def test_history_up_to_a_step(tmp_path):
    directory = ModelDir(tmp_path)
    assert directory.read_history(up_to_step=10) == []
    records = [{"epoch": 1, "step": 5}, {"epoch": 2, "step": 10}, {"epoch": 3, "step": 15}]
    directory.write_history(records)
    assert directory.read_history(up_to_step=10) == records[:2]
    (tmp_path / "history.json").write_text("[{")
    with pytest.raises(TrainingError, match="corrupt history"):
        directory.read_history(up_to_step=10)


def test_a_write_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "history.json"
    model_dir_lib.write_atomically(str(path), "[1]")

    def full_disk(descriptor):
        raise NO_SPACE

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(TrainingError) as error:
        model_dir_lib.write_atomically(str(path), "[1, 2]")
    assert str(error.value) == f"{path}: cannot write ([Errno 28] No space left on device)"
    assert path.read_text() == "[1]"
    assert sorted(os.listdir(tmp_path)) == ["history.json"]


def interrupted_save(error):
    """A `CheckpointManager.save` that fails as a full disk makes it fail: with a temporary
    shard and a truncated index of the new checkpoint written, and nothing recorded."""

    def save(manager, checkpoint_number=None, **kwargs):
        prefix = os.path.join(manager.directory, f"ckpt-{checkpoint_number}")
        os.makedirs(prefix + "_temp")
        with open(os.path.join(prefix + "_temp", "part-00000-of-00001.index"), "wb") as f:
            f.write(b"\0" * 32)
        with open(prefix + ".index", "wb") as f:
            f.write(b"\0" * 5)
        raise error

    return save


def test_a_checkpoint_write_that_fails_names_the_good_one(tmp_path, monkeypatch):
    directory = ModelDir(tmp_path)
    variable = tf.Variable([1.0, 2.0])
    manager = directory.checkpoint_manager(tf.train.Checkpoint(v=variable))
    real_save = tf.train.CheckpointManager.save
    monkeypatch.setattr(tf.train.CheckpointManager, "save", interrupted_save(NO_SPACE))
    with pytest.raises(TrainingError) as error:
        directory.save(manager, 1)
    assert str(error.value) == (
        f"cannot write the checkpoint {directory.checkpoints}/ckpt-1 ([Errno 28] No space left "
        "on device); no checkpoint was written before (free some space, then --resume)")
    assert os.listdir(directory.checkpoints) == []

    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    good = directory.save(manager, 2)
    variable.assign([3.0, 4.0])
    monkeypatch.setattr(tf.train.CheckpointManager, "save", interrupted_save(
        tf.errors.ResourceExhaustedError(None, None, "ckpt-3_temp: No space left on device")))
    with pytest.raises(TrainingError) as error:
        directory.save(manager, 3)
    assert str(error.value) == (
        f"cannot write the checkpoint {directory.checkpoints}/ckpt-3 (ckpt-3_temp: No space "
        f"left on device); the last good checkpoint is {good} (free some space, then --resume)")
    assert sorted(os.listdir(directory.checkpoints)) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    # Also without the checkpoint list (then the highest-numbered checkpoint is taken).
    os.remove(os.path.join(directory.checkpoints, "checkpoint"))
    assert latest_checkpoint(directory.checkpoints) == good
    restored = tf.Variable([0.0, 0.0])
    directory.restore(tf.train.Checkpoint(v=restored), good)
    assert restored.numpy().tolist() == [1.0, 2.0]


def test_latest_checkpoint_without_a_readable_list(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    assert latest_checkpoint(str(directory)) is None
    for number in (3, 12, 7):
        for suffix in (".index", ".data-00000-of-00001"):
            (directory / f"ckpt-{number}{suffix}").write_bytes(b"")
    (directory / "ckpt-99_temp").mkdir()
    assert latest_checkpoint(str(directory)) == str(directory / "ckpt-12")
    (directory / "checkpoint").write_text("garbage {{{")
    assert latest_checkpoint(str(directory)) == str(directory / "ckpt-12")
    (directory / "checkpoint").write_text('model_checkpoint_path: "ckpt-7"\n')
    assert latest_checkpoint(str(directory)) == str(directory / "ckpt-7")


@pytest.mark.slow
def test_load(tiny_model_dir, tmp_path):
    directory = ModelDir(tiny_model_dir)
    trained = directory.load()
    assert trained.model_config == directory.read_config()[0]
    assert trained.source_tokenizer.vocab_size == trained.model_config.source_vocab_size
    latest = directory.load(which="latest")
    assert latest.translator.count_params() == trained.translator.count_params()
    with pytest.raises(ValueError, match="`which` must be 'best' or 'latest'. Received: 'last'"):
        directory.load(which="last")
