"""Translate text with a trained model directory or an exported SavedModel.

`Translation.open(path)` accepts either: a model directory written by `train` (the in-memory
`TranslatorModule` is built from it) or a SavedModel written by `export` (loaded without this
package's classes). Both expose the same `translate`, `translate_beam` and `translate_sample`
functions, so the results are the same.
"""

import collections
import concurrent.futures
import contextlib
import functools
import os
import sys
import time

import numpy as np

from bahdanau_keras.model_dir import CONFIG_FILE, ModelDir, TrainingError, first_line


def read_sentences(arguments, input_path=None, stdin=None):
    """Sentences from the command line, from `input_path` (one a line) or from standard input.
    Undecodable bytes are replaced, never fatal."""
    if arguments and input_path:
        raise ValueError("give sentences as arguments or with --input, not both")
    if arguments:
        return list(arguments)
    if input_path:
        if not os.path.isfile(input_path):
            raise FileNotFoundError(f"{input_path}: no such file")
        with open(input_path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\r\n") for line in f]
    stdin = stdin or sys.stdin
    if stdin is None or stdin.isatty():
        raise ValueError("no sentences: give them as arguments, with --input, or on stdin")
    data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    return data.splitlines()


# Grappler, TensorFlow's graph optimiser, rewrites a search's graph the first time the model is
# called: 0.3-0.5 s of greedy search's first call, 0.4-0.6 s of beam search's, which a few
# sentences never win back (docs/benchmarks.md, "The one-sentence start-up"). A process that
# translates at most this many sentences skips it; the translations are the same.
QUICK_START_SENTENCES = 64


@contextlib.contextmanager
def quick_start(sentence_count):
    """A context in which this process translates `sentence_count` sentences: for at most
    `QUICK_START_SENTENCES`, TensorFlow's graph optimisation is off inside it (for every
    thread of the process: enter it before the model is loaded, in a process of its own such
    as the command line's). Yields whether it turned the optimisation off."""
    if sentence_count > QUICK_START_SENTENCES:
        yield False
        return
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield True
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


# Sentences a call to the model: an exported model sorts them by length and decodes them in
# batches of its own (`TranslatorModule`), faster the more it can sort.
DEFAULT_BATCH_SIZE = 256

# Calls to the model at once, at most, in a process sized by `configure_decoding_threads`.
MAX_WORKERS = 4


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1. Received: {value!r}")


def decoding_workers(workers=None):
    """`(workers, threads_per_op)` of `configure_decoding_threads`: `workers` calls at once
    (by default one per core, at most `MAX_WORKERS`) and `cores // workers` threads an op."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    workers = workers or max(1, min(cores, MAX_WORKERS))
    return workers, max(1, cores // workers)


def configure_decoding_threads(workers=None):
    """Size this process's TensorFlow thread pools for translating many sentences, and return
    how many calls to the model to make at once (`workers` of `Translation.translate_iter`).

    A search's step is a chain of small operations, most of them waiting for the one before:
    split over the cores, each op loses more in synchronisation than it gains, and the cores
    wait (docs/benchmarks.md, "a fourth session: several calls at once, one thread per op").
    Here `workers` calls (by default one per core, at most `MAX_WORKERS`, a cap not measured
    above 2 cores) run side by side, and each op gets `cores // workers` threads. On the
    2-core machines of docs/benchmarks.md, with 2 calls of 64 or 256 sentences at once, the
    shipped SavedModel's steady rate was 1.2-1.7x (greedy) and 1.4-1.8x (beam 4) that of one
    call at a time with TensorFlow's default pools (`bench serve`, four runs). The
    translations are the same.

    The pools belong to the process: call this before TensorFlow runs any op, in a process of
    its own (the command line does, for more than `QUICK_START_SENTENCES` sentences). Where
    they are not this function's to choose it changes nothing and returns 1:
    `TF_NUM_INTRAOP_THREADS` or `TF_NUM_INTEROP_THREADS` is set, there is a GPU, or
    TensorFlow has started with other pools.
    """
    import tensorflow as tf

    if workers is not None:
        _check_positive_int("workers", workers)
    if (os.environ.get("TF_NUM_INTRAOP_THREADS") or os.environ.get("TF_NUM_INTEROP_THREADS")
            or tf.config.list_physical_devices("GPU")):
        return 1
    workers, threads_per_op = decoding_workers(workers)
    if workers == 1:
        return 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads_per_op)
        tf.config.threading.set_inter_op_parallelism_threads(workers)
    except RuntimeError:  # TensorFlow has started: its pools stay as they are
        return 1
    return workers


class Translation:
    """Translate lists of Python strings in batches; results are plain Python values."""

    def __init__(self, module, path):
        self.module = module
        self.path = path

    @classmethod
    def open(cls, path):
        """Open a model directory (with `config.json`) or an exported SavedModel."""

        if not os.path.isdir(path):
            raise TrainingError(f"{path}: no such model directory")
        if os.path.exists(os.path.join(path, CONFIG_FILE)):
            from bahdanau_keras.export import TranslatorModule

            trained = ModelDir(path).load()  # a TrainingError names what is unreadable
            module = TranslatorModule(
                trained.translator, trained.source_tokenizer, trained.target_tokenizer)
            return cls(module, path)
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            from bahdanau_keras.export import load

            try:
                module = load(path)
            except Exception as error:  # noqa: BLE001 - any failure: the files are unusable
                raise TrainingError(f"{path}: corrupt SavedModel ({first_line(error)})"
                                    ) from None
            missing = [name for name in ("translate", "translate_beam", "translate_sample")
                       if not hasattr(module, name)]
            if missing:
                raise TrainingError(f"{path}: not a translator SavedModel (no {missing[0]})")
            return cls(module, path)
        raise TrainingError(
            f"{path}: neither a model directory (no {CONFIG_FILE}) nor a SavedModel "
            "(no saved_model.pb)")

    def translate(self, sentences, beam_width=1, alpha=0.6, beta=0.0, temperature=0.0,
                  seed=0, batch_size=DEFAULT_BATCH_SIZE, workers=1):
        """Translate `sentences`; one dict per sentence with `translation`, `score`,
        `attention` (`[tgt_len, src_len]`, real tokens only), `source_tokens`,
        `target_tokens`, and with beam search `nbest`: `[(translation, score), ...]`.
        The options are those of `translate_iter`."""
        return list(self.translate_iter(sentences, beam_width, alpha, beta, temperature, seed,
                                        batch_size, workers=workers))

    def translate_iter(self, sentences, beam_width=1, alpha=0.6, beta=0.0, temperature=0.0,
                       seed=0, batch_size=DEFAULT_BATCH_SIZE, progress=None, workers=1):
        """The results of `translate`, one at a time and in order, `batch_size` sentences a
        call to the model: the first ones arrive before the last are translated.

        Args:
            sentences: Python strings.
            beam_width: 1 for greedy search, more for beam search with the GNMT length and
                coverage penalties `alpha` and `beta`.
            temperature: Above 0, sample from `softmax(logits / temperature)` with `seed`
                (the same seed, sentences and `batch_size` give the same samples).
            batch_size: Sentences a call. The model decodes a call's sentences sorted by
                length (an exported model in batches of its own, `TranslatorModule`); the
                results do not depend on it, except for sampling.
            progress: Called as `progress(done, total)` after each call, if given.
            workers: Calls to the model at once (in threads of this process): faster where
                the process's thread pools give each op few threads
                (`configure_decoding_threads`). A search's sentences are then shared out,
                `min(batch_size, ceil(len(sentences) / workers))` a call, so that up to
                `workers` calls have some; sampling keeps its calls of `batch_size`, so its
                samples stay the same.

        Bad `batch_size` or `workers` values raise here, before any result.
        """
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("workers", workers)
        sentences = list(sentences)
        if workers > 1 and temperature <= 0:
            batch_size = max(1, min(batch_size, -(-len(sentences) // workers)))
        calls = (functools.partial(self._translate_batch, sentences, begin, batch_size,
                                   beam_width, alpha, beta, temperature, seed)
                 for begin in range(0, len(sentences), batch_size))
        return self._results(calls, len(sentences), workers, progress)

    @staticmethod
    def _results(calls, total, workers, progress):
        done = 0
        for results in _in_order(calls, workers):
            done += len(results)
            if progress is not None:
                progress(done, total)
            yield from results

    def _translate_batch(self, sentences, begin, batch_size, beam_width, alpha, beta,
                         temperature, seed):
        """The results of `sentences[begin:begin + batch_size]`, one call to the model."""
        import tensorflow as tf

        chosen = list(range(begin, min(begin + batch_size, len(sentences))))
        if temperature <= 0:
            # Sentences of similar length in one batch: less padding, and the decoding loop
            # ends sooner. The results do not depend on the batch (tested).
            chosen.sort(key=lambda i: len(sentences[i]))
        batch = tf.constant([sentences[i] for i in chosen], tf.string)
        if temperature > 0:
            out = self.module.translate_sample(
                batch, tf.constant(temperature, tf.float32),
                tf.constant([seed, begin], tf.int64))
        elif beam_width > 1:
            out = self.module.translate_beam(
                batch, tf.constant(beam_width, tf.int32), tf.constant(alpha, tf.float32),
                tf.constant(beta, tf.float32))
        else:
            out = self.module.translate(batch)
        results = dict(zip(chosen, _to_python(out)))
        return [results[i] for i in sorted(results)]


def _in_order(calls, workers):
    """What each of `calls` (functions of no argument) returns, in their order, with up to
    `workers` of them running at once in threads (in this thread when `workers` is 1), and
    one more queued so that a thread that finishes starts the next at once. An exception is
    raised here, in the order of the calls; the calls not started yet are then dropped."""
    if workers <= 1:
        for call in calls:
            yield call()
        return
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="translate")
    pending = collections.deque()
    try:
        for call in calls:
            pending.append(pool.submit(call))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        # Left early (an error, a closed pipe, a generator closed or dropped): the queued calls
        # never start, and this waits for the running ones (at most `workers` calls) to end.
        pool.shutdown(wait=True, cancel_futures=True)


class ProgressBar:
    """`progress(done, total)` for `Translation.translate_iter`: a bar, the sentences done
    and their rate, redrawn on one line of `stream` (a terminal), ended with a newline."""

    def __init__(self, stream, width=30):
        self.stream = stream
        self.width = width
        self.started = time.perf_counter()

    def __call__(self, done, total):
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        filled = self.width * done // max(total, 1)
        self.stream.write(f"\r[{'=' * filled}{' ' * (self.width - filled)}] {done}/{total} "
                          f"sentences, {rate:.0f}/s" + ("\n" if done >= total else ""))
        self.stream.flush()


def _to_python(out):
    out = {key: value.numpy() for key, value in out.items()}
    results = []
    for i, text in enumerate(out["translation"]):
        source_tokens = [t.decode("utf-8", "replace") for t in out["source_tokens"][i] if t]
        target_tokens = [t.decode("utf-8", "replace") for t in out["target_tokens"][i] if t]
        attention = np.asarray(out["attention"][i])[: len(target_tokens), : len(source_tokens)]
        result = {"translation": text.decode("utf-8", "replace"),
                  "score": float(out["score"][i]),
                  "source_tokens": source_tokens, "target_tokens": target_tokens,
                  "attention": attention.tolist()}
        if "nbest_translations" in out:
            # Entries scored -inf do not exist (fewer hypotheses than the beam width).
            result["nbest"] = [(t.decode("utf-8", "replace"), float(s)) for t, s in
                               zip(out["nbest_translations"][i], out["nbest_scores"][i])
                               if np.isfinite(s)]
        results.append(result)
    return results
