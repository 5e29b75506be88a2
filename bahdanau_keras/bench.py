"""Training and decoding throughput, measured on the peers' token-id files.

The input is an `.npz` written by `../shared/peers/make_ids.py`: int32 `src` `[N, Ts]` and
`tgt` `[N, Tt]`, 0-padded, `START ... END` (ids 1 and 2). The project's benchmark and the
peers read the same file, so their `target_tokens_per_s` count the same tokens: the real
(non-pad) target tokens after the start token, trained per second, after warm-up steps.

    python -m bahdanau_keras.bench train --ids fra30k.npz --units 512 --embedding-dim 256 \\
        --batch-size 64 --steps 200
    python -m bahdanau_keras.bench decode --ids fra30k.npz --batch-size 64 --beam 4
    python -m bahdanau_keras.bench compare --ids fra30k.npz fraall.npz \\
        --torch-python /path/to/venv-with-torch/bin/python

`train` runs the project's real training step (`train.make_train_step`, the code path of
`bahdanau-keras train`) on the project's own length-bucketed batches (`data.batches`). It
prints the peak memory, the model FLOPs per second (counted analytically, see `step_flops`),
the rate of a large fp32 matrix product (measured right after, in a fresh process with
TensorFlow's default threads, so on every core), and last
`target_tokens_per_s X`.

FLOPs of one training step (one multiply-add = 2 FLOPs; forward + backward = 3 × forward):

    with E = embedding_dim, H = encoder units per direction, C = 2H (annotation size),
    D = decoder units, A = attention units, R = readout size (= E), P = 2 if maxout else 1,
    V = target vocabulary, and, per sentence, S = real source tokens, T = real target tokens
    after the start token (the decoder steps that are trained):

    forward = Σ_sentences [ 2 · 2·3H·(E + H) · S      encoder GRU, both directions
                          + 2·H·D                      s_0 = tanh(W_s ←h_1)
                          + 2·C·A · S                  keys U_a h_j
                          + T · ( 2·D·A                W_a s_{i-1}
                                + 2·S·(A + C)          v_a^T tanh(...) and Σ_j α_ij h_j
                                + 2·3D·(E + C + D)     decoder GRU: inputs, context, state
                                + 2·P·R·(D + E + C)    deep output t̃_i
                                + 2·R·V ) ]            vocabulary projection W_o t_i
    step    = 3 · forward

This counts the work the model needs ("model FLOPs", real tokens only); the `executed`
figure counts the same formula on the padded batch shapes the step actually computes
(the encoder and the decoder loop also run over padding; the deep output and the
vocabulary projection do not, they run on the real tokens only).

Decoding (`decode`, `serve`) counts the forward formula above per sentence (`decode_flops`),
with S = the source tokens the encoder reads (its end token included) and T = the output
tokens of the translation (its end token included: one decoder step each). About 10 MFLOP per
output token at the shipped sizes, nearly all of it the GRU (2·3D·(E + C + D)), the deep output
and the vocabulary projection (2·R·V). Beam search of width K counts K hypotheses for each of
those T steps (K · T · per-token work, plus the encoder once): a lower bound of the search's
real work, which also runs the beam's other hypotheses until they end. Both print
`greedy_flops_vs_matmul` / `beam4_flops_vs_matmul`, that FLOP rate divided by the 2048³
product's, measured in the same run (`matmul_rate_in_fresh_process`; `decode` times the
product before and after its searches and divides by the faster, and reports the best of
`--passes` passes: on a shared machine a single short pass, or a product timed while the
machine is busy elsewhere, can be off by a third).

`step` times the decoder's step alone, in graph loops at a fixed number of rows (no sentence
ends, no encoder, nothing recorded): its six products, the searches' step, the greedy step
(with its `argmax` and log-probability, the token fed back), also compiled by XLA, and the
step of a beam of 4 (its top tokens, top-k and the parents' states); each with the same
model FLOP rate and ratio to the 2048³ product (`step_loops`). It is the ceiling a search at
that many rows can reach:

    python -m bahdanau_keras.bench step --model-dir runs/en-fr --rows 8 64 256

`serve` measures what users run: `bench sentences` writes held-out source sentences to a file
(the test split of a model's corpus: never commit its text), then

    python -m bahdanau_keras.bench sentences --model saved_models/en-fr --count 1500 \\
        --output /tmp/test1500.en
    python -m bahdanau_keras.bench serve --saved-model saved_models/en-fr \\
        --sentences /tmp/test1500.en [--model-dir runs/en-fr]

translates the file in fresh processes: one that imports only `tensorflow` and
`tensorflow_text`, loads the SavedModel with `tf.saved_model.load` and calls its `translate`
and `translate_beam` functions in batches in file order, as the SavedModel's README shows;
one that builds the in-memory `TranslatorModule` from a model directory and calls it the same
way; on a machine of more than one core, one more SavedModel process that calls it from one
thread per core with one thread an op, as `bahdanau-keras translate --input` runs
(`saved_model_workers`; `--workers N` to choose, 1 to leave it out); and `bahdanau-keras
translate --input` itself. `unpack` rebuilds a model directory from a
SavedModel written by `export` (its configuration, vocabularies and weights), for the
in-memory comparison of a model shipped only as a SavedModel.
"""

import argparse
import concurrent.futures
import os
import re
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PEERS = os.path.join(os.path.dirname(REPO), "shared", "peers")
RESULT_LINE = re.compile(r"^target_tokens_per_s\s+([0-9.eE+-]+)\s*$", re.MULTILINE)


# -- counting ---------------------------------------------------------------------------------


def read_ids(path):
    """The `src` and `tgt` arrays of a token-id `.npz`, checked."""
    with np.load(path) as ids:
        if "src" not in ids or "tgt" not in ids:
            raise ValueError(f"{path}: expected arrays `src` and `tgt`. Received: {list(ids)}")
        source, target = np.asarray(ids["src"], np.int32), np.asarray(ids["tgt"], np.int32)
    if source.ndim != 2 or target.ndim != 2 or len(source) != len(target) or not len(source):
        raise ValueError(f"{path}: `src` and `tgt` must be [N, len] with the same N > 0. "
                         f"Received: {source.shape}, {target.shape}")
    return source, target


