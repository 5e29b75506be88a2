"""Training through TensorFlow's own scaling engines, on tiny models.

`tf.distribute.MirroredStrategy` over two logical CPU devices (which must be configured before
TensorFlow initialises its devices, hence a fresh process), mixed precision (bfloat16 on a CPU;
the global dtype policy it sets would leak into other tests, hence a fresh process too) and
XLA compilation of the step. Each must give a finite loss that goes down.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = "dict(embedding_dim=16, encoder_units=16, decoder_units=32, attention_units=16)"

COMMON = textwrap.dedent("""
    import json, math, os, sys
    import numpy as np
    import tensorflow as tf

    def fixed_batch(size, seed=0):
        # START y... END padded with 0: ids 4.. are words, rows of different lengths.
        rng = np.random.default_rng(seed)
        source = rng.integers(4, 40, size=(size, 7)).astype(np.int32)
        target = rng.integers(4, 50, size=(size, 8)).astype(np.int32)
        target[:, 0] = 1
        for row in range(size):
            n, m = 3 + row % 4, 4 + row % 4
            source[row, n] = 2
            source[row, n + 1:] = 0
            target[row, m] = 2
            target[row, m + 1:] = 0
        return source, target

    def small_corpus(pairs=320):
        from bahdanau_keras import data
        corpus = data.read_corpus(data.SAMPLE_CORPUS)
        corpus.pairs = corpus.pairs[:pairs]
        return corpus

    def finite_and_decreasing(losses):
        return all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]

    def train_losses(strategy, model):
        # train.train under the strategy, into sys.argv[1]: the train loss of each epoch.
        from bahdanau_keras import train
        history = train.train(
            sys.argv[1], small_corpus(), model,
            train.TrainConfig(epochs=2, batch_size=32, vocab_size=300, patience=0,
                              learning_rate=3e-3),
            strategy=strategy, verbose=0)
        return [record["train_loss"] for record in history]
""")

MIRRORED = COMMON + textwrap.dedent(f"""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras
    from bahdanau_keras import train
    from bahdanau_keras.model import Translator

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {{"replicas": strategy.num_replicas_in_sync, "steps": []}}

    # One step under the strategy moves the weights exactly as one step without it: the
    # gradient is that of the mean loss over the real tokens of the whole batch, also when a
    # replica receives no sentence at all (a batch of 1 over 2 replicas).
    for size in (8, 1):
        source, target = fixed_batch(size)
        keras.utils.set_random_seed(0)
        single = Translator(40, 50, **{TINY}, loss_chunks=2, loop_shards=2)
        with strategy.scope():
            mirrored = Translator(40, 50, **{TINY}, loss_chunks=2, loop_shards=2)
        mirrored.set_weights(single.get_weights())
        updated = []
        for model, scope in ((single, None), (mirrored, strategy)):
            optimizer = keras.optimizers.SGD(0.5)
            step = train.make_train_step(model, optimizer, strategy=scope)
            loss_sum, count = step(tf.constant(source), tf.constant(target))
            updated.append((float(loss_sum), int(count), model.get_weights()))
        (loss_a, count_a, weights_a), (loss_b, count_b, weights_b) = updated
        result["steps"].append({{
            "size": size, "loss": [loss_a, loss_b], "count": [count_a, count_b],
            "max_weight_difference": max(
                float(np.max(np.abs(a - b))) for a, b in zip(weights_a, weights_b)),
        }})

    # End to end: train.train under the strategy, with the project's Adam (built inside the
    # strategy's scope), checkpoints and dev loss.
    losses = train_losses(strategy, {TINY})
    result["train_losses"] = losses
    result["ok"] = finite_and_decreasing(losses)
    checkpoints = os.path.join(sys.argv[1], "checkpoints")
    result["checkpoint"] = bool(tf.train.latest_checkpoint(checkpoints))
    print("RESULT " + json.dumps(result))
