"""Teacher-forcing training: a short `tf.function` step, and plain Python around it.

A model directory holds everything a trained model needs:

    config.json        model sizes, training options and the data it was trained on
    source.model       source SentencePiece model
    target.model       target SentencePiece model
    checkpoints/       latest checkpoints: weights, optimizer, step, data iterator (--resume)
    best/              the weights with the lowest dev loss so far
    history.json       one record an epoch: losses, tokens/s, time
    logs/              TensorBoard scalars
"""

import dataclasses
import hashlib
import json
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from bahdanau_keras import data as data_lib
from bahdanau_keras.model import ModelConfig, Translator
from bahdanau_keras.text import SubwordTokenizer, normalize_python, train_sentencepiece

logger = logging.getLogger("bahdanau_keras")

CONFIG_FILE, SOURCE_VOCAB, TARGET_VOCAB = "config.json", "source.model", "target.model"
# What reading a damaged checkpoint raises (a truncated file gives an IndexError, "Read less
# bytes than requested"; a missing part an OpError; a mismatch an AssertionError).
CHECKPOINT_ERRORS = (tf.errors.OpError, ValueError, AssertionError, IndexError, OSError)


class TrainingError(RuntimeError):
    """Training cannot start or go on (the message says why and what to do)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of a training run; the command line fills it, `config.json` stores it."""

    epochs: int = 10  # passes over the training split
    batch_size: int = 64  # sentences per batch (sentences of similar length batch together)
    learning_rate: float = 1e-3  # Adam
    clipnorm: float = 1.0  # gradient-norm clipping
    label_smoothing: float = 0.0  # ε of label-smoothed cross-entropy
    patience: int = 3  # epochs without a better dev loss before stopping; 0 never stops
    seed: int = 0  # weights, data order and dropout; two runs with one seed are identical
    vocab_size: int = 8000  # upper bound of each SentencePiece vocabulary
    max_length: int = 64  # training pairs with a longer side (in subwords) are left out
    checkpoint_every: int = 500  # steps between checkpoints (and at every epoch end)
    max_steps: int = 0  # stop after this many steps in all; 0 means no limit
    time_limit: float = 0.0  # stop after this many minutes of this run; 0 means no limit
    mixed_precision: bool = False  # float16 on GPU, bfloat16 elsewhere
    jit_compile: bool = False  # XLA-compile the training step
    loss_chunks: int = 2  # independent pieces of the output layer and loss (see loss_and_count)
    loop_shards: int = 2  # independent parts of the batch in the decoder loop (time_loop)
    source_column: int = 1  # corpus column of the source (1 is English in Anki files)
    target_column: int = 2  # corpus column of the target
    dev_fraction: float = 0.01  # share of source sentences held out for the dev loss
    test_fraction: float = 0.02  # share held out for evaluation, never trained on

    def __post_init__(self):
        positive = ("epochs", "batch_size", "vocab_size", "max_length", "checkpoint_every",
                    "loss_chunks", "loop_shards")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}")
        for name in ("patience", "max_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0. Received: {self.learning_rate!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1). Received: {self.label_smoothing!r}")
        if self.time_limit < 0:
            raise ValueError(f"`time_limit` must be >= 0. Received: {self.time_limit!r}")
        if not (0 <= self.dev_fraction < 1 and 0 <= self.test_fraction < 1
                and self.dev_fraction + self.test_fraction < 1):
            raise ValueError(
                "`dev_fraction` and `test_fraction` must be in [0, 1) and sum to less than 1. "
                f"Received: {self.dev_fraction!r}, {self.test_fraction!r}")


# -- the model directory ------------------------------------------------------------------------


@dataclasses.dataclass
class TrainedModel:
    """A translator with its tokenizers and configuration, as read from a model directory."""

    translator: Translator
    source_tokenizer: SubwordTokenizer
    target_tokenizer: SubwordTokenizer
    model_config: ModelConfig
    train_config: TrainConfig
    data: dict  # {"path", "source_column", "target_column", ...}


