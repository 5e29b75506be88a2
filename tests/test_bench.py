"""The benchmark tool on a tiny generated token-id file: output format, not speed."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bahdanau_keras import bench

REPO = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
TINY = ["--units", "16", "--embedding-dim", "8", "--batch-size", "8"]


def write_ids(path, pairs=48, seed=0):
    """An `.npz` as `make_ids.py` writes it: `START w... END`, 0-padded, int32."""
    rng = np.random.default_rng(seed)

    def rows(vocab, low, high):
        lengths = rng.integers(low, high + 1, size=pairs)
        out = np.zeros((pairs, high + 2), np.int32)
        for i, n in enumerate(lengths):
            out[i, : n + 2] = [1, *rng.integers(3, vocab, size=n), 2]
        return out

    np.savez(path, src=rows(30, 2, 7), tgt=rows(40, 2, 9))
    return path


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    return str(write_ids(tmp_path_factory.mktemp("ids") / "tiny.npz"))


def run_bench(*argv):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p), TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run([sys.executable, "-m", "bahdanau_keras.bench", *argv],
                             capture_output=True, text=True, env=env, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout


def value(output, name):
    match = re.search(rf"^{name}\s+{NUMBER}", output, re.MULTILINE)
    assert match, f"no `{name}` line in:\n{output}"
    return float(match.group(1))


@pytest.mark.slow
def test_train_prints_its_figures_and_ends_with_tokens_per_second(ids):
    output = run_bench("train", "--ids", ids, *TINY, "--steps", "4", "--warmup", "1",
                       "--matmul-size", "256")
    lines = output.strip().splitlines()
    assert re.fullmatch(rf"target_tokens_per_s {NUMBER}", lines[-1]), lines[-1]
    for name in ("target_tokens_per_s", "peak_rss_mb", "model_gflop_per_s",
                 "matmul_256_gflop_per_s", "model_flops_vs_matmul", "sentences_per_s"):
        assert value(output, name) > 0, name
    # The model reads the file's sizes: vocabularies = largest id + 1.
    assert "vocab 30/40" in output


@pytest.mark.slow
def test_decode_prints_sentences_per_second(ids):
    output = run_bench("decode", "--ids", ids, *TINY, "--beam", "2", "--sentences", "16",
                       "--matmul-size", "256", "--passes", "2")
    assert value(output, "greedy_sentences_per_s") > 0
    # The best of the two passes, each printed.
    passes = re.search(rf"greedy_sentences_per_s {NUMBER} .*; passes {NUMBER}, {NUMBER} "
                       r"sentences/s\)", output)
    assert passes, output
    assert float(passes.group(1)) == pytest.approx(
        max(float(passes.group(2)), float(passes.group(3))), rel=0.01, abs=1)
    # The product is timed before and after the searches; the faster is the denominator.
    products = re.search(rf"matmul_256_before_and_after {NUMBER} {NUMBER} GFLOP/s", output)
    assert products, output
    assert value(output, "matmul_256_gflop_per_s") == pytest.approx(
        max(float(products.group(1)), float(products.group(2))), rel=1e-3)
    assert value(output, "beam2_sentences_per_s") > 0
    assert value(output, "peak_rss_mb") > 0
    # The model FLOP rate against the matrix product of the same run, as `bench train`.
    assert value(output, "matmul_256_gflop_per_s") > 0
    for search in ("greedy", "beam2"):
        rate = value(output, f"{search}_model_gflop_per_s")
        assert value(output, f"{search}_flops_vs_matmul") == pytest.approx(
            rate / value(output, "matmul_256_gflop_per_s"), rel=0.01, abs=1e-3)


@pytest.mark.slow
def test_decode_with_workers_decodes_batches_side_by_side(ids, capsys):
    output = run_bench("decode", "--ids", ids, *TINY, "--beam", "2", "--sentences", "16",
                       "--batch-size", "4", "--matmul-size", "256", "--passes", "1",
                       "--workers", "2")
    intra = max(1, len(os.sched_getaffinity(0)) // 2)
    assert f"2 batches at once, threads {intra} intra-op, 2 inter-op" in output
    for name in ("greedy", "beam2"):
        assert value(output, f"{name}_sentences_per_s") > 0
        assert value(output, f"{name}_flops_vs_matmul") > 0
    assert bench.main(["decode", "--ids", ids, *TINY, "--workers", "2",
                       "--intra-op-threads", "1"]) == 2
    assert "--workers sizes the thread pools itself" in capsys.readouterr().err


@pytest.mark.slow
def test_step_times_each_loop_at_each_row_count(ids):
    output = run_bench("step", "--ids", ids, "--units", "16", "--embedding-dim", "8",
                       "--rows", "2", "9", "--source-length", "4", "--steps", "3",
                       "--passes", "2", "--matmul-size", "256")
    products = re.search(rf"matmul_256_before_and_after {NUMBER} {NUMBER} GFLOP/s", output)
    assert products, output
    matmul = max(float(products.group(1)), float(products.group(2)))
    # The decoder's model FLOPs of one output token a row: the formula of `forward_flops`.
    config = bench.model_config_for(*bench.read_ids(ids), units=16, embedding_dim=8)
    per_row = bench.forward_flops(config, 4, 1) - bench.forward_flops(config, 4, 0)
    for rows in (2, 9):
        for name in ("products", "step", "greedy", "greedy_xla", "beam4"):
            line = re.search(rf"^rows {rows} {name}: {NUMBER} ms a step, {NUMBER} GFLOP/s "
                             rf"\(first call {NUMBER} s\)$", output, re.MULTILINE)
            assert line, f"no `rows {rows} {name}` line in:\n{output}"
            milliseconds, rate = float(line.group(1)), float(line.group(2))
            assert milliseconds > 0
            # The beam loop's rows are 4 hypotheses of each of rows // 4 sentences (1 at least).
            computed = {2: 4, 9: 8}[rows] if name == "beam4" else rows
            assert rate == pytest.approx(computed * per_row / (milliseconds * 1e-3) / 1e9,
                                         rel=0.01)
            assert value(output, f"step_rows{rows}_{name}_flops_vs_matmul") == pytest.approx(
                rate / matmul, rel=0.01)


def test_step_needs_a_model(capsys):
    with pytest.raises(SystemExit):
        bench.main(["step"])
    assert "one of the arguments --ids --model-dir is required" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_runs_everything_in_one_run_and_prints_ratios(ids, tmp_path):
    # Stand-in peers that print what the real ones print last: the classic peer a different
    # figure each round, from a counter file, and both check the thread variables they get.
    peers = tmp_path / "peers"
    peers.mkdir()
    for name, rates in (("tf_tutorial_classic.py", [10.0, 12.0]), ("torch_tutorial.py", [5.0])):
        (peers / name).write_text(textwrap.dedent(f"""
            import os, sys
            from pathlib import Path
            assert sys.argv[1].endswith(".npz") and "--units" in sys.argv
            assert os.environ["TF_NUM_INTRAOP_THREADS"] == os.environ["OMP_NUM_THREADS"] == "1"
            assert os.environ["TF_NUM_INTEROP_THREADS"] == "2"
            counter = Path(__file__).with_suffix(".count")
            n = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(n + 1))
            print("loss 1.0 steps 2 seconds 1.0")
            print("target_tokens_per_s", {rates!r}[n % {len(rates)}])
        """))
    output = run_bench("compare", "--ids", ids, *TINY, "--steps", "3", "--warmup", "1",
                       "--peer-steps", "2", "--peers-dir", str(peers), "--repeats", "2",
                       "--peer-threads", "1,2",
                       "--torch-python", str(tmp_path / "no-such-python"))
    assert "torch is not importable" in output
    assert output.count("round 2 of 2") == 1
    assert (peers / "tf_tutorial_classic.count").read_text() == "2"
    table = output[output.index("implementation"):]
    row = re.search(r"bahdanau_keras\s+([0-9,.]+)\s+1\.00 \[([0-9, ]+)\]", table)
    project = float(row.group(1).replace(",", ""))
    rounds = [float(r) for r in row.group(2).split(", ")]
    assert len(rounds) == 2 and project == pytest.approx(max(rounds), rel=0.01, abs=1)
    # Each program's best round, and the project's best divided by it.
    row = re.search(rf"tf_tutorial_classic\s+([0-9,.]+)\s+{NUMBER} \[10, 12\]", table)
    assert float(row.group(1).replace(",", "")) == 12.0
    assert float(row.group(2)) == pytest.approx(project / 12.0, rel=0.01)
    assert "torch_tutorial" not in table


@pytest.mark.parametrize("bad", ["1", "0,2", "a,b", "1,2,3"])
def test_compare_rejects_bad_peer_threads(bad, capsys):
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["compare", "--ids", "x.npz", "--peer-threads", bad])
    assert "INTRA,INTER" in capsys.readouterr().err


def test_flops_formula_by_hand():
    from bahdanau_keras.model import ModelConfig

    config = ModelConfig(source_vocab_size=11, target_vocab_size=13, embedding_dim=3,
                         encoder_units=5, decoder_units=7, attention_units=2)
    E, H, D, A, V, C, R = 3, 5, 7, 2, 13, 10, 3
    S, T = 4, 6
    expected = (2 * 2 * 3 * H * (E + H) * S + 2 * H * D + 2 * C * A * S
                + T * (2 * D * A + 2 * S * (A + C) + 2 * 3 * D * (E + C + D)
                       + 2 * 2 * R * (D + E + C) + 2 * R * V))
    assert bench.forward_flops(config, [S], [T]) == expected
    # A padded batch: the model count sees real tokens only, the executed count the padding.
    source = np.array([[1, 5, 6, 2], [1, 2, 0, 0]])
    target = np.array([[1, 7, 8, 9, 2], [1, 4, 2, 0, 0]])
    model, executed = bench.step_flops(config, source, target)
    assert model == 3 * bench.forward_flops(config, [4, 2], [4, 2])
    assert executed > model
    unpadded_model, unpadded_executed = bench.step_flops(config, source[:1], target[:1])
    assert unpadded_model == pytest.approx(unpadded_executed)


def test_read_ids_rejects_other_files(tmp_path):
    np.savez(tmp_path / "bad.npz", source=np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="expected arrays `src` and `tgt`"):
        bench.read_ids(tmp_path / "bad.npz")


@pytest.mark.slow
def test_decode_a_trained_model_dir(tiny_model_dir, capsys):
    assert bench.main(["decode", "--model-dir", str(tiny_model_dir), "--batch-size", "8",
                       "--beam", "2", "--sentences", "12"]) == 0
    output = capsys.readouterr().out
    assert "test split of" in output
    assert value(output, "greedy_sentences_per_s") > 0
    assert value(output, "beam2_sentences_per_s") > 0