def model_config_for(source, target, units=512, embedding_dim=256, **overrides):
    """The `ModelConfig` of the benchmark: encoder units = units / 2 per direction, attention
    units = units, vocabulary sizes = the largest id + 1."""
    from bahdanau_keras.model import ModelConfig

    return ModelConfig(
        source_vocab_size=int(source.max()) + 1, target_vocab_size=int(target.max()) + 1,
        embedding_dim=embedding_dim, encoder_units=max(units // 2, 1), decoder_units=units,
        attention_units=units, **overrides)


def forward_flops(config, source_lengths, target_lengths):
    """Forward FLOPs of a batch, from `ModelConfig` sizes and per-sentence lengths.

    `source_lengths[k]` is the number of source tokens the encoder reads for sentence `k`,
    `target_lengths[k]` the number of decoder steps (target tokens after the start token).
    Both are arrays (or scalars) that broadcast; the module docstring gives the formula.
    """
    E, H, D = config.embedding_dim, config.encoder_units, config.decoder_units
    A, V, C, R = config.attention_units, config.target_vocab_size, 2 * config.encoder_units, \
        config.embedding_dim
    P = 2 if config.maxout else 1
    S = np.asarray(source_lengths, np.float64)
    T = np.asarray(target_lengths, np.float64)
    encoder = 2 * 2 * 3 * H * (E + H) * S + 2 * H * D + 2 * C * A * S
    per_target_token = (2 * D * A + 2 * S * (A + C) + 2 * 3 * D * (E + C + D)
                        + 2 * P * R * (D + E + C) + 2 * R * V)
    return float(np.sum(encoder + T * per_target_token))


def decode_flops(config, source_lengths, output_lengths, beam_width=1):
    """Model FLOPs of decoding sentences, from `ModelConfig` sizes and per-sentence lengths.

    `source_lengths[k]` counts the source tokens the encoder reads for sentence `k` (its end
    token included), `output_lengths[k]` the tokens of its translation (its end token
    included): one decoder step each. The forward formula of the module docstring, the
    decoder's part counted `beam_width` times (every hypothesis of the beam takes each step).
    """
    source = np.asarray(source_lengths, np.float64)
    output = np.asarray(output_lengths, np.float64)
    encoder = forward_flops(config, source, 0)
    decoder = forward_flops(config, source, output) - encoder
    return encoder + beam_width * decoder


def step_flops(config, source, target):
    """`(model, executed)` FLOPs of one training step on padded int batches `[batch, len]`.

    `model` counts real tokens only; `executed` counts the padded shapes the step computes
    (the encoder over `src_len`, the decoder loop over `tgt_len - 1`, attention over
    `src_len`), with the deep output and vocabulary projection on real tokens, as the step
    runs them.
    """
    source, target = np.asarray(source), np.asarray(target)
    source_lengths = np.count_nonzero(source, axis=1)
    target_lengths = np.count_nonzero(target[:, 1:], axis=1)
    model = 3 * forward_flops(config, source_lengths, target_lengths)
    batch, src_len = source.shape
    steps = target.shape[1] - 1
    # Padded encoder and loop, plus the output layers on the real tokens only.
    E, D, C = config.embedding_dim, config.decoder_units, 2 * config.encoder_units
    P = 2 if config.maxout else 1
    output_layers = 2 * P * E * (D + E + C) + 2 * E * config.target_vocab_size
    padded = forward_flops(config, np.full(batch, src_len), np.full(batch, steps))
    executed = 3 * (padded - steps * batch * output_layers
                    + target_lengths.sum() * output_layers)
    return model, executed


def matmul_rate(size=2048, repeats=10):
    """FLOP/s of an fp32 `[size, size] x [size, size]` product, best of `repeats`."""
    import tensorflow as tf

    a = tf.random.stateless_normal([size, size], seed=[1, 2])
    b = tf.random.stateless_normal([size, size], seed=[3, 4])

    @tf.function
    def product(x, y):
        return tf.reduce_sum(tf.matmul(x, y))

    product(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best


def peak_rss_mb():
    """The process's resident-set high-water mark in MiB (Linux `ru_maxrss` is in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def make_strategy(name):
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"`strategy` must be one of {{'default', 'mirrored'}}. Received: {name!r}")


# -- train ------------------------------------------------------------------------------------


def configure_threads(args, training):
    """The thread pools: for `training`, `train.configure_threads` as `bahdanau-keras train`
    sets them; for decoding, TensorFlow's default as `bahdanau-keras translate` keeps it (beam
    search multiplies the rows of every product, which then gains from all cores), unless
    sizes are given. Returns a description for the output."""
    from bahdanau_keras import train

    if not training and not (args.intra_op_threads or args.inter_op_threads):
        return "threads: TensorFlow's default"
    intra, inter = train.configure_threads(args.intra_op_threads, args.inter_op_threads)
    return f"threads {intra or 'default'} intra-op, {inter or 'default'} inter-op"


def matmul_rate_in_fresh_process(size):
    """`matmul_rate(size)` in a new process with TensorFlow's default thread pools (every
    core for one product): the machine's large-product rate, whatever this process uses."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                        "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    process = subprocess.run(
        [sys.executable, "-c",
         f"from bahdanau_keras.bench import matmul_rate; print(matmul_rate({int(size)}))"],
        capture_output=True, text=True, env=env, timeout=600)
    if process.returncode:
        raise RuntimeError("the reference matrix product failed: "
                           + " | ".join(process.stderr.strip().splitlines()[-3:]))
    return float(process.stdout.strip().splitlines()[-1])


def kernels_in_use(translator):
    """Which of `bahdanau_keras.kernels` the translator's training step runs, in words."""
    from bahdanau_keras.kernels import bidirectional_gru, cross_entropy, decoder_loop, use_kernel

    chosen = [module.__name__.rsplit(".", 1)[-1] for module, layer in (
        (bidirectional_gru, translator.encoder), (decoder_loop, translator.decoder),
        (cross_entropy, translator))
        if use_kernel(translator.implementation, module.unsupported(layer), layer.name)]
    return "kernels: " + (", ".join(chosen) if chosen else "none, the reference")


def bench_train(args, out=print):
    """Time the project's training step on the `.npz`; returns a dict of the figures."""
    import keras
    import tensorflow as tf

    threads = configure_threads(args, training=True)

    from bahdanau_keras import data, train

    source_ids, target_ids = read_ids(args.ids)
    config = model_config_for(source_ids, target_ids, args.units, args.embedding_dim,
                              dropout=args.dropout)
    train_config = train.TrainConfig(
        batch_size=args.batch_size, label_smoothing=args.label_smoothing, seed=args.seed,
        mixed_precision=args.mixed_precision, jit_compile=args.jit_compile,
        implementation=args.implementation, loss_chunks=args.loss_chunks,
        loop_shards=args.loop_shards)
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.mixed_precision.set_dtype_policy(
            "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16")
    strategy = make_strategy(args.strategy)
    with strategy.scope():
        # The translator `bahdanau-keras train` builds (its implementation and speed options).
        translator = train.build_translator(config, train_config, strategy)
        optimizer = train.make_optimizer(train_config)
        optimizer.build(translator.trainable_variables)
    step = train.make_train_step(translator, optimizer, train_config.label_smoothing,
                                 strategy, train_config.jit_compile)
    source, target = data.load_ids(args.ids)
    batches = data.batches(source, target, args.batch_size, seed=args.seed, epochs=1 << 30)
    out(f"ids {args.ids}: {len(source_ids)} pairs, src {source_ids.shape}, "
        f"tgt {target_ids.shape}; vocab {config.source_vocab_size}/{config.target_vocab_size}")
    out(f"model: units {config.decoder_units} (encoder 2x{config.encoder_units}, attention "
        f"{config.attention_units}), embedding {config.embedding_dim}, "
        f"{translator.count_params():,} parameters; batch {args.batch_size}; "
        f"strategy {args.strategy} ({strategy.num_replicas_in_sync} replicas); "
        f"mixed precision {args.mixed_precision}; jit {args.jit_compile}; implementation "
        f"{args.implementation} ({kernels_in_use(translator)}); loss chunks "
        f"{translator.loss_chunks}; loop shards {translator.loop_shards}; {threads}")

    tokens = sentences = 0
    model_flops = executed_flops = loss_total = 0.0
    # An explicit iterator, dropped only after the clock stops: tearing down a tf.data iterator
    # that is still prefetching can take seconds, and must not count as training time.
    iterator = iter(batches)
    for index in range(args.warmup + args.steps):
        if index == args.warmup:
            started, cpu_started = time.perf_counter(), time.process_time()
        _, source_batch, target_batch = next(iterator)
        loss_sum, count = step(source_batch, target_batch)
        loss_sum, count = float(loss_sum), int(count)  # as in `train.train`, every step
        if index >= args.warmup:
            tokens += count
            sentences += int(source_batch.shape[0])
            loss_total += loss_sum
            model, executed = step_flops(config, source_batch.numpy(), target_batch.numpy())
            model_flops += model
            executed_flops += executed
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    del iterator
    matmul = matmul_rate_in_fresh_process(args.matmul_size)
    result = {
        "seconds": seconds, "cpu_seconds": cpu_seconds, "steps": args.steps,
        "sentences": sentences, "tokens": tokens,
        "loss": loss_total / max(tokens, 1), "peak_rss_mb": peak_rss_mb(),
        "model_flops_per_s": model_flops / seconds,
        "executed_flops_per_s": executed_flops / seconds,
        "matmul_flops_per_s": matmul, "target_tokens_per_s": tokens / seconds,
    }
    out(f"loss {result['loss']:.3f} steps {args.steps} warmup {args.warmup} seconds "
        f"{seconds:.2f} sentences {sentences} target_tokens {tokens}")
    out(f"sentences_per_s {sentences / seconds:.1f}")
    # CPU time of all the process's threads: less sensitive than wall time to other processes.
    out(f"cpu_seconds {cpu_seconds:.2f} (target tokens per CPU-second "
        f"{tokens / max(cpu_seconds, 1e-9):.1f})")
    out(f"peak_rss_mb {result['peak_rss_mb']:.0f}")
    out(f"model_gflop_per_s {model_flops / seconds / 1e9:.4g} "
        f"(executed, with padding: {executed_flops / seconds / 1e9:.4g})")
    out(f"matmul_{args.matmul_size}_gflop_per_s {matmul / 1e9:.4g} (fp32, a separate process "
        "with TensorFlow's default threads: all cores)")
    out(f"model_flops_vs_matmul {model_flops / seconds / matmul:.3g}")
    out(f"target_tokens_per_s {result['target_tokens_per_s']:.1f}")
    return result