def read_config(model_dir):
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isdir(model_dir):
        raise TrainingError(f"{model_dir}: no such model directory")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        return (ModelConfig(**config["model"]), TrainConfig(**config["train"]),
                config.get("data", {}))
    except FileNotFoundError:
        raise TrainingError(f"{model_dir}: not a model directory (no {CONFIG_FILE})") from None
    except (ValueError, KeyError, TypeError) as error:
        raise TrainingError(f"{path}: corrupt model configuration ({error})") from None


def write_config(model_dir, model_config, train_config, data):
    config = {"model": dataclasses.asdict(model_config),
              "train": dataclasses.asdict(train_config), "data": data}
    _write_json(os.path.join(model_dir, CONFIG_FILE), config)


def _write_json(path, value):
    """Write JSON atomically: a kill never leaves half a file."""
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
    os.replace(partial, path)


def _load_tokenizers(model_dir):
    try:
        return (SubwordTokenizer.load(os.path.join(model_dir, SOURCE_VOCAB)),
                SubwordTokenizer.load(os.path.join(model_dir, TARGET_VOCAB)))
    except (tf.errors.OpError, ValueError, RuntimeError, OSError) as error:
        raise TrainingError(
            f"{model_dir}: cannot read the vocabularies ({_first_line(error)})") from None


def _latest_checkpoint(directory):
    """`tf.train.latest_checkpoint`; when the `checkpoint` list is missing or unreadable (TF
    then ignores the directory), the checkpoint with the highest number that is there."""
    try:
        path = tf.train.latest_checkpoint(directory)
    except Exception:  # noqa: BLE001 - a text-format parse error, an OpError...
        path = None
    if path is None and os.path.isdir(directory):
        numbers = [int(name[len("ckpt-"):-len(".index")]) for name in os.listdir(directory)
                   if name.startswith("ckpt-") and name.endswith(".index")
                   and name[len("ckpt-"):-len(".index")].isdigit()]
        if numbers:
            path = os.path.join(directory, f"ckpt-{max(numbers)}")
            logger.warning("%s: the checkpoint list is missing or unreadable; using %s",
                           directory, path)
    return path


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _pairs_digest(pairs):
    """A fingerprint of a corpus' pairs, to tell on --resume that it is the same corpus."""
    digest = hashlib.sha1()
    for source, target in pairs:
        digest.update(f"{source}\t{target}\n".encode("utf-8"))
    return digest.hexdigest()


def load_trained(model_dir, which="best"):
    """Read a model directory: the weights of `best/` (or `checkpoints/` if there is none, or
    with `which="latest"`), the tokenizers and the configuration. Whatever is unreadable
    raises a `TrainingError` naming the file."""
    model_config, train_config, data = read_config(model_dir)
    source_tokenizer, target_tokenizer = _load_tokenizers(model_dir)
    translator = Translator.from_model_config(model_config)  # read_config validated it
    directories = ["best", "checkpoints"] if which == "best" else ["checkpoints"]
    for name in directories:
        path = _latest_checkpoint(os.path.join(model_dir, name))
        if path:
            try:
                # Every weight must be found: a checkpoint of something else is not a model.
                tf.train.Checkpoint(model=translator).restore(
                    path).assert_existing_objects_matched().expect_partial()
            except CHECKPOINT_ERRORS as error:
                raise TrainingError(
                    f"{path}: corrupt checkpoint ({_first_line(error)})") from None
            break
    else:
        raise TrainingError(f"{model_dir}: holds no trained weights (no checkpoint)")
    return TrainedModel(translator, source_tokenizer, target_tokenizer, model_config,
                        train_config, data)


def seed_everything(seed):
    """Seed Keras (weights, dropout), Python and NumPy.

    Unlike `keras.utils.set_random_seed` this leaves TensorFlow's global seed alone: setting it
    clears TensorFlow's kernel caches, which destroys the SentencePiece op's resource of every
    tokenizer that already exists (a notebook that opened a model and then trains would lose
    it). Nothing here draws from TensorFlow's global seed: the data order and sampling use
    stateless ops with explicit seeds.
    """
    import random

    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


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


