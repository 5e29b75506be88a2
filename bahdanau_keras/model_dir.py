"""The model directory: every file a trained (or training) model has, and nothing else.

    config.json        the model's shape, the training options and the data it was trained on
    source.model       source SentencePiece model
    target.model       target SentencePiece model
    checkpoints/       the latest checkpoints: weights, optimizer, counters, data position
    best/              the weights with the lowest dev loss so far
    history.json       one record an epoch: losses, tokens/s, time
    logs/              TensorBoard scalars

Files are replaced atomically (a kill never leaves half a file), and a write that fails (a
full disk, say) says in one line which checkpoint is still good.
"""

import dataclasses
import glob
import json
import logging
import os
import shutil

import tensorflow as tf

from bahdanau_keras.config import TrainConfig
from bahdanau_keras.model import ModelConfig, Translator
from bahdanau_keras.text import SubwordTokenizer

logger = logging.getLogger("bahdanau_keras")

CONFIG_FILE, SOURCE_VOCAB, TARGET_VOCAB = "config.json", "source.model", "target.model"
HISTORY_FILE = "history.json"
# What reading a damaged checkpoint raises (a truncated file gives an IndexError, "Read less
# bytes than requested"; a missing part an OpError; a mismatch an AssertionError).
CHECKPOINT_ERRORS = (tf.errors.OpError, ValueError, AssertionError, IndexError, OSError)
# What a failed write raises: Python's OSError, TensorFlow's OpError (a full disk is a
# ResourceExhaustedError there).
WRITE_ERRORS = (OSError, tf.errors.OpError)


class TrainingError(RuntimeError):
    """Training cannot start or go on (the message says why and what to do)."""