# -- decode -----------------------------------------------------------------------------------


def _pad_rows(rows):
    width = max(len(r) for r in rows)
    out = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def untrained_translator(source_ids, target_ids, args):
    """`(translator, model_config)`: an untrained model of `args.units` and
    `args.embedding_dim`, with the vocabularies of a token-id file (`model_config_for`)."""
    from bahdanau_keras.model import Translator

    config = model_config_for(source_ids, target_ids, args.units, args.embedding_dim)
    return Translator.from_model_config(config), config


def decode_batches(args):
    """`(translator, model_config, [int32 [batch, src_len]], note)` for `bench decode`."""
    rng = np.random.default_rng(args.seed)
    if args.model_dir:
        import tensorflow as tf

        from bahdanau_keras import evaluate
        from bahdanau_keras.text import END_ID
        from bahdanau_keras.train import load_trained

        trained = load_trained(args.model_dir)
        corpus = args.data or trained.data.get("path")
        if not corpus:
            raise ValueError("--model-dir needs --data: the model does not name its corpus")
        sources, _ = evaluate.test_split(corpus, trained.train_config, "test")
        picked = rng.permutation(len(sources))[: args.sentences]
        pieces = trained.source_tokenizer.tokenize(tf.constant([sources[i] for i in picked]))
        rows = [list(r) + [END_ID] for r in pieces.numpy()]
        translator, config = trained.translator, trained.model_config
        note = f"{args.model_dir}, test split of {corpus}"
    else:
        source_ids, target_ids = read_ids(args.ids)
        translator, config = untrained_translator(source_ids, target_ids, args)
        picked = rng.permutation(len(source_ids))[: args.sentences]
        # The peers' source rows read `START x_1 .. x_n END`; they are fed as they are.
        rows = [r[r != 0] for r in source_ids[picked]]
        note = (f"{args.ids}, untrained weights (a sentence seldom ends before the length "
                "limit 2 * source length + 10)")
    rows.sort(key=len)  # batch sentences of similar length, as a server would
    batches = [_pad_rows(rows[i:i + args.batch_size])
               for i in range(0, len(rows), args.batch_size)]
    return translator, config, batches, note


def set_decoding_workers(workers):
    """Size this process's thread pools as `bahdanau-keras translate --input` does for
    `workers` calls at once (`translate.configure_decoding_threads`), or say why not."""
    from bahdanau_keras.translate import configure_decoding_threads

    if configure_decoding_threads(workers) != workers:
        raise RuntimeError(f"--workers {workers}: the thread pools could not be set "
                           "(TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS, or a GPU)")


def bench_decode(args, out=print):
    """Sentences per second of greedy and beam-search decoding at `--batch-size` (the best of
    `--passes` passes over the sentences, after a warm-up call), and the model FLOP rate
    (`decode_flops`) against the matrix-product rate measured before and after the searches
    (the faster of the two: a product timed while the machine is busy elsewhere would
    flatter the ratio)."""
    import tensorflow as tf

    from bahdanau_keras.decode import beam_search_decode, greedy_decode

    if args.workers > 1:
        if args.intra_op_threads or args.inter_op_threads:
            raise ValueError("--workers sizes the thread pools itself: leave out "
                             "--intra-op-threads and --inter-op-threads")
        set_decoding_workers(args.workers)
        threads = (f"{args.workers} batches at once, threads "
                   f"{tf.config.threading.get_intra_op_parallelism_threads()} intra-op, "
                   f"{tf.config.threading.get_inter_op_parallelism_threads()} inter-op "
                   "(as `bahdanau-keras translate --input`)")
    else:
        threads = configure_threads(args, training=False)
    translator, config, batches, note = decode_batches(args)
    spec = tf.TensorSpec([None, None], tf.int32)

    def outputs(result):
        return result["tokens"], result["lengths"]

    greedy = tf.function(lambda s: outputs(greedy_decode(translator, s)),
                         input_signature=[spec])
    beam = tf.function(lambda s: outputs(beam_search_decode(translator, s, args.beam)),
                       input_signature=[spec])
    out(f"decode: {note}; {sum(len(b) for b in batches)} sentences in batches of "
        f"{args.batch_size}; the best of {args.passes} passes; {threads}")
    matmul_before = matmul_rate_in_fresh_process(args.matmul_size)
    source_lengths = np.concatenate([np.count_nonzero(b, axis=1) for b in batches])
    searches = [("greedy", greedy, 1)]
    if args.beam > 1:
        searches.append((f"beam{args.beam}", beam, args.beam))
    pool = concurrent.futures.ThreadPoolExecutor(args.workers) if args.workers > 1 else None
    try:
        result = time_searches(searches, batches, pool, config, source_lengths, args, out)
    finally:
        if pool is not None:
            pool.shutdown()
    out(f"peak_rss_mb {peak_rss_mb():.0f}")
    matmul_after = matmul_rate_in_fresh_process(args.matmul_size)
    out(f"matmul_{args.matmul_size}_before_and_after {matmul_before / 1e9:.4g} "
        f"{matmul_after / 1e9:.4g} GFLOP/s (the faster is the ratios' denominator)")
    report_flop_rates(result, max(matmul_before, matmul_after), args.matmul_size, out)
    return result


