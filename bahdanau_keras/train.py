"""Teacher-forcing training: a short step function, and a small `Trainer` around it.

`train_step` is one update as the tutorial writes it (tape, masked loss, gradients, Adam);
`make_train_step` compiles it (`compile_step`, optionally with XLA) or runs it on the replicas
of a `tf.distribute.Strategy` (`distribute_step`), and `make_optimizer` adds loss scaling where
float16 needs it. The `Trainer` runs epochs of it in plain Python: it restores the latest
checkpoint once, evaluates the dev loss, keeps the best weights, checkpoints and stops; the
files are `bahdanau_keras.model_dir`'s. `train` (`bahdanau_keras.train_model`) does it all for
a corpus and a model directory.
"""

import dataclasses
import hashlib
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from bahdanau_keras import config as config_lib
from bahdanau_keras import data as data_lib
from bahdanau_keras.config import TrainConfig
from bahdanau_keras.kernels.adam import Adam
from bahdanau_keras.model import ModelConfig, Translator
from bahdanau_keras.model_dir import CONFIG_FILE, ModelDir, TrainedModel, TrainingError
from bahdanau_keras.text import SubwordTokenizer, normalize_python, train_sentencepiece

# Besides this module's own names: those of the model directory that callers import from here.
__all__ = ["CONFIG_FILE", "ModelDir", "Progress", "TrainConfig", "TrainedModel", "Trainer",
           "TrainingError", "build_translator", "compile_step", "configure_threads", "create",
           "default_threads", "dev_loss", "distribute_step", "load_trained", "make_eval_step",
           "make_optimizer", "make_train_step", "mixed_precision_policy", "read_config",
           "resume_configs", "seed_everything", "train", "train_step", "trained_on"]

logger = logging.getLogger("bahdanau_keras")

ENDLESS = 1 << 62  # epochs of the training data pipeline: the Trainer decides when to stop
DEV_BATCH_SIZE = 64


def seed_everything(seed):
    """Seed Python, NumPy, TensorFlow and Keras: `keras.utils.set_random_seed(seed)`.

    (Setting TensorFlow's seed drops its cached eager kernels; the SentencePiece tokenizers
    survive it, see `text.SubwordTokenizer`.)
    """
    keras.utils.set_random_seed(seed)


# -- threads ---------------------------------------------------------------------------------