def first_line(error):
    """The first line of an exception's message (TensorFlow's run to many lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclasses.dataclass
class TrainedModel:
    """A translator with its tokenizers and configuration, as read from a model directory."""

    translator: Translator
    source_tokenizer: SubwordTokenizer
    target_tokenizer: SubwordTokenizer
    model_config: ModelConfig
    train_config: TrainConfig
    data: dict  # {"path", "pairs", "pairs_sha1", "train_pairs", "dev_pairs", "test_pairs"}


def listed_checkpoint(directory):
    """The latest checkpoint in the `checkpoint` list of `directory`
    (`tf.train.latest_checkpoint`), or None when the list is missing or unreadable."""
    try:
        return tf.train.latest_checkpoint(directory)
    except Exception:  # noqa: BLE001 - a text-format parse error, an OpError...
        return None


def latest_checkpoint(directory):
    """`listed_checkpoint(directory)`; when the `checkpoint` list is missing or unreadable
    (TensorFlow then ignores the directory), the highest-numbered checkpoint."""
    path = listed_checkpoint(directory)
    if path is None and os.path.isdir(directory):
        numbers = [int(name[len("ckpt-"):-len(".index")]) for name in os.listdir(directory)
                   if name.startswith("ckpt-") and name.endswith(".index")
                   and name[len("ckpt-"):-len(".index")].isdigit()]
        if numbers:
            path = os.path.join(directory, f"ckpt-{max(numbers)}")
            logger.warning("%s: the checkpoint list is missing or unreadable; using %s",
                           directory, path)
    return path


def write_atomically(path, content):
    """Replace the file `path` by `content` (str or bytes) in one step: a reader (or a kill)
    sees the old file or the new one, never a part. A failed write removes its partial file
    and raises `TrainingError`."""
    partial = path + ".partial"
    mode, encoding = ("wb", None) if isinstance(content, bytes) else ("w", "utf-8")
    try:
        with open(partial, mode, encoding=encoding) as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError as error:
        if os.path.exists(partial):
            os.remove(partial)
        raise TrainingError(f"{path}: cannot write ({first_line(error)})") from None


class ModelDir:
    """The files of a model directory (see the module's docstring).

    Args:
        path: The directory (it need not exist yet).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.checkpoints = os.path.join(self.path, "checkpoints")
        self.best = os.path.join(self.path, "best")
        self.logs = os.path.join(self.path, "logs")

    def file(self, name):
        return os.path.join(self.path, name)

    def exists(self):
        """Whether the directory holds a model (its `config.json`)."""
        return os.path.exists(self.file(CONFIG_FILE))

    def check_new(self):
        """Raise `TrainingError` unless a new model can be created here."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise TrainingError(f"{self.path}: not a directory; choose another --model-dir")
        if self.exists():
            raise TrainingError(f"{self.path}: already holds a model; use --resume to continue "
                                "it, or choose another --model-dir")

    def check_resumable(self):
        if not self.exists():
            raise TrainingError(f"{self.path}: nothing to resume (no {CONFIG_FILE}); train "
                                "without --resume")

    # -- configuration, vocabularies, history ---------------------------------------------

    def read_config(self):
        """`(model_config, train_config, data)` from `config.json`; `TrainingError` if it is
        missing or unreadable."""
        path = self.file(CONFIG_FILE)
        if not os.path.isdir(self.path):
            raise TrainingError(f"{self.path}: no such model directory")
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            return (ModelConfig(**config["model"]), TrainConfig(**config["train"]),
                    config["data"])
        except FileNotFoundError:
            raise TrainingError(
                f"{self.path}: not a model directory (no {CONFIG_FILE})") from None
        except (ValueError, KeyError, TypeError) as error:
            raise TrainingError(f"{path}: corrupt model configuration ({error})") from None

    def write_config(self, model_config, train_config, data):
        config = {"model": dataclasses.asdict(model_config),
                  "train": dataclasses.asdict(train_config), "data": data}
        write_atomically(self.file(CONFIG_FILE),
                         json.dumps(config, indent=2, ensure_ascii=False))

    def read_vocabularies(self):
        """`(source_tokenizer, target_tokenizer)`."""
        try:
            return (SubwordTokenizer.load(self.file(SOURCE_VOCAB)),
                    SubwordTokenizer.load(self.file(TARGET_VOCAB)))
        except (tf.errors.OpError, ValueError, RuntimeError, OSError) as error:
            raise TrainingError(
                f"{self.path}: cannot read the vocabularies ({first_line(error)})") from None

    def write_vocabularies(self, source_tokenizer, target_tokenizer):
        write_atomically(self.file(SOURCE_VOCAB), source_tokenizer.model_proto)
        write_atomically(self.file(TARGET_VOCAB), target_tokenizer.model_proto)

    def read_history(self, up_to_step):
        """The history's records up to step `up_to_step` (later ones belong to steps that a
        resumed run does again); `[]` without a history."""
        path = self.file(HISTORY_FILE)
        if not os.path.exists(path):
            return []
        try:
            with open(path, encoding="utf-8") as f:
                return [record for record in json.load(f) if record["step"] <= up_to_step]
        except (ValueError, KeyError, TypeError) as error:
            raise TrainingError(f"{path}: corrupt history ({error})") from None

    def write_history(self, records):
        write_atomically(self.file(HISTORY_FILE),
                         json.dumps(records, indent=2, ensure_ascii=False))

    # -- checkpoints ----------------------------------------------------------------------

    def latest_checkpoint(self, which="latest"):
        """The path of the newest checkpoint in `checkpoints/` (`which="latest"`) or `best/`
        (`which="best"`), or None."""
        return latest_checkpoint(self.best if which == "best" else self.checkpoints)

    def checkpoint_manager(self, checkpoint):
        """The manager of `checkpoints/` for `checkpoint`, the training state."""
        return tf.train.CheckpointManager(checkpoint, self.checkpoints, max_to_keep=2)

    def best_manager(self, translator):
        """The manager of `best/`, the weights of `translator` alone."""
        return tf.train.CheckpointManager(
            tf.train.Checkpoint(model=translator), self.best, max_to_keep=1)

    def save(self, manager, step):
        """Write checkpoint number `step` with `manager`.

        A write that fails (`No space left on device`...) removes the files it left and
        raises a `TrainingError` naming the checkpoint that is still good: the manager lists a
        checkpoint only once it is complete, and deletes older ones only after that.
        """
        try:
            return manager.save(checkpoint_number=step)
        except WRITE_ERRORS as error:
            prefix = os.path.join(manager.directory, f"ckpt-{step}")
            if listed_checkpoint(manager.directory) != prefix:  # not listed: incomplete
                shutil.rmtree(prefix + "_temp", ignore_errors=True)
                for path in glob.glob(glob.escape(prefix) + ".*"):
                    os.remove(path)
            good = latest_checkpoint(manager.directory)
            still = (f"the last good checkpoint is {good}" if good
                     else "no checkpoint was written before")
            raise TrainingError(f"cannot write the checkpoint {prefix} ({first_line(error)}); "
                                f"{still} (free some space, then --resume)") from None

    def restore(self, checkpoint, path, failure="corrupt checkpoint"):
        """Restore `checkpoint` (a `tf.train.Checkpoint`) from `path`; every object of
        `checkpoint` must be found there. `TrainingError` (`"{path}: {failure} (...)"`)
        otherwise."""
        try:
            checkpoint.restore(path).assert_existing_objects_matched().expect_partial()
        except CHECKPOINT_ERRORS as error:
            raise TrainingError(f"{path}: {failure} ({first_line(error)})") from None

    def load(self, which="best"):
        """The trained model: the weights of `best/` (or of `checkpoints/` if there is none,
        or with `which="latest"`), the tokenizers and the configuration. Whatever is
        unreadable raises a `TrainingError` naming the file."""
        if which not in ("best", "latest"):
            raise ValueError(f"`which` must be 'best' or 'latest'. Received: {which!r}")
        model_config, train_config, data = self.read_config()
        source_tokenizer, target_tokenizer = self.read_vocabularies()
        translator = Translator.from_model_config(model_config)
        path = self.latest_checkpoint("best") if which == "best" else None
        path = path or self.latest_checkpoint("latest")
        if not path:
            raise TrainingError(f"{self.path}: holds no trained weights (no checkpoint)")
        self.restore(tf.train.Checkpoint(model=translator), path)
        return TrainedModel(translator, source_tokenizer, target_tokenizer, model_config,
                            train_config, data)
