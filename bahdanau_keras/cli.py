"""The `bahdanau-keras` command line: sub-commands parse options into configurations and call
library functions; no logic lives here. Errors print one line on stderr and exit with 2."""

import argparse
import json
import logging
import os
import sys

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


def build_parser():
    parser = Parser(prog="bahdanau-keras",
                    description="Bahdanau-attention neural machine translation (Keras 3).")
    commands = parser.add_subparsers(dest="command", parser_class=Parser, required=True)

    train = commands.add_parser("train", help="train a translator on an Anki/Tatoeba corpus")
    train.add_argument("--data", default=None,
                       help="corpus .txt, .zip (or ZIP:MEMBER) or URL (default: the built-in "
                            "sample corpus)")
    train.add_argument("--model-dir", required=True, help="where the model is written")
    train.add_argument("--resume", action="store_true",
                       help="continue the model in --model-dir from its last checkpoint")
    train.add_argument("--source-column", type=int, default=None,
                       help="corpus column of the source language (default 1, English; "
                            "with --resume, the model's)")
    train.add_argument("--target-column", type=int, default=None,
                       help="corpus column of the target language (default 2; with --resume, "
                            "the model's)")
    train.add_argument("--skip-bad-lines", action="store_true",
                       help="skip malformed corpus lines (counted) instead of stopping")
    train.add_argument("--epochs", type=positive_int, default=None,
                       help="passes over the training split (default 30 on the sample corpus, "
                            "10 otherwise; with --resume, the model's)")
    train.add_argument("--batch-size", type=positive_int, default=64)
    train.add_argument("--units", type=positive_int, default=None,
                       help="decoder state size (encoder: half per direction; attention: same)")
    train.add_argument("--embedding-dim", type=positive_int, default=None)
    train.add_argument("--vocab-size", type=positive_int, default=None,
                       help="SentencePiece vocabulary size of each language")
    train.add_argument("--dropout", type=fraction, default=None)
    train.add_argument("--learning-rate", type=non_negative_float, default=None,
                       help="Adam's learning rate (default 1e-3; on --resume, the model's own "
                            "unless given: a lower one fine-tunes)")
    train.add_argument("--label-smoothing", type=fraction, default=0.0)
    train.add_argument("--patience", type=non_negative_int, default=None,
                       help="epochs without a better dev loss before stopping; 0: never "
                            "(default 3; with --resume, the model's)")
    train.add_argument("--max-steps", type=non_negative_int, default=0)
    train.add_argument("--time-limit", type=non_negative_float, default=0.0,
                       help="stop after this many minutes (a checkpoint is kept)")
    train.add_argument("--checkpoint-every", type=positive_int, default=None,
                       help="steps between checkpoints (default 500; with --resume, the "
                            "model's)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--mixed-precision", action="store_true",
                       help="float16 on GPU, bfloat16 elsewhere")
    train.add_argument("--jit-compile", action="store_true", help="XLA-compile the step")
    train.add_argument("--strategy", choices=["default", "mirrored"], default="default",
                       help="mirrored: tf.distribute.MirroredStrategy, one replica per visible "
                            "GPU (docs/benchmarks.md)")
    train.add_argument("--loss-chunks", type=positive_int, default=2,
                       help="independent pieces of the output layer and loss, which run on "
                            "several cores at once (the same loss; 1 with --jit-compile)")
    train.add_argument("--loop-shards", type=positive_int, default=2,
                       help="independent parts of the batch in the decoder's step loop, which "
                            "run on several cores at once (the same loss; 1 with "
                            "--jit-compile; 1 suits a GPU)")
    train.add_argument("--intra-op-threads", type=non_negative_int, default=0,
                       help="threads of each TensorFlow op (both 0: half the cores without a "
                            "GPU unless TF_NUM_INTRAOP_THREADS is set, else TensorFlow's "
                            "default; one given: the other as without a GPU)")
    train.add_argument("--inter-op-threads", type=non_negative_int, default=0,
                       help="TensorFlow ops run at once (both 0: 2 without a GPU unless "
                            "TF_NUM_INTEROP_THREADS is set, else TensorFlow's default)")
    train.add_argument("--quiet", action="store_true")

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
    translate.add_argument("--batch-size", type=positive_int, default=64)

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

    export = commands.add_parser("export", help="write a SavedModel that takes raw strings")
    export.add_argument("--model-dir", required=True, help="a trained model directory")
    export.add_argument("--output", required=True, help="directory of the SavedModel")
    export.add_argument("--keras", default=None,
                        help="also save the Keras model in the native .keras format here")
    return parser


