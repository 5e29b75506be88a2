"""The exported SavedModel under load: 8 threads at once, a batch of 10,000 sentences, a
100,000-character sentence. Correctness and memory ceilings, never speed."""

import inspect
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# Peak resident memory a call may add to that of a process that has loaded the SavedModel and
# translated 64 sentences, in MiB. Measured on this project's 2-core machine (TensorFlow 2.21,
# the tiny model of conftest.py): a batch of 10,000 short sentences added 187 MiB (the outputs
# alone hold 10,000 x 14 x 43 attention weights and 10,000 x 43 source and 10,000 x 14 target
# subword strings, each copied a few times on their way out; the search holds one sorted batch
# of 256 sentences at a time, `TranslatorModule.batch_size`), where decoding them as one batch
# added 945 MiB; the 100,000-character sentence added 12 MiB (it is cut to 128 subwords). The
# ceilings leave room for allocator noise and other versions, and stay far below the growth of
# a search over the whole batch.
MANY_SENTENCES, MANY_CEILING_MB = 10_000, 400
LONG_CHARACTERS, LONG_CEILING_MB = 100_000, 100

CHILD = textwrap.dedent("""
    import json, random, resource, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    path, kind, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = tf.saved_model.load(path)
    rng = random.Random(0)
    words = "the red car sees a small green house and John loves Mary while we eat".split()

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if kind == "many":
        sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + "."
                     for _ in range(count)]
    else:
        text = ""
        while len(text) < count:
            text += rng.choice(words) + " "
        sentences = [text[:count]]
    model.translate(tf.constant(sentences[:64]))["translation"].numpy()  # load, warm up
    before = peak_mb()
    out = model.translate(tf.constant(sentences))
    translations = out["translation"].numpy()
    source_lengths = tf.reduce_sum(tf.cast(out["source_tokens"] != "", tf.int32), axis=1)
    print(json.dumps({"added_mb": peak_mb() - before, "count": len(translations),
                      "translated": int(sum(bool(t) for t in translations)),
                      "longest_source": int(tf.reduce_max(source_lengths))}))
""")


@pytest.fixture(scope="module")
def saved_model(tiny_model_dir, tmp_path_factory):
    from bahdanau_keras.export import export_model_dir

    return export_model_dir(str(tiny_model_dir), str(tmp_path_factory.mktemp("saved") / "m"))


def run_child(saved_model, kind, count):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run([sys.executable, "-c", CHILD, saved_model, kind, str(count)],
                             capture_output=True, text=True, env=env, timeout=900)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_ten_thousand_sentences_in_one_call_stay_under_the_ceiling(saved_model):
    report = run_child(saved_model, "many", MANY_SENTENCES)
    assert report["count"] == report["translated"] == MANY_SENTENCES
    assert report["added_mb"] < MANY_CEILING_MB, report


@pytest.mark.slow
def test_a_hundred_thousand_characters_stay_under_the_ceiling(saved_model):
    from bahdanau_keras.export import TranslatorModule

    report = run_child(saved_model, "long", LONG_CHARACTERS)
    assert report["count"] == report["translated"] == 1
    # Cut to the module's limit: its subwords and the end token.
    limit = inspect.signature(TranslatorModule).parameters["max_source_length"].default
    assert report["longest_source"] == limit
    assert report["added_mb"] < LONG_CEILING_MB, report


@pytest.mark.slow
def test_eight_threads_at_once_get_the_answers_of_one(saved_model):
    import tensorflow as tf

    from bahdanau_keras import data
    from bahdanau_keras.export import load

    model = load(saved_model)
    sources = [source for source, _ in data.read_corpus(data.SAMPLE_CORPUS).pairs]
    # Every thread its own sentences, of different lengths and counts, twice each way.
    work = [sources[17 * k:17 * k + 5 + 3 * k] for k in range(8)]

    def translate(sentences):
        greedy = model.translate(tf.constant(sentences))
        beam = model.translate_beam(tf.constant(sentences), tf.constant(3),
                                    tf.constant(0.6), tf.constant(0.2))
        return [{key: value.numpy() for key, value in out.items()} for out in (greedy, beam)]

    expected = [translate(sentences) for sentences in work]  # one thread, one after another
    results = [[] for _ in work]
    errors = []
    start = threading.Barrier(len(work))

    def worker(k):
        try:
            start.wait()
            for _ in range(2):
                results[k].append(translate(work[k]))
        except Exception as error:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    for k, runs in enumerate(results):
        assert len(runs) == 2
        for run in runs:
            for got, wanted in zip(run, expected[k]):
                assert sorted(got) == sorted(wanted)
                for key in wanted:
                    if wanted[key].dtype.kind in "OSU":
                        np.testing.assert_array_equal(got[key], wanted[key], err_msg=key)
                    else:
                        np.testing.assert_allclose(got[key], wanted[key], rtol=1e-5,
                                                   atol=1e-5, err_msg=key)
