"""Decoding on the user's path, several versions of the package side by side in one run.

    git worktree add /tmp/before 3c7a630
    python -m bahdanau_keras.bench sentences --model saved_models/en-fr --count 1500 \\
        --output /tmp/bench/test1500.en
    python -m bahdanau_keras.bench unpack --saved-model saved_models/en-fr \\
        --output /tmp/bench/en-fr-dir
    python scripts/decode_versions.py --sentences /tmp/bench/test1500.en \\
        --data ../shared/data/fra-eng.zip --rounds 2 \\
        --version before=/tmp/before:/tmp/bench/en-fr-dir-before \\
        --version now=.:/tmp/bench/en-fr-dir > /tmp/bench/versions.jsonl

A version is `NAME=ROOT:MODEL_DIR`: a checkout of this repository, whose package and whose
`saved_models/en-fr` are measured, and a model directory that its package can read (for the
in-memory path and `bench decode`). Every figure comes from a fresh process: this checkout's
`bench serve-worker` and `bench decode` run with the version's package first on the path
(the same measuring code for every version), then `bahdanau-keras translate --input` and a
one-sentence `translate` of the version itself, each next to `import tensorflow,
tensorflow_text` alone. The versions take turns, their order reversed every round, with the
2048³ product measured at the start and end of each round. One JSON line a measurement on
stdout, a readable line on stderr.
"""

import argparse
import json
import os
import subprocess
import sys
import time

THIS = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(THIS))
BENCH = os.path.join(REPO, "bahdanau_keras", "bench.py")


