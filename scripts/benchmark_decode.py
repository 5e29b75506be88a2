"""Decoding throughput of the in-memory `TranslatorModule` (raw strings in, strings out).

A `Translator` of the shipped size (8000/8000 vocabularies, default layer sizes) with random
weights decodes a batch of random ~10-subword sentences, greedy and with beam search. Random
weights never choose the end token early, so every sentence runs to its length limit
(2 × source length + 10): a worst case for the number of steps.

    python scripts/benchmark_decode.py --vocab-from saved_models/en-fr
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-from", default=None,
                        help="a model directory with source.model and target.model (default: "
                             "vocabularies learnt from the sample corpus)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=10, help="subwords per sentence")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from bahdanau_keras import data
    from bahdanau_keras.export import TranslatorModule
    from bahdanau_keras.model import Translator
    from bahdanau_keras.text import SubwordTokenizer, normalize_python, train_sentencepiece

    # First: a global seed frees the SentencePiece resources of tokenizers created before it.
    keras.utils.set_random_seed(0)
    if args.vocab_from:
        source = SubwordTokenizer.load(os.path.join(args.vocab_from, "source.model"))
        target = SubwordTokenizer.load(os.path.join(args.vocab_from, "target.model"))
    else:
        pairs = data.read_corpus(data.SAMPLE_CORPUS).pairs
        source = SubwordTokenizer(train_sentencepiece(normalize_python(s for s, _ in pairs)))
        target = SubwordTokenizer(train_sentencepiece(normalize_python(t for _, t in pairs)))
    translator = Translator(source.vocab_size, target.vocab_size)
    module = TranslatorModule(translator, source, target)

    # Random sentences of word-start subwords.
    rng = np.random.default_rng(0)
    pieces = source.id_to_piece(tf.range(source.vocab_size)).numpy()
    words = [i for i, p in enumerate(pieces) if p.startswith("\u2581".encode()) and len(p) > 3]
    ids = rng.choice(words, size=(args.batch, args.tokens))
    texts = source.sentencepiece.detokenize(tf.constant(ids, tf.int32))
    lengths = source.tokenize(texts).row_lengths().numpy()
    print(f"Translator({source.vocab_size}, {target.vocab_size}), "
          f"{translator.count_params():,} parameters; batch {args.batch}, "
          f"{lengths.mean():.1f} subwords a sentence; {os.cpu_count()} CPUs")

    runs = {
        "greedy": lambda: module.translate(texts),
        f"beam {args.beam}": lambda: module.translate_beam(
            texts, tf.constant(args.beam), tf.constant(0.6), tf.constant(0.0)),
    }
    for name, run in runs.items():
        out = run()  # trace
        steps = out["target_tokens"].shape[1]
        times, cpu_times = [], []
        for _ in range(args.repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            run()["translation"].numpy()
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
        best, median = min(times), statistics.median(times)
        # CPU seconds a batch: what the throughput would be on an otherwise idle machine
        # with perfect use of its cores (a load from other processes slows the wall clock).
        cpu = statistics.median(cpu_times)
        print(f"{name:>8}: {args.batch / best:6.0f} sentences/s best, "
              f"{args.batch / median:6.0f} median ({steps} steps, {args.repeats} runs); "
              f"{args.batch / cpu:6.0f} sentences per CPU-second", flush=True)


if __name__ == "__main__":
    main()