""")

MIXED_AND_JIT = COMMON + textwrap.dedent(f"""
    import keras
    from bahdanau_keras import train
    from bahdanau_keras.model import ModelConfig

    result = {{}}
    # XLA: the step of `train` compiled with jit_compile=True, on one batch shape.
    keras.utils.set_random_seed(0)
    # The translator `train` builds for an XLA step (the loss and the loop in one piece each).
    config = train.TrainConfig(learning_rate=1e-2, jit_compile=True)
    model = train.build_translator(ModelConfig(40, 50, **{TINY}), config)
    optimizer = train.make_optimizer(config)
    optimizer.build(model.trainable_variables)
    step = train.make_train_step(model, optimizer, jit_compile=True)
    source, target = fixed_batch(8)
    losses = []
    for _ in range(8):
        loss_sum, count = step(tf.constant(source), tf.constant(target))
        losses.append(float(loss_sum) / int(count))
    result["jit_losses"] = losses
    result["jit_ok"] = finite_and_decreasing(losses)

    # Mixed precision end to end (sets the global policy: last in this process).
    history = train.train(
        sys.argv[1], small_corpus(), {TINY},
        train.TrainConfig(epochs=2, batch_size=32, vocab_size=300, patience=0,
                          learning_rate=3e-3, mixed_precision=True),
        verbose=0)
    losses = [record["train_loss"] for record in history]
    result["policy"] = keras.config.dtype_policy().name
    result["mixed_losses"] = losses
    result["mixed_ok"] = finite_and_decreasing(losses)
    translator = train.load_trained(sys.argv[1]).translator
    result["variable_dtypes"] = sorted({{v.dtype for v in translator.weights}})
    print("RESULT " + json.dumps(result))
""")


MULTI_WORKER = COMMON + textwrap.dedent(f"""
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
    losses = train_losses(strategy, {TINY})
    print("RESULT " + json.dumps({{"replicas": strategy.num_replicas_in_sync,
                                  "losses": losses, "ok": finite_and_decreasing(losses)}}))
""")


def run_script(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p), TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="")
    process = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model")], capture_output=True, text=True,
        env=env, timeout=900)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and lines, process.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    result = run_script(MIRRORED, tmp_path)
    assert result["replicas"] == 2
    for step in result["steps"]:
        single, mirrored = step["loss"]
        assert step["count"][0] == step["count"][1] > 0
        assert abs(single - mirrored) <= 1e-4 * abs(single), step
        assert step["max_weight_difference"] < 1e-5, step
    assert result["ok"], result["train_losses"]
    assert result["checkpoint"]


@pytest.mark.slow
def test_mixed_precision_and_jit_compile(tmp_path):
    result = run_script(MIXED_AND_JIT, tmp_path)
    assert result["jit_ok"], result["jit_losses"]
    assert result["policy"] == "mixed_bfloat16"  # no GPU: bfloat16
    assert result["mixed_ok"], result["mixed_losses"]
    assert result["variable_dtypes"] == ["float32"]  # weights stay float32


def test_cli_strategy_option():
    from bahdanau_keras.cli import UsageError, build_parser

    args = build_parser().parse_args(["train", "--model-dir", "m", "--strategy", "mirrored"])
    assert args.strategy == "mirrored"
    assert build_parser().parse_args(["train", "--model-dir", "m"]).strategy == "default"
    with pytest.raises(UsageError):
        build_parser().parse_args(["train", "--model-dir", "m", "--strategy", "tpu"])


def _free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_with_two_local_workers(tmp_path):
    """Two worker processes on this machine (127.0.0.1 only), one CPU replica each."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p), TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="")
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "-c", MULTI_WORKER, str(tmp_path / f"worker{index}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(env, TF_CONFIG=json.dumps(config))))
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=600)
            lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
            assert process.returncode == 0 and lines, stderr[-3000:]
            results.append(json.loads(lines[-1][len("RESULT "):]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["ok"], results[0]["losses"]
    # Both workers trained one model: the same losses.
    assert results[0]["losses"] == pytest.approx(results[1]["losses"], rel=1e-6)