def default_threads():
    """The `(intra_op, inter_op)` thread-pool sizes training uses on machines without a GPU:
    half the cores (at least one) for each op, and two ops at a time.

    TensorFlow's default gives every op all the cores. The training step's time loops are
    chains of small products (`[batch, units] x [units, 3 units]`) and element-wise ops, which
    gain less from being split over the cores than they lose in synchronisation, while
    independent ops can run side by side instead: the encoder's two directions, the two
    products of each gradient, the pieces of the loss (`TrainConfig.loss_chunks`). On the 2-core
    machine of docs/benchmarks.md, `(1, 2)` trains about 11% faster than TensorFlow's `(2, 2)`
    (with the loss in 2 chunks) and uses less CPU time per token; on other machines measure with
    `python -m bahdanau_keras.bench train --intra-op-threads N --inter-op-threads M`.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // 2), 2


def configure_threads(intra_op=0, inter_op=0):
    """Size TensorFlow's thread pools; call it before TensorFlow runs any op.

    With both sizes `0`: `default_threads()` on a machine without a GPU, unless the
    `TF_NUM_INTRAOP_THREADS` / `TF_NUM_INTEROP_THREADS` environment variables choose; with a GPU,
    TensorFlow's own. With one size given, the other is that of `default_threads()`. Returns the
    `(intra_op, inter_op)` in effect (0: TensorFlow's default).
    Once TensorFlow has started the sizes cannot change: a warning says so and they stay.
    """
    for name, value in (("intra_op", intra_op), ("inter_op", inter_op)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"`{name}` must be an integer >= 0. Received: {value!r}")
    current = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    if not (intra_op or inter_op):
        if (os.environ.get("TF_NUM_INTRAOP_THREADS") or os.environ.get("TF_NUM_INTEROP_THREADS")
                or tf.config.list_physical_devices("GPU")):
            return current
    default_intra, default_inter = default_threads()
    wanted = (intra_op or default_intra, inter_op or default_inter)
    if wanted == current:
        return current
    try:
        tf.config.threading.set_intra_op_parallelism_threads(wanted[0])
        tf.config.threading.set_inter_op_parallelism_threads(wanted[1])
    except RuntimeError:
        logger.warning("TensorFlow has already started: its thread pools stay at %s (intra-op, "
                       "inter-op; 0 is its default), not %s", current, wanted)
        return current
    return wanted


# -- the step --------------------------------------------------------------------------------


def train_step(translator, optimizer, source, target, label_smoothing=0.0):
    """One teacher-forcing update of `translator` on a batch; returns `(loss_sum, count)`.

    The decoder reads the reference `START y_1 ... y_n` and is scored on each next token; the
    loss is the mean cross-entropy over the real (non-padding) target tokens of the batch, of
    the whole batch when a `tf.distribute.Strategy` has split it over replicas.
    """
    with tf.GradientTape() as tape:
        loss_sum, count = translator.loss_and_count(
            source, target, label_smoothing, training=True)
        tokens = tf.distribute.get_replica_context().all_reduce("sum", count)  # all replicas'
        loss = loss_sum / tf.maximum(tf.cast(tokens, loss_sum.dtype), 1.0)
        loss = optimizer.scale_loss(loss)  # times the loss scale in float16, else the same
    variables = translator.trainable_variables
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(gradients, variables))
    return loss_sum, count


def compile_step(step, jit_compile=False):
    """`step(source, target)` as a `tf.function` traced once for batches of every shape,
    XLA-compiled with `jit_compile`."""
    spec = tf.TensorSpec([None, None], tf.int32)
    return tf.function(step, input_signature=[spec, spec], jit_compile=jit_compile)


def distribute_step(step, strategy):
    """`step(source, target)` run by every replica of `strategy` on its share of the batch;
    returns the sums of the replicas' `(loss_sum, count)`."""

    @tf.function(reduce_retracing=True)
    def replicated(source, target):
        loss_sum, count = strategy.run(step, args=(source, target))
        return (strategy.reduce("sum", loss_sum, axis=None),
                strategy.reduce("sum", count, axis=None))

    def run(source, target):
        return replicated(*split_for_replicas(strategy, source, target))

    return run


def split_for_replicas(strategy, *tensors):
    """Split each `[batch, ...]` tensor into per-replica parts for `strategy.run`."""
    replicas = strategy.num_replicas_in_sync
    parts = [np.array_split(np.asarray(t), replicas) for t in tensors]
    return [strategy.experimental_distribute_values_from_function(
        lambda context, p=p: tf.constant(p[context.replica_id_in_sync_group]))
        for p in parts]


def make_train_step(translator, optimizer, label_smoothing=0.0, strategy=None,
                    jit_compile=False):
    """The compiled `train_step` of `translator`: `(source, target) -> (loss_sum, count)`.

    On one replica a `tf.function` (XLA-compiled with `jit_compile`: build the translator with
    `loop_shards=1, loss_chunks=1`, see `build_translator`); with several, the step runs on
    each replica's share of the batch and the gradient is still that of the mean over the
    whole batch's real tokens. The cross-replica sums stay outside XLA: with several replicas
    `jit_compile` is ignored (a warning says so).
    """
    strategy = strategy or tf.distribute.get_strategy()

    def step(source, target):
        return train_step(translator, optimizer, source, target, label_smoothing)

    if strategy.num_replicas_in_sync == 1:
        return compile_step(step, jit_compile)
    if jit_compile:
        logger.warning("--jit-compile is ignored with %d replicas: the step runs uncompiled",
                       strategy.num_replicas_in_sync)
    return distribute_step(step, strategy)


def scale_losses(optimizer):
    """`optimizer` with dynamic loss scaling (`keras.optimizers.LossScaleOptimizer`) when the
    dtype policy computes in float16, whose small gradients would underflow; else itself."""
    if keras.config.dtype_policy().compute_dtype == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_optimizer(config):
    """Adam with per-variable gradient clipping (`bahdanau_keras.kernels.adam.Adam`: Keras'
    update in one fused kernel per variable), with loss scaling where float16 needs it."""
    return scale_losses(Adam(config.learning_rate, clipnorm=config.clipnorm, name="adam"))


def mixed_precision_policy():
    """The dtype policy of `TrainConfig.mixed_precision`: float16 on a GPU, bfloat16
    elsewhere."""
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def build_translator(model_config, config, strategy=None):
    """The `Translator` that `config` (a `TrainConfig`) trains. An XLA-compiled step on one
    replica computes the decoder loop and the loss in one piece each: the pieces' sizes depend
    on the number of real tokens, which XLA must know when it compiles."""
    strategy = strategy or tf.distribute.get_strategy()
    xla = config.jit_compile and strategy.num_replicas_in_sync == 1
    return Translator.from_model_config(
        model_config, implementation=config.implementation,
        loop_shards=1 if xla else config.loop_shards,
        loss_chunks=1 if xla else config.loss_chunks)


def make_eval_step(translator):
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec])
    def eval_step(source, target):
        return translator.loss_and_count(source, target, training=False)

    return eval_step


