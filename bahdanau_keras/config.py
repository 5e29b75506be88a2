"""The options of a training run (`TrainConfig`), and which of them may change on resume.

Every field of `TrainConfig` carries, beside its default, a help text, the values it accepts
and its rule on resume (in `dataclasses.field` metadata, see `option`). The command line builds
its `train` options from them and `resumed` applies the rules, so that neither a default nor a
rule is written twice. The rules:

- `FIXED`: set when the model directory is created — the data and its split, the
  vocabularies, the batches (the checkpoints' position in the data counts them) and the loss.
  A resumed run keeps them; giving another value is an error.
- `KEPT`: may change on resume (the run's length, the learning rate, how the step runs); a
  resumed run keeps the model's value unless another is given.
- `PER_RUN`: a limit of one run (`max_steps`, `time_limit`); a resumed run has none unless one
  is given.

The model's shape (`bahdanau_keras.model.ModelConfig`) is fixed as a whole.

This module imports no TensorFlow, so that the command line's `--help` stays fast.
"""

import dataclasses
import typing

FIXED, KEPT, PER_RUN = "fixed", "kept", "per run"
# The implementations of the layers (`bahdanau_keras.kernels.IMPLEMENTATIONS`; a test checks
# that the two agree).
IMPLEMENTATIONS = ("auto", "reference", "fused")
# The decoder's attention (`ModelConfig.attention`): Bahdanau attention, or none (RNNencdec, the
# paper's baseline: the encoder's summary is the context of every step).
ATTENTIONS = ("bahdanau", None)


class Check(typing.NamedTuple):
    """The values an option accepts: `accepts(value)`, and `expected` to say so in errors."""

    expected: str  # e.g. "a positive integer"
    accepts: typing.Callable[[object], bool]
    choices: tuple = ()  # all the values, when there are few


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