def _trained_on_path(saved, model_dir):
    """The corpus a model directory names in its configuration, to resume on; None for the
    built-in sample corpus."""
    from bahdanau_keras import data

    if data.is_url(saved):
        return saved
    if os.path.basename(saved) == os.path.basename(data.SAMPLE_CORPUS):
        return None  # wherever the package is installed now
    # Older versions wrote the zip member too ("fra-eng.zip:fra.txt"), which reads that member.
    if os.path.exists(saved) or data.zip_member(saved):
        return saved
    raise UsageError(f"bahdanau-keras train: {model_dir} was trained on {saved}, which is not "
                     "there: give the corpus with --data")


def command_train(args):
    from bahdanau_keras import data, train

    train.configure_threads(args.intra_op_threads, args.inter_op_threads)  # before any op
    data_path, source_column, target_column = args.data, args.source_column, args.target_column
    saved = None  # the training options of the model to resume
    if not args.resume and os.path.exists(os.path.join(args.model_dir, train.CONFIG_FILE)):
        # Said before reading a corpus that may be large; `train` checks it again.
        raise train.TrainingError(
            f"{args.model_dir}: already holds a model; use --resume to continue it, "
            "or choose another --model-dir")
    if args.resume and os.path.isdir(args.model_dir):
        # Resume on the model's own corpus and columns unless told otherwise.
        try:
            _, saved, trained_on = train.read_config(args.model_dir)
        except train.TrainingError:
            saved, trained_on = None, {}  # `train` reports what is wrong with the directory
        if data_path is None and trained_on.get("path"):
            data_path = _trained_on_path(trained_on["path"], args.model_dir)
        if source_column is None:
            source_column = trained_on.get("source_column")
        if target_column is None:
            target_column = trained_on.get("target_column")
    source_column = 1 if source_column is None else source_column
    target_column = 2 if target_column is None else target_column
    corpus = data.read_corpus(data_path or data.SAMPLE_CORPUS, source_column,
                              target_column, skip_bad_lines=args.skip_bad_lines)
    sample = data_path is None
    # The sample corpus trains a small model; a real corpus the sizes of the shipped model.
    units = args.units or (128 if sample else 512)
    model = dict(
        embedding_dim=args.embedding_dim or (64 if sample else 256),
        encoder_units=max(units // 2, 1), decoder_units=units, attention_units=units)
    if args.dropout is not None:
        model["dropout"] = args.dropout
    # On --resume, what is not given stays as the model had it (a run's own limits, --max-steps
    # and --time-limit, excepted).
    epochs = args.epochs or (saved.epochs if saved else (30 if sample else 10))
    patience = args.patience if args.patience is not None else (saved.patience if saved else 3)
    checkpoint_every = args.checkpoint_every or (saved.checkpoint_every if saved else 500)
    train_config = train.TrainConfig(
        epochs=epochs, batch_size=args.batch_size,
        learning_rate=(args.learning_rate if args.learning_rate is not None
                       else saved.learning_rate if saved else 1e-3),
        label_smoothing=args.label_smoothing,
        patience=patience, seed=args.seed,
        vocab_size=args.vocab_size or (1000 if sample else 8000),
        checkpoint_every=checkpoint_every, max_steps=args.max_steps,
        time_limit=args.time_limit, mixed_precision=args.mixed_precision,
        jit_compile=args.jit_compile, loss_chunks=args.loss_chunks,
        loop_shards=args.loop_shards, source_column=source_column,
        target_column=target_column)
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    print(f"Training on {corpus.path}: {len(corpus.pairs):,} pairs", flush=True)
    strategy = None
    if args.strategy == "mirrored":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
    train.train(args.model_dir, corpus, model, train_config, resume=args.resume,
                strategy=strategy, verbose=verbose)
    if sample and not args.quiet:
        from bahdanau_keras.translate import Translation

        examples = ["John loves Mary.", "I see the red car.", "Do you have a cat?"]
        translation = Translation.open(args.model_dir)
        for source, result in zip(examples, translation.translate(examples)):
            print(f"{source} -> {result['translation']}")
    print(f"Model written to {args.model_dir}", flush=True)


def command_translate(args):
    from bahdanau_keras.translate import Translation, read_sentences

    sentences = read_sentences(args.sentences, args.input)
    translation = Translation.open(args.model_dir or DEFAULT_MODEL)
    results = translation.translate(
        sentences, beam_width=args.beam, alpha=args.alpha, beta=args.beta,
        temperature=args.temperature, batch_size=args.batch_size)
    for source, result in zip(sentences, results):
        if args.json:
            print(json.dumps({"source": source, **result}, ensure_ascii=False))
        elif args.nbest and "nbest" in result:
            for text, score in result["nbest"]:
                print(f"{score:.4f}\t{text}")
            print()
        else:
            print(result["translation"])
    if args.plot and results:
        from bahdanau_keras.plot import plot_attention

        first = results[0]
        plot_attention(first["attention"], first["source_tokens"], first["target_tokens"],
                       path=args.plot)


def command_evaluate(args):
    from bahdanau_keras import data, evaluate
    from bahdanau_keras.train import TrainConfig, TrainingError, read_config
    from bahdanau_keras.translate import Translation

    model_dir = args.model_dir or DEFAULT_MODEL
    if args.file:
        corpus = data.read_corpus(args.file, skip_bad_lines=True)
        sources, references = data.group_references(corpus.pairs)
    else:
        config_dir = model_dir
        if not os.path.exists(os.path.join(model_dir, "config.json")):
            # An exported model carries the training configuration in its assets.
            config_dir = os.path.join(model_dir, "assets")
        try:
            _, train_config, data_info = read_config(config_dir)
        except TrainingError:
            train_config, data_info = TrainConfig(), {}
        corpus_path = args.data or data_info.get("path")
        if not corpus_path:
            raise UsageError("bahdanau-keras evaluate: give --data or --file "
                             "(the model does not say which corpus it was trained on)")
        sources, references = evaluate.test_split(corpus_path, train_config, args.split)
    if args.limit:
        sources, references = sources[: args.limit], references[: args.limit]
    if not sources:
        raise UsageError("bahdanau-keras evaluate: nothing to evaluate (no sentences)")
    translation = Translation.open(model_dir)
    beams = (1,) if args.beam == 1 else (1, args.beam)
    report = evaluate.evaluate(translation, sources, references, beams, args.alpha, args.beta,
                               args.batch_size, verbose=sys.stdout.isatty())
    for name in ("greedy", f"beam{args.beam}"):
        if name in report:
            r = report[name]
            print(f"{name:>7}: BLEU {r['bleu']:.2f}  chrF {r['chrf']:.2f}  "
                  f"({report['sentences']} sentences, {r['sentences_per_s']:.0f}/s)")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)


def command_export(args):
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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except UsageError as error:
        print(str(error), file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("Interrupted; run again with --resume to continue from the last checkpoint.",
              file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - known user-facing errors become one line
        from bahdanau_keras.data import CorpusError
        from bahdanau_keras.train import TrainingError

        if isinstance(error, (CorpusError, TrainingError, ValueError, OSError)):
            print(f"bahdanau-keras: error: {error}", file=sys.stderr)
            return USAGE_ERROR
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