def time_searches(searches, batches, pool, config, source_lengths, args, out=print):
    """`bench decode`'s timings: each search's passes over `batches`, one batch at a time or
    through `pool`; a dict of name -> sentences/s, output tokens and model FLOP rate."""
    result = {}
    for name, search, width in searches:
        search(batches[0])[0].numpy()  # trace and warm up
        seconds = []
        for _ in range(args.passes):
            started = time.perf_counter()
            if pool is None:
                lengths = [search(batch)[1] for batch in batches]
            else:  # `--workers` batches at once, in order
                lengths = list(pool.map(lambda batch, search=search: search(batch)[1], batches))
            lengths = np.concatenate([x.numpy() for x in lengths])  # the last batch has ended
            seconds.append(time.perf_counter() - started)
        best = min(seconds)
        flops = decode_flops(config, source_lengths, lengths, width)
        result[name] = {"sentences_per_s": len(lengths) / best,
                        "output_tokens": int(lengths.sum()), "model_flops_per_s": flops / best}
        out(f"{name}_sentences_per_s {len(lengths) / best:.1f} ({int(lengths.sum())} output "
            f"tokens, {flops / len(lengths) / 1e6:.1f} MFLOP a sentence; passes "
            + ", ".join(f"{len(lengths) / x:.0f}" for x in seconds) + " sentences/s)")
    return result


def step_model(args):
    """`(translator, model_config, note)` for `bench step`: a trained model directory, or an
    untrained model of the given sizes and the `.npz`'s vocabularies."""
    if args.model_dir:
        from bahdanau_keras.train import load_trained

        trained = load_trained(args.model_dir)
        return trained.translator, trained.model_config, args.model_dir
    translator, config = untrained_translator(*read_ids(args.ids), args)
    return translator, config, f"{args.ids}, untrained weights"