def dev_loss(eval_step, dataset):
    """The mean loss per real target token of `eval_step` over the `(epoch, source, target)`
    batches of `dataset`."""
    total, count = 0.0, 0
    for _, source, target in dataset:
        loss_sum, n = eval_step(source, target)
        total += float(loss_sum)
        count += int(n)
    return total / max(count, 1)


# -- the trainer -----------------------------------------------------------------------------


@dataclasses.dataclass
class Progress:
    """Where a run is. Plain numbers while training; each is also a variable of the same name
    in the checkpoints (`variables`), so that a resumed run goes on exactly."""

    step: int = 0  # updates so far
    epoch: int = 0  # epochs completed
    epoch_step: int = 0  # updates of the current epoch so far
    epoch_loss: float = 0.0  # summed loss of the current epoch so far
    epoch_tokens: int = 0  # real target tokens of the current epoch so far
    best_dev_loss: float = math.inf
    bad_epochs: int = 0  # epochs since the dev loss last improved

    def variables(self):
        """`{name: tf.Variable}`, one per field (int64 or float64)."""
        return {field.name: tf.Variable(
            getattr(self, field.name), trainable=False, name=field.name,
            dtype=tf.int64 if field.type is int else tf.float64)
            for field in dataclasses.fields(self)}

    def store(self, variables):
        for name, variable in variables.items():
            variable.assign(getattr(self, name))

    def load(self, variables):
        for name, variable in variables.items():
            setattr(self, name, variable.numpy().item())


def dropout_state(translator):
    """The random generators' state of `translator`'s dropout layers: its variables that are
    not weights."""
    weights = {id(v) for v in translator.weights}
    return [v for v in translator.variables if id(v) not in weights]