def make_optimizer(config):
    """Adam with per-variable gradient clipping, as `keras.optimizers.Adam` computes it but
    with the update fused into one kernel per variable (see `bahdanau_keras.optimizer`)."""
    from bahdanau_keras.optimizer import Adam

    optimizer = Adam(config.learning_rate, clipnorm=config.clipnorm, name="adam")
    if config.mixed_precision and keras.config.dtype_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_train_step(translator, optimizer, label_smoothing=0.0, strategy=None,
                    jit_compile=False, loss_chunks=1, loop_shards=1):
    """A compiled teacher-forcing step `(source, target) -> (loss_sum, token_count)`.

    The gradient is that of the mean loss over the real target tokens of the whole (global)
    batch, also when the batch is split over the replicas of a `tf.distribute.Strategy`.
    `jit_compile` XLA-compiles the step on one replica; with several, the cross-replica sums
    stay outside XLA and the step is not compiled (a warning says so). `loss_chunks` is the
    `chunks` of `Translator.loss_and_count` (the same loss and gradient, computed in pieces);
    an XLA-compiled step computes the loss in one piece (XLA cannot split by the number of
    real tokens, which it does not know when compiling). `loop_shards` is `loss_and_count`'s
    (the batch split inside the decoder's step loop; 1 under XLA as well).
    """
    strategy = strategy or tf.distribute.get_strategy()
    if jit_compile and strategy.num_replicas_in_sync == 1:
        loss_chunks = loop_shards = 1

    def replica_step(source, target):
        with tf.GradientTape() as tape:
            loss_sum, count = translator.loss_and_count(
                source, target, label_smoothing, training=True, chunks=loss_chunks,
                loop_shards=loop_shards)
            total = tf.distribute.get_replica_context().all_reduce("sum", count)
            loss = loss_sum / tf.maximum(tf.cast(total, tf.float32), 1.0)
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                loss = optimizer.scale_loss(loss)
        variables = translator.trainable_variables
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss_sum, count

    if strategy.num_replicas_in_sync == 1:
        spec = tf.TensorSpec([None, None], tf.int32)
        return tf.function(replica_step, input_signature=[spec, spec], jit_compile=jit_compile)

    if jit_compile:
        logger.warning("--jit-compile is ignored with %d replicas: the step runs uncompiled",
                       strategy.num_replicas_in_sync)

    @tf.function(reduce_retracing=True)
    def distributed_step(source, target):
        loss_sum, count = strategy.run(replica_step, args=(source, target))
        return (strategy.reduce("sum", loss_sum, axis=None),
                strategy.reduce("sum", count, axis=None))

    def step(source, target):
        return distributed_step(*split_for_replicas(strategy, source, target))

    return step


def split_for_replicas(strategy, *tensors):
    """Split each `[batch, ...]` tensor into per-replica parts for `strategy.run`."""
    replicas = strategy.num_replicas_in_sync
    parts = [np.array_split(np.asarray(t), replicas) for t in tensors]
    return [strategy.experimental_distribute_values_from_function(
        lambda context, p=p: tf.constant(p[context.replica_id_in_sync_group]))
        for p in parts]


def make_eval_step(translator):
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec])
    def eval_step(source, target):
        return translator.loss_and_count(source, target, training=False)

    return eval_step


def dev_loss(eval_step, dataset):
    total, count = 0.0, 0
    for _, source, target in dataset:
        loss_sum, n = eval_step(source, target)
        total += float(loss_sum)
        count += int(n)
    return total / max(count, 1)


# -- the loop ------------------------------------------------------------------------------