def step_loops(translator, rows, source_length, steps, seed=0):
    """The tf.functions that `bench step` times, each a `tf.while_loop` of `steps` decoding
    steps at a fixed number of `rows` (sentences) and source positions: a dict of name ->
    `(function, arguments, computed_rows)`, the last the rows its step computes.

    - `products`: the step's six products alone, with the weights `kernels.decoding` prepares
      (`[W_a, U_z, U_r]`, `[W_z; W_r; W, V_o]`, `[C_z; C_r; C, C_o]`, `U`, `U_o`, `W_o`), one
      chained to the next so that none is skipped;
    - `step`: the searches' step (`decode.step_function`: the fused step where it applies),
      from the encoder's outputs of random source sentences, fed a fixed token (`END_ID`)
      and no selection, so that a step need not wait for the previous one's logits;
    - `greedy`: that step and what greedy search adds to it every step, the most likely
      token that may be chosen (`argmax`) and its log-probability (`log_softmax`), the token
      fed to the next step;
    - `greedy_xla`: `greedy` compiled by XLA (`jit_compile=True`);
    - `beam4`: the step and what beam search of width 4 adds to it every step, without its
      penalties and records (`rows // 4` sentences, at least 1, of 4 hypotheses each): each
      hypothesis's 4 best tokens (`decode.top_tokens`), the 4 best of the 16 candidates of a
      sentence by log-probability, and the states of their parents gathered for the next step.
    """
    import tensorflow as tf

    from bahdanau_keras import decode
    from bahdanau_keras.kernels import decoding
    from bahdanau_keras.text import END_ID

    decoder = translator.decoder
    step = decode.step_function(decoder)
    vocab = decoder.vocab_size
    width = decode.padded_vocab_size(vocab)
    choosable = tf.pad(decode._forbidden_bias(vocab), [[0, width - vocab]])
    rng = np.random.default_rng(seed)
    source = rng.integers(3, translator.encoder.vocab_size, size=(rows, source_length))
    source[:, -1] = END_ID
    annotations, mask, state, keys = decode.encode(translator, tf.constant(source, tf.int32))
    first = tf.fill([rows], END_ID)

    def greedy(annotations, mask, state, keys):
        sentences = step.prepare(annotations, mask, keys)

        def body(i, previous, state, total):
            logits, state, _ = step(previous, state, sentences)
            log_probs = tf.nn.log_softmax(logits)
            chosen = tf.argmax(logits + choosable, axis=1, output_type=tf.int32)
            return i + 1, chosen, state, total + tf.gather(log_probs, chosen, batch_dims=1)

        return tf.while_loop(lambda i, *_: i < steps, body,
                             (0, first, state, tf.zeros([rows])))[3]

    def step_only(annotations, mask, state, keys):
        sentences = step.prepare(annotations, mask, keys)

        def body(i, state, total):
            logits, state, _ = step(first, state, sentences)
            return i + 1, state, total + logits[:, 0]

        return tf.while_loop(lambda i, *_: i < steps, body, (0, state, tf.zeros([rows])))[2]

    beam = 4
    count = max(rows // beam, 1)  # sentences of the beam loop

    def beam_search(annotations, mask, state, keys):
        sentences = step.prepare(annotations[:count], mask[:count], keys[:count])
        units = state.shape[-1]

        def body(i, previous, state, log_probs):
            logits, new_state, _ = step(previous, state, sentences)
            top_logits, top_ids, log_normalizer = decode.top_tokens(logits, beam, vocab)
            candidates = tf.reshape(
                log_probs[:, :, None]
                + tf.reshape(top_logits - log_normalizer[:, None], [count, beam, beam]),
                [count, beam * beam])
            log_probs, best = tf.math.top_k(candidates, k=beam)
            chosen = tf.gather(tf.reshape(top_ids, [count, beam * beam]), best, batch_dims=1)
            state = tf.gather(tf.reshape(new_state, [count, beam, units]), best // beam,
                              batch_dims=1)
            return i + 1, tf.reshape(chosen, [-1]), tf.reshape(state, [-1, units]), log_probs

        start = (0, tf.fill([count * beam], END_ID), tf.repeat(state[:count], beam, axis=0),
                 tf.zeros([count, beam]))
        return tf.while_loop(lambda i, *_: i < steps, body, start)[3]

    arguments = (annotations, mask, state, keys)
    loops = {"step": (tf.function(step_only), arguments, rows),
             "greedy": (tf.function(greedy), arguments, rows),
             "greedy_xla": (tf.function(greedy, jit_compile=True), arguments, rows),
             "beam4": (tf.function(beam_search), arguments, count * beam)}
    if isinstance(step, decoding.DecodingStep):
        kernels = [step.state_kernel, step.input_kernel, step.context_kernel,
                   step.candidate_kernel, step.readout_state_kernel, step.output_kernel]
        inputs = [tf.random.stateless_normal([rows, k.shape[0]], seed=[seed, j])
                  for j, k in enumerate(kernels)]

        def products(*inputs):
            def body(i, carry):
                total = carry
                for x, kernel in zip(inputs, kernels):
                    total += 1e-9 * tf.reduce_sum(tf.matmul(x + carry, kernel)[:, :1])
                return i + 1, total

            return tf.while_loop(lambda i, *_: i < steps, body, (0, tf.constant(0.0)))[1]

        loops = {"products": (tf.function(products), tuple(inputs), rows), **loops}
    return loops


def bench_step(args, out=print):
    """The decoding step alone, at fixed rows: how near the 2048³ product's rate a search can
    come (`step_loops` says what is timed). Each loop is timed `--passes` times, the loops
    taking turns, and the best is reported with its FLOP rate: the model FLOPs of the
    decoder's step (`forward_flops`, one output token per row), whatever the loop computes,
    so that the figures compare times."""
    threads = configure_threads(args, training=False)
    translator, config, note = step_model(args)
    out(f"step: {note}; rows {' '.join(map(str, args.rows))}, {args.source_length} source "
        f"positions, {args.steps} steps a loop, the best of {args.passes} passes; {threads}")
    matmul_before = matmul_rate_in_fresh_process(args.matmul_size)
    per_row = (forward_flops(config, args.source_length, 1)
               - forward_flops(config, args.source_length, 0))
    result = {}
    for rows in args.rows:
        loops = step_loops(translator, rows, args.source_length, args.steps, args.seed)
        first_call = {}
        for name, (function, arguments, _) in loops.items():
            started = time.perf_counter()
            function(*arguments).numpy()  # trace (and compile) and warm up
            first_call[name] = time.perf_counter() - started
        seconds = {name: [] for name in loops}
        for _ in range(args.passes):
            for name, (function, arguments, _) in loops.items():
                started = time.perf_counter()
                function(*arguments).numpy()
                seconds[name].append((time.perf_counter() - started) / args.steps)
        for name, (_, _, computed) in loops.items():
            best = min(seconds[name])
            result[rows, name] = {"ms_per_step": best * 1e3,
                                  "model_flops_per_s": computed * per_row / best,
                                  "first_call_s": first_call[name]}
            out(f"rows {rows} {name}: {best * 1e3:.3f} ms a step, "
                f"{computed * per_row / best / 1e9:.4g} GFLOP/s (first call "
                f"{first_call[name]:.2f} s)")
    matmul_after = matmul_rate_in_fresh_process(args.matmul_size)
    matmul = max(matmul_before, matmul_after)
    out(f"matmul_{args.matmul_size}_before_and_after {matmul_before / 1e9:.4g} "
        f"{matmul_after / 1e9:.4g} GFLOP/s (the faster is the ratios' denominator)")
    for (rows, name), figures in result.items():
        figures["flops_vs_matmul"] = figures["model_flops_per_s"] / matmul
        out(f"step_rows{rows}_{name}_flops_vs_matmul {figures['flops_vs_matmul']:.3g}")
    return result


def report_flop_rates(result, matmul, matmul_size, out=print):
    """Print each search's model FLOP rate and its ratio to the matrix product's rate."""
    out(f"matmul_{matmul_size}_gflop_per_s {matmul / 1e9:.4g} (fp32, a separate process "
        "with TensorFlow's default threads: all cores)")
    for name, figures in result.items():
        rate = figures["model_flops_per_s"]
        out(f"{name}_model_gflop_per_s {rate / 1e9:.4g}")
        out(f"{name}_flops_vs_matmul {rate / matmul:.3g}")


# -- serve ------------------------------------------------------------------------------------


def read_model_configuration(path):
    """`(ModelConfig, TrainConfig, data)` of a model directory, or of a SavedModel written by
    `export` (from its `assets/config.json`)."""
    from bahdanau_keras.model_dir import CONFIG_FILE, ModelDir

    for directory in (path, os.path.join(path, "assets")):
        if os.path.exists(os.path.join(directory, CONFIG_FILE)):
            return ModelDir(directory).read_config()
    raise ValueError(f"{path}: expected a model directory ({CONFIG_FILE}) or a SavedModel "
                     f"written by `bahdanau-keras export` (assets/{CONFIG_FILE}). Received a "
                     f"{'directory' if os.path.isdir(path) else 'path'} without either")


def write_sentences(model, output, count, corpus=None, split="test"):
    """Write the first `count` source sentences of a split of a model's corpus to `output`,
    one a line (the split exactly as training made it). Returns how many were written."""
    from bahdanau_keras import evaluate

    _, train_config, data = read_model_configuration(model)
    corpus = corpus or data.get("path")
    if not corpus:
        raise ValueError(f"{model} does not name its corpus: give it with --data")
    sources, _ = evaluate.test_split(corpus, train_config, split)
    if not sources:
        raise ValueError(f"{corpus}: the {split} split is empty")
    chosen = sources[:count]
    with open(output, "w", encoding="utf-8") as f:
        f.write("".join(sentence + "\n" for sentence in chosen))
    return len(chosen)


def _sentencepiece_models(saved_model):
    """The serialised source and target SentencePiece models inside a SavedModel written by
    `export`: the `model` attribute of the op that creates each tokenizer's resource."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0]
    nodes = graph.object_graph_def.nodes
    functions = {f.signature.name: f for f in graph.graph_def.library.function}

    def child(node_id, name):
        for reference in nodes[node_id].children:
            if reference.local_name == name:
                return reference.node_id
        raise ValueError(f"{saved_model}: not a translator written by `bahdanau-keras "
                         f"export` (no {name!r} in its object graph)")

    models = []
    for tokenizer in ("source_tokenizer", "target_tokenizer"):
        resource = child(child(child(0, tokenizer), "sentencepiece"), "_model_resource")
        creator = nodes[child(resource, "_create_resource")].function.concrete_functions[0]
        found = [node.attr["model"].s for node in functions[creator].node_def
                 if node.op == "SentencepieceOp"]
        if len(found) != 1 or not found[0]:
            raise ValueError(f"{saved_model}: no SentencePiece model found for {tokenizer}")
        models.append(found[0])
    return models


def unpack_saved_model(saved_model, output):
    """Rebuild a model directory at `output` from a SavedModel written by `export`: its
    `config.json` (and `history.json`) from the assets, the vocabularies from the graph and the
    weights (as `best/`) from its variables. `load_trained(output)` then gives the in-memory
    `Translator` of the SavedModel, weight for weight."""
    import shutil

    import tensorflow as tf

    from bahdanau_keras.model import Translator
    from bahdanau_keras.model_dir import HISTORY_FILE, ModelDir
    from bahdanau_keras.text import SubwordTokenizer

    model_config, train_config, data = read_model_configuration(saved_model)
    if not os.path.exists(os.path.join(saved_model, "saved_model.pb")):
        raise ValueError(f"{saved_model}: not a SavedModel (no saved_model.pb)")
    directory = ModelDir(output)
    if directory.exists():
        raise ValueError(f"{output}: already holds a model; choose another --output")
    source_model, target_model = _sentencepiece_models(saved_model)
    translator = Translator.from_model_config(model_config)
    # The SavedModel's root holds the translator as `translator`; every weight must be found.
    tf.train.Checkpoint(translator=translator).read(
        os.path.join(saved_model, "variables", "variables")).assert_existing_objects_matched()
    os.makedirs(output, exist_ok=True)
    directory.write_vocabularies(SubwordTokenizer(source_model), SubwordTokenizer(target_model))
    directory.save(directory.best_manager(translator), 1)
    history = os.path.join(saved_model, "assets", HISTORY_FILE)
    if os.path.exists(history):
        shutil.copy(history, directory.file(HISTORY_FILE))
    directory.write_config(model_config, train_config, data)  # last: a complete directory
    return output


def read_sentence_file(path):
    """The lines of a UTF-8 file, without their line endings (undecodable bytes replaced)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8", errors="replace") as f:
        sentences = [line.rstrip("\r\n") for line in f]
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    return sentences


def serve_worker(args, out=print):
    """One fresh-process measurement of `bench serve`: import, load, translate the file in
    batches in file order (the first pass from a cold start, then `--passes` more), and print
    the timings as one JSON line. `--kind saved_model` loads the SavedModel as its README
    shows, with `tensorflow` and `tensorflow_text` only; `--kind in_memory` builds the
    `TranslatorModule` from a model directory."""
    import json

    spawned = args.spawned
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece and normalisation ops)

    imported = time.time()
    if args.workers > 1:
        set_decoding_workers(args.workers)  # before any op: a process setting, not the model's
    if args.kind == "saved_model":
        module = tf.saved_model.load(args.path)
    else:
        from bahdanau_keras.export import TranslatorModule
        from bahdanau_keras.train import load_trained

        trained = load_trained(args.path)
        module = TranslatorModule(trained.translator, trained.source_tokenizer,
                                  trained.target_tokenizer)
    loaded = time.time()
    if args.beam > 1:
        width, alpha, beta = (tf.constant(args.beam), tf.constant(0.6, tf.float32),
                              tf.constant(0.0, tf.float32))

        def translate(texts):
            return module.translate_beam(texts, width, alpha, beta)
    else:
        translate = module.translate
    sentences = read_sentence_file(args.sentences)
    batches = [sentences[i:i + args.batch_size]
               for i in range(0, len(sentences), args.batch_size)]

    def translate_batch(batch):
        result = translate(tf.constant(batch, tf.string))
        result["translation"].numpy()  # what a user reads
        return np.stack([np.count_nonzero(result[name].numpy() != b"", axis=1)
                         for name in ("source_tokens", "target_tokens")], axis=1)

    pool = None
    if args.workers > 1:  # `--workers` calls at once, the results in order
        pool = concurrent.futures.ThreadPoolExecutor(args.workers)

    def translate_all(batches):
        if pool is None:
            return [translate_batch(batch) for batch in batches]
        return list(pool.map(translate_batch, batches))

    translate_all(batches[:1])
    first = time.time()
    translate_all(batches[1:])
    cold_end = time.time()
    passes = []
    for _ in range(args.passes):
        started = time.perf_counter()
        lengths = translate_all(batches)
        passes.append(time.perf_counter() - started)
    if pool is not None:
        pool.shutdown()
    lengths = np.concatenate(lengths)
    out(json.dumps({
        "sentences": len(sentences), "import_s": imported - spawned,
        "load_s": loaded - imported, "first_translation_s": first - spawned,
        "cold_pass_end_s": cold_end - spawned, "steady_pass_s": passes,
        "source_lengths": lengths[:, 0].tolist(), "output_lengths": lengths[:, 1].tolist(),
        "peak_rss_mb": peak_rss_mb()}))