INTEGER = Check("an integer", _is_int)
POSITIVE_INTEGER = Check("a positive integer", lambda v: _is_int(v) and v > 0)
NON_NEGATIVE_INTEGER = Check("an integer >= 0", lambda v: _is_int(v) and v >= 0)
POSITIVE_NUMBER = Check("a number > 0", lambda v: _is_number(v) and v > 0)
NON_NEGATIVE_NUMBER = Check("a number >= 0", lambda v: _is_number(v) and v >= 0)
FRACTION = Check("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1)
COLUMN = Check("1 or 2 (column 3 holds the attribution)", lambda v: _is_int(v) and v in (1, 2))
BOOLEAN = Check("True or False", lambda v: isinstance(v, bool))
IMPLEMENTATION = Check(f"one of {IMPLEMENTATIONS}", lambda v: v in IMPLEMENTATIONS,
                       IMPLEMENTATIONS)


def option(default, check, rule, help):
    """A `TrainConfig` field: its default, the `Check` of its values, its rule on resume
    (`FIXED`, `KEPT` or `PER_RUN`) and its help text for the command line."""
    return dataclasses.field(default=default,
                             metadata={"check": check, "rule": rule, "help": help})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of a training run; the command line fills it, `config.json` stores it.

    Each field's metadata holds its `check`, its `rule` on resume and its `help` (see
    `option`); `resumed` gives the configuration of a resumed run.
    """

    # The data, its split and the vocabularies: fixed.
    source_column: int = option(
        1, COLUMN, FIXED, "corpus column of the source language (1 is English in the "
        "manythings.org files; --source-column 2 --target-column 1 translates into English)")
    target_column: int = option(2, COLUMN, FIXED, "corpus column of the target language")
    dev_fraction: float = option(
        0.01, FRACTION, FIXED, "share of the source sentences held out for the dev loss")
    test_fraction: float = option(
        0.02, FRACTION, FIXED, "share of the source sentences held out for evaluation, never "
        "trained on")
    vocab_size: int = option(
        8000, POSITIVE_INTEGER, FIXED, "upper bound of each language's SentencePiece vocabulary")
    max_length: int = option(
        64, POSITIVE_INTEGER, FIXED, "training pairs with a longer side (in subwords) are left "
        "out")
    seed: int = option(
        0, INTEGER, FIXED, "seed of the weights, the data order and dropout: two runs with one "
        "seed are identical")
    # The batches and the loss: fixed (the checkpoints' data position counts batches).
    batch_size: int = option(
        64, POSITIVE_INTEGER, FIXED, "sentences per batch (sentences of similar length batch "
        "together)")
    label_smoothing: float = option(
        0.0, FRACTION, FIXED, "ε of the label-smoothed cross-entropy")
    clipnorm: float = option(
        1.0, POSITIVE_NUMBER, FIXED, "gradients are clipped to this norm (each variable's)")
    # The run's length and the learning rate: may change.
    epochs: int = option(10, POSITIVE_INTEGER, KEPT, "passes over the training split")
    patience: int = option(
        3, NON_NEGATIVE_INTEGER, KEPT, "epochs without a better dev loss before stopping; 0: "
        "never stop early")
    checkpoint_every: int = option(
        500, POSITIVE_INTEGER, KEPT, "steps between checkpoints (there is one at every epoch's "
        "end too)")
    learning_rate: float = option(
        1e-3, POSITIVE_NUMBER, KEPT, "Adam's learning rate (a lower one on --resume "
        "fine-tunes)")
    max_steps: int = option(
        0, NON_NEGATIVE_INTEGER, PER_RUN, "stop after this many steps in all; 0: no limit")
    time_limit: float = option(
        0.0, NON_NEGATIVE_NUMBER, PER_RUN, "stop after this many minutes of this run (a "
        "checkpoint is kept); 0: no limit")
    # How the step runs (the same loss and gradients): may change.
    implementation: str = option(
        "auto", IMPLEMENTATION, KEPT, "the layers' readable reference or the kernels of "
        "bahdanau_keras.kernels (fused: the same functions, faster on CPU, float32 only); auto "
        "takes each kernel where it applies")
    loss_chunks: int = option(
        2, POSITIVE_INTEGER, KEPT, "independent pieces of the output layer and the loss (the "
        "fused kernel's), which run on several cores at once; 1 with --jit-compile")
    loop_shards: int = option(
        2, POSITIVE_INTEGER, KEPT, "independent parts of the batch in the fused decoder loop, "
        "which run on several cores at once; 1 with --jit-compile; 1 suits a GPU")
    mixed_precision: bool = option(
        False, BOOLEAN, KEPT, "compute in float16 on a GPU (with loss scaling), bfloat16 "
        "elsewhere; the weights stay float32")
    jit_compile: bool = option(False, BOOLEAN, KEPT, "XLA-compile the training step")
    intra_op_threads: int = option(
        0, NON_NEGATIVE_INTEGER, KEPT, "threads of each TensorFlow op; 0: half the cores "
        "without a GPU (the command line; TF_NUM_INTRAOP_THREADS if set), else TensorFlow's "
        "default (see train.configure_threads)")
    inter_op_threads: int = option(
        0, NON_NEGATIVE_INTEGER, KEPT, "TensorFlow ops run at once; 0: 2 without a GPU (the "
        "command line; TF_NUM_INTEROP_THREADS if set), else TensorFlow's default")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, check = getattr(self, field.name), field.metadata["check"]
            if not check.accepts(value):
                raise ValueError(
                    f"`{field.name}` must be {check.expected}. Received: {value!r}")
        if self.source_column == self.target_column:
            raise ValueError(
                "`source_column` and `target_column` must differ: source and target are the "
                f"same column. Received: {self.source_column!r}, {self.target_column!r}")
        if self.dev_fraction + self.test_fraction >= 1:
            raise ValueError(
                "`dev_fraction` and `test_fraction` must sum to less than 1. "
                f"Received: {self.dev_fraction!r}, {self.test_fraction!r}")


# The built-in sample corpus (short sentences of a small grammar) trains a smaller model than
# the defaults (the sizes of the shipped model), for more epochs. Applied by the command line
# when no --data is given.
SAMPLE_CORPUS_MODEL = {"embedding_dim": 64, "encoder_units": 64, "decoder_units": 128,
                       "attention_units": 128}
SAMPLE_CORPUS_TRAINING = {"epochs": 30, "vocab_size": 1000}


class ResumeConflict(ValueError):
    """An option that cannot change on resume was given another value than the model's.

    Attributes: `name` (the field), `saved` (the model's value), `given`.
    """

    def __init__(self, name, saved, given):
        super().__init__(f"`{name}` cannot change on resume: the model has {saved!r}, "
                         f"received {given!r}")
        self.name, self.saved, self.given = name, saved, given


def require_unchanged(saved, changes, names=None):
    """Raise `ResumeConflict` for the first of `changes` (field name -> value) among `names`
    (default: all) whose value differs from that of the dataclass `saved`."""
    for name, value in changes.items():
        if (names is None or name in names) and value != getattr(saved, name):
            raise ResumeConflict(name, getattr(saved, name), value)


def resumed(saved, changes):
    """The configuration of a run that resumes a model trained with `saved`.

    Args:
        saved: The model's `TrainConfig`.
        changes: Field name -> value, for the options given for this run (all of them when a
            whole `TrainConfig` is given).

    Returns:
        `saved` with the `KEPT` and `PER_RUN` fields of `changes`, and the `PER_RUN` fields
        not in `changes` at their defaults.

    Raises:
        ResumeConflict: a `FIXED` field of `changes` differs from `saved`.
    """
    fixed = {field.name for field in dataclasses.fields(TrainConfig)
             if field.metadata["rule"] == FIXED}
    require_unchanged(saved, changes, fixed)
    limits = {field.name: field.default for field in dataclasses.fields(TrainConfig)
              if field.metadata["rule"] == PER_RUN}
    return dataclasses.replace(saved, **{**limits, **changes})