class Trainer:
    """Trains the translator of a model directory: restore once, run epochs, evaluate,
    checkpoint, stop.

    Args:
        model_dir: A `ModelDir` whose configuration and vocabularies are written.
        train_ids, dev_ids: `(source, target)` token ids (`data.encode_pairs`) of the training
            and the dev pairs.
        model_config: The `ModelConfig` of the translator.
        config: The `TrainConfig` of this run.
        strategy: A `tf.distribute.Strategy`, or None.
        verbose: 0 says nothing, 1 shows a progress bar, 2 prints a line every 100 steps (for
            log files).
    """

    def __init__(self, model_dir, train_ids, dev_ids, model_config, config, strategy=None,
                 verbose=1):
        self.model_dir, self.config, self.verbose = model_dir, config, verbose
        self.strategy = strategy or tf.distribute.get_strategy()
        self.build_model(model_config)
        self.build_data(train_ids, dev_ids)
        self.progress = Progress()
        self.build_checkpoints()
        self.history = []
        self.writer = tf.summary.create_file_writer(model_dir.logs)

    def build_model(self, model_config):
        """The translator, its optimizer, and their compiled steps."""
        with self.strategy.scope():
            self.translator = build_translator(model_config, self.config, self.strategy)
            self.optimizer = make_optimizer(self.config)
            self.optimizer.build(self.translator.trainable_variables)
        logger.info("Model: %s parameters", f"{self.translator.count_params():,}")
        self.train_step = make_train_step(self.translator, self.optimizer,
                                          self.config.label_smoothing, self.strategy,
                                          self.config.jit_compile)
        self.eval_step = make_eval_step(self.translator)

    def build_data(self, train_ids, dev_ids):
        """The training batches, epoch after epoch without end, and the dev batches."""
        batch_size, seed = self.config.batch_size, self.config.seed
        self.batches = iter(data_lib.batches(*train_ids, batch_size, seed=seed, epochs=ENDLESS))
        self.batches_per_epoch = int(data_lib.batches(
            *train_ids, batch_size, shuffle=False).reduce(0, lambda n, _: n + 1))
        self.dev_batches = data_lib.batches(*dev_ids, DEV_BATCH_SIZE, shuffle=False)

    def build_checkpoints(self):
        """The training state in one `tf.train.Checkpoint`, and the managers of `checkpoints/`
        and `best/`."""
        self.saved_progress = self.progress.variables()
        # The optimizer's own state, without the loss scale's (see `track_loss_scale`).
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        self.checkpoint = tf.train.Checkpoint(
            model=self.translator, optimizer=optimizer, data=self.batches,
            rng=dropout_state(self.translator), **self.saved_progress)
        self.checkpoints = self.model_dir.checkpoint_manager(self.checkpoint)
        self.best = self.model_dir.best_manager(self.translator)
        self.saved_step = None  # the step of the latest checkpoint

    def say(self, text):
        if self.verbose:
            print(text, flush=True)

    def restore(self):
        """Go on from the latest checkpoint, if there is one: weights, optimizer, counters,
        data position and dropout state, in one restore."""
        path = self.model_dir.latest_checkpoint()
        if path is None:
            logger.warning("No checkpoint in %s: starting from the beginning",
                           self.model_dir.checkpoints)
            return
        self.model_dir.restore(self.checkpoint, path, "cannot resume from this checkpoint")
        self.progress.load(self.saved_progress)
        self.saved_step = self.progress.step
        self.history = self.model_dir.read_history(up_to_step=self.progress.step)
        self.say(f"Resumed from {path} at step {self.progress.step} "
                 f"(epoch {self.progress.epoch + 1})")
        # The checkpoint restored the rate it was saved with; this run's may be lower.
        restored_rate = self.learning_rate()
        if not math.isclose(restored_rate, self.config.learning_rate, rel_tol=1e-6):
            self.optimizer.learning_rate = self.config.learning_rate
            self.say(f"Learning rate {restored_rate:g} -> {self.config.learning_rate:g}")

    def track_loss_scale(self):
        """Put the loss scale's state into the checkpoints too, when there is one. Added after
        `restore`, which therefore did not require it: TensorFlow restores it now if the
        checkpoint has it (a dependency added after a restore is restored when added), and a
        run that turns float16 on starts it afresh."""
        if (isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
                and not hasattr(self.checkpoint, "loss_scale")):
            self.checkpoint.loss_scale = self.optimizer

    def run(self):
        """Train until the configuration says stop; returns the history."""
        self.track_loss_scale()
        self.started = time.perf_counter()
        self.start_epoch_clock()
        try:
            while (reason := self.stop_reason()) is None:
                self.train_on_next_batch()
                if self.progress.epoch_step == self.batches_per_epoch:
                    self.end_epoch()
                elif self.progress.step % self.config.checkpoint_every == 0:
                    self.save_checkpoint()
            self.stop(reason)
        finally:
            self.writer.flush()
        return self.history

    def start_epoch_clock(self):
        self.epoch_started, self.run_tokens = time.perf_counter(), 0
        self.progress_bar = keras.utils.Progbar(
            self.batches_per_epoch, verbose=self.verbose,
            stateful_metrics=["loss", "tokens/s"]) if self.verbose == 1 else None

    def stop_reason(self):
        """Why the run stops now (`""`: it has trained its epochs), or None."""
        config, progress = self.config, self.progress
        if progress.epoch >= config.epochs:
            return ""
        if config.patience and progress.bad_epochs >= config.patience:
            return f"dev loss has not improved for {config.patience} epochs"
        if config.max_steps and progress.step >= config.max_steps:
            return f"reached --max-steps {config.max_steps}"
        if config.time_limit and time.perf_counter() - self.started > 60 * config.time_limit:
            return f"reached --time-limit {config.time_limit} minutes"
        return None

    def train_on_next_batch(self):
        """One update on the next batch; a non-finite loss stops the run."""
        _, source, target = next(self.batches)
        loss_sum, count = self.train_step(source, target)
        loss_sum, count = float(loss_sum), int(count)
        if not math.isfinite(loss_sum):
            raise TrainingError(f"the loss became {loss_sum} at step {self.progress.step + 1}; "
                                f"stopped ({self.still_good()}; try a lower --learning-rate, "
                                "then --resume)")
        progress = self.progress
        progress.step += 1
        progress.epoch_step += 1
        progress.epoch_loss += loss_sum
        progress.epoch_tokens += count
        self.run_tokens += count
        self.report(loss_sum / max(count, 1))

    def report(self, batch_loss):
        """The progress bar, or a line every 100 steps; TensorBoard every 50 steps."""
        progress = self.progress
        tokens_per_s = self.run_tokens / max(time.perf_counter() - self.epoch_started, 1e-9)
        if self.progress_bar:
            self.progress_bar.update(
                progress.epoch_step, [("loss", batch_loss), ("tokens/s", tokens_per_s)])
        elif progress.step % 100 == 0:
            self.say(f"step {progress.step} (epoch {progress.epoch + 1}): loss "
                     f"{progress.epoch_loss / max(progress.epoch_tokens, 1):.4f}, "
                     f"{tokens_per_s:.0f} target tokens/s")
        if progress.step % 50 == 0:
            with self.writer.as_default(step=progress.step):
                tf.summary.scalar("train/loss", batch_loss)
                tf.summary.scalar("train/tokens_per_s", tokens_per_s)

    def end_epoch(self):
        """The dev loss, the epoch's record in the history, a checkpoint."""
        progress = self.progress
        seconds = time.perf_counter() - self.epoch_started
        loss, improved = self.evaluate()
        record = {"epoch": progress.epoch + 1, "step": progress.step,
                  "train_loss": progress.epoch_loss / max(progress.epoch_tokens, 1),
                  "dev_loss": loss,
                  # this process's share of the epoch: a resumed epoch's earlier part ran elsewhere
                  "tokens_per_s": self.run_tokens / max(seconds, 1e-9), "seconds": seconds,
                  "learning_rate": self.learning_rate()}
        progress.epoch += 1
        progress.bad_epochs = 0 if improved else progress.bad_epochs + 1
        progress.epoch_step, progress.epoch_loss, progress.epoch_tokens = 0, 0.0, 0
        self.history.append(record)
        # The history first: a resumed run drops the records after its checkpoint's step.
        try:
            self.model_dir.write_history(self.history)
        except TrainingError as error:
            raise TrainingError(f"{error}; {self.still_good()} (free some space, then "
                                "--resume)") from None
        self.save_checkpoint()
        self.say(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
                 f"dev loss {loss:.4f}, {record['tokens_per_s']:.0f} target tokens/s")
        self.start_epoch_clock()

    def evaluate(self):
        """`(dev_loss, improved)` now; the weights go to `best/` when the loss is the lowest so
        far."""
        loss = dev_loss(self.eval_step, self.dev_batches)
        with self.writer.as_default(step=self.progress.step):
            tf.summary.scalar("dev/loss", loss)
        improved = loss < self.progress.best_dev_loss
        if improved:
            self.progress.best_dev_loss = loss
            self.model_dir.save(self.best, self.progress.step)
        return loss, improved

    def save_checkpoint(self):
        """Write the latest checkpoint, never one of weights a non-finite loss has spoilt."""
        step = self.progress.step
        if not all(bool(tf.reduce_all(tf.math.is_finite(v)))
                   for v in self.translator.trainable_variables):
            raise TrainingError(f"the weights became non-finite at step {step}; stopped "
                                f"({self.still_good()}; try a lower --learning-rate, then "
                                "--resume)")
        self.progress.store(self.saved_progress)
        self.model_dir.save(self.checkpoints, step)
        self.saved_step = step

    def still_good(self):
        """Where to go on from after a failure, in words."""
        path = self.model_dir.latest_checkpoint()
        return f"the last good checkpoint is {path}" if path else "no checkpoint was written"

    def stop(self, reason):
        """End the run: inside an epoch, a checkpoint and the dev loss now; `best/` is never
        left empty."""
        if self.progress.epoch_step:
            if self.saved_step != self.progress.step:
                self.save_checkpoint()
            loss, _ = self.evaluate()
            self.say(f"\nstep {self.progress.step}: dev loss {loss:.4f}")
        if not self.best.latest_checkpoint:
            self.model_dir.save(self.best, self.progress.step)
        if reason:
            self.say(f"Stopped: {reason}.")

    def learning_rate(self):
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))