def _package_env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_serve_worker(kind, path, args, beam, workers=1):
    """`serve_worker` in a fresh process; returns its figures."""
    import json

    command = [sys.executable, "-m", "bahdanau_keras.bench", "serve-worker", "--kind", kind,
               "--path", path, "--sentences", args.sentences, "--batch-size",
               str(args.batch_size), "--beam", str(beam), "--passes", str(args.passes),
               "--workers", str(workers)]
    spawned = time.time()
    process = subprocess.run(command + ["--spawned", repr(spawned)], capture_output=True,
                             text=True, env=_package_env(), timeout=3600)
    if process.returncode:
        raise RuntimeError(f"the {kind} measurement failed (exit {process.returncode}): "
                           + " | ".join(process.stderr.strip().splitlines()[-3:]))
    return json.loads(process.stdout.strip().splitlines()[-1])


def run_cli(saved_model, sentences, beam):
    """Seconds `bahdanau-keras translate --input` takes from its start to its end."""
    command = [sys.executable, "-m", "bahdanau_keras", "translate", "--model-dir", saved_model,
               "--input", sentences] + (["--beam", str(beam)] if beam > 1 else [])
    started = time.perf_counter()
    process = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=_package_env(), timeout=3600)
    seconds = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"bahdanau-keras translate failed (exit {process.returncode}): "
                           + " | ".join(process.stderr.strip().splitlines()[-3:]))
    return seconds


def bench_serve(args, out=print):
    """The user's path: the SavedModel and the in-memory model in fresh processes, and the
    command line, on a file of raw sentences; greedy and beam search. Returns the figures."""
    from bahdanau_keras.translate import decoding_workers

    model_config, _, _ = read_model_configuration(args.saved_model)
    count = len(read_sentence_file(args.sentences))
    paths = [("saved_model", args.saved_model, 1)]
    if args.model_dir:
        paths.append(("in_memory", args.model_dir, 1))
    workers, threads_per_op = decoding_workers(args.workers or None)
    if workers > 1:
        paths.append(("saved_model_workers", args.saved_model, workers))
    out(f"serve: {count} sentences from {args.sentences}, batches of {args.batch_size} in file "
        f"order; SavedModel {args.saved_model}; model directory {args.model_dir or '-'}; "
        f"{args.passes} steady passes a process, best of {args.repeats} processes")
    if workers > 1:
        out(f"saved_model_workers: the SavedModel with {workers} calls at once and "
            f"{threads_per_op} thread(s) an op, as `bahdanau-keras translate "
            "--input` runs it (`configure_decoding_threads`)")
    if not args.model_dir:
        out("in_memory: not measured: the in-memory comparison needs a model directory "
            "(--model-dir; `bench unpack` rebuilds one from a SavedModel)")
    searches = [("greedy", 1)] + ([(f"beam{args.beam}", args.beam)] if args.beam > 1 else [])
    runs = {(search, kind): [] for search, _ in searches for kind, _, _ in paths}
    cli_seconds = {search: [] for search, _ in searches}
    for _ in range(args.repeats):
        for search, beam in searches:  # every path and the command line, one after the other
            for kind, path, calls in paths:
                runs[search, kind].append(run_serve_worker(
                    "in_memory" if kind == "in_memory" else "saved_model", path, args, beam,
                    calls))
            if args.cli:
                cli_seconds[search].append(run_cli(args.saved_model, args.sentences, beam))
    matmul = matmul_rate_in_fresh_process(args.matmul_size)
    result = {}
    for search, beam in searches:
        out(f"# {search}")
        for kind, _, _ in paths:
            figures = summarize_serve_runs(runs[search, kind], model_config, beam)
            result[search, kind] = figures
            out(f"{kind}_{search}_sentences_per_s {figures['sentences_per_s']:.1f} (steady: the "
                f"best pass, {figures['pass_s']:.2f} s for {count} sentences)")
            out(f"{kind}_{search}_with_startup_sentences_per_s "
                f"{figures['with_startup_sentences_per_s']:.1f} (a fresh process: import "
                f"{figures['import_s']:.2f} s, load {figures['load_s']:.2f} s, all {count} "
                f"translated after {figures['cold_pass_end_s']:.2f} s)")
            out(f"{kind}_{search}_first_translation_s {figures['first_translation_s']:.2f}")
            out(f"{kind}_{search}_peak_rss_mb {figures['peak_rss_mb']:.0f}")
        saved = result[search, "saved_model"]
        if args.model_dir:
            memory = result[search, "in_memory"]
            out(f"saved_model_vs_in_memory_{search} "
                f"{saved['sentences_per_s'] / memory['sentences_per_s']:.3f} (steady rates)")
        if workers > 1:
            shared = result[search, "saved_model_workers"]
            if (runs[search, "saved_model_workers"][0]["output_lengths"]
                    != runs[search, "saved_model"][0]["output_lengths"]):
                raise RuntimeError(f"{search}: the SavedModel's translations differ with "
                                   f"{workers} calls at once (their lengths)")
            out(f"saved_model_workers_vs_saved_model_{search} "
                f"{shared['sentences_per_s'] / saved['sentences_per_s']:.3f} (steady rates)")
        if cli_seconds[search]:
            best = min(cli_seconds[search])
            reference = saved["import_s"] + saved["load_s"] + saved["pass_s"]
            result[search, "cli"] = {"seconds": best, "vs_saved_model": best / reference}
            out(f"cli_{search}_seconds {best:.2f} (`bahdanau-keras translate --input`, "
                f"{count} sentences; every run: "
                + ", ".join(f"{s:.2f}" for s in cli_seconds[search]) + ")")
            out(f"cli_vs_saved_model_{search} {best / reference:.3f} (the command's time / the "
                f"SavedModel's import, load and one steady pass, one call at a time: "
                f"{reference:.2f} s)")
            if workers > 1:  # the same path as the command's
                shared = result[search, "saved_model_workers"]
                reference = shared["import_s"] + shared["load_s"] + shared["pass_s"]
                result[search, "cli"]["vs_saved_model_workers"] = best / reference
                out(f"cli_vs_saved_model_workers_{search} {best / reference:.3f} (the same, "
                    f"{workers} calls at once: {reference:.2f} s)")
    rates = {search: result[search, "saved_model"] for search, _ in searches}
    if workers > 1:
        rates.update({f"{search}_workers": result[search, "saved_model_workers"]
                      for search, _ in searches})
    report_flop_rates(rates, matmul, args.matmul_size, out)
    return result


