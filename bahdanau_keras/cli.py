"""The `bahdanau-keras` command line: sub-commands parse options into configurations and call
library functions; no logic lives here. Errors print one line on stderr and exit with 2."""

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys

# Neither imports TensorFlow: options are parsed without it.
from bahdanau_keras import config, quiet

USAGE_ERROR = 2
DEFAULT_MODEL = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "saved_models", "en-fr")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, received {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, received {text!r}")
    return value


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, received {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, received {text!r}")
    return value


def fraction(text):
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), received {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line and exits with 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


class HelpFormatter(argparse.HelpFormatter):
    """Completes an option's help with its default when the help is shown (as argparse's
    `ArgumentDefaultsHelpFormatter` does): the defaults of `ModelConfig` are only known once
    TensorFlow is imported (`bahdanau_keras.model`), which parsing options must not do."""

    def _get_help_string(self, action):
        describe = getattr(action, "describe_default", None)
        return f"{action.help} ({describe()})" if describe else action.help


# --attention's values: those of `ModelConfig.attention`, None written "none".
ATTENTION_CHOICES = tuple("none" if a is None else a for a in config.ATTENTIONS)

# The options of the model's shape: each sets these `ModelConfig` fields, whose defaults (and
# checks) are `ModelConfig`'s. All are fixed on --resume.
MODEL_OPTIONS = {
    "units": dict(
        type=positive_int, field="decoder_units",
        fields=lambda units: {"decoder_units": units, "attention_units": units,
                              "encoder_units": max(units // 2, 1)},
        help="decoder state size (the attention's too; the encoder's GRUs have half each)"),
    "embedding_dim": dict(
        type=positive_int, field="embedding_dim", fields=lambda size: {"embedding_dim": size},
        help="source and target embedding size"),
    "dropout": dict(
        type=fraction, field="dropout", fields=lambda rate: {"dropout": rate},
        help="dropout rate of the embeddings, annotations and readout in training"),
    "attention": dict(
        type=str, choices=ATTENTION_CHOICES, field="attention",
        fields=lambda kind: {"attention": None if kind == "none" else kind},
        help="the decoder's attention; none: the paper's RNNencdec baseline, whose every step "
             "reads one fixed context, the encoder's summary [last forward state; first "
             "backward state]"),
}


def option_name(name):
    return "--" + name.replace("_", "-")


def config_type(field):
    """The argparse `type` of a `TrainConfig` field: the text read as the field's type, and
    held to the field's check."""
    check = field.metadata["check"]

    def parse(text):
        try:
            value = field.type(text)
        except ValueError:
            value = None
        if value is None or not check.accepts(value):
            raise argparse.ArgumentTypeError(f"expected {check.expected}, received {text!r}")
        return value

    return parse


def add_config_options(parser):
    """An option for each `TrainConfig` field and each of `MODEL_OPTIONS`, grouped by their
    rule on --resume. Their argparse default is None (not given); the help shows the real
    default, the dataclass field's."""
    fixed = parser.add_argument_group(
        "fixed when the model is created", "--resume keeps the model's; another value is an "
        "error")
    changeable = parser.add_argument_group(
        "may change on --resume", "not given, --resume keeps the model's (but --max-steps and "
        "--time-limit limit one run)")
    for name, model_option in MODEL_OPTIONS.items():
        action = fixed.add_argument(option_name(name), type=model_option["type"],
                                    choices=model_option.get("choices"), default=None,
                                    help=model_option["help"])
        action.describe_default = lambda field=model_option["field"]: _model_default(field)
    for field in dataclasses.fields(config.TrainConfig):
        group = fixed if field.metadata["rule"] == config.FIXED else changeable
        kwargs = dict(default=None, help=field.metadata["help"])
        if field.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif field.metadata["check"].choices:
            kwargs["choices"] = field.metadata["check"].choices
        else:
            kwargs["type"] = config_type(field)
        action = group.add_argument(option_name(field.name), **kwargs)
        sample = config.SAMPLE_CORPUS_TRAINING.get(field.name)
        action.describe_default = lambda default=field.default, sample=sample: (
            _default_text(default, sample))


def _default_text(default, sample=None):
    if isinstance(default, bool):
        default = "on" if default else "off"
    elif default is None:
        default = "none"
    return f"default: {default}" + ("" if sample is None else f"; {sample} on the sample corpus")


def _model_default(field):
    from bahdanau_keras.model import ModelConfig

    default = {f.name: f.default for f in dataclasses.fields(ModelConfig)}[field]
    return _default_text(default, config.SAMPLE_CORPUS_MODEL.get(field))


def build_parser():
    parser = Parser(prog="bahdanau-keras",
                    description="Bahdanau-attention neural machine translation (Keras 3).")
    commands = parser.add_subparsers(dest="command", parser_class=Parser, required=True)

    train = commands.add_parser(
        "train", help="train a translator on an Anki/Tatoeba corpus",
        formatter_class=HelpFormatter,
        description="Options not given take their defaults from TrainConfig and ModelConfig; "
                    "on --resume, the model's own.")
    train.add_argument("--data", default=None,
                       help="corpus .txt, .zip (or ZIP:MEMBER) or URL (default: the built-in "
                            "sample corpus; with --resume, the model's)")
    train.add_argument("--model-dir", required=True, help="where the model is written")
    train.add_argument("--resume", action="store_true",
                       help="continue the model in --model-dir from its last checkpoint")
    train.add_argument("--skip-bad-lines", action="store_true",
                       help="skip malformed corpus lines (counted) instead of stopping")
    train.add_argument("--strategy", choices=["default", "mirrored"], default="default",
                       help="mirrored: tf.distribute.MirroredStrategy, one replica per visible "
                            "GPU (docs/benchmarks.md)")
    train.add_argument("--quiet", action="store_true",
                       help="no progress bar, log lines or examples")
    add_config_options(train)

    translate = commands.add_parser("translate", help="translate sentences")
    translate.add_argument("sentences", nargs="*",
                           help="sentences (default: one per line on standard input)")
    translate.add_argument("--model-dir", default=None,
                           help="a trained model directory or an exported SavedModel "
                                "(default: the shipped English-French model)")
    translate.add_argument("--input", default=None, help="a file with one sentence a line")
    translate.add_argument("--beam", type=positive_int, default=1,
                           help="beam width (1: greedy)")
    translate.add_argument("--alpha", type=non_negative_float, default=0.6,
                           help="GNMT length penalty")
    translate.add_argument("--beta", type=non_negative_float, default=0.0,
                           help="GNMT coverage penalty")
    translate.add_argument("--temperature", type=non_negative_float, default=0.0,
                           help="sample with this temperature instead of searching")
    translate.add_argument("--nbest", action="store_true",
                           help="with --beam, print every hypothesis and its score")
    translate.add_argument("--plot", default=None,
                           help="write the attention heatmap of the first sentence to this PNG")
    translate.add_argument("--json", action="store_true", help="one JSON object a line")
    translate.add_argument("--batch-size", type=positive_int, default=256,
                           help="sentences a call to the model, which sorts them by length")

    evaluate = commands.add_parser(
        "evaluate", help="BLEU and chrF on the test split or a file, greedy and beam search")
    evaluate.add_argument("--model-dir", default=None,
                          help="a model directory or a SavedModel (default: the shipped model)")
    evaluate.add_argument("--data", default=None,
                          help="corpus to split as in training (default: the model's corpus)")
    evaluate.add_argument("--split", choices=["test", "dev"], default="test")
    evaluate.add_argument("--file", default=None,
                          help="a tab-separated source/reference file to score instead")
    evaluate.add_argument("--beam", type=positive_int, default=4,
                          help="beam width scored beside greedy (1: greedy only)")
    evaluate.add_argument("--alpha", type=non_negative_float, default=0.6)
    evaluate.add_argument("--beta", type=non_negative_float, default=0.0)
    evaluate.add_argument("--limit", type=non_negative_int, default=0,
                          help="score only the first N source sentences (0: all)")
    evaluate.add_argument("--batch-size", type=positive_int, default=64)
    evaluate.add_argument("--output", default=None, help="also write the report as JSON here")

    export = commands.add_parser(
        "export", help="write a SavedModel that takes raw strings, or LiteRT models")
    export.add_argument("--model-dir", required=True,
                        help="a trained model directory (with --format litert, also a SavedModel "
                             "written by this command)")
    export.add_argument("--output", required=True, help="directory to write")
    export.add_argument("--format", choices=("savedmodel", "litert"), default="savedmodel",
                        help="savedmodel: one SavedModel that takes raw strings; litert: "
                             "encoder.tflite and decoder_step.tflite for an app's own search")
    export.add_argument("--weights", choices=("float32", "float16", "int8"), default="float32",
                        help="LiteRT weights (--format litert): int8 is 3x smaller and fastest")
    export.add_argument("--keras", default=None,
                        help="also save the Keras model in the native .keras format here "
                             "(--format savedmodel)")
    for command in commands.choices.values():
        command.add_argument("--verbose", action="store_true",
                             help="also show TensorFlow's and SentencePiece's own log lines")
    return parser


def given_options(args):
    """`(train_changes, model_changes)`: the `TrainConfig` and `ModelConfig` fields that the
    options given on the command line set (those not given are None in `args`)."""
    train_changes = {field.name: getattr(args, field.name)
                     for field in dataclasses.fields(config.TrainConfig)
                     if getattr(args, field.name) is not None}
    model_changes = {}
    for name, model_option in MODEL_OPTIONS.items():
        if getattr(args, name) is not None:
            model_changes.update(model_option["fields"](getattr(args, name)))
    return train_changes, model_changes


def resume_conflict(error, args):
    """The usage error of a `config.ResumeConflict`, naming the option and both values."""
    for name, model_option in MODEL_OPTIONS.items():
        given = getattr(args, name)
        if given is not None and error.name in model_option["fields"](given):
            saved = "none" if error.saved is None else error.saved  # as the option writes it
            return UsageError(
                f"bahdanau-keras train: {option_name(name)} {given} differs from the model's "
                f"{saved} ({error.name}); it cannot change on --resume")
    return UsageError(f"bahdanau-keras train: {option_name(error.name)} {error.given} differs "
                      f"from the model's {error.saved}; it cannot change on --resume")


def command_train(args):
    from bahdanau_keras import data, train

    model_dir = train.ModelDir(args.model_dir)
    train_changes, model_changes = given_options(args)
    data_path = args.data
    if args.resume:
        try:
            _, train_config, trained_on = train.resume_configs(
                model_dir, train_changes, model_changes)
        except config.ResumeConflict as error:
            raise resume_conflict(error, args) from None
        data_path = data_path or train.trained_on(trained_on, model_dir)
    else:
        model_dir.check_new()  # said before reading a corpus that may be large
        if data_path is None:  # the sample corpus trains a small model
            train_changes = {**config.SAMPLE_CORPUS_TRAINING, **train_changes}
            model_changes = {**config.SAMPLE_CORPUS_MODEL, **model_changes}
        train_config = config.TrainConfig(**train_changes)
    # Reading (or downloading) the corpus runs no TensorFlow op: a corpus error is said first.
    corpus = data.read_corpus(data_path or data.SAMPLE_CORPUS, train_config.source_column,
                              train_config.target_column, skip_bad_lines=args.skip_bad_lines)
    train.configure_threads(train_config.intra_op_threads,
                            train_config.inter_op_threads)  # before any op
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    print(f"Training on {corpus.path}: {len(corpus.pairs):,} pairs", flush=True)
    strategy = None
    if args.strategy == "mirrored":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
    train.train(args.model_dir, corpus, model_changes, train_config, resume=args.resume,
                strategy=strategy, verbose=verbose)
    if data_path is None and not args.quiet:
        from bahdanau_keras.translate import Translation

        examples = ["John loves Mary.", "I see the red car.", "Do you have a cat?"]
        translation = Translation.open(args.model_dir)
        for source, result in zip(examples, translation.translate(examples)):
            print(f"{source} -> {result['translation']}")
    print(f"Model written to {args.model_dir}", flush=True)


# An --input file of more lines than this shows a progress bar on a terminal's stderr.
PROGRESS_LINES = 200


def command_translate(args):
    from bahdanau_keras.translate import (
        QUICK_START_SENTENCES,
        configure_decoding_threads,
        quick_start,
        read_sentences,
    )

    sentences = read_sentences(args.sentences, args.input)
    # Many sentences: several calls at once, one thread per op (before any op runs).
    workers = configure_decoding_threads() if len(sentences) > QUICK_START_SENTENCES else 1
    with quick_start(len(sentences)):
        translate_sentences(args, sentences, workers)


def translate_sentences(args, sentences, workers=1):
    from bahdanau_keras.translate import ProgressBar, Translation

    translation = Translation.open(args.model_dir or DEFAULT_MODEL)
    progress = None
    if args.input and len(sentences) > PROGRESS_LINES and args.stderr_is_terminal:
        progress = ProgressBar(sys.stderr)
    results = translation.translate_iter(
        sentences, beam_width=args.beam, alpha=args.alpha, beta=args.beta,
        temperature=args.temperature, batch_size=args.batch_size, progress=progress,
        workers=workers)
    first = None
    for index, (source, result) in enumerate(zip(sentences, results)):
        first = first or result
        if args.json:
            print(json.dumps({"source": source, **result}, ensure_ascii=False))
        elif args.nbest and "nbest" in result:
            for text, score in result["nbest"]:
                print(f"{score:.4f}\t{text}")
            print()
        else:
            print(result["translation"])
        if index % args.batch_size == args.batch_size - 1:
            sys.stdout.flush()  # each batch as it is done (`| head` ends sooner)
    if args.plot and first:
        from bahdanau_keras.plot import plot_attention

        plot_attention(first["attention"], first["source_tokens"], first["target_tokens"],
                       path=args.plot)


def command_evaluate(args):
    from bahdanau_keras import data, evaluate
    from bahdanau_keras.model_dir import CONFIG_FILE, ModelDir, TrainingError
    from bahdanau_keras.translate import Translation, configure_decoding_threads

    model_dir = args.model_dir or DEFAULT_MODEL
    if args.file:
        corpus = data.read_corpus(args.file, skip_bad_lines=True)
        sources, references = data.group_references(corpus.pairs)
    else:
        config_dir = model_dir
        if not os.path.exists(os.path.join(model_dir, CONFIG_FILE)):
            # An exported model carries the training configuration in its assets.
            config_dir = os.path.join(model_dir, "assets")
        try:
            _, train_config, data_info = ModelDir(config_dir).read_config()
        except TrainingError:
            train_config, data_info = config.TrainConfig(), {}
        corpus_path = args.data or data_info.get("path")
        if not corpus_path:
            raise UsageError("bahdanau-keras evaluate: give --data or --file "
                             "(the model does not say which corpus it was trained on)")
        sources, references = evaluate.test_split(corpus_path, train_config, args.split)
    if args.limit:
        sources, references = sources[: args.limit], references[: args.limit]
    if not sources:
        raise UsageError("bahdanau-keras evaluate: nothing to evaluate (no sentences)")
    workers = configure_decoding_threads()  # before any op runs
    translation = Translation.open(model_dir)
    beams = (1,) if args.beam == 1 else (1, args.beam)
    report = evaluate.evaluate(translation, sources, references, beams, args.alpha, args.beta,
                               args.batch_size, verbose=sys.stdout.isatty(), workers=workers)
    for name in ("greedy", f"beam{args.beam}"):
        if name in report:
            r = report[name]
            print(f"{name:>7}: BLEU {r['bleu']:.2f}  chrF {r['chrf']:.2f}  "
                  f"({report['sentences']} sentences, {r['sentences_per_s']:.0f}/s)")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)


def command_export(args):
    if args.format == "litert":
        if args.keras:
            raise UsageError("--keras writes a .keras file next to a SavedModel: use it with "
                             "--format savedmodel")
        from bahdanau_keras.litert_export import export_litert

        path = export_litert(args.model_dir, args.output, weight_type=args.weights)
        print(f"LiteRT models written to {path}")
        return
    from bahdanau_keras.export import export_model_dir

    path = export_model_dir(args.model_dir, args.output, keras_path=args.keras)
    print(f"SavedModel written to {path}")


COMMANDS = {"train": command_train, "translate": command_translate,
            "evaluate": command_evaluate, "export": command_export}


class _StderrHandler(logging.StreamHandler):
    """Writes to the `sys.stderr` of the moment (which tests and callers may replace)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging():
    """Warnings go to stderr as one line each: the package's (skipped corpus lines, a resumed
    run...) through a handler of its own, once, whatever the logging set-up of the process."""
    root = logging.getLogger()
    fresh = not root.handlers
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if fresh:  # the root handler just made leaves the package's records to the package's
        for handler in root.handlers:
            handler.addFilter(lambda record: not record.name.startswith("bahdanau_keras"))
    logger = logging.getLogger("bahdanau_keras")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)


def main(argv=None):
    _setup_logging()
    try:
        args = build_parser().parse_args(argv)
        if not args.verbose:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            # TensorFlow's Python log lines too (its own logger's, and absl's: "Importing a
            # function ... with ops with unsaved custom gradients" when a SavedModel loads):
            # errors only.
            for name in ("tensorflow", "absl"):
                logging.getLogger(name).setLevel(logging.ERROR)
        # Asked before stderr goes through the filter (a pipe) below.
        args.stderr_is_terminal = sys.stderr.isatty()
        # TensorFlow's and SentencePiece's native lines off stderr (bahdanau_keras.quiet).
        with quiet.native_logs_filtered(enabled=not args.verbose):
            COMMANDS[args.command](args)
    except BrokenPipeError:
        # The reader of the output has gone (`translate ... | head -1`): stop quietly, as a
        # command killed by SIGPIPE does, with nothing more written to the closed pipe (not
        # even the buffered rest, when Python exits).
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (AttributeError, ValueError, OSError):  # stdout is no file (a test's capture)
            pass
        return 128 + signal.SIGPIPE
    except UsageError as error:
        print(str(error), file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("Interrupted; run again with --resume to continue from the last checkpoint.",
              file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - known user-facing errors become one line
        from bahdanau_keras.data import CorpusError
        from bahdanau_keras.model_dir import TrainingError

        if isinstance(error, (CorpusError, TrainingError, ValueError, OSError)):
            print(f"bahdanau-keras: error: {error}", file=sys.stderr)
            return USAGE_ERROR
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