def prepare(model_dir, corpus, model_config_overrides, train_config, resume=False):
    """Create (or, with `resume`, reopen) a model directory; returns the split pairs,
    tokenizers and configurations."""
    config_exists = os.path.exists(os.path.join(model_dir, CONFIG_FILE))
    if resume:
        if not config_exists:
            raise TrainingError(
                f"{model_dir}: nothing to resume (no {CONFIG_FILE}); train without --resume")
        model_config, saved_train_config, data = read_config(model_dir)
        # The run's length, limits, checkpoint interval and learning rate may change on resume;
        # nothing that shapes the model or the data may.
        train_config = dataclasses.replace(
            saved_train_config, epochs=train_config.epochs, max_steps=train_config.max_steps,
            time_limit=train_config.time_limit, patience=train_config.patience,
            checkpoint_every=train_config.checkpoint_every,
            learning_rate=train_config.learning_rate, loss_chunks=train_config.loss_chunks,
            loop_shards=train_config.loop_shards)
        source_tokenizer, target_tokenizer = _load_tokenizers(model_dir)
        # The data position in the checkpoints indexes this corpus: another one cannot resume.
        expected = data.get("pairs_sha1") or data.get("pairs")
        found = _pairs_digest(corpus.pairs) if "pairs_sha1" in data else len(corpus.pairs)
        if expected is not None and expected != found:
            raise TrainingError(
                f"{corpus.path}: not the corpus {model_dir} was trained on "
                f"({data.get('path', 'unknown')}, {data.get('pairs', '?')} pairs; this one has "
                f"{len(corpus.pairs)}); resume with the same --data and columns")
        splits = data_lib.split_pairs(corpus.pairs, train_config.dev_fraction,
                                      train_config.test_fraction)
        return splits, source_tokenizer, target_tokenizer, model_config, train_config
    if config_exists:
        raise TrainingError(
            f"{model_dir}: already holds a model; use --resume to continue it, "
            "or choose another --model-dir")
    os.makedirs(model_dir, exist_ok=True)
    splits = data_lib.split_pairs(corpus.pairs, train_config.dev_fraction,
                                  train_config.test_fraction)
    if not splits["train"]:
        raise TrainingError(f"{corpus.path}: no pairs left for training after the split")
    logger.info("Learning the vocabularies from %d training pairs", len(splits["train"]))
    sources = normalize_python([s for s, _ in splits["train"]])
    targets = normalize_python([t for _, t in splits["train"]])
    source_tokenizer = SubwordTokenizer(train_sentencepiece(sources, train_config.vocab_size))
    target_tokenizer = SubwordTokenizer(train_sentencepiece(targets, train_config.vocab_size))
    source_tokenizer.save(os.path.join(model_dir, SOURCE_VOCAB))
    target_tokenizer.save(os.path.join(model_dir, TARGET_VOCAB))
    model_config = ModelConfig(
        source_vocab_size=source_tokenizer.vocab_size,
        target_vocab_size=target_tokenizer.vocab_size, **model_config_overrides)
    data = {"path": corpus.origin or corpus.path, "source_column": train_config.source_column,
            "target_column": train_config.target_column, "pairs": len(corpus.pairs),
            "pairs_sha1": _pairs_digest(corpus.pairs),
            **{f"{name}_pairs": len(pairs) for name, pairs in splits.items()}}
    write_config(model_dir, model_config, train_config, data)
    return splits, source_tokenizer, target_tokenizer, model_config, train_config