# -- the model directory of a run ------------------------------------------------------------


def pairs_digest(pairs):
    """A fingerprint of a corpus' pairs, to tell on resume that it is the same corpus."""
    digest = hashlib.sha1()
    for source, target in pairs:
        digest.update(f"{source}\t{target}\n".encode("utf-8"))
    return digest.hexdigest()


def create(model_dir, corpus, model_config_overrides, config):
    """Make a new model directory for `corpus`: split it, learn the vocabularies, write the
    configuration. Returns `(splits, source_tokenizer, target_tokenizer, model_config)`."""
    model_dir.check_new()
    splits = data_lib.split_pairs(corpus.pairs, config.dev_fraction, config.test_fraction)
    if not splits["train"]:
        raise TrainingError(f"{corpus.path}: no pairs left for training after the split")
    logger.info("Learning the vocabularies from %d training pairs", len(splits["train"]))
    source_tokenizer, target_tokenizer = (
        SubwordTokenizer(train_sentencepiece(normalize_python(side), config.vocab_size))
        for side in zip(*splits["train"]))  # the sources, then the targets
    model_config = ModelConfig(
        source_vocab_size=source_tokenizer.vocab_size,
        target_vocab_size=target_tokenizer.vocab_size, **model_config_overrides)
    data = {"path": corpus.origin or corpus.path, "pairs": len(corpus.pairs),
            "pairs_sha1": pairs_digest(corpus.pairs),
            **{f"{name}_pairs": len(pairs) for name, pairs in splits.items()}}
    os.makedirs(model_dir.path, exist_ok=True)
    model_dir.write_vocabularies(source_tokenizer, target_tokenizer)
    model_dir.write_config(model_config, config, data)  # last: it makes the directory a model
    return splits, source_tokenizer, target_tokenizer, model_config