def run_worker(root, argv):
    """`bench.main(argv)` of this checkout with the package of `root` imported."""
    import importlib.util

    sys.path.insert(0, os.path.abspath(root))
    spec = importlib.util.spec_from_file_location("bench_of_this_checkout", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import bahdanau_keras

    if not os.path.abspath(bahdanau_keras.__file__).startswith(os.path.abspath(root)):
        raise SystemExit(f"imported {bahdanau_keras.__file__}, not the package of {root}")
    bench.main(argv)


class Runner:
    def __init__(self, args):
        self.args = args
        self.python = sys.executable
        sys.path.insert(0, REPO)  # this checkout's bench, for the 2048³ product
        from bahdanau_keras import bench

        self.bench = bench

    def env(self, root):
        return {**os.environ, "PYTHONPATH": os.path.abspath(root), "TF_CPP_MIN_LOG_LEVEL": "2"}

    def emit(self, record, line):
        print(json.dumps(record), flush=True)
        print(line, file=sys.stderr, flush=True)

    def run(self, command, root, timeout=3600):
        # cwd outside every checkout: `python -m` would import the package of the cwd first.
        return subprocess.run(command, capture_output=True, text=True, env=self.env(root),
                              timeout=timeout, cwd="/")

    def serve(self, name, root, kind, path, beam):
        command = [self.python, THIS, "--worker", root, "serve-worker", "--kind", kind,
                   "--path", path, "--sentences", self.args.sentences, "--batch-size",
                   str(self.args.batch_size), "--beam", str(beam), "--passes", "2",
                   "--spawned", repr(time.time())]
        done = self.run(command, root)
        if done.returncode:
            raise SystemExit(f"{name} {kind} beam {beam} failed:\n{done.stderr[-2000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        r["output_tokens"] = sum(r.pop("output_lengths"))
        r.pop("source_lengths")
        steady = r["sentences"] / min(r["steady_pass_s"])
        self.emit({"version": name, "figure": kind, "beam": beam, "steady_sentences_per_s":
                   steady, **r},
                  f"{name:8s} {kind:11s} beam {beam}: steady {steady:.1f}/s, with start-up "
                  f"{r['sentences'] / r['cold_pass_end_s']:.1f}/s, first translation "
                  f"{r['first_translation_s']:.2f} s, load {r['load_s']:.2f} s, peak RSS "
                  f"{r['peak_rss_mb']:.0f} MiB")

    def cli(self, name, root, saved, beam):
        command = [self.python, "-m", "bahdanau_keras", "translate", "--model-dir", saved,
                   "--input", self.args.sentences, "--beam", str(beam)]
        started = time.perf_counter()
        done = self.run(command, root)
        seconds = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"{name} translate --input failed:\n{done.stderr[-2000:]}")
        self.emit({"version": name, "figure": "cli_input", "beam": beam, "seconds": seconds},
                  f"{name:8s} translate --input beam {beam}: {seconds:.2f} s")

    def one_sentence(self, name, root, saved):
        started = time.perf_counter()
        imported = self.run([self.python, "-c", "import tensorflow, tensorflow_text"], root)
        bare = time.perf_counter() - started
        started = time.perf_counter()
        done = self.run([self.python, "-m", "bahdanau_keras", "translate", "--model-dir",
                         saved, self.args.one_sentence], root)
        seconds = time.perf_counter() - started
        for what, result in (("the bare import", imported), ("translate", done)):
            if result.returncode:
                raise SystemExit(f"{name} {what} failed:\n{result.stderr[-2000:]}")
        self.emit({"version": name, "figure": "one_sentence", "seconds": seconds,
                   "bare_import_s": bare, "translation": done.stdout.strip(),
                   "stderr_lines": len(done.stderr.splitlines())},
                  f"{name:8s} one sentence: {seconds:.2f} s, bare import {bare:.2f} s, "
                  f"difference {seconds - bare:.2f} s, {done.stdout.strip()!r}")

    def decode(self, name, root, model_dir):
        command = [self.python, THIS, "--worker", root, "decode", "--model-dir", model_dir,
                   "--data", self.args.data, "--batch-size", str(self.args.batch_size),
                   "--beam", "4", "--sentences", str(self.args.decode_sentences)]
        done = self.run(command, root)
        if done.returncode:
            raise SystemExit(f"{name} bench decode failed:\n{done.stderr[-2000:]}")
        figures = {}
        for line in done.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key.endswith(("_per_s", "_vs_matmul")):
                figures[key] = float(value.split()[0])
        self.emit({"version": name, "figure": "bench_decode", **figures},
                  f"{name:8s} bench decode: " + ", ".join(
                      f"{k} {v:g}" for k, v in figures.items()))

    def matmul(self):
        rate = self.bench.matmul_rate_in_fresh_process(2048) / 1e9
        self.emit({"figure": "matmul_2048_gflop_per_s", "value": rate},
                  f"2048³ product: {rate:.1f} GFLOP/s")


def parse_version(text):
    name, _, rest = text.partition("=")
    root, _, model_dir = rest.partition(":")
    if not (name and root and model_dir):
        raise argparse.ArgumentTypeError(f"expected NAME=ROOT:MODEL_DIR, received {text!r}")
    saved = os.path.join(os.path.abspath(root), "saved_models", "en-fr")
    return name, os.path.abspath(root), saved, os.path.abspath(model_dir)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return run_worker(argv[1], argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", type=parse_version, action="append", required=True)
    parser.add_argument("--sentences", required=True, help="one source sentence a line")
    parser.add_argument("--data", required=True, help="the corpus, for `bench decode`")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--decode-sentences", type=int, default=640)
    parser.add_argument("--one-sentence", default="John loves Mary.")
    parser.add_argument("--one-sentence-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    runner = Runner(args)
    for round_index in range(args.rounds):
        print(f"# round {round_index + 1}", file=sys.stderr, flush=True)
        versions = args.version if round_index % 2 == 0 else args.version[::-1]
        runner.matmul()
        for beam in (1, 4):
            for name, root, saved, model_dir in versions:
                runner.serve(name, root, "saved_model", saved, beam)
                runner.serve(name, root, "in_memory", model_dir, beam)
            for name, root, saved, _ in versions:
                runner.cli(name, root, saved, beam)
        for name, root, _, model_dir in versions:
            runner.decode(name, root, model_dir)
        for _ in range(args.one_sentence_repeats):
            for name, root, saved, _ in versions:
                runner.one_sentence(name, root, saved)
        runner.matmul()


if __name__ == "__main__":
    main()