def train(model_dir, corpus, model_config_overrides=None, train_config=None, resume=False,
          strategy=None, verbose=1):
    """Train (or resume) a translator on `corpus` into `model_dir`; returns the history.

    Checkpoints hold the weights, the optimizer, the step counter and the position in the data,
    so `resume=True` after an interruption (even `kill -9`) continues exactly where the last
    checkpoint was. Stops at `epochs`, at `max_steps`, after `time_limit` minutes, or when the
    dev loss has not improved for `patience` epochs; a non-finite loss stops training with an
    error and leaves the last good checkpoint in place.
    """
    train_config = train_config or TrainConfig()
    strategy = strategy or tf.distribute.get_strategy()
    seed_everything(train_config.seed)
    splits, source_tokenizer, target_tokenizer, model_config, train_config = prepare(
        model_dir, corpus, model_config_overrides or {}, train_config, resume)
    if train_config.mixed_precision:
        keras.mixed_precision.set_dtype_policy(
            "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16")
    train_source, train_target = data_lib.encode_pairs(
        splits["train"], source_tokenizer, target_tokenizer, train_config.max_length)
    dev_pairs = splits["dev"] or splits["train"][: max(1, len(splits["train"]) // 50)]
    dev_source, dev_target = data_lib.encode_pairs(
        dev_pairs, source_tokenizer, target_tokenizer, train_config.max_length)

    with strategy.scope():
        translator = Translator.from_model_config(model_config)
        optimizer = make_optimizer(train_config)
        optimizer.build(translator.trainable_variables)
    logger.info("Model: %s parameters", f"{translator.count_params():,}")

    step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    best_dev_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best")
    bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs")
    counters = dict(step=step_counter, epoch=epoch_counter, best_dev_loss=best_dev_loss,
                    bad_epochs=bad_epochs)
    # Also in the checkpoints (absent from those of older versions, which still resume): the
    # state of the dropout layers' random generators, so that a resumed run draws the masks an
    # uninterrupted one would, and the number of batches done in the current epoch.
    weight_ids = {id(v) for v in translator.weights}
    rng_state = [v for v in translator.variables if id(v) not in weight_ids]
    epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step")
    epoch_totals = tf.Variable([0.0, 0.0], dtype=tf.float64, trainable=False,
                               name="epoch_totals")  # loss sum and tokens of the epoch so far
    checkpoint_dir = os.path.join(model_dir, "checkpoints")
    first_epoch = 0
    latest = _latest_checkpoint(checkpoint_dir) if resume else None
    if latest:
        try:
            tf.train.Checkpoint(**counters).restore(latest).expect_partial()
        except CHECKPOINT_ERRORS as error:
            raise TrainingError(f"{latest}: corrupt checkpoint ({_first_line(error)})") from None
        first_epoch = int(epoch_counter.numpy())
    train_batches = data_lib.batches(
        train_source, train_target, train_config.batch_size, seed=train_config.seed,
        first_epoch=first_epoch, epochs=train_config.epochs)
    iterator = iter(train_batches)
    saved = dict(model=translator, optimizer=optimizer, data=iterator, **counters)
    extras = dict(rng=rng_state, epoch_step=epoch_step, epoch_totals=epoch_totals)
    checkpoint = tf.train.Checkpoint(**saved, **extras)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
    best_manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=translator), os.path.join(model_dir, "best"), max_to_keep=1)
    history_path = os.path.join(model_dir, "history.json")
    history = []
    in_epoch = 0  # batches of the current epoch done; None: unknown (an older checkpoint)
    epoch_loss = epoch_tokens = 0.0
    if latest:
        try:
            weights_and_counters = {k: v for k, v in saved.items() if k != "data"}
            tf.train.Checkpoint(**weights_and_counters).restore(
                latest).assert_existing_objects_matched().expect_partial()
            stored = tf.train.load_checkpoint(latest).get_variable_to_shape_map()
            if any(name.startswith("epoch_step/") for name in stored):
                tf.train.Checkpoint(**extras).restore(
                    latest).assert_existing_objects_matched().expect_partial()
                in_epoch = int(epoch_step.numpy())
                in_epoch = None if in_epoch < 0 else in_epoch
                epoch_loss, epoch_tokens = (float(x) for x in epoch_totals.numpy())
            else:
                in_epoch = None
                if rng_state and model_config.dropout:
                    logger.warning(
                        "%s holds no dropout random state (an older version wrote it): the "
                        "resumed run goes on with other dropout masks", latest)
            # Mid-epoch, the data iterator resumes where it was. At an epoch boundary a new
            # iterator from `first_epoch` gives the same batches (each epoch's order depends
            # only on the seed and the epoch) and also serves a resume with more --epochs,
            # where the saved iterator has already run out.
            if in_epoch != 0:
                tf.train.Checkpoint(data=iterator).restore(latest).expect_partial()
        except CHECKPOINT_ERRORS as error:
            raise TrainingError(
                f"{latest}: cannot resume from this checkpoint ({_first_line(error)}); was it "
                "written with the same corpus and options?") from None
        if os.path.exists(history_path):
            with open(history_path, encoding="utf-8") as f:
                history = [r for r in json.load(f) if r["step"] <= int(step_counter.numpy())]
        logger.warning("Resumed from %s at step %d, epoch %d", latest,
                       int(step_counter.numpy()), first_epoch + 1)
        if verbose:
            print(f"Resumed from {latest} at step {int(step_counter.numpy())} "
                  f"(epoch {first_epoch + 1})", flush=True)
        # A resumed run may lower the learning rate (e.g. to fine-tune after a plateau); the
        # checkpoint restored the rate it was saved with.
        restored_rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        if not math.isclose(restored_rate, train_config.learning_rate, rel_tol=1e-6):
            optimizer.learning_rate = train_config.learning_rate
            if verbose:
                print(f"Learning rate {restored_rate:g} -> {train_config.learning_rate:g}",
                      flush=True)
    elif resume:
        logger.warning("No checkpoint in %s: starting from the beginning", checkpoint_dir)

    train_step = make_train_step(translator, optimizer, train_config.label_smoothing,
                                 strategy, train_config.jit_compile, train_config.loss_chunks,
                                 train_config.loop_shards)
    eval_step = make_eval_step(translator)
    dev_batches = data_lib.batches(dev_source, dev_target, 64, shuffle=False)
    batches_per_epoch = int(data_lib.batches(
        train_source, train_target, train_config.batch_size, shuffle=False).reduce(
            0, lambda n, _: n + 1))
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "logs"))
    started = time.perf_counter()
    stop_reason = None

    def keep_if_best():
        """Dev loss now; the weights go to `best/` if it is the lowest so far."""
        loss = dev_loss(eval_step, dev_batches)
        with writer.as_default(step=int(step_counter.numpy())):
            tf.summary.scalar("dev/loss", loss)
        improved = loss < best_dev_loss.numpy()
        if improved:
            best_dev_loss.assign(loss)
            best_manager.save(checkpoint_number=int(step_counter.numpy()))
        return loss, improved

    saved_at = [int(step_counter.numpy())]  # the step of the latest checkpoint

    def save_checkpoint():
        """Save the latest checkpoint, never one of weights a non-finite loss has spoilt."""
        step = int(step_counter.numpy())
        if not all(bool(tf.reduce_all(tf.math.is_finite(v)))
                   for v in translator.trainable_variables):
            raise TrainingError(
                f"the weights became non-finite at step {step}; stopped. The last good "
                f"checkpoint is in {checkpoint_dir} (try a lower --learning-rate, then --resume)")
        epoch_step.assign(-1 if in_epoch is None else in_epoch)
        epoch_totals.assign([epoch_loss, epoch_tokens])
        manager.save(checkpoint_number=step)
        saved_at[0] = step

    def end_epoch(epoch, epoch_seconds):
        nonlocal stop_reason, in_epoch, epoch_loss, epoch_tokens
        loss, improved = keep_if_best()
        record = {"epoch": epoch + 1, "step": int(step_counter.numpy()),
                  "train_loss": epoch_loss / max(epoch_tokens, 1), "dev_loss": loss,
                  # this process's share of the epoch: a resumed epoch's earlier part ran elsewhere
                  "tokens_per_s": run_tokens / max(epoch_seconds, 1e-9),
                  "seconds": epoch_seconds,
                  "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate))}
        history.append(record)
        epoch_counter.assign(epoch + 1)
        if improved:
            bad_epochs.assign(0)
        else:
            bad_epochs.assign_add(1)
            if train_config.patience and bad_epochs.numpy() >= train_config.patience:
                stop_reason = f"dev loss has not improved for {train_config.patience} epochs"
        in_epoch, epoch_loss, epoch_tokens = 0, 0.0, 0.0
        save_checkpoint()
        _write_json(history_path, history)
        if verbose:
            print(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}, "
                  f"dev loss {loss:.4f}, {record['tokens_per_s']:.0f} target tokens/s",
                  flush=True)

    def new_progress_bar():
        return keras.utils.Progbar(batches_per_epoch, verbose=verbose,
                                   stateful_metrics=["loss", "tokens/s"])

    # An epoch ends after its last batch, before the next one is taken from the iterator: the
    # checkpoint written then holds the data position of the epoch's end, not one batch on.
    current_epoch = first_epoch
    epoch_started = time.perf_counter()
    run_tokens = 0  # target tokens trained by this process since epoch_started
    progress = new_progress_bar()
    try:
        for epoch, source, target in iterator:
            epoch = int(epoch)
            if epoch != current_epoch:
                # Only when the batches done in the epoch are unknown (an older checkpoint).
                end_epoch(current_epoch, time.perf_counter() - epoch_started)
                if stop_reason:
                    break
                current_epoch, in_epoch = epoch, 0
                epoch_started, run_tokens = time.perf_counter(), 0
                progress = new_progress_bar()
            loss_sum, count = train_step(source, target)
            loss_sum, count = float(loss_sum), int(count)
            if not math.isfinite(loss_sum):
                raise TrainingError(
                    f"the loss became {loss_sum} at step {int(step_counter.numpy()) + 1}; "
                    f"stopped. The last good checkpoint is in {checkpoint_dir} (try a lower "
                    "--learning-rate, then --resume)")
            step = int(step_counter.assign_add(1).numpy())
            in_epoch = None if in_epoch is None else in_epoch + 1
            epoch_loss += loss_sum
            epoch_tokens += count
            run_tokens += count
            elapsed = time.perf_counter() - epoch_started
            if verbose == 1:
                progress.update(min(progress._seen_so_far + 1, batches_per_epoch), [
                    ("loss", loss_sum / max(count, 1)),
                    ("tokens/s", run_tokens / max(elapsed, 1e-9))])
            elif verbose and step % 100 == 0:  # a log file: one line every 100 steps
                print(f"step {step} (epoch {epoch + 1}): loss {epoch_loss / epoch_tokens:.4f}, "
                      f"{run_tokens / max(elapsed, 1e-9):.0f} target tokens/s", flush=True)
            if step % 50 == 0:
                with writer.as_default(step=step):
                    tf.summary.scalar("train/loss", loss_sum / max(count, 1))
                    tf.summary.scalar("train/tokens_per_s", run_tokens / max(elapsed, 1e-9))
            epoch_ended = in_epoch == batches_per_epoch
            if epoch_ended:
                end_epoch(current_epoch, time.perf_counter() - epoch_started)
                current_epoch += 1
                epoch_started, run_tokens = time.perf_counter(), 0
                progress = new_progress_bar()
            elif step % train_config.checkpoint_every == 0:
                save_checkpoint()
            if not stop_reason:
                if train_config.max_steps and step >= train_config.max_steps:
                    stop_reason = f"reached --max-steps {train_config.max_steps}"
                elif (train_config.time_limit
                      and time.perf_counter() - started > 60 * train_config.time_limit):
                    stop_reason = f"reached --time-limit {train_config.time_limit} minutes"
                if stop_reason and not epoch_ended:
                    if saved_at[0] != step:
                        save_checkpoint()
                    loss, _ = keep_if_best()
                    if verbose:
                        print(f"\nstep {step}: dev loss {loss:.4f}", flush=True)
            if stop_reason:
                break
        else:
            if epoch_tokens:
                end_epoch(current_epoch, time.perf_counter() - epoch_started)
    finally:
        writer.flush()
    if not best_manager.latest_checkpoint:
        best_manager.save(checkpoint_number=int(step_counter.numpy()))
    writer.flush()
    if verbose and stop_reason:
        print(f"Stopped: {stop_reason}.", flush=True)
    return history