def resume_configs(model_dir, train_changes=None, model_changes=None):
    """The configurations of a run that resumes `model_dir` (a `ModelDir`).

    Args:
        model_dir: The model directory.
        train_changes: `TrainConfig` field -> value, the options given for this run (see
            `config.resumed`: the fixed ones must be the model's).
        model_changes: `ModelConfig` field -> value; each must be the model's.

    Returns:
        `(model_config, train_config, data)`.

    Raises:
        TrainingError: there is nothing to resume, or it is unreadable.
        config.ResumeConflict: an option that cannot change was given another value.
    """
    model_dir.check_resumable()
    model_config, saved, data = model_dir.read_config()
    config_lib.require_unchanged(model_config, model_changes or {})
    return model_config, config_lib.resumed(saved, train_changes or {}), data


def trained_on(data, model_dir):
    """The corpus that `model_dir` (a `ModelDir`) was trained on, from its configuration's
    `data`: a path (`ARCHIVE.zip:MEMBER` reads that member) or URL, or None for the built-in
    sample corpus (wherever the package is installed now). `TrainingError` if it is gone."""
    path = data["path"]
    if data_lib.is_url(path):
        return path
    if os.path.basename(path) == os.path.basename(data_lib.SAMPLE_CORPUS):
        return None
    if os.path.exists(path) or data_lib.zip_member(path):
        return path
    raise TrainingError(f"{model_dir.path} was trained on {path}, which is not there: give "
                        "the corpus with --data")