def summarize_serve_runs(runs, model_config, beam):
    """The best figures of `serve_worker` runs (the fastest pass; the quickest start-up), with
    the model FLOP rate of the best pass (`decode_flops`)."""
    best_pass = min(min(run["steady_pass_s"]) for run in runs)
    first = runs[0]
    flops = decode_flops(model_config, first["source_lengths"], first["output_lengths"], beam)
    return {
        "sentences_per_s": first["sentences"] / best_pass, "pass_s": best_pass,
        "with_startup_sentences_per_s": first["sentences"] / min(
            run["cold_pass_end_s"] for run in runs),
        "cold_pass_end_s": min(run["cold_pass_end_s"] for run in runs),
        "import_s": min(run["import_s"] for run in runs),
        "load_s": min(run["load_s"] for run in runs),
        "first_translation_s": min(run["first_translation_s"] for run in runs),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "output_tokens": int(np.sum(first["output_lengths"])),
        "model_flops_per_s": flops / best_pass,
    }


# -- compare ----------------------------------------------------------------------------------


def run_measurement(command, out=print, env=None):
    """Run one benchmark command; returns its `target_tokens_per_s` (None if it failed)."""
    out("$ " + " ".join(command))
    process = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in process.stdout.strip().splitlines():
        out("    " + line)
    found = RESULT_LINE.findall(process.stdout)
    if process.returncode or not found:
        tail = process.stderr.strip().splitlines()[-5:]
        out(f"    failed (exit {process.returncode}): " + " | ".join(tail))
        return None
    return float(found[-1])


def torch_available(python):
    if not python or not shutil.which(python) and not os.path.exists(python):
        return False
    probe = subprocess.run([python, "-c", "import torch, numpy"], capture_output=True)
    return probe.returncode == 0


def compare(args, out=print):
    """The project's bench and the peers on each `.npz`, `--repeats` rounds, one program after
    the other in each round; a table of each one's best round and the ratios."""
    peers = args.peers_dir
    sizes = ["--units", str(args.units), "--emb", str(args.embedding_dim),
             "--batch", str(args.batch_size), "--steps", str(args.peer_steps),
             "--warmup", str(args.warmup)]
    use_torch = torch_available(args.torch_python)
    if args.torch_python and not use_torch:
        out(f"torch is not importable by {args.torch_python}: the PyTorch peer is skipped")
    peer_env = None
    if args.peer_threads:  # the peers take no option: TensorFlow's and torch's variables
        intra, inter = args.peer_threads
        peer_env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(intra),
                        TF_NUM_INTEROP_THREADS=str(inter), OMP_NUM_THREADS=str(intra),
                        MKL_NUM_THREADS=str(intra))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    rows = []
    for ids in args.ids:
        programs = [("bahdanau_keras", [
            args.python, "-m", "bahdanau_keras.bench", "train", "--ids", ids,
            "--units", str(args.units), "--embedding-dim", str(args.embedding_dim),
            "--batch-size", str(args.batch_size), "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--intra-op-threads", str(args.intra_op_threads),
            "--inter-op-threads", str(args.inter_op_threads)], env)]
        programs.append(("tf_tutorial_classic", [
            args.python, os.path.join(peers, "tf_tutorial_classic.py"), ids] + sizes, peer_env))
        if use_torch:
            programs.append(("torch_tutorial", [
                args.torch_python, os.path.join(peers, "torch_tutorial.py"), ids] + sizes,
                peer_env))
        rates = {name: [] for name, _, _ in programs}
        for round_ in range(args.repeats):
            if args.repeats > 1:
                out(f"# {os.path.basename(ids)}: round {round_ + 1} of {args.repeats}")
            for name, command, program_env in programs:
                rate = run_measurement(command, out, env=program_env)
                if rate:
                    rates[name].append(rate)
        project = max(rates["bahdanau_keras"], default=None)
        for name, _, _ in programs:
            best = max(rates[name], default=None)
            rows.append((os.path.basename(ids), name, best, rates[name],
                         project / best if project and best else None))
    out("")
    label = f"best of {args.repeats} rounds" if args.repeats > 1 else "one run each"
    out(f"target tokens/s ({label}; every round's figure in brackets)")
    out(f"{'ids':<16} {'implementation':<22} {'target tokens/s':>16} {'bahdanau_keras ×':>17}")
    for ids, name, rate, all_rates, ratio in rows:
        rate_text = f"{rate:,.1f}" if rate else "failed"
        ratio_text = f"{ratio:.2f}" if ratio else "-"
        rounds = ""
        if len(all_rates) > 1:
            rounds = " [" + ", ".join(f"{r:.0f}" for r in all_rates) + "]"
        out(f"{ids:<16} {name:<22} {rate_text:>16} {ratio_text:>17}{rounds}")
    return rows


def thread_pair(text):
    """`INTRA,INTER` thread-pool sizes, both positive."""
    try:
        intra, inter = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected INTRA,INTER (two positive integers), received {text!r}") from None
    if intra <= 0 or inter <= 0:
        raise argparse.ArgumentTypeError(
            f"expected INTRA,INTER (two positive integers), received {text!r}")
    return intra, inter