def reopen(model_dir, corpus, data, config):
    """The splits and tokenizers of the model directory to resume, which must have been
    trained on `corpus` (its checkpoints' data position indexes that corpus' pairs)."""
    if data.get("pairs_sha1") != pairs_digest(corpus.pairs):
        raise TrainingError(
            f"{corpus.path}: not the corpus {model_dir.path} was trained on "
            f"({data.get('path', 'unknown')}, {data.get('pairs', '?')} pairs; this one has "
            f"{len(corpus.pairs)}); resume with the same --data and columns")
    source_tokenizer, target_tokenizer = model_dir.read_vocabularies()
    splits = data_lib.split_pairs(corpus.pairs, config.dev_fraction, config.test_fraction)
    return splits, source_tokenizer, target_tokenizer


def encoded_splits(splits, source_tokenizer, target_tokenizer, config):
    """The `(source, target)` token ids of the training pairs and of the dev pairs (a slice of
    the training pairs when there are no dev pairs)."""
    dev_pairs = splits["dev"] or splits["train"][: max(1, len(splits["train"]) // 50)]
    return [data_lib.encode_pairs(pairs, source_tokenizer, target_tokenizer, config.max_length)
            for pairs in (splits["train"], dev_pairs)]


def train(model_dir, corpus, model_config_overrides=None, train_config=None, resume=False,
          strategy=None, verbose=1):
    """Train (or resume) a translator on `corpus` into `model_dir`; returns the history.

    Args:
        model_dir: The model directory (a path).
        corpus: A `data.Corpus`.
        model_config_overrides: `ModelConfig` fields other than the vocabulary sizes (on
            resume, each must be the model's).
        train_config: A `TrainConfig` (default: `TrainConfig()`; on resume, the model's). On
            resume its fixed fields must be the model's (see `bahdanau_keras.config`).
        resume: Go on from the latest checkpoint of `model_dir`.
        strategy: A `tf.distribute.Strategy`, or None.
        verbose: 0, 1 (a progress bar) or 2 (a line every 100 steps).

    Checkpoints hold the weights, the optimizer, the counters, the dropout state and the
    position in the data, so `resume=True` after an interruption (even `kill -9`) continues
    exactly where the last checkpoint was. Stops at `epochs`, at `max_steps`, after
    `time_limit` minutes, or when the dev loss has not improved for `patience` epochs; a
    non-finite loss or a failed checkpoint write stops training with a `TrainingError`, and the
    last good checkpoint stays in place.
    """
    directory = ModelDir(model_dir)
    overrides = model_config_overrides or {}
    if resume:
        try:
            model_config, config, data = resume_configs(
                directory, train_config and dataclasses.asdict(train_config), overrides)
        except config_lib.ResumeConflict as error:
            raise TrainingError(f"{directory.path}: {error}") from None
    else:
        config = train_config or TrainConfig()
    if config.intra_op_threads or config.inter_op_threads:
        configure_threads(config.intra_op_threads, config.inter_op_threads)
    seed_everything(config.seed)
    if resume:
        splits, source_tokenizer, target_tokenizer = reopen(directory, corpus, data, config)
        directory.write_config(model_config, config, data)  # what a later resume goes on with
    else:
        splits, source_tokenizer, target_tokenizer, model_config = create(
            directory, corpus, overrides, config)
    # The configuration decides, whatever an earlier run in this process set.
    keras.mixed_precision.set_dtype_policy(
        mixed_precision_policy() if config.mixed_precision else "float32")
    train_ids, dev_ids = encoded_splits(splits, source_tokenizer, target_tokenizer, config)
    trainer = Trainer(directory, train_ids, dev_ids, model_config, config, strategy, verbose)
    if resume:
        trainer.restore()
    return trainer.run()


def load_trained(model_dir, which="best"):
    """The `TrainedModel` of a model directory: the weights of `best/` (or `checkpoints/` if
    there is none, or with `which="latest"`), the tokenizers and the configuration. Whatever
    is unreadable raises a `TrainingError` naming the file."""
    return ModelDir(model_dir).load(which)


def read_config(model_dir):
    """`(model_config, train_config, data)` of a model directory's `config.json`."""
    return ModelDir(model_dir).read_config()