# -- command line -----------------------------------------------------------------------------


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, received {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m bahdanau_keras.bench",
        description="Training and decoding throughput on token-id .npz files "
                    "(../shared/peers/make_ids.py), side by side with the peers; serving "
                    "throughput on raw sentences.")
    commands = parser.add_subparsers(
        dest="command", required=True,
        metavar="{train,decode,step,serve,sentences,unpack,compare}")

    def model_source(command, model_dir_help):
        source = command.add_mutually_exclusive_group(required=True)
        source.add_argument("--ids", help="token-id .npz (an untrained model of the given sizes)")
        source.add_argument("--model-dir", help=model_dir_help)

    def matmul_size(command):
        command.add_argument("--matmul-size", type=positive_int, default=2048,
                             help="size of the reference fp32 matrix product")

    def sizes(command, steps, batch=True):
        command.add_argument("--units", type=positive_int, default=512,
                             help="decoder units (encoder: half per direction; attention: same)")
        command.add_argument("--embedding-dim", type=positive_int, default=256)
        if batch:
            command.add_argument("--batch-size", type=positive_int, default=64)
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--intra-op-threads", type=non_negative_int, default=0,
                             help="threads of each TensorFlow op (0: as the project's own "
                                  "command: train.default_threads for training, "
                                  "TensorFlow's default for decoding)")
        command.add_argument("--inter-op-threads", type=non_negative_int, default=0,
                             help="TensorFlow ops run at once (0: as the project's own command)")
        if steps:
            command.add_argument("--steps", type=positive_int, default=100,
                                 help="timed training steps")
            command.add_argument("--warmup", type=non_negative_int, default=3,
                                 help="untimed steps first (tracing, warm-up)")

    train = commands.add_parser("train", help="training throughput of the project's step")
    train.add_argument("--ids", required=True, help="token-id .npz from make_ids.py")
    sizes(train, steps=True)
    train.add_argument("--dropout", type=float, default=0.0)
    train.add_argument("--implementation", choices=["auto", "reference", "fused"],
                       default="auto", help="as `bahdanau-keras train --implementation`: the "
                       "readable layers or the kernels (auto: each kernel where it applies)")
    train.add_argument("--loss-chunks", type=positive_int, default=2,
                       help="as `bahdanau-keras train --loss-chunks`")
    train.add_argument("--loop-shards", type=positive_int, default=2,
                       help="as `bahdanau-keras train --loop-shards`")
    train.add_argument("--label-smoothing", type=float, default=0.0)
    train.add_argument("--mixed-precision", action="store_true",
                       help="float16 on GPU, bfloat16 elsewhere")
    train.add_argument("--jit-compile", action="store_true", help="XLA-compile the step")
    train.add_argument("--strategy", choices=["default", "mirrored"], default="default",
                       help="mirrored: tf.distribute.MirroredStrategy over the visible GPUs")
    matmul_size(train)

    decode = commands.add_parser("decode", help="greedy and beam-search sentences per second")
    model_source(decode, "a trained model directory (its test split)")
    decode.add_argument("--data", default=None,
                        help="with --model-dir: the corpus (default: the model's own)")
    sizes(decode, steps=False)
    decode.add_argument("--beam", type=positive_int, default=4, help="beam width (1: greedy only)")
    decode.add_argument("--sentences", type=positive_int, default=640,
                        help="sentences decoded by each search")
    decode.add_argument("--passes", type=positive_int, default=3,
                        help="passes over the sentences, the best reported (default: 3)")
    decode.add_argument("--workers", type=positive_int, default=1,
                        help="batches decoded at once, each op on cores / N threads, as "
                             "`bahdanau-keras translate --input` runs (default: 1, one batch "
                             "at a time with TensorFlow's default pools)")
    matmul_size(decode)

    step = commands.add_parser(
        "step", help="the decoding step alone at fixed rows, against the matrix product")
    model_source(step, "a trained model directory")
    sizes(step, steps=False, batch=False)
    step.add_argument("--rows", type=positive_int, nargs="+", default=[8, 64, 256],
                      help="sentences a step (default: 8 64 256)")
    step.add_argument("--source-length", type=positive_int, default=10,
                      help="source positions, the end token included (default: 10)")
    step.add_argument("--steps", type=positive_int, default=50, help="steps a timed loop")
    step.add_argument("--passes", type=positive_int, default=5,
                      help="timings of each loop, the best reported (default: 5)")
    matmul_size(step)

    serve = commands.add_parser(
        "serve", help="the user's path: a SavedModel (and the in-memory model, and the command "
                      "line) translating a file of raw sentences in fresh processes")
    serve.add_argument("--saved-model", required=True,
                       help="a SavedModel written by `bahdanau-keras export`")
    serve.add_argument("--sentences", required=True,
                       help="raw sentences, one a line (`bench sentences` writes held-out ones)")
    serve.add_argument("--model-dir", default=None,
                       help="the SavedModel's model directory, for the in-memory comparison "
                            "(`bench unpack` rebuilds one from the SavedModel)")
    serve.add_argument("--batch-size", type=positive_int, default=64,
                       help="sentences a call, in file order")
    serve.add_argument("--beam", type=positive_int, default=4, help="beam width (1: greedy only)")
    serve.add_argument("--passes", type=positive_int, default=2,
                       help="steady passes over the file in each process, after the first")
    serve.add_argument("--repeats", type=positive_int, default=1,
                       help="fresh processes of each kind, interleaved (best figures shown)")
    serve.add_argument("--workers", type=non_negative_int, default=0,
                       help="also the SavedModel with this many calls at once, each op on "
                            "cores / N threads, as the command line runs it (0, the default: "
                            "the command line's choice; 1: leave it out)")
    serve.add_argument("--no-cli", dest="cli", action="store_false",
                       help="leave out `bahdanau-keras translate --input`")
    matmul_size(serve)

    worker = commands.add_parser("serve-worker")  # one process of `serve` (not for users)
    worker.add_argument("--kind", choices=["saved_model", "in_memory"], required=True)
    worker.add_argument("--path", required=True)
    worker.add_argument("--sentences", required=True)
    worker.add_argument("--batch-size", type=positive_int, required=True)
    worker.add_argument("--beam", type=positive_int, required=True)
    worker.add_argument("--passes", type=positive_int, required=True)
    worker.add_argument("--workers", type=positive_int, default=1)
    worker.add_argument("--spawned", type=float, required=True,
                        help="time.time() when the process was started")

    sentences = commands.add_parser(
        "sentences", help="write held-out source sentences of a model's corpus to a file")
    sentences.add_argument("--model", required=True,
                           help="a model directory or a SavedModel written by `export`")
    sentences.add_argument("--output", required=True, help="the file to write (e.g. in /tmp)")
    sentences.add_argument("--count", type=positive_int, default=1500,
                           help="the first COUNT sentences of the split")
    sentences.add_argument("--data", default=None,
                           help="the corpus (default: the one the model was trained on)")
    sentences.add_argument("--split", choices=["test", "dev"], default="test")

    unpack = commands.add_parser(
        "unpack", help="rebuild a model directory from a SavedModel written by `export`")
    unpack.add_argument("--saved-model", required=True)
    unpack.add_argument("--output", required=True, help="the model directory to write")

    comparison = commands.add_parser(
        "compare", help="the project and the peers on the same .npz files, in one run")
    comparison.add_argument("--ids", required=True, nargs="+", help="token-id .npz files")
    sizes(comparison, steps=True)
    comparison.add_argument("--peer-steps", type=positive_int, default=30,
                            help="timed steps of each peer (they are much slower)")
    comparison.add_argument("--repeats", type=positive_int, default=1,
                            help="rounds of every program, interleaved; the table shows each "
                                 "one's best round (another process slows a run, never speeds "
                                 "it up)")
    comparison.add_argument("--peer-threads", type=thread_pair, default=None,
                            help="INTRA,INTER thread pools of the peers (default: TensorFlow's "
                                 "and torch's own, as their users run them)")
    comparison.add_argument("--peers-dir", default=DEFAULT_PEERS,
                            help="folder of tf_tutorial_classic.py and torch_tutorial.py")
    comparison.add_argument("--python", default=sys.executable,
                            help="interpreter with TensorFlow for the project and the TF peer")
    comparison.add_argument("--torch-python", default=None,
                            help="interpreter with torch for the PyTorch peer (skipped if "
                                 "not given or torch is not importable)")
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            bench_train(args)
        elif args.command == "decode":
            bench_decode(args)
        elif args.command == "step":
            bench_step(args)
        elif args.command == "serve":
            bench_serve(args)
        elif args.command == "serve-worker":
            serve_worker(args)
        elif args.command == "sentences":
            written = write_sentences(args.model, args.output, args.count, args.data, args.split)
            print(f"{written} sentences of the {args.split} split written to {args.output}")
        elif args.command == "unpack":
            print(f"model directory written to {unpack_saved_model(args.saved_model, args.output)}")
        else:
            compare(args)
    except (ValueError, OSError, RuntimeError) as error:  # a TrainingError is a RuntimeError
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
